"""Modules: packages of Python code (and notebooks) that Methods load."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from assay import errors
from assay.core.datasets import plural
from assay.core.uploads import UploadGroup, file_md5, list_files
from assay.engine import WorkflowContext, WorkflowResult
from assay.schema.platform import Module
from assay.schema.requests import ModuleCreateRequest

__all__ = ["DEFAULT_EXCLUDE", "Modules", "package_files", "package_request", "verify_module"]

#: Left out of every package unless ``include`` names them: hidden files and directories
#: (any path segment starting with ``.``), bytecode and tool caches.
DEFAULT_EXCLUDE = (
    "__pycache__",
    "*.pyc",
    "*.pyo",
    "*.egg-info",
    ".*",
)


def _matches(relative: str, patterns: Sequence[str]) -> bool:
    """A pattern with a ``/`` matches the whole relative path; one without matches any
    segment of it (so ``__pycache__`` excludes every such directory)."""
    parts = relative.split("/")
    for pattern in patterns:
        if "/" in pattern:
            if fnmatch.fnmatchcase(relative, pattern):
                return True
        elif any(fnmatch.fnmatchcase(part, pattern) for part in parts):
            return True
    return False


def package_files(
    root: Path, *, include: Sequence[str] | None = None, exclude: Sequence[str] | None = None
) -> list[str]:
    """The relative paths (sorted) of the files a package made from ``root`` contains."""
    out: list[str] = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        relative = path.relative_to(root).as_posix()
        if include is not None:
            if not _matches(relative, include):
                continue
        elif _matches(relative, DEFAULT_EXCLUDE):
            continue
        if exclude and _matches(relative, exclude):
            continue
        out.append(relative)
    return sorted(out)


def package_request(
    package_directory: str | Path,
    *,
    account: str | None = None,
    name: str,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The create request of a Module holding the files under ``package_directory`` (see
    :func:`package_files`), each with its md5. Used by ``create_package`` locally and
    remotely. Without ``account`` the request names none (the group fills in its default)."""
    what = f"Module {name!r}"
    root = list_files(Path(package_directory), what)
    files = package_files(root, include=include, exclude=exclude)
    if not files:
        raise errors.ValidationError(
            f"{what}: no files to package under {str(root)!r} (after include/exclude); "
            "check the directory and the patterns",
            field="package_directory",
            value=str(root),
        )
    artifacts = [{"path": p, "digest": {"md5": file_md5(root / p)}} for p in files]
    request: dict[str, Any] = {"name": name, "artifacts": artifacts}
    if account is not None:
        request["account"] = account
    return request


class Modules(UploadGroup[Module]):
    kind = "Module"
    request_type = ModuleCreateRequest

    def create_package(
        self,
        package_directory: str | Path,
        *,
        account: str | None = None,
        name: str,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] | None = None,
    ) -> Module:
        """Create a Module from the files under ``package_directory``; then call
        :meth:`upload_package`. Hidden files, ``__pycache__`` and bytecode are left out unless
        ``include`` (glob patterns; a pattern without ``/`` matches any path segment) names
        what to take; ``exclude`` patterns drop more. ``account`` defaults to the
        platform's."""
        return self.create(
            package_request(
                package_directory, account=account, name=name, include=include, exclude=exclude
            )
        )

    def upload_package(self, module: Module | str, package_directory: str | Path) -> Module:
        """Upload the files of a Module made by :meth:`create_package`; it becomes ``Ready``."""
        entity = self.require(module if isinstance(module, str) else module.id)
        return self._upload_directory(entity, Path(package_directory))


def verify_module(ctx: WorkflowContext) -> WorkflowResult:
    """A Module is ready once every artifact is stored with its recorded digest."""
    entity: Module = ctx.entity  # type: ignore[assignment]
    for artifact in entity.artifacts:
        if artifact.digest and artifact.digest.md5:
            ctx.storage.verify(entity.id, artifact.path, artifact.digest.md5)
    return WorkflowResult(message=plural(len(entity.artifacts), "file"))
