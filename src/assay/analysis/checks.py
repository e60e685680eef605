"""Checks made when a Method is created, so that mistakes show up at once, not when an
analysis runs: implementation and output that go together, an instance-level schema with
``_index_``, and a function or notebook that exists in the Method's Modules. User code is read,
never imported, in the platform's process."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from assay import errors
from assay.inference.runners.python import find_definition
from assay.schema.paths import check_entity_path

__all__ = ["check_method"]


def check_method(storage: Any, request: Any, modules: Sequence[Any]) -> None:
    """Raise ValidationError if the Method described by ``request`` (a MethodCreateRequest)
    cannot run. ``modules`` are its Module entities."""
    what = f"Method {request.name!r}"
    impl = request.implementation
    kind = str(impl.kind)
    output = str(request.output.kind)
    if kind == "PythonRubric":
        raise errors.ValidationError(
            f"{what}: implementation kind 'PythonRubric' (the reference's deprecated Rubrics) "
            "is not supported; write a PythonFunction Method instead",
            field="implementation.kind",
            value=kind,
        )
    expected = {"Measurement": "PythonFunction", "SafetyCase": "JupyterNotebook"}[output]
    if kind != expected:
        raise errors.ValidationError(
            f"{what}: a {output} is produced by a {expected} Method, not a {kind}; "
            + (
                "a notebook renders a SafetyCase document"
                if output == "SafetyCase"
                else "a Python function returns a Measurement's data"
            ),
            field="implementation.kind",
            value=kind,
        )
    measurement = request.output.measurement
    if measurement is not None and str(measurement.level) == "Instance":
        schema = measurement.schema_.arrow_schema()
        if "_index_" not in schema.names:
            raise errors.ValidationError(
                f"{what}: an instance-level Measurement's schema must have the column "
                "'_index_' (int64; and '_replication_' when its input is an Evaluation); "
                f"the schema has {', '.join(schema.names) or 'no columns'}",
                field="output.measurement.schema",
            )
    directories = _ready_directories(storage, modules)
    if impl.pythonFunction is not None:
        _check_function(what, impl.pythonFunction.fullyQualifiedName, modules, directories)
    notebook = impl.jupyterNotebook
    if notebook is not None and notebook.notebookModule in directories:
        root = directories[notebook.notebookModule]
        field = "implementation.jupyterNotebook.notebookPath"
        check_entity_path(notebook.notebookPath, field=field, entity=what, root=root)
        path = root / notebook.notebookPath
        if not notebook.notebookPath.endswith(".ipynb") or not path.is_file():
            raise errors.ValidationError(
                f"{what}: the Module {notebook.notebookModule} has no notebook "
                f"{notebook.notebookPath!r} (a .ipynb file, relative to the Module's root)",
                field="implementation.jupyterNotebook.notebookPath",
                value=notebook.notebookPath,
            )


def _ready_directories(storage: Any, modules: Sequence[Any]) -> dict[str, Path]:
    """The local directories of the Modules whose files are uploaded."""
    found: dict[str, Path] = {}
    for module in modules:
        if module.status != "Ready":
            continue
        directory = storage.local_dir(module.id)
        if directory is None:  # a storage elsewhere (S3): its files, copied here
            directory = storage.local_copy(module.id)
        found[module.id] = directory
    return found


def _check_function(
    what: str, name: str, modules: Sequence[Any], directories: dict[str, Path]
) -> None:
    field = "implementation.pythonFunction.fullyQualifiedName"
    module_name, _, attribute = name.rpartition(".")
    if not module_name or not all(part.isidentifier() for part in name.split(".")):
        raise errors.ValidationError(
            f"{what}: fullyQualifiedName {name!r} must be a dotted name 'package.module.function'",
            field=field,
            value=name,
        )
    if len(directories) < len(modules):
        return  # some Modules are not uploaded yet: the analysis reports it if it is missing
    try:
        if find_definition(list(directories.values()), module_name, attribute):
            return
        if _in_environment(module_name, attribute):
            return
    except errors.ValidationError as exc:
        raise errors.ValidationError(
            f"{what}: the module of {name!r} does not parse: {exc}", field=field, value=name
        ) from None
    relative = module_name.replace(".", "/")
    raise errors.ValidationError(
        f"{what}: fullyQualifiedName {name!r} is not defined in the Modules "
        f"{', '.join(m.id for m in modules) or '(none)'} (looked for {attribute!r} in "
        f"{relative}.py or {relative}/__init__.py) nor in a package installed with the platform; "
        "check the Module's layout and the name",
        field=field,
        value=name,
    )


def _in_environment(module_name: str, attribute: str) -> bool:
    """Whether an installed package defines ``module_name.attribute``, found without
    importing anything but the top-level package's location."""
    top = module_name.partition(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    if spec is None or spec.origin is None:
        return False
    if spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations))).parent
    else:
        root = Path(spec.origin).parent
    return find_definition([root], module_name, attribute) is not None
