"""Session replicas as Ray actors: each replica process of a ``python`` service runs in an
actor that Ray places on a node with the CPUs the service asks for, reachable from every
node, and stops with its session; a request no node can meet fails the session at once."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from tests.conftest import ACCOUNT, until
from tests.postgres import in_ci
from tests.ray.cluster import RayCluster

from assay.inference.ray_replicas import RayReplica
from assay.local import LocalPlatform
from assay.schema.dataschema import DataSchema
from assay.schema.requests import InferenceSessionCreateRequest
from assay.schema.status import Status

pytestmark = pytest.mark.slow

MODEL = """
import os


class Echo:
    def infer(self, endpoint, request):
        return [{"text": request["text"] + " from " + str(os.getpid())}]
"""


def python_service(platform: LocalPlatform, tmp_path: Path, cpu: str) -> str:
    package = tmp_path / "pkg"
    (package / "echomodel").mkdir(parents=True, exist_ok=True)
    (package / "echomodel" / "__init__.py").write_text(MODEL)
    module = platform.modules.create_package(package, account=ACCOUNT, name="echo")
    platform.modules.upload_package(module, package)
    schema = DataSchema.make_output_schema(pa.schema([pa.field("text", pa.string())]))
    return platform.inferenceservices.create(
        {
            "account": ACCOUNT,
            "name": "echo",
            "runner": {
                "kind": "python",
                "configuration": {"module": module.id, "target": "echomodel:Echo"},
                "resources": {"cpu": cpu},
            },
            "interface": {"endpoint": "echo", "outputSchema": schema.model_dump(by_alias=True)},
        }
    ).id


def start(platform: LocalPlatform, service: str, replicas: int) -> str:
    created = platform.inferencesessions.create(
        InferenceSessionCreateRequest(account=ACCOUNT, inferenceService=service, replicas=replicas)
    )
    return created.inferencesession.id


@pytest.mark.parametrize(
    "sandbox",
    [
        False,
        pytest.param(
            True,
            marks=pytest.mark.skipif(
                shutil.which("bwrap") is None and not in_ci(), reason="bubblewrap is not installed"
            ),
        ),
    ],
)
def test_replicas_are_placed_by_ray_with_the_cpus_asked(
    cluster: RayCluster, tmp_path: Path, sandbox: bool
) -> None:
    with LocalPlatform(
        tmp_path / "platform",
        account=ACCOUNT,
        executor="ray",
        ray_address=cluster.address,
        sandbox=sandbox,
    ) as platform:
        session = start(platform, python_service(platform, tmp_path, cpu="1"), replicas=2)
        ready = platform.inferencesessions.wait(session, timeout=180)
        assert ready.status == Status.Ready, ready.message
        replicas = [h.process for h in platform.core.sessions.handles(session)]
        assert all(isinstance(r, RayReplica) for r in replicas)
        # one CPU each, on nodes of one CPU: one replica per node
        assert len({r.node for r in replicas}) == 2  # type: ignore[union-attr]
        # each replica process runs on its node (in the node's session), not in this process
        nodes = {pid: node.name for node in cluster.nodes for pid in node.processes()}
        assert len({nodes[r.pid] for r in replicas}) == 2  # type: ignore[union-attr,index]
        assert all(r.pid != os.getpid() for r in replicas)  # type: ignore[union-attr]
        assert not any(r.url.startswith("http://127.0.0.1") for r in replicas)  # type: ignore[union-attr]
        answers = {
            platform.inferencesessions.infer(session, "echo", {"text": "hi"})[0]["text"]
            for _ in range(4)
        }
        if sandbox:  # in the sandbox's own PID namespace, under bubblewrap
            assert answers == {"hi from 2"}
        else:
            assert answers <= {f"hi from {r.pid}" for r in replicas}  # type: ignore[union-attr]
        pids = [r.pid for r in replicas]  # type: ignore[union-attr]
        platform.inferencesessions.terminate(session)
        until(lambda: not any(pid in nodes_now(cluster) for pid in pids), 60, "replicas stopped")


def nodes_now(cluster: RayCluster) -> set[int]:
    return {pid for node in cluster.nodes for pid in node.processes()}


def test_a_replica_no_node_can_hold_fails_its_session(cluster: RayCluster, tmp_path: Path) -> None:
    with LocalPlatform(
        tmp_path / "platform", account=ACCOUNT, executor="ray", ray_address=cluster.address
    ) as platform:
        session = start(platform, python_service(platform, tmp_path, cpu="64"), replicas=1)
        ended = platform.inferencesessions.wait(session, timeout=120)
    assert ended.status == Status.Error
    assert "CPU 64" in (ended.message or "") and "no node of the Ray cluster" in (
        ended.message or ""
    ), ended.message
