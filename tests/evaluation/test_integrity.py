"""The integrity check: each instance x replication answered exactly once, counted streaming
(a bitmap over the expected pairs) and, where the data set's indices are not unique, by a
join; both must give the same counts."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from assay.evaluation import integrity
from assay.evaluation.integrity import Integrity, check_integrity

R = ["r0", "r1"]


Pair = tuple[int | None, str | None]


def _batches(pairs: Sequence[Pair], size: int = 3) -> list[pa.RecordBatch]:
    schema = pa.schema([("_index_", pa.int64()), ("_replication_", pa.string())])
    return [
        pa.RecordBatch.from_pylist(
            [{"_index_": i, "_replication_": r} for i, r in pairs[k : k + size]], schema=schema
        )
        for k in range(0, len(pairs), size)
    ]


def _expected(pairs: Sequence[Pair], indices: list[int], replications: list[str]) -> Integrity:
    """The counts, the slow and obvious way."""
    wanted = {(i, r) for i in set(indices) for r in replications}
    counts = Counter(pairs)
    answered = sum(1 for pair in counts if pair in wanted)
    return Integrity(
        expected=len(indices) * len(replications),
        answered=answered,
        duplicates=sum(c - 1 for c in counts.values()),
        missing=len(indices) * len(replications) - answered,
        unexpected=sum(c for pair, c in counts.items() if pair not in wanted),
    )


def test_every_pair_once_is_ok() -> None:
    pairs = [(i, r) for r in R for i in range(10)]
    result = check_integrity(_batches(pairs), pa.array(range(10)), R)
    assert result == Integrity(expected=20, answered=20, duplicates=0, missing=0, unexpected=0)
    assert result.ok and result.as_dict()["ok"] is True


def test_duplicates_missing_and_unexpected_are_counted() -> None:
    pairs: list[Pair] = [(i, "r0") for i in range(10)]
    pairs += [(i, "r1") for i in range(0, 10, 2)]
    pairs += [(3, "r0"), (3, "r0"), (4, "r1")]  # three duplicates
    pairs += [(99, "r0"), (99, "r0"), (5, "r9"), (None, "r0"), (6, None)]  # five unexpected
    result = check_integrity(_batches(pairs), pa.array(range(10)), R, skipped=2)
    assert result == Integrity(
        expected=20, answered=15, duplicates=4, missing=5, unexpected=5, skipped=2
    )
    assert not result.ok
    assert dataclasses.replace(result, skipped=0) == _expected(pairs, list(range(10)), R)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("layout", ["contiguous", "scattered", "repeated"])
def test_streaming_and_joined_counts_agree_with_the_obvious_ones(seed: int, layout: str) -> None:
    rng = random.Random(seed)
    n = rng.randrange(1, 60)
    if layout == "contiguous":
        indices = list(range(1000, 1000 + n))
    elif layout == "scattered":
        indices = rng.sample(range(-500, 500), n)
    else:  # not unique: the joined way
        indices = [rng.randrange(0, 20) for _ in range(n)]
    replications = R[: rng.randrange(1, 3)]
    pool: list[Pair] = [(i, r) for i in set(indices) for r in replications]
    pairs = [rng.choice(pool) for _ in range(rng.randrange(0, 2 * len(pool)))]
    pairs += [(rng.randrange(-600, 1600), rng.choice([*replications, "x"])) for _ in range(3)]
    rng.shuffle(pairs)
    expected = _expected(pairs, indices, replications)
    batches = _batches(pairs, size=rng.randrange(1, 7))
    got = check_integrity(batches, pa.array(indices), replications)
    if len(set(indices)) < len(indices):
        # Repeated indices (never in an ingested data set) are joined: each repeat is an
        # instance of its own to answer.
        assert integrity._Lookup.build(pa.array(indices)) is None
        assert (got.expected, got.duplicates, got.unexpected) == (
            expected.expected,
            expected.duplicates,
            expected.unexpected,
        )
        return
    assert got == expected
    if batches:  # the joined way agrees
        table = pa.Table.from_batches(batches)
        assert integrity._check_joined(table, pa.array(indices), replications, 0) == got


def test_the_streaming_check_reads_runs_of_many_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    # Parts are small; the check regroups them into runs (here of 4 rows) before counting.
    seen: list[int] = []
    regrouped = integrity._regrouped

    def spy(
        batches: Iterable[pa.RecordBatch], rows: int = 1 << 16
    ) -> Iterator[tuple[pa.Array, pa.Array]]:
        for index, replication in regrouped(batches, rows=4):
            seen.append(len(index))
            yield index, replication

    monkeypatch.setattr(integrity, "_regrouped", spy)
    pairs = [(i, "r0") for i in range(10)] + [(2, "r0")]
    result = check_integrity(_batches(pairs, size=3), pa.array(range(10)), ["r0"])
    assert seen == [6, 5] and result.duplicates == 1 and result.answered == 10


def test_a_dataset_of_parquet_parts_is_read_for_its_two_columns(tmp_path: Path) -> None:
    for k in range(3):
        table = pa.table(
            {
                "_index_": pa.array(range(k * 5, k * 5 + 5), pa.int32()),  # cast to int64
                "_replication_": pa.array(["r0"] * 5).dictionary_encode(),
                "responses": pa.array([[{"text": "x"}]] * 5),
            }
        )
        pq.write_table(table, tmp_path / f"part-{k}.parquet")
    result = check_integrity(
        ds.dataset(tmp_path, format="parquet"), pa.chunked_array([range(10), range(10, 15)]), ["r0"]
    )
    assert result == Integrity(expected=15, answered=15, duplicates=0, missing=0, unexpected=0)
    empty = tmp_path / "empty"
    empty.mkdir()
    pq.write_table(pa.table({"x": [1]}), empty / "x.parquet")
    nothing = check_integrity(ds.dataset(empty, format="parquet"), pa.array([1, 2]), ["r0"])
    assert (nothing.answered, nothing.missing) == (0, 2)


def test_no_instances_and_no_output() -> None:
    assert check_integrity([], pa.array([], pa.int64()), R).ok
    result = check_integrity(_batches([(0, "r0")]), pa.array([], pa.int64()), R)
    assert (result.expected, result.unexpected) == (0, 1)
