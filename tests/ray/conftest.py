"""The Ray tests' cluster: a head and a second node on this machine (one CPU each), started
once for the package and stopped at its end, with nothing left running."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.ray.cluster import RayCluster
from tests.ray.services import CANARY

pytest.importorskip("ray")


@pytest.fixture(scope="package")
def cluster() -> Iterator[RayCluster]:
    # a short directory: Ray's socket paths inside it must fit a Unix socket's 107 bytes
    root = Path(tempfile.mkdtemp(prefix="assay-ray-", dir="/tmp"))
    cluster = RayCluster(root, env={CANARY: "worker-environment"})
    try:
        cluster.start(nodes=1)
        yield cluster
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
