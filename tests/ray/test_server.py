"""``assay serve --executor ray --ray-address ADDR --storage s3://...`` as a user runs it (a
real server process, multi-user, sandboxed) on the tests' two-node cluster, driven through
``Client``: the data set uploaded to the bucket through presigned URLs, an evaluation cut into
shards on the workers, a Measurement computed on a worker, and another account kept out of
all of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import text_metrics_request, write_dataset
from tests.ray.cluster import RayCluster
from tests.s3_server import S3Env, s3_env
from tests.server.loopback import serve

from assay import errors
from assay.analysis import builtin
from assay.client import Client
from assay.evaluation import INTEGRITY_ANNOTATION
from assay.local import mocks

__all__ = ["s3_env"]  # the fixture, brought into scope

pytestmark = pytest.mark.slow

ROWS = 120


def test_assay_serve_on_ray_and_s3_through_the_client(
    cluster: RayCluster, s3_env: S3Env, tmp_path: Path
) -> None:
    data = write_dataset(tmp_path / "prompts", ROWS, parts=2)
    args = ["--executor", "ray", "--ray-address", cluster.address, "--storage", s3_env.url("srv")]
    with (
        serve(tmp_path, args=args, start_timeout=120) as served,
        Client(f"{served.url}/v0", served.token("alice")) as alice,
        Client(f"{served.url}/v0", served.token("bob")) as bob,
    ):
        dataset = alice.datasets.create_arrow_dataset(data, account="alice", name="prompts")
        dataset = alice.datasets.upload_arrow_dataset(dataset, data)
        assert dataset.status == "Ready", dataset.message
        assert f"srv/{dataset.id}/part-1.parquet" in s3_env.keys(f"srv/{dataset.id}/")

        service = alice.inferenceservices.create_mock(mocks.TextCompletion, account="alice")
        evaluation = alice.evaluations.create(
            {
                "account": "alice",
                "dataset": dataset.id,
                "inferenceSession": {"inferenceService": service.id},
                "replications": 2,
                "client": {"batchSize": 10},
            }
        )
        evaluation = alice.evaluations.wait(evaluation.id, timeout=240)
        assert evaluation.status == "Complete", evaluation.message
        assert "shards" in alice.evaluations.logs(evaluation.id)  # cut over the cluster
        notes = {a.key: a.value for a in evaluation.annotations or []}
        integrity = json.loads(notes[INTEGRITY_ANNOTATION])
        assert integrity["answered"] == integrity["expected"] == 2 * ROWS, integrity
        assert integrity["duplicates"] == integrity["missing"] == 0, integrity
        outputs = alice.evaluations.open(evaluation.id).to_table()
        assert outputs.num_rows == 2 * ROWS
        assert s3_env.keys(f"srv/{evaluation.id}/")

        method = builtin.text.METRICS.register(alice, account="alice")
        request = text_metrics_request("alice", method.id, evaluation.id, dataset.id, "text")
        measurement = alice.measurements.wait(alice.measurements.create(request).id, timeout=240)
        assert measurement.status == "Complete", measurement.message
        metrics = alice.measurements.open(measurement.id).to_table().to_pylist()
        assert any(row["metric"] == "exact_match_rate" for row in metrics)

        # bob, on the same server and cluster, reaches none of it
        with pytest.raises((errors.PermissionDeniedError, errors.NotFoundError)):
            bob.evaluations.open(evaluation.id).to_table()
        own = builtin.text.METRICS.register(bob, account="bob")  # his method, her evaluation
        with pytest.raises((errors.PermissionDeniedError, errors.NotFoundError)):
            bob.measurements.create({**request, "account": "bob", "method": own.id})
        with pytest.raises((errors.PermissionDeniedError, errors.NotFoundError)):
            bob.datasets.download(dataset.id, tmp_path / "stolen")
        assert not (tmp_path / "stolen").exists() or not any((tmp_path / "stolen").iterdir())
