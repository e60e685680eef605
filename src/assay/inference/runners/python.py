"""The ``python`` runner: a class from a Module, served by Assay's replica processes.

Configuration: ``{"module": "<Module id>", "target": "package.module:ClassName", "kwargs":
{...}, "modules": ["<more Module ids>"], "threads": 1, "readyTimeoutSeconds": 120}``
(``threads``: how many calls one replica serves at once; raise it only for thread-safe
classes). The class implements
``infer(endpoint, request) -> list[dict]`` (and, for speed, ``infer_batch``), like a mock.
Each replica is a process started with the platform's own interpreter, the Modules' directories
added to its import path (not replacing it).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay import errors
from assay.inference.runners.base import (
    ProcessRunner,
    ReplicaHandle,
    RunnerEnv,
    config_error,
    configuration,
)
from assay.schema.ids import is_entity_id
from assay.schema.paths import check_entity_path

if TYPE_CHECKING:
    from assay.schema.platform import InferenceService, InferenceSession

__all__ = ["RUNNER", "PythonRunner", "find_class", "find_definition"]


def _split_target(target: str) -> tuple[str, str]:
    module, sep, cls = target.partition(":")
    if not sep:
        module, _, cls = target.rpartition(".")
    return module, cls


def module_file(target: str) -> str:
    """The path, inside a Module, of the file of ``target``'s module (``pkg.model:Model`` →
    ``pkg/model.py``), as :func:`find_definition` reads it first."""
    return "/".join(_split_target(target)[0].split(".")) + ".py"


def find_class(directories: list[Path], target: str) -> str | None:
    """Where ``target``'s class is defined among ``directories`` — read, not imported, so
    user code never runs in the platform's process. None if it is not found; the message
    of a ValidationError if the file does not parse."""
    module, cls = _split_target(target)
    return find_definition(directories, module, cls)


def find_definition(directories: list[Path], module: str, name: str) -> str | None:
    """The file among ``directories`` of the module ``module`` (dotted) if it defines
    ``name`` at top level (a class, function, assignment or import), read with ``ast``, not
    imported. None if there is no such module or it does not define ``name``."""
    relative = Path(*module.split("."))
    for directory in directories:
        for candidate in (directory / f"{relative}.py", directory / relative / "__init__.py"):
            if not candidate.is_file():
                continue
            try:
                tree = ast.parse(candidate.read_text(encoding="utf-8"), filename=str(candidate))
            except SyntaxError as exc:
                raise errors.ValidationError(
                    f"{candidate.name} line {exc.lineno}: {exc.msg}"
                ) from None
            names = {
                n.name
                for n in tree.body
                if isinstance(n, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            }
            names |= {
                t.id
                for n in tree.body
                if isinstance(n, ast.Assign)
                for t in n.targets
                if isinstance(t, ast.Name)
            }
            names |= {
                a.asname or a.name.partition(".")[0]
                for n in tree.body
                if isinstance(n, ast.ImportFrom | ast.Import)
                for a in n.names
            }
            return str(candidate) if name in names else None
    return None


class PythonRunner(ProcessRunner):
    kind = "python"

    def _config(self, service: InferenceService) -> tuple[list[str], str, dict[str, Any]]:
        config = configuration(service)
        module = config.get("module")
        if not isinstance(module, str) or not is_entity_id(module):
            raise config_error(
                service, "module", "must be the id of the Module that holds the class"
            )
        extra = config.get("modules") or []
        if not isinstance(extra, list) or not all(
            isinstance(m, str) and is_entity_id(m) for m in extra
        ):
            raise config_error(service, "modules", "must be a list of Module ids")
        target = config.get("target")
        if not isinstance(target, str) or not all(_split_target(target)):
            raise config_error(
                service, "target", "must name the class, e.g. 'mypackage.model:Model'"
            )
        try:  # the module's file, inside a Module: the one path check
            check_entity_path(module_file(target), field="target")
        except errors.ValidationError as exc:
            raise config_error(
                service,
                "target",
                f"names {target!r}, whose module is not a file inside a Module ({exc}); name "
                "it by its dotted import path, e.g. 'mypackage.model:Model'",
                errors.UnsafePathError,
            ) from None
        kwargs = config.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise config_error(service, "kwargs", "must be an object of keyword arguments")
        threads = config.get("threads", 1)
        if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= 256:
            raise config_error(service, "threads", "must be an integer from 1 to 256")
        return [module, *extra], target, kwargs

    def check(self, service: InferenceService, env: RunnerEnv | None = None) -> None:
        modules, target, _ = self._config(service)
        if env is None:
            return
        directories = [env.entity_dir(m) for m in modules]
        if not all(d.is_dir() for d in directories):
            return  # not uploaded yet: the service waits for its Modules, checked at start
        try:
            found = find_class(directories, target)
        except errors.ValidationError as exc:
            raise config_error(
                service, "target", f"names {target!r}, whose file does not parse: {exc}"
            ) from None
        if found is None:
            module, cls = _split_target(target)
            raise config_error(
                service,
                "target",
                f"names {target!r}, but no module {module!r} defining {cls!r} is in the "
                f"Modules {', '.join(modules)}; check the package layout and the class name",
            )

    def dependencies(self, service: InferenceService) -> list[str]:
        return self._config(service)[0]

    def start(self, session: InferenceSession, index: int, env: RunnerEnv) -> ReplicaHandle:
        from assay.inference.replicas import python_replica_argv

        service = session.inferenceService
        modules, target, kwargs = self._config(service)  # type: ignore[arg-type]
        self.check(service, env)  # type: ignore[arg-type]
        threads = int(configuration(service).get("threads", 1))  # type: ignore[arg-type]
        paths = [str(env.entity_dir(m)) for m in modules]
        argv = python_replica_argv(target, paths=paths, kwargs=kwargs, threads=threads)
        return self.spawn(session, index, env, argv, read_only=[Path(p) for p in paths])


RUNNER = PythonRunner()
