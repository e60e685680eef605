"""The Ray tests' cluster: a head and a second node on this machine (one CPU each), started
once for the package and stopped at its end, with nothing left running; its nodes can reach
the tests' S3-compatible server."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.ray.cluster import RayCluster
from tests.ray.services import CANARY
from tests.s3_server import environment, s3_endpoint

__all__ = ["s3_endpoint"]  # the fixture, brought into scope

pytest.importorskip("ray")


@pytest.fixture(scope="package")
def cluster(s3_endpoint: str) -> Iterator[RayCluster]:
    # a short directory: Ray's socket paths inside it must fit a Unix socket's 107 bytes
    root = Path(tempfile.mkdtemp(prefix="assay-ray-", dir="/tmp"))
    # the nodes reach the test's S3 server as a deployment's reach its bucket: with the
    # credentials and endpoint in their own environment
    cluster = RayCluster(root, env={**environment(s3_endpoint), CANARY: "worker-environment"})
    try:
        cluster.start(nodes=1)
        yield cluster
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
