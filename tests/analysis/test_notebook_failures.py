"""What a failed analysis leaves: the traceback in its log (a notebook's failing cell, numbered,
with its source; a Python function's frames), what it printed, the notebook as far as it ran
(``notebook.ipynb``), and a failure message that names the cell and points to both."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from tests.analysis.test_safetycases import SETUP, Audit, _notebook
from tests.conftest import ACCOUNT

from assay.local import LocalPlatform
from assay.schema.status import Status

PRINTS = 'print("mean length is", round(mean))\n'
RAISES = "def ratio(x):\n    return x / 0\n\nratio(mean)\n"
NEVER = 'print("this cell never runs")\n'

FAILING = """
def broken(args, *, evaluation):
    print("reading", evaluation.count_rows(), "rows")
    return _lookup({})


def _lookup(table):
    return table["missing"]
"""


@pytest.fixture
def audit(platform: LocalPlatform, tmp_path: Path) -> Audit:
    return Audit(platform, tmp_path)


def _module(platform: LocalPlatform, package: Path) -> str:
    module = platform.modules.create_package(package, account=ACCOUNT, name=package.name)
    return platform.modules.upload_package(module, package).id


def test_a_failed_notebook_keeps_its_traceback_and_partial_notebook(
    platform: LocalPlatform, audit: Audit, tmp_path: Path
) -> None:
    package = tmp_path / "failing"
    _notebook(package / "fails.ipynb", SETUP, PRINTS, RAISES, NEVER)
    audit.module = _module(platform, package)  # notebook_method uses it
    method = audit.notebook_method("fails.ipynb")
    evaluation, measurement = audit.evaluate(seed=1)
    case = audit.safety_case(method, evaluation, measurement)

    assert case.status == Status.Failed
    message = case.message or ""
    assert "notebook 'fails.ipynb': cell 4 (code cell 3) raised ZeroDivisionError" in message
    assert f"the traceback is in its log (safetycases.logs('{case.id}')" in message
    assert "its artifact notebook.ipynb" in message

    log = platform.safetycases.logs(case.id)
    assert "[method] [cell 3] mean length is " in log  # what the cells printed
    assert "[method] notebook 'fails.ipynb': cell 4 (code cell 3) raised ZeroDivisionError" in log
    assert "[method]   source of cell 4:\n" in log
    assert "[method]     1 | def ratio(x):\n" in log
    assert "[method]     2 |     return x / 0\n" in log
    assert "[method]   traceback:\n" in log
    assert "----> 4 ratio(mean)" in log  # IPython's traceback, down to the line
    assert "ZeroDivisionError: float division by zero" in log
    assert "never runs" not in log
    lines = platform.safetycases.log_lines(case.id)
    workflow = [ln.message for ln in lines if ln.stream == "workflow"]
    assert workflow[0].startswith("running Method 'length audit (fails.ipynb)'")
    assert workflow[-2:] == [
        "stored the notebook as far as it ran as notebook.ipynb",
        workflow[-1],
    ] and workflow[-1].startswith("the analysis failed after ")
    first_method = next(i for i, ln in enumerate(lines) if ln.stream == "method")
    assert lines[0].message == workflow[0] and first_method > 0  # output after the start

    stored = platform.core.storage.local_path(case.id, "notebook.ipynb")
    assert stored is not None and stored.is_file()
    partial = nbformat.read(stored, as_version=4)
    code = [cell for cell in partial.cells if cell.cell_type == "code"]
    (printed,) = code[1].outputs
    assert printed.output_type == "stream" and printed.text.startswith("mean length is ")
    (error,) = code[2].outputs
    assert (error.output_type, error.ename) == ("error", "ZeroDivisionError")
    assert code[3].outputs == [] and code[3].get("execution_count") is None
    assert not platform.core.storage.exists(case.id, "index.html")


def test_a_failed_function_keeps_its_traceback(
    platform: LocalPlatform, audit: Audit, tmp_path: Path
) -> None:
    package = tmp_path / "broken"
    (package / "brokenaudit").mkdir(parents=True)
    (package / "brokenaudit" / "__init__.py").write_text(FAILING)
    module = _module(platform, package)
    evaluation, _ = audit.evaluate(seed=2)
    method = platform.methods.create(
        {
            **platform.methods.get(audit.measure_method).model_dump(
                mode="json", by_alias=True, include={"scope", "inputs", "output"}
            ),
            "account": ACCOUNT,
            "name": "broken",
            "implementation": {
                "kind": "PythonFunction",
                "pythonFunction": {"fullyQualifiedName": "brokenaudit.broken"},
            },
            "modules": [module],
        }
    ).id
    measurement = platform.measurements.create(
        {
            "account": ACCOUNT,
            "method": method,
            "scope": {"evaluation": evaluation},
            "inputs": [{"keyword": "evaluation", "entity": evaluation}],
        }
    )
    assert measurement.status == Status.Failed
    message = measurement.message or ""
    assert (
        f"Method 'broken' ({method}) raised KeyError: 'missing' (at __init__.py line 8" in message
    )
    assert f"the traceback is in its log (measurements.logs('{measurement.id}')" in message
    log = platform.measurements.logs(measurement.id)
    assert "[method] reading 30 rows\n" in log  # printed before the failure, shown before it
    assert log.index("reading 30 rows") < log.index("Traceback (most recent call last)")
    assert "in broken\n" in log and "in _lookup\n" in log
    assert "[method] KeyError: 'missing'\n" in log
    assert not platform.core.storage.exists(measurement.id, "notebook.ipynb")
