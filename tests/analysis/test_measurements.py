"""Python-function Methods end to end: create checks, measurements in their own process,
chained measurements, logs, and every way a Method can fail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from tests.conftest import ACCOUNT, ready_dataset

from assay import errors
from assay.analysis import AnalysisContext
from assay.local import LocalPlatform, mocks
from assay.schema.dataschema import DataSchema
from assay.schema.status import Status

METRICS = '''
import os
import sys

import pyarrow as pa
import pyarrow.compute as pc


def lengths(args, *, evaluation):
    """Characters in each response."""
    table = evaluation.to_table()
    text = pc.struct_field(pc.list_element(table["responses"], 0), "text")
    print("scoring", table.num_rows, "rows with unit", args.get("unit", "chars"))
    print("to stderr", file=sys.stderr)
    return pa.table({
        "_index_": table["_index_"],
        "_replication_": table["_replication_"],
        "length": pc.utf8_length(text).cast(pa.int64()),
    })


def mean_length(args, *, lengths):
    """Chained: a dataset-level summary of another measurement, in batches."""
    values = lengths.to_table()["length"]
    yield pa.record_batch({"mean": [pc.mean(values).as_py()], "n": [len(values)]})


def as_pandas(args, *, evaluation):
    import pandas as pd

    table = evaluation.to_table(columns=["_index_", "_replication_"])
    frame = table.to_pandas()
    frame["length"] = 1
    return frame


def where(args, **inputs):
    return pa.table({"cwd": [os.getcwd()], "path0": [sys.path[0]], "exe": [sys.executable]})


def boom(args, **inputs):
    return {}["missing"]


def wrong_schema(args, *, evaluation):
    return pa.table({"_index_": [1], "_replication_": ["r"], "length": ["long"]})


def no_index(args, *, evaluation):
    return pa.table({"length": [1]})


def not_data(args, **inputs):
    return 42


def null_index(args, *, evaluation):
    return pa.table({
        "_index_": pa.array([None], pa.int64()),
        "_replication_": ["r"],
        "length": [1],
    })


def crash(args, **inputs):
    os._exit(3)
'''

INSTANCE_SCHEMA = pa.schema(
    [("_index_", pa.int64()), ("_replication_", pa.string()), ("length", pa.int64())]
)


@pytest.fixture
def module_id(platform: LocalPlatform, tmp_path: Path) -> str:
    package = tmp_path / "pkg"
    (package / "audit").mkdir(parents=True)
    (package / "audit" / "__init__.py").write_text("")
    (package / "audit" / "metrics.py").write_text(METRICS)
    module = platform.modules.create_package(package, account=ACCOUNT, name="audit")
    return platform.modules.upload_package(module, package).id


@pytest.fixture
def evaluation_id(platform: LocalPlatform, tmp_path: Path) -> str:
    dataset = ready_dataset(platform, tmp_path / "data", rows=40)
    service = platform.inferenceservices.create_mock(
        mocks.TextCompletion, account=ACCOUNT, kwargs={"seed": 2}
    )
    evaluation = platform.evaluations.create(
        {
            "account": ACCOUNT,
            "dataset": dataset,
            "inferenceSession": {"inferenceService": service.id},
            "replications": 2,
        }
    )
    assert evaluation.status == Status.Complete
    return evaluation.id


def method_request(
    module_id: str,
    function: str,
    *,
    schema: pa.Schema = INSTANCE_SCHEMA,
    level: str = "Instance",
    inputs: list[dict[str, str]] | None = None,
    parameters: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    return {
        "account": ACCOUNT,
        "name": function,
        "scope": "Evaluation",
        "implementation": {
            "kind": "PythonFunction",
            "pythonFunction": {"fullyQualifiedName": f"audit.metrics.{function}"},
        },
        "parameters": parameters or [],
        "inputs": inputs
        if inputs is not None
        else [{"kind": "Evaluation", "keyword": "evaluation"}],
        "output": {
            "kind": "Measurement",
            "measurement": {
                "name": function,
                "level": level,
                "schema": DataSchema.from_arrow(schema).model_dump(by_alias=True),
            },
        },
        "modules": [module_id],
    }


def measure(
    platform: LocalPlatform,
    method_id: str,
    evaluation_id: str,
    inputs: dict[str, str] | None = None,
    arguments: dict[str, str] | None = None,
) -> Any:
    bound = inputs if inputs is not None else {"evaluation": evaluation_id}
    return platform.measurements.create(
        {
            "account": ACCOUNT,
            "method": method_id,
            "scope": {"evaluation": evaluation_id},
            "inputs": [{"keyword": k, "entity": v} for k, v in bound.items()],
            "arguments": [{"keyword": k, "value": v} for k, v in (arguments or {}).items()],
        }
    )


def test_instance_measurement_and_logs(
    platform: LocalPlatform, module_id: str, evaluation_id: str
) -> None:
    method = platform.methods.create(
        method_request(module_id, "lengths", parameters=[{"keyword": "unit"}])
    )
    measurement = measure(platform, method.id, evaluation_id, arguments={"unit": "bytes"})
    assert measurement.status == Status.Complete, measurement.message
    assert measurement.message == "80 rows"
    table = platform.measurements.open(measurement.id).to_table()
    assert table.schema.equals(INSTANCE_SCHEMA)
    assert table.num_rows == 80
    expected = platform.evaluations.open(evaluation_id).to_table()
    by_index = {
        (r["_index_"], r["_replication_"]): len(r["responses"][0]["text"])
        for r in expected.to_pylist()
    }
    assert {(r["_index_"], r["_replication_"]): r["length"] for r in table.to_pylist()} == by_index
    logs = platform.measurements.logs(measurement.id)
    assert "scoring 80 rows with unit bytes" in logs
    assert "to stderr" in logs
    # the bookkeeping is hidden: only the data is the measurement's data
    assert [
        a.path for a in platform.core.storage.list(measurement.id) if not a.path.startswith(".")
    ] == ["data.parquet"]


def test_chained_measurements(platform: LocalPlatform, module_id: str, evaluation_id: str) -> None:
    first = platform.methods.create(method_request(module_id, "lengths"))
    lengths = measure(platform, first.id, evaluation_id)
    summary_schema = pa.schema([("mean", pa.float64()), ("n", pa.int64())])
    second = platform.methods.create(
        method_request(
            module_id,
            "mean_length",
            schema=summary_schema,
            level="Dataset",
            inputs=[{"kind": "Measurement", "keyword": "lengths"}],
        )
    )
    summary = measure(platform, second.id, evaluation_id, inputs={"lengths": lengths.id})
    assert summary.status == Status.Complete, summary.message
    row = platform.measurements.open(summary.id).to_table().to_pylist()[0]
    values = platform.measurements.open(lengths.id).to_table()["length"].to_pylist()
    assert row == {"mean": pytest.approx(sum(values) / len(values)), "n": 80}


def test_pandas_result_is_cast_to_the_declared_schema(
    platform: LocalPlatform, module_id: str, evaluation_id: str
) -> None:
    method = platform.methods.create(method_request(module_id, "as_pandas"))
    measurement = measure(platform, method.id, evaluation_id)
    assert measurement.status == Status.Complete, measurement.message
    table = platform.measurements.open(measurement.id).to_table()
    assert table.schema.equals(INSTANCE_SCHEMA)
    assert set(table["length"].to_pylist()) == {1}


def test_runs_with_the_platform_interpreter_and_modules_first(
    platform: LocalPlatform, module_id: str, evaluation_id: str
) -> None:
    import sys

    schema = pa.schema([("cwd", pa.string()), ("path0", pa.string()), ("exe", pa.string())])
    method = platform.methods.create(
        method_request(module_id, "where", schema=schema, level="Dataset", inputs=[])
    )
    measurement = measure(platform, method.id, evaluation_id, inputs={})
    assert measurement.status == Status.Complete, measurement.message
    row = platform.measurements.open(measurement.id).to_table().to_pylist()[0]
    assert row["exe"] == sys.executable
    assert Path(row["path0"]) == platform.core.storage.local_path(module_id, "x").parent


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("boom", "Method 'boom' (%s) raised KeyError: 'missing' (at metrics.py line"),
        (
            "wrong_schema",
            "Method 'wrong_schema' (%s) returned the wrong schema (column 'length' is string, "
            "expected int64): expected {_index_: int64, _replication_: string, length: int64}, "
            "got {_index_: int64, _replication_: string, length: string}",
        ),
        ("no_index", "returned the wrong schema (missing column(s) _index_, _replication_)"),
        ("not_data", "returned int; a Method returns a pyarrow.Table"),
        ("null_index", "returned rows whose _index_ is null"),
        ("crash", "the analysis process exited with status 3"),
    ],
)
def test_failures_name_the_method_and_what_went_wrong(
    platform: LocalPlatform, module_id: str, evaluation_id: str, function: str, expected: str
) -> None:
    method = platform.methods.create(method_request(module_id, function))
    measurement = measure(platform, method.id, evaluation_id)
    assert measurement.status == Status.Failed
    assert (expected % method.id if "%s" in expected else expected) in (measurement.message or "")
    with pytest.raises(errors.ConflictError):
        platform.measurements.open(measurement.id)


def test_method_create_checks_the_function_exists(platform: LocalPlatform, module_id: str) -> None:
    with pytest.raises(errors.ValidationError, match=r"'audit\.metrics\.nothing' is not defined"):
        platform.methods.create(method_request(module_id, "nothing"))
    request = method_request(module_id, "lengths")
    request["implementation"]["pythonFunction"]["fullyQualifiedName"] = "lengths"
    with pytest.raises(errors.ValidationError, match="must be a dotted name"):
        platform.methods.create(request)
    # functions of installed packages are found without the Modules
    request = method_request(module_id, "lengths", schema=pa.schema([("x", pa.int64())]))
    request["output"]["measurement"]["level"] = "Dataset"
    request["implementation"]["pythonFunction"]["fullyQualifiedName"] = "json.dumps"
    assert platform.methods.create(request).status == Status.Ready


def test_method_create_checks_outputs(platform: LocalPlatform, module_id: str) -> None:
    request = method_request(module_id, "lengths", schema=pa.schema([("length", pa.int64())]))
    with pytest.raises(errors.ValidationError, match="must have the column '_index_'"):
        platform.methods.create(request)
    request = method_request(module_id, "lengths")
    request["output"] = {"kind": "SafetyCase", "safetyCase": {"name": "x"}}
    with pytest.raises(errors.ValidationError, match="produced by a JupyterNotebook Method"):
        platform.methods.create(request)


def test_context_outside_an_analysis(tmp_path: Path) -> None:
    with pytest.raises(errors.ValidationError, match="no analysis is running here"):
        AnalysisContext()
    config = {
        "analysis": {
            "id": "0" * 32,
            "kind": "Measurement",
            "arguments": [{"keyword": "k", "value": "3"}],
            "method": {"parameters": [{"keyword": "k"}, {"keyword": "opt"}]},
        },
        "inputs": {},
        "output": str(tmp_path),
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    ctx = AnalysisContext(path)
    assert ctx.args("k") == "3"
    assert ctx.arguments == {"k": "3"}
    assert ctx.get_argument("opt", "x") == "x"
    with pytest.raises(errors.ValidationError, match="no value was given for the argument 'opt'"):
        ctx.args("opt")
    with pytest.raises(errors.ValidationError, match="'nope' is not a parameter"):
        ctx.args("nope")
    with pytest.raises(errors.ValidationError, match="'data' is not an input"):
        ctx.inputs("data")
    assert ctx.output_path == tmp_path


SCRIPT = """
import sys
from pathlib import Path

import pyarrow as pa

from assay.local import LocalPlatform, mocks
from assay.schema.dataschema import DataSchema

# no `if __name__ == "__main__"` guard, as in most scripts and notebooks
root = Path(sys.argv[1])
package = root / "pkg"
(package / "scriptpkg").mkdir(parents=True)
(package / "scriptpkg" / "__init__.py").write_text(
    "import pyarrow as pa\\n"
    "def one(args, **inputs):\\n"
    "    return pa.table({'x': pa.array([1], pa.int64())})\\n"
)
with LocalPlatform(storage_root=root / "platform", account="script") as platform:
    module = platform.modules.create_package(package, account="script", name="p")
    module = platform.modules.upload_package(module, package)
    schema = DataSchema.from_arrow(pa.schema([("x", pa.int64())]))
    method = platform.methods.create({
        "account": "script", "name": "one", "scope": "InferenceService",
        "implementation": {"kind": "PythonFunction",
                           "pythonFunction": {"fullyQualifiedName": "scriptpkg.one"}},
        "output": {"kind": "Measurement", "measurement": {
            "name": "one", "level": "Dataset", "schema": schema.model_dump(by_alias=True)}},
        "modules": [module.id],
    })
    service = platform.inferenceservices.create_mock(
        mocks.TextCompletion, account="script")
    for _ in range(2):
        measurement = platform.measurements.create({
            "account": "script", "method": method.id,
            "scope": {"inferenceService": service.id}})
        print(measurement.status, measurement.message)
"""


def test_a_script_without_a_main_guard_runs_analyses(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = tmp_path / "audit.py"
    script.write_text(SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["Complete 1 row", "Complete 1 row"]


SLOW = """
import time
import pyarrow as pa

def slow(args, **inputs):
    print("started", flush=True)
    time.sleep(60)
    return pa.table({"x": pa.array([1], pa.int64())})
"""


def test_deleting_a_running_measurement_stops_its_process(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    import threading
    import time

    package = tmp_path / "slowpkg"
    (package / "slowmethod").mkdir(parents=True)
    (package / "slowmethod" / "__init__.py").write_text(SLOW)
    module = platform.modules.upload_package(
        platform.modules.create_package(package, account=ACCOUNT, name="slow"), package
    )
    request = method_request(
        module.id, "slow", schema=pa.schema([("x", pa.int64())]), level="Dataset", inputs=[]
    )
    request["implementation"]["pythonFunction"]["fullyQualifiedName"] = "slowmethod.slow"
    request["scope"] = "InferenceService"
    method = platform.methods.create(request)
    service = platform.inferenceservices.create_mock(mocks.TextCompletion, account=ACCOUNT)
    created: list[Any] = []
    runner = threading.Thread(
        target=lambda: created.append(
            platform.measurements.create(
                {
                    "account": ACCOUNT,
                    "method": method.id,
                    "scope": {"inferenceService": service.id},
                }
            )
        )
    )
    start = time.monotonic()
    runner.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = platform.measurements.query(method=method.id)
        if found and "started" in platform.measurements.logs(found[0].id):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the measurement did not start")
    platform.measurements.delete(found[0].id)
    runner.join(30)
    assert not runner.is_alive()
    assert time.monotonic() - start < 30
    assert platform.measurements.get(found[0].id).status == Status.Deleted
