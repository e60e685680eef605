"""The shards of an evaluation, run in this process (``run_shard``, as a Ray worker runs
each): exactly once across shards and across a shard's runs, the fence, and the unfinished
error records a shard may delete. The cluster runs them in ``test_evaluations.py`` and
``test_failures.py``; here each step is checked on its own."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from tests.conftest import ACCOUNT, write_dataset

from assay.evaluation.parts import DATA_PREFIX, ERRORS_PREFIX, Part
from assay.evaluation.shards import Shard, ShardTask, fence_id, run_shard
from assay.local import LocalPlatform, mocks
from assay.schema.requests import InferenceSessionCreateRequest
from assay.schema.status import Status

ROWS, BATCH = 40, 5  # one file of 8 batches


@pytest.fixture
def setup(platform: LocalPlatform, tmp_path: Path) -> tuple[LocalPlatform, str, str]:
    """An evaluation (run once, inline) on a session that stays Ready, its parts deleted."""
    write_dataset(tmp_path / "data", ROWS)
    dataset = platform.datasets.create_arrow_dataset(tmp_path / "data", name="d")
    platform.datasets.upload_arrow_dataset(dataset, tmp_path / "data")
    service = platform.inferenceservices.create_mock(mocks.TextCompletion)
    session = platform.inferencesessions.create(
        InferenceSessionCreateRequest(account=ACCOUNT, inferenceService=service.id)
    ).inferencesession
    evaluation = platform.evaluations.create(
        {
            "account": ACCOUNT,
            "dataset": dataset.id,
            "inferenceSessionReference": session.id,
            "client": {"batchSize": BATCH},
        }
    )
    assert evaluation.status == Status.Complete, evaluation.message
    for name in parts(platform, evaluation.id):
        platform.core.storage.delete(evaluation.id, DATA_PREFIX + name)
    return platform, evaluation.id, session.id


def parts(platform: LocalPlatform, evaluation_id: str) -> dict[str, tuple[int, int]]:
    """Each data part's name → (inode, mtime): what a rewrite would change."""
    directory = platform.storage_root / evaluation_id / "data"
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in directory.glob("*.parquet")}


def pairs(platform: LocalPlatform, evaluation_id: str) -> pa.Table:
    directory = platform.storage_root / evaluation_id / "data"
    tables = [pq.read_table(p, columns=["_index_"]) for p in directory.glob("*.parquet")]
    return pa.concat_tables(tables) if tables else pa.table({"_index_": pa.array([], pa.int64())})


def shard(
    platform: LocalPlatform, evaluation_id: str, session_id: str, first: int, stop: int
) -> ShardTask:
    """A task for batches ``first`` to ``stop - 1``, holding the fence."""
    token = f"test:{first}:{stop}:{time.monotonic_ns()}"
    store = platform.core.store
    holder = store.claim_owner(fence_id(evaluation_id))
    if holder is not None:
        store.release(fence_id(evaluation_id), holder[0])
    assert store.claim(fence_id(evaluation_id), token, 3600)
    return ShardTask(evaluation_id, session_id, Shard(0, 0, first, stop), token, time.time())


def test_shards_write_their_own_parts_exactly_once(
    setup: tuple[LocalPlatform, str, str],
) -> None:
    platform, evaluation_id, session_id = setup
    first = run_shard(platform.core, shard(platform, evaluation_id, session_id, 0, 4))
    second = run_shard(platform.core, shard(platform, evaluation_id, session_id, 4, 8))
    assert first.error is None and second.error is None
    assert (first.written, second.written) == (20, 20)
    batches = [b for name in parts(platform, evaluation_id) for b in Part.parse(name).batches()]  # type: ignore[union-attr]
    assert sorted(b for _, _, b in batches) == list(range(8))  # every batch in one part
    indices = pairs(platform, evaluation_id)["_index_"]
    assert sorted(indices.to_pylist()) == list(range(ROWS))
    assert set(first.digests).isdisjoint(second.digests)


def test_a_shard_run_again_writes_only_what_is_missing(
    setup: tuple[LocalPlatform, str, str],
) -> None:
    platform, evaluation_id, session_id = setup
    assert run_shard(platform.core, shard(platform, evaluation_id, session_id, 0, 8)).error is None
    written = parts(platform, evaluation_id)
    lost = max(written, key=lambda name: Part.parse(name).batch)  # type: ignore[union-attr]
    platform.core.storage.delete(evaluation_id, DATA_PREFIX + lost)  # as if its node died
    kept = {name: stat for name, stat in written.items() if name != lost}
    again = run_shard(platform.core, shard(platform, evaluation_id, session_id, 0, 8))
    assert again.error is None
    lost_part = Part.parse(lost)
    assert lost_part is not None
    assert again.written == min(ROWS, (lost_part.batch + lost_part.count) * BATCH) - (
        lost_part.batch * BATCH
    )
    now = parts(platform, evaluation_id)
    assert {name: now[name] for name in kept} == kept  # the parts written before: untouched
    indices = pairs(platform, evaluation_id)["_index_"]
    assert indices.length() == ROWS and pc.count_distinct(indices).as_py() == ROWS


def test_a_shard_of_a_run_that_was_superseded_stops(
    setup: tuple[LocalPlatform, str, str],
) -> None:
    platform, evaluation_id, session_id = setup
    stale = shard(platform, evaluation_id, session_id, 0, 8)
    shard(platform, evaluation_id, session_id, 0, 8)  # the next run takes the fence
    result = run_shard(platform.core, stale)
    assert result.error is not None and result.error[0] == "cancelled"
    assert parts(platform, evaluation_id) == {}


def test_a_shard_deletes_only_its_own_unfinished_errors(
    setup: tuple[LocalPlatform, str, str],
) -> None:
    platform, evaluation_id, session_id = setup
    storage = platform.core.storage
    table = pa.table({"_index_": pa.array([], pa.int64())})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    mine, theirs = Part(0, 0, 2), Part(0, 0, 6)
    for part in (mine, theirs):  # error records left without their data file
        storage.put_bytes(evaluation_id, part.errors_path, sink.getvalue().to_pybytes())
    assert run_shard(platform.core, shard(platform, evaluation_id, session_id, 0, 4)).error is None
    left = {info.path for info in storage.list(evaluation_id, ERRORS_PREFIX)}
    # another shard's may be between its two writes right now: left alone
    assert left == {theirs.errors_path}
