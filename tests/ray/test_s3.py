"""Ray, PostgreSQL-free but otherwise as deployed: the ``ray`` executor with the artifacts in
an S3-compatible bucket (moto on loopback). Shards on both nodes write their parts to the
bucket, exactly once; the Measurement computed on a worker and its inputs read there; the
chain verifies from the bucket's bytes; nothing lands in the platform's folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.conftest import ACCOUNT
from tests.ray.cluster import RayCluster
from tests.ray.services import Where
from tests.ray.test_evaluations import dataset, exactly_once
from tests.s3_server import S3Env, s3_env

from assay.analysis.builtin import text
from assay.local import LocalPlatform
from assay.schema.status import Status
from assay.storage import S3Storage

__all__ = ["s3_env"]  # the fixture, brought into scope

pytestmark = pytest.mark.slow


def bucket_keys(env: S3Env, prefix: str) -> list[str]:
    client: Any = env.client()
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=env.bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents") or ())


def test_a_sharded_evaluation_and_its_measurement_keep_their_artifacts_in_the_bucket(
    cluster: RayCluster, s3_env: S3Env, tmp_path: Path
) -> None:
    with LocalPlatform(
        tmp_path / "platform",
        account=ACCOUNT,
        executor="ray",
        ray_address=cluster.address,
        storage=s3_env.url("ray"),
    ) as platform:
        assert isinstance(platform.core.storage, S3Storage)
        data = dataset(platform, tmp_path / "data", rows=120, parts=2)
        service = platform.inferenceservices.create_mock(Where, kwargs={"latency": 0.02})
        evaluation = platform.evaluations.create(
            {
                "account": ACCOUNT,
                "dataset": data,
                "inferenceSession": {"inferenceService": service.id},
                "replications": 2,
                "client": {"batchSize": 10},
            }
        )
        done = platform.evaluations.wait(evaluation.id, timeout=240)
        assert done.status == Status.Complete, done.message
        exactly_once(platform, evaluation.id, 240)
        table = platform.evaluations.open(evaluation.id).to_table()
        nodes = {r[0]["text"] for r in table["responses"].to_pylist()}
        assert len(nodes) == 2 and "local" not in nodes, nodes  # both nodes answered
        assert "shards" in platform.evaluations.logs(evaluation.id)

        method = text.METRICS.register(platform, account=ACCOUNT)
        measurement = platform.measurements.create(
            {
                "account": ACCOUNT,
                "method": method.id,
                "scope": {"evaluation": evaluation.id},
                "inputs": [
                    {"keyword": "evaluation", "entity": evaluation.id},
                    {"keyword": "dataset", "entity": data},
                ],
                "arguments": [{"keyword": "reference_field", "value": "text"}],
            }
        )
        finished = platform.measurements.wait(measurement.id, timeout=240)
        assert finished.status == Status.Complete, finished.message
        assert platform.measurements.open(measurement.id).count_rows() > 0

        for id, expected in ((data, "part-"), (evaluation.id, "data/part-")):
            keys = bucket_keys(s3_env, f"ray/{id}/")
            assert any(k.startswith(f"ray/{id}/{expected}") for k in keys), (id, keys)
        assert bucket_keys(s3_env, f"ray/{measurement.id}/")
        for id in (data, evaluation.id, measurement.id):
            assert not (platform.storage_root / id).exists()
        result = platform.verify(measurement.id)
        assert result.ok, str(result)
