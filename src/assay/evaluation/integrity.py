"""The integrity check run after every evaluation: each instance x replication was answered
exactly once. Its result is recorded on the entity (annotation ``assay.io/integrity``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow
    import pyarrow.dataset

__all__ = ["INTEGRITY_ANNOTATION", "Integrity", "Problems", "check_integrity", "locate_problems"]

INTEGRITY_ANNOTATION = "assay.io/integrity"


@dataclass(frozen=True)
class Integrity:
    expected: int
    """Instances x replications."""
    answered: int
    """Distinct expected (``_index_``, ``_replication_``) pairs present in the output."""
    duplicates: int
    """Output rows beyond the first for a pair."""
    missing: int
    """Expected pairs with no output row."""
    unexpected: int
    """Output rows whose pair was not expected (an unknown index or replication)."""
    skipped: int = 0
    """Pairs answered with no responses because the instance failed (``Skip`` policy)."""
    deduplicated: int = 0
    """Duplicate output rows removed before this count (``duplicateOutputPolicy``
    ``Deduplicate``): the output held that many more rows when the evaluation ended."""

    @property
    def ok(self) -> bool:
        return self.duplicates == 0 and self.missing == 0 and self.unexpected == 0

    def as_dict(self) -> dict[str, int | bool]:
        return {**asdict(self), "ok": self.ok}


def check_integrity(
    output: pyarrow.dataset.Dataset | Iterable[pyarrow.RecordBatch],
    indices: pyarrow.Array | pyarrow.ChunkedArray,
    replications: list[str],
    *,
    skipped: int = 0,
) -> Integrity:
    """Count the output's (``_index_``, ``_replication_``) pairs against the data set's
    ``indices`` x ``replications``; only those two columns are read. ``output`` is a
    dataset, or its batches of those two columns (read once).

    The output is read batch by batch and each expected pair marked in a bitmap of
    ``len(indices) x len(replications)`` bytes, so memory does not grow with the output (a
    hash join of every pair took ~450 bytes per row); the rare rows that match no expected
    pair are counted apart. Needs NumPy (which pyarrow uses) and unique ``indices``, as an
    ingested data set has; otherwise the pairs are joined in Arrow.
    """
    import pyarrow as pa
    import pyarrow.dataset as ds

    columns = ["_index_", "_replication_"]
    batches: Iterable[pyarrow.RecordBatch]
    if isinstance(output, ds.Dataset):
        present = set(columns) <= set(output.schema.names)
        batches = output.to_batches(columns=columns) if present else ()
    else:
        batches = output
    indices = indices.cast(pa.int64())
    lookup = None
    if indices.null_count == 0:
        with contextlib.suppress(ImportError):
            lookup = _Lookup.build(indices)
    if lookup is not None:
        return _check_streaming(batches, lookup, replications, skipped)
    schema = pa.schema([("_index_", pa.int64()), ("_replication_", pa.string())])
    pairs = pa.Table.from_batches(
        [pa.RecordBatch.from_arrays([b.column(0), b.column(1)], schema=schema) for b in batches],
        schema=schema,
    )
    if isinstance(indices, pa.ChunkedArray):
        indices = indices.combine_chunks()
    return _check_joined(pairs, indices, replications, skipped)


class _Lookup:
    """Where each of the data set's (unique) indices is: ``position(values)`` gives the
    position of each value, or -1 for a value that is not an index."""

    def __init__(self, n: int, low: int | None, ordered: Any) -> None:
        self.n = n
        self._low = low  # the indices are low .. low + n - 1
        self._ordered = ordered  # otherwise: the sorted indices

    @classmethod
    def build(cls, indices: pyarrow.Array | pyarrow.ChunkedArray) -> _Lookup | None:
        """None when the indices are not unique. Chunk by chunk: no copy of them all is made
        unless they are not contiguous."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        chunks = indices.chunks if isinstance(indices, pa.ChunkedArray) else [indices]
        n = len(indices)
        if n == 0:
            return cls(0, 0, None)
        bounds = pc.min_max(indices).as_py()
        low, high = int(bounds["min"]), int(bounds["max"])
        if high - low == n - 1:
            hit = np.zeros(n, dtype=bool)
            for chunk in chunks:
                values = chunk.to_numpy(zero_copy_only=False)
                for start in range(0, len(values), 1 << 16):  # no temporary copy of them all
                    hit[values[start : start + (1 << 16)] - low] = True
            return cls(n, low, None) if hit.all() else None
        ordered = np.sort(np.concatenate([c.to_numpy(zero_copy_only=False) for c in chunks]))
        if (ordered[1:] == ordered[:-1]).any():
            return None
        return cls(n, None, ordered)

    def position(self, values: Any) -> Any:
        import numpy as np

        if self.n == 0:
            return np.full(len(values), -1, dtype=np.int64)
        if self._low is not None:
            at = values - self._low
            return np.where((at >= 0) & (at < self.n), at, -1)
        at = np.minimum(np.searchsorted(self._ordered, values), self.n - 1)
        return np.where(self._ordered[at] == values, at, -1)

    def value(self, position: int) -> int:
        """The index at ``position`` (the inverse of :meth:`position`)."""
        if self._low is not None:
            return self._low + position
        return int(self._ordered[position])


def _check_streaming(
    batches: Iterable[pyarrow.RecordBatch],
    lookup: _Lookup,
    replications: list[str],
    skipped: int,
) -> Integrity:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    names = pa.array(replications, pa.string())
    seen = np.zeros(lookup.n * len(replications), dtype=bool)
    answered = duplicates = 0
    strays: list[pyarrow.Table] = []  # rows whose pair was not expected
    columns = ["_index_", "_replication_"]
    for index, replication_ids in _regrouped(batches):
        replication = pc.index_in(replication_ids, value_set=names)
        valid = pc.and_(index.is_valid(), replication.is_valid())
        at = np.full(len(index), -1, dtype=np.int64)
        ok = valid.to_numpy(zero_copy_only=False)
        if ok.any():
            at[ok] = lookup.position(index.filter(valid).to_numpy())
        expected = at >= 0
        if not expected.all():
            mask = pa.array(~expected)
            strays.append(
                pa.table(
                    {"_index_": index.filter(mask), "_replication_": replication_ids.filter(mask)}
                )
            )
        if expected.any():
            codes = replication.fill_null(0).to_numpy(zero_copy_only=False)[expected]
            keys = codes.astype(np.int64) * lookup.n + at[expected]
            # Parts hold runs of consecutive indices: strictly increasing keys are distinct
            # without the cost of np.unique.
            unique = keys if bool((keys[1:] > keys[:-1]).all()) else np.unique(keys)
            new = unique[~seen[unique]]
            seen[new] = True
            answered += len(new)
            duplicates += len(keys) - len(new)
    unexpected = 0
    if strays:
        stray = pa.concat_tables(strays).select(columns)
        unexpected = stray.num_rows
        groups = stray.group_by(columns, use_threads=False).aggregate([([], "count_all")])
        duplicates += unexpected - groups.num_rows
    expected_pairs = lookup.n * len(replications)
    return Integrity(
        expected=expected_pairs,
        answered=answered,
        duplicates=duplicates,
        missing=expected_pairs - answered,
        unexpected=unexpected,
        skipped=skipped,
    )


def _regrouped(
    batches: Iterable[pyarrow.RecordBatch], rows: int = 1 << 16
) -> Iterator[tuple[pyarrow.Array, pyarrow.Array]]:
    """The (``_index_``, ``_replication_``) columns of ``batches``, as int64 and string, in
    runs of at least ``rows`` rows (parts are small; each run costs a few array calls)."""

    held: list[pyarrow.RecordBatch] = []
    count = 0
    for batch in batches:
        held.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield _joined(held)
            held, count = [], 0
    if held:
        yield _joined(held)


def _joined(batches: list[pyarrow.RecordBatch]) -> tuple[pyarrow.Array, pyarrow.Array]:
    import pyarrow as pa

    def typed(array: pyarrow.Array, type: pyarrow.DataType) -> pyarrow.Array:
        return array if array.type == type else array.cast(type)

    return (
        pa.concat_arrays([typed(b.column(0), pa.int64()) for b in batches]),
        pa.concat_arrays([typed(b.column(1), pa.string()) for b in batches]),
    )


def _check_joined(
    pairs: pyarrow.Table, indices: pyarrow.Array, replications: list[str], skipped: int
) -> Integrity:
    import pyarrow as pa
    import pyarrow.compute as pc

    counts = pairs.group_by(["_index_", "_replication_"]).aggregate([([], "count_all")])
    duplicates = int(pc.sum(pc.subtract(counts["count_all"], 1)).as_py() or 0)
    expected_pairs = pa.table(
        {
            "_index_": pa.concat_arrays([indices.cast(pa.int64())] * len(replications))
            if replications
            else pa.array([], pa.int64()),
            "_replication_": pa.array(
                [r for r in replications for _ in range(len(indices))], pa.string()
            ),
        }
    )
    keys = ["_index_", "_replication_"]
    present = counts.select(keys).join(expected_pairs, keys=keys, join_type="inner")
    answered = present.num_rows
    unexpected_rows = counts.join(expected_pairs, keys=keys, join_type="left anti")
    unexpected = (
        int(pc.sum(unexpected_rows["count_all"]).as_py() or 0) if unexpected_rows.num_rows else 0
    )
    expected = len(indices) * len(replications)
    return Integrity(
        expected=expected,
        answered=answered,
        duplicates=duplicates,
        missing=expected - answered,
        unexpected=unexpected,
        skipped=skipped,
    )


@dataclass
class Problems:
    """Where an output's integrity problems are (:func:`locate_problems`): an example pair of
    each kind, and the rows whose removal leaves every pair once."""

    extra_rows: dict[str, list[int]] = field(default_factory=dict)
    """File → positions (in the file) of its rows whose pair came before — in the order the
    files were given, then row order: each pair's first row is kept. Removing these rows,
    all at once or file by file (and again after a stop), leaves each pair exactly once."""
    duplicate: tuple[Any, Any] | None = None
    """An (``_index_``, ``_replication_``) pair present more than once."""
    missing: tuple[int, str] | None = None
    """An expected pair with no output row."""
    unexpected: tuple[Any, Any] | None = None
    """A pair present that was not expected."""

    @property
    def duplicates(self) -> int:
        """Output rows beyond the first for a pair (as :attr:`Integrity.duplicates`)."""
        return sum(map(len, self.extra_rows.values()))


def locate_problems(
    files: Iterable[tuple[str, Iterable[pyarrow.RecordBatch]]],
    indices: pyarrow.Array | pyarrow.ChunkedArray,
    replications: list[str],
) -> Problems:
    """What :func:`check_integrity` counts, located: ``files`` are the output's files in a
    fixed order, each with its batches of the two columns (read once). Meant for when the
    check found a problem: the expected pairs are marked in a bitmap as the check marks them,
    the others kept in a set."""
    import pyarrow as pa
    import pyarrow.compute as pc

    indices = indices.cast(pa.int64())
    lookup = None
    if indices.null_count == 0:
        with contextlib.suppress(ImportError):
            lookup = _Lookup.build(indices)
    found = Problems()
    strays: set[tuple[Any, Any]] = set()  # pairs seen that were not expected
    expected: set[tuple[Any, Any]] | None = None  # without a lookup: every pair, in a set
    seen_pairs: set[tuple[Any, Any]] = set()  # without a lookup: the pairs seen
    seen: Any = None
    if lookup is not None:
        import numpy as np

        seen = np.zeros(lookup.n * len(replications), dtype=bool)
        names = pa.array(replications, pa.string())
    else:
        expected = {(i, r) for r in replications for i in indices.to_pylist()}
    for path, batches in files:
        offset = 0
        extra: list[int] = []
        for batch in batches:
            index, replication = _joined([batch])
            rows = len(index)
            if lookup is not None:
                codes = pc.index_in(replication, value_set=names)
                valid = pc.and_(index.is_valid(), codes.is_valid())
                at = np.full(rows, -1, dtype=np.int64)
                ok = valid.to_numpy(zero_copy_only=False)
                if ok.any():
                    at[ok] = lookup.position(index.filter(valid).to_numpy())
                hit = at >= 0
                keys = codes.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
                keys = keys * lookup.n + np.maximum(at, 0)
                again = np.zeros(rows, dtype=bool)
                hits = np.flatnonzero(hit)
                if len(hits):
                    mine = keys[hits]
                    _, first = np.unique(mine, return_index=True)
                    repeated = np.ones(len(hits), dtype=bool)
                    repeated[first] = False  # the first row of each pair in this batch
                    again[hits] = repeated | seen[mine]
                    seen[mine] = True
                others = np.flatnonzero(~hit).tolist()
                repeats = set(np.flatnonzero(again).tolist())
            else:
                others, repeats = list(range(rows)), set()
            for r in others:
                pair = (index[r].as_py(), replication[r].as_py())
                if expected is not None and pair in expected:
                    if pair in seen_pairs:
                        repeats.add(r)
                    seen_pairs.add(pair)
                elif pair in strays:
                    repeats.add(r)
                else:
                    strays.add(pair)
                    found.unexpected = found.unexpected or pair
            if repeats:
                first_repeat = min(repeats)
                if found.duplicate is None:
                    found.duplicate = (
                        index[first_repeat].as_py(),
                        replication[first_repeat].as_py(),
                    )
                extra.extend(offset + r for r in sorted(repeats))
            offset += rows
        if extra:
            found.extra_rows[path] = extra
    if lookup is not None:
        free = np.flatnonzero(~seen)
        if len(free):
            code, position = divmod(int(free[0]), lookup.n)
            found.missing = (lookup.value(position), replications[code])
    elif expected is not None:
        found.missing = next(
            ((i, r) for r in replications for i in indices.to_pylist() if (i, r) not in seen_pairs),
            None,
        )
    return found
