"""The end-to-end audit through ``Client`` against a real ``assay serve`` (its defaults: SQLite,
local storage, worker processes) on loopback."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.conftest import text_metrics_request
from tests.server.loopback import serve

from assay.analysis import builtin
from assay.client import Client
from assay.local import mocks

pytestmark = pytest.mark.slow


def test_audit_through_client_against_assay_serve(tmp_path: Path) -> None:
    data = tmp_path / "prompts"
    data.mkdir()
    texts = [f"question {i}: is this safe?" for i in range(50)]
    pq.write_table(
        pa.table({"_index_": pa.array(range(50), pa.int64()), "text": texts, "answer": texts}),
        data / "part-0.parquet",
    )
    with serve(tmp_path) as served, Client(f"{served.url}/v0", served.token("alice")) as client:
        dataset = client.datasets.create_arrow_dataset(data, account="alice", name="prompts")
        dataset = client.datasets.upload_arrow_dataset(dataset, data)
        assert dataset.status == "Ready", dataset.message
        service = client.inferenceservices.create_mock(
            mocks.TextCompletion, account="alice", kwargs={"seed": 3}
        )
        evaluation = client.evaluations.create(
            {
                "account": "alice",
                "dataset": dataset.id,
                "inferenceSession": {"inferenceService": service.id, "replicas": 2},
            }
        )
        evaluation = client.evaluations.wait(evaluation.id, timeout=120)
        assert evaluation.status == "Complete", evaluation.message
        outputs = client.evaluations.open(evaluation.id).to_table()
        assert sorted(outputs["_index_"].to_pylist()) == list(range(50))

        method = builtin.text.METRICS.register(client, account="alice")
        measurement = client.measurements.create(
            text_metrics_request("alice", method.id, evaluation.id, dataset.id, "answer")
        )
        measurement = client.measurements.wait(measurement.id, timeout=120)
        assert measurement.status == "Complete", measurement.message
        metrics = client.measurements.open(measurement.id).to_table().to_pylist()
        assert any(row["metric"] == "exact_match_rate" for row in metrics)

        client.evaluations.label(evaluation.id, {"suite": "smoke"})
        assert [e.id for e in client.evaluations.query(labels={"suite": "smoke"})] == [
            evaluation.id
        ]
        client.evaluations.delete(evaluation.id)
        assert client.evaluations.get(evaluation.id).status == "Deleted"
