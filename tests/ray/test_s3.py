"""Ray, PostgreSQL-free but otherwise as deployed: the ``ray`` executor with the artifacts in
an S3-compatible bucket (moto on loopback). Shards on both nodes write their parts to the
bucket, exactly once; the Measurement computed on a worker and its inputs read there; the
chain verifies from the bucket's bytes; nothing lands in the platform's folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import ACCOUNT, text_metrics_request
from tests.ray.cluster import RayCluster
from tests.ray.test_evaluations import sharded_evaluation
from tests.s3_server import S3Env, s3_env

from assay.analysis.builtin import text
from assay.local import LocalPlatform
from assay.schema.status import Status
from assay.storage import S3Storage

__all__ = ["s3_env"]  # the fixture, brought into scope

pytestmark = pytest.mark.slow


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
        data, evaluation = sharded_evaluation(platform, tmp_path / "data")

        method = text.METRICS.register(platform, account=ACCOUNT)
        measurement = platform.measurements.create(
            text_metrics_request(ACCOUNT, method.id, evaluation, data, "text")
        )
        finished = platform.measurements.wait(measurement.id, timeout=240)
        assert finished.status == Status.Complete, finished.message
        assert platform.measurements.open(measurement.id).count_rows() > 0

        for id, expected in ((data, "part-"), (evaluation, "data/part-")):
            keys = s3_env.keys(f"ray/{id}/")
            assert any(k.startswith(f"ray/{id}/{expected}") for k in keys), (id, keys)
        assert s3_env.keys(f"ray/{measurement.id}/")
        for id in (data, evaluation, measurement.id):
            assert not (platform.storage_root / id).exists()
        result = platform.verify(measurement.id)
        assert result.ok, str(result)
