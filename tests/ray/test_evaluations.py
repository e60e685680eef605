"""Evaluations on a two-node Ray cluster: cut into shards that run on both nodes, each
writing its own parts, every (index, replication) written exactly once and the integrity
check holding across shards."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.compute as pc
import pytest
from tests.conftest import ACCOUNT, write_dataset
from tests.ray.cluster import RayCluster
from tests.ray.services import Where

from assay.engine.ray_executor import RayExecutor
from assay.evaluation import INTEGRITY_ANNOTATION
from assay.local import LocalPlatform
from assay.schema.status import Status

pytestmark = pytest.mark.slow


def dataset(platform: LocalPlatform, directory: Path, rows: int, parts: int) -> str:
    write_dataset(directory, rows, parts=parts)
    created = platform.datasets.create_arrow_dataset(directory, account=ACCOUNT, name="data")
    platform.datasets.upload_arrow_dataset(created, directory)
    ready = platform.datasets.wait(created.id, timeout=120)
    assert ready.status == Status.Ready, ready.message
    return created.id


def exactly_once(platform: LocalPlatform, evaluation_id: str, rows: int) -> None:
    pairs = platform.evaluations.open(evaluation_id).to_table(columns=["_index_", "_replication_"])
    assert pairs.num_rows == rows
    counts = pairs.group_by(["_index_", "_replication_"]).aggregate([([], "count_all")])
    assert counts.num_rows == rows and pc.max(counts["count_all"]).as_py() == 1
    evaluation = platform.evaluations.get(evaluation_id)
    notes = {a.key: a.value for a in evaluation.annotations or []}
    integrity = json.loads(notes[INTEGRITY_ANNOTATION])
    assert integrity["answered"] == integrity["expected"] == rows, integrity
    assert integrity["duplicates"] == 0 and integrity["missing"] == 0, integrity
    # nothing was written twice, not even rows that Deduplicate would have removed
    assert integrity["deduplicated"] == 0 and integrity["unexpected"] == 0, integrity


def sharded_evaluation(platform: LocalPlatform, directory: Path) -> tuple[str, str]:
    """Run an evaluation of 120 rows in 2 replications that the executor cuts into shards;
    check that both nodes answered, every pair exactly once. ``(dataset, evaluation)`` ids."""
    assert isinstance(platform.core.engine.executor, RayExecutor)
    data = dataset(platform, directory, rows=120, parts=2)
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
    return data, evaluation.id


def test_an_evaluation_is_sharded_over_both_nodes(cluster: RayCluster, tmp_path: Path) -> None:
    with LocalPlatform(
        tmp_path / "platform", account=ACCOUNT, executor="ray", ray_address=cluster.address
    ) as platform:
        sharded_evaluation(platform, tmp_path / "data")


def test_a_session_of_its_own_runs_in_the_head(cluster: RayCluster, tmp_path: Path) -> None:
    """A session's replicas must live as long as it does, which a Ray worker does not
    promise: its workflow runs in the head's process (docs/design/ray.md)."""
    with LocalPlatform(
        tmp_path / "platform", account=ACCOUNT, executor="ray", ray_address=cluster.address
    ) as platform:
        service = platform.inferenceservices.create_mock(Where, kwargs={"latency": 0})
        session = platform.inferencesessions.create(
            {"inferenceService": service.id}
        ).inferencesession
        ready = platform.inferencesessions.wait(session.id, timeout=60)
        assert ready.status == Status.Ready, ready.message
        answer = platform.inferencesessions.infer(session.id, "generate", {"text": "hi"})
        assert answer == [{"text": "local"}]  # answered here, not by a Ray worker
