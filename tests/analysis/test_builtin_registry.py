"""register_all, and what every built-in declares."""

from __future__ import annotations

import importlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.conftest import ACCOUNT

from assay.analysis import builtin
from assay.local import LocalPlatform, mocks
from assay.schema.platform import Method
from assay.schema.status import Status


def test_register_all_creates_every_builtin(platform: LocalPlatform) -> None:
    methods = builtin.register_all(platform, account="tester")
    assert set(methods) == set(builtin.BUILTINS)
    assert len({m.id for m in methods.values()}) == len(methods)
    for name, method in methods.items():
        spec = builtin.BUILTINS[name]
        assert method.name == name
        assert method.account == "tester"
        assert method.scope == "Evaluation"
        assert method.modules == []
        assert method.description and method.description == spec.description
        impl = method.implementation.pythonFunction
        assert impl is not None and impl.fullyQualifiedName.startswith("assay.analysis.builtin.")
        module, _, attribute = impl.fullyQualifiedName.rpartition(".")
        assert getattr(importlib.import_module(module), attribute) is spec.function
        assert method.output.measurement is not None
        declared = method.output.measurement.schema_.arrow_schema()
        assert declared.equals(spec.schema, check_metadata=True)
        if method.output.measurement.level == "Instance":
            assert declared.names[:2] == ["_index_", "_replication_"]
        else:
            assert declared.equals(builtin.METRICS_SCHEMA, check_metadata=True)
        assert all(p.description for p in method.parameters)
        assert all(i.description for i in method.inputs)
    # calling it again creates new Methods
    again = builtin.register_all(platform, account="tester")
    assert not {m.id for m in again.values()} & {m.id for m in methods.values()}


def test_every_documented_method_is_registered() -> None:
    doc = builtin.__doc__ or ""
    for name in builtin.BUILTINS:
        assert f"``{name}``" in doc, name
    for name in builtin.__all__:
        assert hasattr(builtin, name), name


def _dataset(platform: LocalPlatform, directory: Path) -> str:
    """30 sentiment instances whose label follows the Classifier mock's keywords."""
    directory.mkdir(parents=True)
    words = {"negative": "awful", "neutral": "okay", "positive": "great"}
    labels = [("negative", "neutral", "positive")[i % 3] for i in range(30)]
    pq.write_table(
        pa.table(
            {
                "_index_": pa.array(range(30), pa.int64()),
                "text": [f"a {words[x]} day number {i}" for i, x in enumerate(labels)],
                "label": labels,
                "group": ["x" if i < 15 else "y" for i in range(30)],
            }
        ),
        directory / "part-0.parquet",
    )
    dataset = platform.datasets.create_arrow_dataset(directory, account=ACCOUNT, name="sentiment")
    return platform.datasets.upload_arrow_dataset(dataset, directory).id


def _measure(
    platform: LocalPlatform,
    method: Method,
    evaluation: str,
    inputs: dict[str, str],
    arguments: dict[str, str] | None = None,
) -> pa.Table:
    measurement = platform.measurements.create(
        {
            "account": ACCOUNT,
            "method": method.id,
            "scope": {"evaluation": evaluation},
            "inputs": [{"keyword": k, "entity": v} for k, v in inputs.items()],
            "arguments": [{"keyword": k, "value": v} for k, v in (arguments or {}).items()],
        }
    )
    assert measurement.status == Status.Complete, measurement.message
    table: pa.Table = platform.measurements.open(measurement.id).to_table()
    assert method.output.measurement is not None
    assert table.schema.equals(method.output.measurement.schema_.arrow_schema())
    return table


def test_builtins_run_as_measurements(platform: LocalPlatform, tmp_path: Path) -> None:
    dataset = _dataset(platform, tmp_path / "data")
    service = platform.inferenceservices.create_mock(
        mocks.Classifier, account=ACCOUNT, kwargs={"seed": 1, "noise": 0.0}
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
    methods = builtin.register_all(platform, account=ACCOUNT)
    both = {"evaluation": evaluation.id, "dataset": dataset}
    rows = _measure(platform, methods["classification.correct"], evaluation.id, both)
    assert rows.num_rows == 60
    assert set(rows.column("_replication_").to_pylist()) == set(
        platform.evaluations.open(evaluation.id).to_table().column("_replication_").to_pylist()
    )
    table = _measure(platform, methods["classification.metrics"], evaluation.id, both, {"k": "2"})
    found = {(r["metric"], r["group"]): r for r in table.to_pylist()}
    # without noise the mock labels every instance by its keyword: all right
    assert found[("accuracy", None)]["value"] == pytest.approx(1.0)
    assert found[("accuracy", None)]["n"] == 60
    table = _measure(
        platform,
        methods["fairness.metrics"],
        evaluation.id,
        both,
        {"group_field": "group", "positive_label": "positive"},
    )
    assert ("demographic_parity_difference", None) in {
        (r["metric"], r["group"]) for r in table.to_pylist()
    }
    table = _measure(
        platform,
        methods["comparison.difference"],
        evaluation.id,
        {"a": evaluation.id, "b": evaluation.id, "dataset": dataset},
    )
    assert {r["metric"]: r["value"] for r in table.to_pylist()}["accuracy_difference"] == 0.0
