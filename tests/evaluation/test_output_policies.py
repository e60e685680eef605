"""The client's output policies end to end (``duplicateOutputPolicy``,
``missingOutputPolicy``; ``policies.py``), and the order of a part's writes that a resumed run
relies on (errors before data; unfinished parts dropped and redone).

Integrity problems are made the way they happen: a run is stopped (the entity left
``Admitted``, as a killed process leaves it) and resumed by ``platform.resume()``, with its
storage as a killed run, or another run of the same evaluation, leaves it — a part stored by
the other run after this one listed the parts done (duplicates), a part shorter than its name
says (missing), a part of another evaluation (unexpected), errors without their data file, a
temporary file of a write in progress.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from tests.conftest import ACCOUNT, ready_dataset

from assay import provenance
from assay.evaluation import parts, workflow
from assay.evaluation.integrity import INTEGRITY_ANNOTATION, check_integrity, locate_problems
from assay.evaluation.parts import ERRORS_PREFIX, Part, write_parquet
from assay.evaluation.policies import deduplicate
from assay.local import LocalPlatform, mocks
from assay.schema import ids
from assay.schema.status import Status
from assay.storage import LocalStorage

ROWS, BATCH = 40, 10


@pytest.fixture
def one_batch_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every part one batch (``part-R-FFFF-BBBBBB.parquet``), whatever the service's speed."""
    monkeypatch.setattr(parts, "IN_PROCESS_PART_ROWS", BATCH)


def _dataset(platform: LocalPlatform, directory: Path, refused: bool) -> str:
    """``ROWS`` prompts; with ``refused`` every tenth from 3 on has no text, which the mock
    refuses (a bad request: recorded as an error under ``badRequestPolicy`` Skip)."""
    if not refused:
        return ready_dataset(platform, directory, rows=ROWS)
    directory.mkdir(parents=True)
    texts = [None if i % 10 == 3 else f"prompt {i}" for i in range(ROWS)]
    pq.write_table(
        pa.table({"_index_": pa.array(range(ROWS), pa.int64()), "text": pa.array(texts)}),
        directory / "p.parquet",
    )
    dataset = platform.datasets.create_arrow_dataset(directory, account=ACCOUNT, name="d")
    return platform.datasets.upload_arrow_dataset(dataset, directory).id


def _evaluate(
    platform: LocalPlatform, tmp_path: Path, *, refused: bool = False, **client: Any
) -> Any:
    dataset = _dataset(platform, tmp_path / "data", refused)
    service = platform.inferenceservices.create_mock(
        mocks.TextCompletion, account=ACCOUNT, kwargs={"seed": 1}
    )
    evaluation = platform.evaluations.create(
        {
            "account": ACCOUNT,
            "dataset": dataset,
            "inferenceSession": {"inferenceService": service.id},
            "client": {"batchSize": BATCH, **client},
        }
    )
    assert evaluation.status == Status.Complete, evaluation.message
    return evaluation


def _resume(platform: LocalPlatform, evaluation_id: str) -> Any:
    """Run the evaluation again as ``resume()`` does after its process was killed."""
    platform.core.store.update(evaluation_id, lambda doc: {**doc, "status": Status.Admitted})
    assert platform.resume() == [evaluation_id]
    return platform.evaluations.get(evaluation_id)


def _files(platform: LocalPlatform, evaluation_id: str, prefix: str = "data/") -> list[str]:
    return [i.path for i in platform.core.storage.list(evaluation_id, prefix)]


def _read(platform: LocalPlatform, evaluation_id: str, path: str) -> pa.Table:
    local = platform.core.storage.local_path(evaluation_id, path)
    assert local is not None
    return pq.read_table(local)


def _get(platform: LocalPlatform, evaluation_id: str) -> Any:
    evaluation = platform.evaluations.get(evaluation_id)
    assert evaluation is not None
    return evaluation


def _integrity(platform: LocalPlatform, evaluation_id: str) -> dict[str, Any]:
    annotations = _get(platform, evaluation_id).annotations
    return dict(json.loads(next(a.value for a in annotations if a.key == INTEGRITY_ANNOTATION)))


def _pair_counts(platform: LocalPlatform, evaluation_id: str) -> pa.Table:
    pairs = platform.evaluations.open(evaluation_id).to_table(columns=["_index_", "_replication_"])
    return pairs.group_by(["_index_", "_replication_"]).aggregate([([], "count_all")])


class _EveryThirdBatch(parts.PartSizer):
    """Parts of three batches: ``part-000-0000-000000-000002.parquet`` then the last batch."""

    def next(self) -> int:
        return 3


def _another_run_races(
    platform: LocalPlatform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **client: Any
) -> tuple[str, int]:
    """An evaluation resumed while another run of it goes on: the resumed run lists the parts
    done (none: the other run had written nothing yet), then the other run stores its part of
    batches 0-1 (with instance 0 in it twice: a second answer to it), and the resumed run
    answers every batch itself. Returns the evaluation and the output rows too many."""
    evaluation = _evaluate(platform, tmp_path, **client)
    theirs = pa.concat_tables(
        [_read(platform, evaluation.id, Part(0, 0, b).path) for b in (0, 1)]
    ).combine_chunks()
    theirs = pa.concat_tables([theirs, theirs.slice(0, 1)])  # instance 0 answered twice
    for path in _files(platform, evaluation.id):
        platform.core.storage.delete(evaluation.id, path)  # as if nothing had been written
    listed = parts.done_batches

    def listed_then_raced(storage: Any, evaluation_id: str) -> set[tuple[int, int, int]]:
        done = listed(storage, evaluation_id)
        write_parquet(storage, evaluation_id, Part(0, 0, 0, 2).path, theirs)
        return done

    monkeypatch.setattr(workflow, "done_batches", listed_then_raced)
    monkeypatch.setattr(workflow, "PartSizer", _EveryThirdBatch)
    return evaluation.id, theirs.num_rows


def _raced() -> Callable[[Any, str], set[tuple[int, int, int]]]:
    """The ``done_batches`` that :func:`_another_run_races` put in place, to wrap."""
    raced: Callable[[Any, str], set[tuple[int, int, int]]] = vars(workflow)["done_batches"]
    return raced


@pytest.mark.usefixtures("one_batch_parts")
def test_deduplicate_is_the_default_and_leaves_one_row_per_pair(
    platform: LocalPlatform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    evaluation_id, extra = _another_run_races(platform, tmp_path, monkeypatch)
    assert _get(platform, evaluation_id).client.duplicateOutputPolicy == "Deduplicate"
    done = _resume(platform, evaluation_id)
    assert done.status == Status.Complete, done.message
    assert f"{extra} duplicate outputs removed" in (done.message or "")
    assert "integrity verified" in (done.message or "")
    # what every reader sees: each pair once, as many rows as expected
    counts = _pair_counts(platform, evaluation_id)
    assert counts.num_rows == ROWS and pc.max(counts["count_all"]).as_py() == 1
    assert platform.evaluations.open(evaluation_id).count_rows() == ROWS
    integrity = _integrity(platform, evaluation_id)
    assert integrity["ok"] and integrity["duplicates"] == 0
    assert (integrity["deduplicated"], integrity["answered"]) == (extra, ROWS)
    # the first row of each pair is kept (the other run's part sorts first), the second
    # answer to instance 0 is gone, and the resumed run's part keeps only batch 2
    assert _files(platform, evaluation_id) == [
        Part(0, 0, 0, 2).path,
        Part(0, 0, 0, 3).path,
        Part(0, 0, 3).path,
    ]
    assert _read(platform, evaluation_id, Part(0, 0, 0, 2).path).num_rows == 2 * BATCH
    kept = _read(platform, evaluation_id, Part(0, 0, 0, 3).path).column("_index_").to_pylist()
    assert kept == list(range(2 * BATCH, 3 * BATCH))
    # the provenance recorded names the files as they are now
    assert provenance.verify(platform.core, evaluation_id).ok


@pytest.mark.usefixtures("one_batch_parts")
def test_duplicates_alone_fail_under_error_naming_the_policy_count_and_a_pair(
    platform: LocalPlatform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    evaluation_id, extra = _another_run_races(
        platform, tmp_path, monkeypatch, duplicateOutputPolicy="Error"
    )
    done = _resume(platform, evaluation_id)
    assert (done.status, done.reason) == (Status.Failed, "Unverified")
    message = done.message or ""
    assert "duplicateOutputPolicy is Error" in message
    assert f"{extra} duplicate outputs" in message
    replication = ids.replication_id(evaluation_id, 0)
    assert f"_index_ 0, _replication_ {replication!r}" in message
    # duplicates are the only problem: nothing missing, nothing unexpected
    integrity = _integrity(platform, evaluation_id)
    assert (integrity["duplicates"], integrity["missing"], integrity["unexpected"]) == (
        extra,
        0,
        0,
    )
    # the output is left as it was written, for a look at what went wrong
    assert len(_files(platform, evaluation_id)) == 3


@pytest.mark.usefixtures("one_batch_parts")
def test_ignore_keeps_every_duplicate(
    platform: LocalPlatform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    evaluation_id, extra = _another_run_races(
        platform, tmp_path, monkeypatch, duplicateOutputPolicy="Ignore"
    )
    done = _resume(platform, evaluation_id)
    assert done.status == Status.Complete, done.message
    assert f"{extra} duplicate outputs kept" in (done.message or "")
    assert platform.evaluations.open(evaluation_id).count_rows() == ROWS + extra
    assert _integrity(platform, evaluation_id)["duplicates"] == extra


def _short_part(platform: LocalPlatform, evaluation_id: str) -> None:
    """Part 2 as a writer that lost rows would have left it: its last three rows gone."""
    path = Part(0, 0, 2).path
    table = _read(platform, evaluation_id, path)
    write_parquet(platform.core.storage, evaluation_id, path, table.slice(0, BATCH - 3))


@pytest.mark.usefixtures("one_batch_parts")
@pytest.mark.parametrize("policy", ["Error", "Ignore"])
def test_missing_outputs(platform: LocalPlatform, tmp_path: Path, policy: str) -> None:
    evaluation = _evaluate(platform, tmp_path, missingOutputPolicy=policy)
    _short_part(platform, evaluation.id)
    done = _resume(platform, evaluation.id)  # the batch counts as done: its part exists
    message = done.message or ""
    assert _integrity(platform, evaluation.id)["missing"] == 3
    if policy == "Error":
        assert (done.status, done.reason) == (Status.Failed, "Incomplete")
        replication = ids.replication_id(evaluation.id, 0)
        assert "missingOutputPolicy is Error" in message
        assert f"3 missing outputs (e.g. _index_ 27, _replication_ {replication!r})" in message
        return
    assert done.status == Status.Complete, message
    assert "3 missing" in message and "missingOutputPolicy is Ignore" in message
    assert platform.evaluations.open(evaluation.id).count_rows() == ROWS - 3


@pytest.mark.usefixtures("one_batch_parts")
def test_unexpected_outputs_fail_under_missing_output_policy_error(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    evaluation = _evaluate(platform, tmp_path)
    stray = _read(platform, evaluation.id, Part(0, 0, 0).path).slice(0, 2)
    other = ids.replication_id("0" * 32, 0)  # a part of another evaluation's output
    stray = stray.set_column(1, "_replication_", pa.array([other] * 2, pa.string()))
    write_parquet(platform.core.storage, evaluation.id, "data/part-from-elsewhere.parquet", stray)
    done = _resume(platform, evaluation.id)
    assert (done.status, done.reason) == (Status.Failed, "Incomplete")
    message = done.message or ""
    assert "missingOutputPolicy is Error" in message
    assert f"2 unexpected outputs (e.g. _index_ 0, _replication_ {other!r})" in message


@pytest.mark.usefixtures("one_batch_parts")
def test_deduplicate_does_not_run_when_another_policy_fails(
    platform: LocalPlatform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    evaluation_id, extra = _another_run_races(platform, tmp_path, monkeypatch)
    original = _raced()

    def and_short(storage: Any, evaluation_id: str) -> set[tuple[int, int, int]]:
        done = original(storage, evaluation_id)  # the other run's part, without 1 and 2
        table = _read(platform, evaluation_id, Part(0, 0, 0, 2).path)
        short = pa.concat_tables([table.slice(0, 1), table.slice(3)])
        write_parquet(storage, evaluation_id, Part(0, 0, 0, 2).path, short)
        return done | {(0, 0, 0), (0, 0, 1)}  # and seen: its batches are not redone

    monkeypatch.setattr(workflow, "done_batches", and_short)
    done = _resume(platform, evaluation_id)
    assert (done.status, done.reason) == (Status.Failed, "Incomplete")
    assert "2 missing outputs" in (done.message or "")
    assert "missingOutputPolicy is Error" in (done.message or "")
    integrity = _integrity(platform, evaluation_id)
    assert (integrity["duplicates"], integrity["deduplicated"]) == (1, 0)
    # nothing rewritten: the second answer to instance 0 is still there
    assert _read(platform, evaluation_id, Part(0, 0, 0, 2).path).num_rows == extra - 2


# -- deduplicating with error records -----------------------------------------------------------


@pytest.mark.usefixtures("one_batch_parts")
def test_deduplicate_keeps_the_error_records_of_the_rows_kept(
    platform: LocalPlatform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    evaluation_id, _ = _another_run_races(
        platform, tmp_path, monkeypatch, refused=True, badRequestPolicy="Skip"
    )
    listed = _raced()

    def with_their_errors(storage: Any, evaluation_id: str) -> set[tuple[int, int, int]]:
        done = listed(storage, evaluation_id)  # the other run's part, and its errors (3, 13)
        replication = ids.replication_id(evaluation_id, 0)
        errors = pa.table(
            {
                "_index_": pa.array([3, 13], pa.int64()),
                "_replication_": pa.array([replication] * 2, pa.string()),
                "kind": pa.array(["BadRequest"] * 2, pa.string()),
                "error": pa.array(["request field 'text' must be a str"] * 2, pa.string()),
                "attempts": pa.array([1, 1], pa.int64()),
            }
        )
        write_parquet(storage, evaluation_id, Part(0, 0, 0, 2).errors_path, errors)
        return done

    monkeypatch.setattr(workflow, "done_batches", with_their_errors)
    done = _resume(platform, evaluation_id)
    assert done.status == Status.Complete, done.message
    # 4 refused instances, each counted once though two runs recorded 3 and 13
    assert "4 skipped after errors" in (done.message or "")
    assert _integrity(platform, evaluation_id)["skipped"] == 4
    errors = _files(platform, evaluation_id, ERRORS_PREFIX)
    assert errors == [
        Part(0, 0, 0, 2).errors_path,
        Part(0, 0, 0, 3).errors_path,
        Part(0, 0, 3).errors_path,
    ]
    theirs = _read(platform, evaluation_id, Part(0, 0, 0, 2).errors_path)
    assert theirs.column("_index_").to_pylist() == [3, 13]
    kept = _read(platform, evaluation_id, Part(0, 0, 0, 3).errors_path)
    assert kept.column("_index_").to_pylist() == [23]  # 3 and 13 went with their rows


def test_deduplicate_twice_removes_nothing_more(tmp_path: Path) -> None:
    """A run stopped half-way through deduplicating and done again ends as one that was not
    stopped: the first row of each pair, in the order of the files, is always kept."""
    storage = LocalStorage(tmp_path)
    entity = "e" * 32

    def part(indices: list[int]) -> pa.Table:
        return pa.table(
            {"_index_": pa.array(indices, pa.int64()), "_replication_": ["r"] * len(indices)}
        )

    files = {"data/a.parquet": [0, 1, 2, 1], "data/b.parquet": [2, 3], "data/c.parquet": [0]}
    for path, indices in files.items():
        write_parquet(storage, entity, path, part(indices))

    def located() -> Any:
        paths = [i.path for i in storage.list(entity, "data/")]
        return locate_problems(
            (
                (p, parts.read_columns(storage, entity, [p], ["_index_", "_replication_"]))
                for p in paths
            ),
            pa.array(range(4), pa.int64()),
            ["r"],
        )

    found = located()
    assert found.extra_rows == {"data/a.parquet": [3], "data/b.parquet": [0], "data/c.parquet": [0]}
    assert (found.duplicate, found.missing, found.unexpected) == ((1, "r"), None, None)
    deduplicate(storage, entity, {"data/b.parquet": [0]})  # stopped after the first file
    again = located()
    assert again.extra_rows == {"data/a.parquet": [3], "data/c.parquet": [0]}
    deduplicate(storage, entity, again.extra_rows)
    assert [i.path for i in storage.list(entity)] == ["data/a.parquet", "data/b.parquet"]
    rows = parts.read_columns(storage, entity, ["data/a.parquet", "data/b.parquet"], ["_index_"])
    assert [i for b in rows for i in b.column(0).to_pylist()] == [0, 1, 2, 3]
    assert located().extra_rows == {}
    output = parts.read_columns(
        storage, entity, ["data/a.parquet", "data/b.parquet"], ["_index_", "_replication_"]
    )
    assert check_integrity(output, pa.array(range(4), pa.int64()), ["r"]).ok


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("layout", ["contiguous", "scattered", "repeated"])
def test_located_problems_agree_with_the_counts(seed: int, layout: str) -> None:
    """Whatever the pairs (nulls, strays, repeats across and within files), the rows located
    are as many as the check counts duplicates, their removal leaves each pair once, and the
    examples are pairs of their kind."""
    rng = random.Random(seed)
    n = rng.randrange(1, 40)
    if layout == "contiguous":
        indices = list(range(100, 100 + n))
    elif layout == "scattered":
        indices = rng.sample(range(-300, 300), n)
    else:  # not unique (never in an ingested data set): no bitmap
        indices = [rng.randrange(0, 15) for _ in range(n)]
    replications = ["r0", "r1"][: rng.randrange(1, 3)]
    pool = [(i, r) for i in set(indices) for r in replications]
    pairs: list[tuple[int | None, str | None]] = [
        rng.choice(pool) for _ in range(rng.randrange(0, 2 * len(pool)))
    ]
    pairs += [(rng.randrange(-400, 400), rng.choice([*replications, "x"])) for _ in range(3)]
    pairs += [(None, "r0"), (None, "r0"), (7, None)]
    rng.shuffle(pairs)
    schema = pa.schema([("_index_", pa.int64()), ("_replication_", pa.string())])
    cuts = sorted(rng.sample(range(len(pairs) + 1), 3))
    files = {
        f"data/{k}.parquet": pairs[a:b]
        for k, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(pairs)], strict=True))
    }

    def batches(rows: list[tuple[int | None, str | None]]) -> list[pa.RecordBatch]:
        size = rng.randrange(1, 5)
        return [
            pa.RecordBatch.from_pylist(
                [{"_index_": i, "_replication_": r} for i, r in rows[k : k + size]], schema=schema
            )
            for k in range(0, len(rows), size)
        ]

    found = locate_problems(
        ((path, batches(rows)) for path, rows in files.items()),
        pa.array(indices, pa.int64()),
        replications,
    )
    counted = check_integrity(
        [b for rows in files.values() for b in batches(rows)],
        pa.array(indices, pa.int64()),
        replications,
    )
    assert found.duplicates == counted.duplicates
    left = [
        pair
        for path, rows in files.items()
        for k, pair in enumerate(rows)
        if k not in set(found.extra_rows.get(path, []))
    ]
    assert len(left) == len(set(left)) == len(set(pairs))
    expected = {(i, r) for i in indices for r in replications}
    assert (found.duplicate is None) == (counted.duplicates == 0)
    assert found.duplicate is None or pairs.count(found.duplicate) > 1
    assert (found.missing is None) == (counted.missing == 0)
    assert found.missing is None or (found.missing in expected and found.missing not in pairs)
    assert found.unexpected is not None and found.unexpected not in expected


# -- the order of a part's writes, and what a resumed run drops -------------------------------


@pytest.fixture
def stored(platform: LocalPlatform) -> Iterator[list[str]]:
    """The paths of the artifacts stored, in the order they were stored."""
    storage = platform.core.storage
    order: list[str] = []
    lock = threading.Lock()
    put = storage.put_bytes

    def record(id: str, path: str, data: bytes) -> Any:
        info = put(id, path, data)
        with lock:
            order.append(path)
        return info

    storage.put_bytes = record  # type: ignore[method-assign]
    yield order
    del storage.put_bytes


@pytest.mark.usefixtures("one_batch_parts")
def test_a_parts_errors_are_stored_before_its_data(
    platform: LocalPlatform, tmp_path: Path, stored: list[str]
) -> None:
    evaluation = _evaluate(platform, tmp_path, refused=True, badRequestPolicy="Skip")
    errors = [p for p in stored if p.startswith(ERRORS_PREFIX)]
    assert sorted(errors) == [Part(0, 0, b).errors_path for b in range(4)]  # one a batch
    for path in errors:
        data = "data/" + path.removeprefix(ERRORS_PREFIX)
        assert stored.index(path) < stored.index(data), (path, stored)
    assert "4 skipped after errors" in (evaluation.message or "")


@pytest.mark.usefixtures("one_batch_parts")
def test_errors_left_without_their_data_are_dropped_and_the_batches_redone(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    """A run killed between the two writes of a part (it had cut batches 0-1 into one part)
    leaves the part's errors without its data: the resumed run cuts the batches otherwise,
    and the errors of instances 3 and 13 must count once."""
    evaluation = _evaluate(platform, tmp_path, refused=True, badRequestPolicy="Skip")
    storage = platform.core.storage
    errors = pa.concat_tables(
        [_read(platform, evaluation.id, Part(0, 0, b).errors_path) for b in (0, 1)]
    )
    for b in (0, 1):
        storage.delete(evaluation.id, Part(0, 0, b).path)
        storage.delete(evaluation.id, Part(0, 0, b).errors_path)
    write_parquet(storage, evaluation.id, Part(0, 0, 0, 2).errors_path, errors)
    done = _resume(platform, evaluation.id)
    assert done.status == Status.Complete, done.message
    assert _integrity(platform, evaluation.id)["skipped"] == 4
    assert "4 skipped after errors" in (done.message or "")
    assert _files(platform, evaluation.id, ERRORS_PREFIX) == [
        Part(0, 0, b).errors_path for b in range(4)
    ]
    assert _files(platform, evaluation.id) == [Part(0, 0, b).path for b in range(4)]
    assert platform.evaluations.open(evaluation.id).count_rows() == ROWS


@pytest.mark.usefixtures("one_batch_parts")
def test_a_write_in_progress_when_killed_is_not_output_and_its_part_is_redone(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    from assay.storage._local import TEMP_PREFIX

    evaluation = _evaluate(platform, tmp_path)
    storage = platform.core.storage
    before = _read(platform, evaluation.id, Part(0, 0, 2).path)
    storage.delete(evaluation.id, Part(0, 0, 2).path)
    local = storage.local_path(evaluation.id, Part(0, 0, 2).path)
    assert local is not None
    half = local.parent / f"{TEMP_PREFIX}0123456789abcdef"
    half.write_bytes(b"PAR1 half a part")  # the temporary file of the interrupted write
    done = _resume(platform, evaluation.id)
    assert done.status == Status.Complete, done.message
    assert "integrity verified" in (done.message or "")
    assert _files(platform, evaluation.id) == [Part(0, 0, b).path for b in range(4)]
    again = _read(platform, evaluation.id, Part(0, 0, 2).path)
    assert again.select(["_index_", "responses"]).equals(before.select(["_index_", "responses"]))
    counts = _pair_counts(platform, evaluation.id)
    assert counts.num_rows == ROWS and pc.max(counts["count_all"]).as_py() == 1
