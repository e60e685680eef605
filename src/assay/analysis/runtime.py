"""The analysis process: ``python -m assay.analysis.runtime CONFIG``.

Started by the analysis workflow (``assay.analysis.workflow``) with the platform's own
interpreter, so that user code runs apart from the platform. It adds the Method's Module
directories in front of the import path, runs the Method, checks and writes its output to the
configuration's ``output`` directory, and leaves one file in the ``work`` directory:
``result.json`` (``{"rows": N}`` for a measurement, ``{"widgets": [[mime, payload], ...]}``
for a safety case) on success, ``error.json`` on failure: ``{"message": "...", "traceback":
true}`` when the traceback was printed to the log, ``"notebook": "notebook.ipynb"`` when a
failed notebook left its partly executed self in the output directory. Whatever the Method
prints goes to the analysis's log, and so do a failure's traceback (a function's; a
notebook's failing cell, numbered, with its source) and what a notebook's cells printed.

Only what a Python-function measurement needs is imported up front (``json``, ``pyarrow``),
which keeps an analysis's fixed cost to a process start and those imports.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay.analysis.context import CONFIG_ENV, AnalysisContext, read_schema

if TYPE_CHECKING:
    import pyarrow

__all__ = ["ERROR_FILE", "MEASUREMENT_FILE", "RESULT_FILE", "MethodFailure", "main"]

RESULT_FILE = "result.json"
ERROR_FILE = "error.json"
#: Where a measurement's data is written, relative to the output directory.
MEASUREMENT_FILE = "data.parquet"
#: Where a safety case's document is written, relative to the output directory.
DOCUMENT_FILE = "index.html"
#: The executed notebook, kept beside the document.
NOTEBOOK_FILE = "notebook.ipynb"


class MethodFailure(Exception):
    """The Method failed in a way the analysis reports as its message. ``traceback``: the
    details were printed to the log; ``notebook``: the partly executed notebook was written
    (its path in the output directory)."""

    def __init__(self, message: str, *, traceback: bool = False, notebook: str | None = None):
        super().__init__(message)
        self.traceback = traceback
        self.notebook = notebook


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    config_path = Path(args[0]).resolve()
    config = json.loads(config_path.read_text(encoding="utf-8"))
    work = Path(config["work"])
    os.environ[CONFIG_ENV] = str(config_path)
    for directory in reversed(config.get("paths") or []):
        sys.path.insert(0, directory)
    try:
        implementation = config["analysis"]["method"]["implementation"]
        if implementation["kind"] == "JupyterNotebook":
            result = run_notebook(config, config_path)
        else:
            result = run_function(config)
    except MethodFailure as exc:
        sys.stdout.flush()  # what the Method printed comes before the failure in the log
        print(f"analysis failed: {exc}", file=sys.stderr, flush=True)
        error: dict[str, Any] = {"message": str(exc), "traceback": exc.traceback}
        if exc.notebook:
            error["notebook"] = exc.notebook
        _write(work / ERROR_FILE, error)
        return 1
    except BaseException as exc:
        sys.stdout.flush()
        traceback.print_exc()
        sys.stderr.flush()
        _write(work / ERROR_FILE, {"message": describe_exception(config, exc), "traceback": True})
        return 1
    _write(work / RESULT_FILE, result)
    return 0


def _write(path: Path, doc: Mapping[str, Any]) -> None:
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(doc), encoding="utf-8")
    os.replace(temp, path)


def _method_name(config: Mapping[str, Any]) -> str:
    method = config["analysis"]["method"]
    return f"Method {method.get('name')!r} ({method.get('id')})"


def describe_exception(config: Mapping[str, Any], exc: BaseException) -> str:
    """``Method 'name' (id) raised ValueError: ... (at file.py line N)``: the exception and
    the innermost frame that is not Assay's or the standard library's."""
    where = ""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = str(Path(__file__).resolve().parents[1])
    for frame in reversed(frames):
        if not frame.filename.startswith(ours) and "/lib/python" not in frame.filename:
            where = f" (at {Path(frame.filename).name} line {frame.lineno}, in {frame.name})"
            break
    text = str(exc).strip() or "(no message)"
    return f"{_method_name(config)} raised {type(exc).__name__}: {text}{where}"


# -- Python functions ----------------------------------------------------------------------------


def resolve_function(config: Mapping[str, Any]) -> Any:
    """The Method's function, imported from its fully qualified name."""
    name = config["analysis"]["method"]["implementation"]["pythonFunction"]["fullyQualifiedName"]
    module_name, _, attribute = name.rpartition(".")
    what = _method_name(config)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        traceback.print_exc()  # an import inside the Module may be what failed
        raise MethodFailure(
            f"{what}: cannot import the module {module_name!r} of {name!r} ({exc}); the "
            f"import path starts with the Modules {config.get('paths') or 'none'}",
            traceback=True,
        ) from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise MethodFailure(
            f"{what}: the module {module_name!r} has no {attribute!r}; check the Method's "
            "fullyQualifiedName"
        ) from None


def run_function(config: Mapping[str, Any]) -> dict[str, Any]:
    """Run a Python-function measurement: ``f(args, **inputs)``; write its batches."""
    import pyarrow.parquet as pq

    function = resolve_function(config)
    ctx = AnalysisContext(config)
    inputs = {keyword: ctx.inputs(keyword) for keyword in ctx.input_keywords}
    returned = function(ctx.arguments, **inputs)
    analysis = config["analysis"]
    declared = read_schema((analysis.get("schema") or {}).get("arrowSchema"))
    if declared is None:
        raise MethodFailure(f"{_method_name(config)}: the Measurement declares no schema")
    check = _OutputCheck(config, declared, inputs)
    output = Path(config["output"])
    output.mkdir(parents=True, exist_ok=True)
    rows = 0
    with pq.ParquetWriter(output / MEASUREMENT_FILE, declared) as writer:
        for batch in _batches(config, returned):
            batch = check(batch)
            if batch.num_rows:
                writer.write_batch(batch)
                rows += batch.num_rows
    return {"rows": rows}


def _batches(config: Mapping[str, Any], returned: Any) -> Iterator[pyarrow.RecordBatch]:
    import pyarrow as pa

    what = _method_name(config)
    if isinstance(returned, pa.Table):
        yield from returned.to_batches()
        return
    if isinstance(returned, pa.RecordBatch):
        yield returned
        return
    origin = type(returned).__module__.partition(".")[0]
    if origin == "pandas" and hasattr(returned, "columns"):
        yield from pa.Table.from_pandas(returned, preserve_index=False).to_batches()
        return
    if origin == "polars" and hasattr(returned, "to_arrow"):
        yield from returned.to_arrow().to_batches()
        return
    if isinstance(returned, Iterable) and not isinstance(returned, str | bytes | Mapping):
        for i, item in enumerate(returned):
            if isinstance(item, pa.RecordBatch):
                yield item
            elif isinstance(item, pa.Table):
                yield from item.to_batches()
            else:
                raise MethodFailure(
                    f"{what} yielded a {type(item).__name__} as item {i}; a Method yields "
                    "pyarrow.RecordBatch (or returns a pyarrow.Table or a pandas.DataFrame)"
                )
        return
    raise MethodFailure(
        f"{what} returned {type(returned).__name__}; a Method returns a pyarrow.Table, a "
        "pandas.DataFrame, or an iterable of pyarrow.RecordBatch"
    )


class _OutputCheck:
    """Checks each batch against the declared schema (reordering columns and casting
    where that loses nothing) and, for instance-level measurements, ``_index_`` and
    ``_replication_``."""

    def __init__(
        self,
        config: Mapping[str, Any],
        declared: pyarrow.Schema,
        inputs: Mapping[str, Any],
    ) -> None:
        self._what = _method_name(config)
        self._declared = declared
        self._instance = config["analysis"].get("level") == "Instance"
        self._replicated = any("_replication_" in d.schema.names for d in inputs.values())
        self._checked_schema: pyarrow.Schema | None = None
        if self._instance:
            needed = ["_index_", *(["_replication_"] if self._replicated else [])]
            missing = [n for n in needed if n not in declared.names]
            if missing:
                raise MethodFailure(
                    f"{self._what}: an instance-level Measurement must have the column(s) "
                    f"{', '.join(missing)} (its input has them); the declared schema is "
                    f"{_show(declared)}"
                )

    def __call__(self, batch: pyarrow.RecordBatch) -> pyarrow.RecordBatch:
        if self._checked_schema is None or not batch.schema.equals(self._checked_schema):
            self._check_schema(batch.schema)
            self._checked_schema = batch.schema
        if batch.schema.names != self._declared.names or not batch.schema.equals(self._declared):
            batch = batch.select(self._declared.names).cast(self._declared)
        if self._instance and batch.column("_index_").null_count:
            raise MethodFailure(
                f"{self._what} returned rows whose _index_ is null; every row of an "
                "instance-level Measurement names its instance"
            )
        return batch

    def _check_schema(self, actual: pyarrow.Schema) -> None:
        import pyarrow as pa

        problems: list[str] = []
        missing = [n for n in self._declared.names if n not in actual.names]
        extra = [n for n in actual.names if n not in self._declared.names]
        if missing:
            problems.append(f"missing column(s) {', '.join(missing)}")
        if extra:
            problems.append(f"unexpected column(s) {', '.join(extra)}")
        for field in self._declared:
            if field.name not in actual.names:
                continue
            found = actual.field(field.name).type
            if found == field.type:
                continue
            try:
                pa.array([], type=found).cast(field.type)
                castable = pa.types.is_null(found) or _widens(found, field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                castable = False
            if not castable:
                problems.append(f"column {field.name!r} is {found}, expected {field.type}")
        if problems:
            raise MethodFailure(
                f"{self._what} returned the wrong schema ({'; '.join(problems)}): expected "
                f"{_show(self._declared)}, got {_show(actual)}"
            )


def _widens(found: pyarrow.DataType, expected: pyarrow.DataType) -> bool:
    """Whether values of ``found`` fit ``expected`` without loss (integers into wider
    integers or floats, float32 into float64, string into large_string and back)."""
    import pyarrow as pa

    t = pa.types
    if t.is_integer(found) and (t.is_integer(expected) or t.is_floating(expected)):
        return not t.is_integer(expected) or expected.bit_width >= found.bit_width
    if t.is_floating(found) and t.is_floating(expected):
        return bool(expected.bit_width >= found.bit_width)
    strings = (t.is_string, t.is_large_string)
    return any(a(found) for a in strings) and any(b(expected) for b in strings)


def _show(schema: pyarrow.Schema) -> str:
    return "{" + ", ".join(f"{f.name}: {f.type}" for f in schema) + "}"


# -- notebooks -----------------------------------------------------------------------------------


def run_notebook(config: Mapping[str, Any], config_path: Path) -> dict[str, Any]:
    """Execute a notebook Method with a Jupyter kernel; write its HTML document."""
    from assay.analysis import notebook

    analysis = config["analysis"]
    spec = analysis["method"]["implementation"]["jupyterNotebook"]
    path = Path(config["notebook"])
    output = Path(config["output"])
    output.mkdir(parents=True, exist_ok=True)
    scratch = Path(config["work"]) / "cwd"
    scratch.mkdir(exist_ok=True)
    env = dict(os.environ)
    env[CONFIG_ENV] = str(config_path)
    env["PYTHONPATH"] = os.pathsep.join(
        [*(config.get("paths") or []), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    what = _method_name(config)
    try:
        executed = notebook.execute_notebook(path, cwd=scratch, env=env, timeout=None)
    except notebook.NotebookCellError as exc:
        written = None
        if exc.notebook is not None:
            _print_streams(exc.notebook)
            notebook.write_notebook(exc.notebook, output / NOTEBOOK_FILE)
            written = NOTEBOOK_FILE
        print(f"notebook {spec['notebookPath']!r}: {exc.report()}", file=sys.stderr, flush=True)
        raise MethodFailure(
            f"{what}: notebook {spec['notebookPath']!r}: {exc}", traceback=True, notebook=written
        ) from None
    except notebook.NotebookError as exc:
        raise MethodFailure(f"{what}: {exc}") from None
    _print_streams(executed)
    title = analysis.get("name") or analysis["method"].get("name") or "Safety case"
    system = config.get("system") or {}
    for key in ("inferenceService", "model"):  # two systems' documents never share a title
        if system.get(f"{key}Id"):
            name = system.get(f"{key}Name") or key
            title = f"{title}: {name} ({system[f'{key}Id'][:8]})"
            break
    html = notebook.render_html(
        executed, title=title, footer=notebook.provenance_footer(config.get("provenance"), system)
    )
    (output / DOCUMENT_FILE).write_text(html, encoding="utf-8")
    notebook.write_notebook(executed, output / NOTEBOOK_FILE)
    return {"widgets": [[mime, payload] for mime, payload in notebook.collect(executed)]}


def _print_streams(nb: Any) -> None:
    """What the notebook's cells printed (their stream outputs), into the log: each line
    after ``[cell N]`` (N counts all cells from 1, as :class:`NotebookCellError` does)."""
    for number, cell in enumerate(nb.cells, 1):
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.get("output_type") != "stream":
                continue
            text = output.get("text", "")
            text = "".join(text) if isinstance(text, list) else str(text)
            for line in text.splitlines():
                print(f"[cell {number}] {line}")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
