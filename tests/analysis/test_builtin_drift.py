"""drift.psi: the population stability index, by hand."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from tests.conftest import ACCOUNT

from assay import errors
from assay.analysis.builtin import METRICS_SCHEMA, drift
from assay.local import LocalPlatform
from assay.schema.status import Status

BASELINE = list(range(1, 11))  # quintile edges 2.8, 4.6, 6.4, 8.2: two values per bin
SHIFTED = [1, 1, 1, 1, 3, 5, 7, 9, 9, 9]  # shares 0.4, 0.1, 0.1, 0.1, 0.3


def run(args: dict[str, str], baseline: Any, current: Any) -> dict[str, dict[str, Any]]:
    table = drift.psi(args, baseline=baseline, current=current)
    assert table.schema.equals(METRICS_SCHEMA, check_metadata=True)
    return {r["metric"]: r for r in table.to_pylist()}


def test_psi_by_hand() -> None:
    found = run({"column": "x"}, pa.table({"x": BASELINE}), pa.table({"x": SHIFTED}))
    expected = (
        (0.4 - 0.2) * math.log(0.4 / 0.2)
        + 3 * (0.1 - 0.2) * math.log(0.1 / 0.2)
        + (0.3 - 0.2) * math.log(0.3 / 0.2)
    )
    assert found["psi"]["value"] == pytest.approx(expected) == pytest.approx(0.387120, abs=1e-6)
    assert found["alert"]["value"] == 1.0
    assert found["psi"]["group"] is None and found["psi"]["low"] is None
    assert found["psi"]["n"] == 10
    # the same data: no drift; a higher threshold: no alert
    same = run({"column": "x"}, pa.table({"x": BASELINE}), pa.table({"x": BASELINE}))
    assert same["psi"]["value"] == 0.0 and same["alert"]["value"] == 0.0
    high = run({"column": "x", "alert": "0.5"}, pa.table({"x": BASELINE}), pa.table({"x": SHIFTED}))
    assert high["alert"]["value"] == 0.0


def test_empty_bins_and_other_bin_counts() -> None:
    current = pa.table({"x": [1.0, 2.0, None, float("nan")]})  # nulls and NaN left out
    found = run({"column": "x"}, pa.table({"x": BASELINE}), current)
    eps = drift.EMPTY_BIN_SHARE
    expected = (1.0 - 0.2) * math.log(1.0 / 0.2) + 4 * (eps - 0.2) * math.log(eps / 0.2)
    assert found["psi"]["value"] == pytest.approx(expected)
    assert found["psi"]["n"] == 2
    # two bins: median 5.5 -> baseline 0.5 / 0.5, shifted 0.6 / 0.4
    two = run({"column": "x", "bins": "2"}, pa.table({"x": BASELINE}), pa.table({"x": SHIFTED}))
    assert two["psi"]["value"] == pytest.approx(
        0.1 * math.log(0.6 / 0.5) - 0.1 * math.log(0.4 / 0.5)
    )
    # repeated values merge bins whose edges coincide
    flat = run({"column": "x"}, pa.table({"x": [3] * 10}), pa.table({"x": [3] * 5}))
    assert flat["psi"]["value"] == 0.0


def test_datasets_and_evaluation_outputs(tmp_path: Path) -> None:
    pq.write_table(pa.table({"x": BASELINE}), tmp_path / "b.parquet")
    responses = pa.array(
        [[{"_response_index_": 0, "x": float(v)}] for v in SHIFTED],
        pa.list_(pa.struct([("_response_index_", pa.int64()), ("x", pa.float64())])),
    )
    output = pa.table({"_index_": range(10), "responses": responses})
    found = run({"column": "x"}, ds.dataset(tmp_path / "b.parquet"), output)
    assert found["psi"]["value"] == pytest.approx(0.387120, abs=1e-6)


@pytest.mark.parametrize(
    ("args", "inputs", "fragment"),
    [
        ({}, {}, "column is required"),
        ({"column": "y"}, {}, "no column 'y'"),
        ({"column": "x", "bins": "1"}, {}, "at least 2"),
        ({"column": "x", "alert": "-1"}, {}, "alert"),
        ({"column": "x", "other": "1"}, {}, "unknown argument"),
        ({"column": "s"}, {}, "expected numbers"),
        ({"column": "x"}, {"current": pa.table({"x": pa.array([None], pa.int64())})}, "no values"),
    ],
)
def test_bad_arguments(args: dict[str, str], inputs: dict[str, Any], fragment: str) -> None:
    data = pa.table({"x": BASELINE, "s": [str(v) for v in BASELINE]})
    with pytest.raises(errors.ValidationError) as info:
        drift.psi(args, **{"baseline": data, "current": data, **inputs})
    assert fragment in str(info.value)
    with pytest.raises(errors.ValidationError, match="'current' is missing"):
        drift.psi({"column": "x"}, baseline=data)


def test_runs_as_a_measurement(platform: LocalPlatform, tmp_path: Path) -> None:
    ids = {}
    for name, values in (("baseline", BASELINE), ("current", SHIFTED)):
        folder = tmp_path / name
        folder.mkdir()
        pq.write_table(
            pa.table({"_index_": pa.array(range(10), pa.int64()), "x": values}),
            folder / "part-0.parquet",
        )
        dataset = platform.datasets.create_arrow_dataset(folder, account=ACCOUNT, name=name)
        ids[name] = platform.datasets.upload_arrow_dataset(dataset, folder).id
    output = tmp_path / "evaluation"
    output.mkdir()
    pq.write_table(
        pa.table(
            {
                "_index_": pa.array(range(10), pa.int64()),
                "_replication_": ["0"] * 10,
                "responses": pa.array(
                    [[{"_response_index_": 0, "text": "a"}]] * 10,
                    pa.list_(pa.struct([("_response_index_", pa.int64()), ("text", pa.string())])),
                ),
            }
        ),
        output / "part-0.parquet",
    )
    evaluation = platform.evaluations.import_data(output)
    method = drift.PSI.register(platform, account=ACCOUNT)
    measurement = platform.measurements.create(
        {
            "account": ACCOUNT,
            "method": method.id,
            "scope": {"evaluation": evaluation.id},
            "inputs": [{"keyword": k, "entity": v} for k, v in ids.items()],
            "arguments": [{"keyword": "column", "value": "x"}],
        }
    )
    assert measurement.status == Status.Complete, measurement.message
    rows = {
        r["metric"]: r for r in platform.measurements.open(measurement.id).to_table().to_pylist()
    }
    assert rows["psi"]["value"] == pytest.approx(0.387120, abs=1e-6)
    assert rows["alert"]["value"] == 1.0
