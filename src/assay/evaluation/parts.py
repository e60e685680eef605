"""How an evaluation's work is cut into parts, and how parts are stored.

The data set is read file by file (sorted paths) and cut into batches of ``client.batchSize``
rows — the same cut on every run: batch ``b`` of a file is its rows ``b x batchSize`` onwards.
A part ``(replication, file, batch, count)`` holds the outputs of ``count`` consecutive whole
batches for one replication, written atomically as ``data/part-R-FFFF-BBBBBB.parquet`` (one
batch) or ``data/part-R-FFFF-BBBBBB-LLLLLL.parquet`` (batches ``B`` to ``L``): a part exists
whole or not at all, so a resumed run skips the batches whose part exists and redoes the rest,
and every (``_index_``, ``_replication_``) pair is written exactly once — however the parts of
the earlier run were sized.

How many batches a part holds is the platform's choice (:class:`PartSizer`): one where the
service is slow (as many rows as ``batchSize``, as the reference writes them), more where it
answers fast, so that the fixed cost of a part (its request bodies and output built by a
dozen Arrow calls, its Parquet file and atomic write, its bookkeeping: ~1.7 ms of the client's
time, measured over HTTP) does not weigh on every few thousand instances.
"""

from __future__ import annotations

import functools
import itertools
import operator
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow

    from assay.evaluation.outcomes import Answers, Columns
    from assay.storage import ArtifactStorage

__all__ = [
    "DATA_PREFIX",
    "ERRORS_PREFIX",
    "IN_PROCESS_PART_ROWS",
    "PART_ROWS",
    "PART_SECONDS",
    "REQUEST_COLUMNS",
    "Part",
    "PartSizer",
    "PartWriter",
    "cut_parts",
    "done_batches",
    "drop_unfinished",
    "drop_unfinished_in",
    "output_batch",
    "read_batches",
    "read_columns",
    "read_runs",
    "read_units",
    "usage_type",
    "with_request_columns",
    "write_parquet",
]

DATA_PREFIX = "data/"
#: Bytes of a data set file read at a time.
READ_BUFFER = 1 << 20
#: Rows of a data set read at a time (a whole number of batches).
READ_ROWS = 1 << 16
ERRORS_PREFIX = ".assay/errors/"
#: The most rows the platform puts in one part sent over HTTP (a single batch may be larger:
#: ``batchSize``). Each part costs ~1.7 ms of the client's time, much of it holding the lock
#: the HTTP event loop needs too; 16,384 rows make that ~0.1 µs an instance.
PART_ROWS = 1 << 14
#: The same for parts answered in-process, which are answered, built and written by one
#: thread: past ~4,096 rows a part's objects no longer fit the processor's caches, and the
#: run slows down again (~15 % at 16,384 rows; ~12 % slower at 1,000).
IN_PROCESS_PART_ROWS = 1 << 12
#: The seconds of answers, at the last part's rate, that a part is sized to hold.
PART_SECONDS = 0.5

_NAME = re.compile(r"part-(\d+)-(\d+)-(\d+)(?:-(\d+))?\.parquet")


@dataclass(frozen=True)
class Part:
    """Batches ``batch`` to ``batch + count - 1`` of data set file ``file`` (in sorted
    order), for replication ``replication`` (its position)."""

    replication: int
    file: int
    batch: int
    count: int = 1

    @property
    def name(self) -> str:
        head = f"part-{self.replication:03d}-{self.file:04d}-{self.batch:06d}"
        if self.count == 1:
            return f"{head}.parquet"
        return f"{head}-{self.batch + self.count - 1:06d}.parquet"

    @property
    def path(self) -> str:
        return DATA_PREFIX + self.name

    @property
    def errors_path(self) -> str:
        return ERRORS_PREFIX + self.name

    @classmethod
    def parse(cls, name: str) -> Part | None:
        """The part named ``name`` (as :attr:`name` writes it), or None for another name."""
        match = _NAME.fullmatch(name)
        if match is None:
            return None
        r, f, b, last = match.groups()
        first = int(b)
        count = int(last) - first + 1 if last is not None else 1
        return cls(int(r), int(f), first, count) if count >= 1 else None

    def batches(self) -> Iterator[tuple[int, int, int]]:
        """``(replication, file, batch)`` of each batch of the part."""
        for b in range(self.batch, self.batch + self.count):
            yield self.replication, self.file, b


def drop_unfinished(storage: ArtifactStorage, evaluation_id: str) -> int:
    """Delete the error records of parts whose data file was never written (a run stopped
    between the two; see ``_write_part``), returning how many: their batches are redone,
    perhaps in parts cut otherwise, and their errors must not be counted twice."""
    written = {
        info.path.removeprefix(DATA_PREFIX) for info in storage.list(evaluation_id, DATA_PREFIX)
    }
    dropped = 0
    for info in storage.list(evaluation_id, ERRORS_PREFIX):
        if info.path.removeprefix(ERRORS_PREFIX) not in written:
            dropped += storage.delete(evaluation_id, info.path)
    return dropped


def done_batches(storage: ArtifactStorage, evaluation_id: str) -> set[tuple[int, int, int]]:
    """``(replication, file, batch)`` of every batch whose part is written already."""
    done: set[tuple[int, int, int]] = set()
    for info in storage.list(evaluation_id, DATA_PREFIX):
        part = Part.parse(info.path.removeprefix(DATA_PREFIX))
        if part is not None:
            done.update(part.batches())
    return done


def drop_unfinished_in(
    storage: ArtifactStorage, evaluation_id: str, within: Callable[[Part], bool]
) -> int:
    """:func:`drop_unfinished` for the parts ``within`` says are one's own (a shard's: the
    batches of other shards, which may be between their two writes now, are left alone)."""
    written = {
        info.path.removeprefix(DATA_PREFIX) for info in storage.list(evaluation_id, DATA_PREFIX)
    }
    dropped = 0
    for info in storage.list(evaluation_id, ERRORS_PREFIX):
        name = info.path.removeprefix(ERRORS_PREFIX)
        part = Part.parse(name)
        if part is not None and name not in written and within(part):
            dropped += storage.delete(evaluation_id, info.path)
    return dropped


class PartSizer:
    """How many batches the next part holds: as many as ``seconds`` of answers at the rate
    of the last part, at most ``most_rows`` rows (a single batch may be larger), at least
    one; at most four times the last part's. Starts at one batch, so a slow service's parts
    are its batches, as the reference writes them. ``seconds`` defaults to
    :data:`PART_SECONDS`, ``most_rows`` to :data:`PART_ROWS` (:data:`IN_PROCESS_PART_ROWS`
    with ``in_process``), as they are when the sizer is made."""

    def __init__(
        self,
        batch_size: int,
        *,
        in_process: bool = False,
        seconds: float | None = None,
        most_rows: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if most_rows is None:
            most_rows = IN_PROCESS_PART_ROWS if in_process else PART_ROWS
        self._clock = clock
        self._batch_size = batch_size
        self._seconds = PART_SECONDS if seconds is None else seconds
        self._most = max(1, most_rows // batch_size)
        self._since: float | None = None
        self._batches = 1

    def next(self) -> int:
        """Batches in the next part."""
        return self._batches

    def sent(self) -> None:
        """A part was sent (the first one starts the clock)."""
        if self._since is None:
            self._since = self._clock()

    def answered(self, rows: int) -> None:
        """A part of ``rows`` instances was answered: size the next part by the rate since
        the last part was answered (the first: since it was sent), so that parts shrink as
        soon as the service slows down."""
        if self._since is None:
            return
        now = self._clock()
        elapsed, self._since = now - self._since, now
        most = min(self._most, 4 * self._batches)
        if elapsed <= 0:
            self._batches = most
            return
        wanted = int(rows / elapsed * self._seconds / self._batch_size)
        self._batches = max(1, min(most, wanted))


def read_runs(
    storage: ArtifactStorage, dataset_id: str, paths: list[str], batch_size: int
) -> Iterator[tuple[int, int, pyarrow.RecordBatch]]:
    """``(file, first batch, rows)`` for the whole data set, in runs of whole batches
    (~64k rows; each read has a cost of its own), always in the same order.

    Reading runs gives the same cut as reading ``batch_size`` rows at a time, since Parquet
    batches run across row groups and only a file's last batch is short."""
    run = batch_size * max(1, READ_ROWS // batch_size)
    for f, path in enumerate(sorted(paths)):
        b = 0
        for rows in _read_file(storage, dataset_id, path, run, None):
            yield f, b, rows
            b += -(-rows.num_rows // batch_size)


def read_units(
    storage: ArtifactStorage, dataset_id: str, paths: list[str], batch_size: int
) -> Iterator[tuple[int, int, pyarrow.RecordBatch]]:
    """``(file, batch, rows)`` for every batch of the data set, always in the same order."""
    for f, first, rows in read_runs(storage, dataset_id, paths, batch_size):
        for k, start in enumerate(range(0, rows.num_rows, batch_size)):
            yield f, first + k, rows.slice(start, batch_size)


def cut_parts(
    replication: int,
    file: int,
    first: int,
    rows: pyarrow.RecordBatch,
    batch_size: int,
    done: set[tuple[int, int, int]],
    batches: Callable[[], int],
) -> Iterator[tuple[Part | None, pyarrow.RecordBatch]]:
    """The parts of a run of ``rows`` (batches ``first`` onwards of ``file``) for one
    replication, with their rows: each of consecutive batches not in ``done``, as many as
    ``batches()`` says when it starts (asked part by part). A batch in ``done`` comes as
    ``(None, its rows)`` and is not part of any part."""
    count = -(-rows.num_rows // batch_size)
    k = 0
    while k < count:
        if (replication, file, first + k) in done:
            yield None, rows.slice(k * batch_size, batch_size)
            k += 1
            continue
        most = min(max(1, batches()), count - k)
        n = 1
        while n < most and (replication, file, first + k + n) not in done:
            n += 1
        yield Part(replication, file, first + k, n), rows.slice(k * batch_size, n * batch_size)
        k += n


def read_batches(
    storage: ArtifactStorage,
    dataset_id: str,
    path: str,
    first: int,
    stop: int,
    batch_size: int,
) -> Iterator[tuple[int, pyarrow.RecordBatch]]:
    """``(first batch, rows)`` for batches ``first`` to ``stop - 1`` of the data set file
    ``path``, in runs of whole batches (~64k rows, as :func:`read_runs` gives them): only the
    row groups that hold them are read, so the shards of a large file each read their own
    rows (:mod:`assay.evaluation.shards`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    start_row, stop_row = first * batch_size, stop * batch_size
    run = batch_size * max(1, READ_ROWS // batch_size)
    filesystem, base = storage.arrow_location(dataset_id, "")
    base = base.rstrip("/")
    with filesystem.open_input_file(f"{base}/{path}" if base else path) as handle:
        reader = pq.ParquetFile(handle, pre_buffer=False, buffer_size=READ_BUFFER)
        groups: list[int] = []
        position: int | None = None  # the first row of the first group read
        offset = 0
        for g in range(reader.metadata.num_row_groups):
            n = reader.metadata.row_group(g).num_rows
            if offset + n > start_row and offset < stop_row:
                groups.append(g)
                position = offset if position is None else position
            offset += n
        if position is None:
            return
        pieces: list[pyarrow.RecordBatch] = []
        held = 0
        batch = first
        chunks = reader.iter_batches(batch_size=run, row_groups=groups, use_threads=False)
        for chunk in chunks:
            low, high = max(start_row - position, 0), min(stop_row - position, chunk.num_rows)
            position += chunk.num_rows
            if high > low:
                pieces.append(chunk.slice(low, high - low))
                held += high - low
            while held >= run:
                rows = pa.concat_batches(pieces) if len(pieces) > 1 else pieces[0]
                yield batch, rows.slice(0, run)
                batch += run // batch_size
                pieces, held = ([rows.slice(run)] if rows.num_rows > run else []), held - run
        if held:
            yield batch, pa.concat_batches(pieces) if len(pieces) > 1 else pieces[0]


def read_columns(
    storage: ArtifactStorage, entity_id: str, paths: list[str], columns: list[str]
) -> Iterator[pyarrow.RecordBatch]:
    """``columns`` of the Parquet artifacts ``paths`` of an entity, batch by batch, one file
    at a time: unlike a ``pyarrow.dataset`` scan, nothing is kept per file (a dataset keeps
    every file's footer), so memory does not grow with the number of parts."""
    for path in paths:
        yield from _read_file(storage, entity_id, path, 1 << 16, columns)


def _read_file(
    storage: ArtifactStorage,
    entity_id: str,
    path: str,
    batch_size: int,
    columns: list[str] | None,
) -> Iterator[pyarrow.RecordBatch]:
    import pyarrow.parquet as pq

    filesystem, base = storage.arrow_location(entity_id, "")
    base = base.rstrip("/")
    with filesystem.open_input_file(f"{base}/{path}" if base else path) as handle:
        # Pages streamed through a small buffer, not whole column chunks read at once:
        # memory stays flat however large the file's row groups are.
        reader = pq.ParquetFile(handle, pre_buffer=False, buffer_size=READ_BUFFER)
        yield from reader.iter_batches(batch_size=batch_size, columns=columns, use_threads=False)


def output_batch(
    indices: pyarrow.Array,
    replication: str,
    responses: list[list[dict[str, Any]]],
    schema: pyarrow.Schema | None,
    columns: list[Columns] | None = None,
) -> pyarrow.RecordBatch:
    """The output rows of one part: ``_index_``, ``_replication_`` and the ``responses`` of
    each instance (``_response_index_`` numbering them in order).

    The columns are built directly — one Arrow array per response field, list offsets from
    the lengths — rather than from one dict per row: several times faster, with the same
    result (a field an item lacks is null, extra keys are ignored). The field values are
    those of ``columns`` (the same responses, taken apart as they were checked:
    :meth:`Responder.many`) where given, else read from the items. Without a schema, or
    where Arrow refuses a column, the rows go through ``RecordBatch.from_pylist`` as they
    always did.
    """
    import pyarrow as pa

    if schema is not None:
        try:
            return _columns(indices, replication, responses, schema, columns)
        except (pa.ArrowException, TypeError, ValueError, KeyError):
            pass
    records = [
        {
            "_index_": index,
            "_replication_": replication,
            "responses": [{**item, "_response_index_": k} for k, item in enumerate(items)],
        }
        for index, items in zip(indices.to_pylist(), responses, strict=True)
    ]
    return pa.RecordBatch.from_pylist(records, schema=schema)


def _columns(
    indices: pyarrow.Array,
    replication: str,
    responses: list[list[dict[str, Any]]],
    schema: pyarrow.Schema,
    runs: list[Columns] | None,
) -> pyarrow.RecordBatch:
    import pyarrow as pa

    n = len(responses)
    if len(indices) != n:
        raise ValueError(f"{len(indices)} indices for {n} instances")
    list_type = schema.field("responses").type
    if not (pa.types.is_list(list_type) or pa.types.is_large_list(list_type)):
        raise TypeError(f"responses is {list_type}, not a list")
    item_type = list_type.value_type
    items: list[dict[str, Any]] | None = None
    if runs is not None:
        lengths = list(itertools.chain.from_iterable(run.lengths for run in runs))
    else:
        lengths = list(map(len, responses))
    k = lengths[0] if lengths else 0
    same = lengths.count(k) == n  # the usual case: as many responses to every instance
    children = []
    for field in item_type:
        name = field.name
        if name == "_response_index_":
            children.append(
                _even_positions(n, k, field.type)
                if same
                else pa.array([i for m in lengths for i in range(m)], field.type)
            )
            continue
        if runs is not None and all(name in run.values for run in runs):
            values = list(itertools.chain.from_iterable(run.values[name] for run in runs))
        else:
            if items is None:
                items = list(itertools.chain.from_iterable(responses))
            try:
                values = list(map(operator.itemgetter(name), items))
            except KeyError:
                values = [item.get(name) for item in items]
        children.append(pa.array(values, type=field.type))
    struct = pa.StructArray.from_arrays(children, fields=list(item_type))
    large = pa.types.is_large_list(list_type)
    offsets = (
        _even_offsets(n, k, large)
        if same
        else pa.array([0, *itertools.accumulate(lengths)], pa.int64() if large else pa.int32())
    )
    array_type = pa.LargeListArray if large else pa.ListArray
    lists = array_type.from_arrays(offsets, struct, type=list_type)
    columns = {
        "_index_": indices
        if indices.type == schema.field("_index_").type
        else indices.cast(schema.field("_index_").type),
        "_replication_": pa.repeat(pa.scalar(replication, schema.field("_replication_").type), n),
        "responses": lists,
    }
    arrays = [columns[f.name] if f.name in columns else pa.nulls(n, f.type) for f in schema]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


#: The token counts an OpenAI-compatible service reports (``usage``), per output row.
USAGE_TYPE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")
#: The columns every output row has besides ``_index_``, ``_replication_`` and ``responses``.
REQUEST_COLUMNS = ("_attempts_", "_latency_", "_usage_")


def usage_type() -> pyarrow.DataType:
    import pyarrow as pa

    return pa.struct([pa.field(name, pa.int64()) for name in USAGE_TYPE_FIELDS])


def with_request_columns(output: pyarrow.RecordBatch, answers: Answers) -> pyarrow.RecordBatch:
    """``output`` with what it took to answer each row: ``_attempts_`` (requests sent for
    it; 0 for an answer from the response cache), ``_latency_`` (seconds the answering
    request took; null where none answered) and ``_usage_`` (the tokens the service reported
    for it, null where it reported none)."""
    import numpy as np
    import pyarrow as pa

    n = output.num_rows
    attempts = np.ones(n, np.int64)
    for i, count in answers.attempts.items():
        attempts[i] = count
    for i, outcome in answers.failed.items():
        attempts[i] = outcome.attempts
    latency = (
        pa.array(answers.latency, pa.float64(), from_pandas=True)
        if answers.latency is not None
        else pa.nulls(n, pa.float64())
    )
    kind = usage_type()
    if answers.usage:
        rows = [answers.usage.get(i) for i in range(n)]
        usage = pa.array(
            [
                None
                if row is None
                else {
                    k: v if isinstance(v, int) and not isinstance(v, bool) else None
                    for k, v in ((k, row.get(k)) for k in USAGE_TYPE_FIELDS)
                }
                for row in rows
            ],
            kind,
        )
    else:
        usage = pa.nulls(n, kind)
    return pa.RecordBatch.from_arrays(
        [*output.columns, pa.array(attempts, pa.int64()), latency, usage],
        names=[*output.schema.names, *REQUEST_COLUMNS],
    )


@functools.lru_cache(maxsize=8)
def _even_offsets(n: int, k: int, large: bool) -> pyarrow.Array:
    """The offsets of ``n`` lists of ``k`` items (every part of a run has the same)."""
    import pyarrow as pa

    return pa.array(
        range(0, (n + 1) * k, k) if k else [0] * (n + 1), pa.int64() if large else pa.int32()
    )


@functools.lru_cache(maxsize=8)
def _even_positions(n: int, k: int, type: pyarrow.DataType) -> pyarrow.Array:
    """``0 .. k-1``, ``n`` times: the ``_response_index_`` of ``n`` lists of ``k`` items."""
    import pyarrow as pa

    return pa.array(list(range(k)) * n, type)


def write_parquet(storage: ArtifactStorage, entity_id: str, path: str, table: Any) -> None:
    """Write ``table`` (a Table or RecordBatch) as one Parquet artifact, atomically."""
    storage.put_bytes(entity_id, path, _encode(table))


class PartWriter:
    """Writes an entity's parts: each encoded in the caller's thread, then stored — the
    atomic writes, with their fsyncs — by a few threads of their own while the caller goes
    on with the next part.

    The files of one :meth:`write` are stored in the order given, by one thread; different
    writes may be stored side by side (fsyncs are mostly waiting, and a disk takes several at
    once). The storing threads need the GIL only briefly between their system calls, and get
    it while the caller encodes (which releases it); threads that also built and encoded the
    parts would wait for the GIL at every step. At most ``in_flight`` writes wait to be
    stored. A failed store is raised by a later :meth:`write` or by :meth:`flush`, which
    waits until everything is stored. Use as a context manager.
    """

    def __init__(
        self, storage: ArtifactStorage, entity_id: str, *, threads: int = 2, in_flight: int = 16
    ) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._storage = storage
        self._entity_id = entity_id
        self._in_flight = in_flight
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="assay-part-writer")
        self._pending: deque[Future[None]] = deque()
        #: path → hex sha256 of each file stored, taken while it was written (provenance)
        self.digests: dict[str, str] = {}

    def write(self, *files: tuple[str, Any]) -> None:
        """Store each ``(path, table)`` (a Table or RecordBatch) as a Parquet artifact, in
        this order."""
        encoded = [(path, _encode(table)) for path, table in files]
        self._pending.append(self._pool.submit(self._store, encoded))
        while len(self._pending) > self._in_flight:
            self._pending.popleft().result()

    def _store(self, encoded: list[tuple[str, bytes]]) -> None:
        for path, data in encoded:
            info = self._storage.put_bytes(self._entity_id, path, data)
            if info.sha256:  # a storage that did not hash it: read once at the end instead
                self.digests[path] = info.sha256

    def flush(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self.flush()
        finally:
            self._pool.shutdown(wait=True)  # whatever happened, no store is left running


def _encode(table: Any) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    keys = [name for name in ("_index_", "_replication_") if name in table.schema.names]
    sink = pa.BufferOutputStream()  # written to without the GIL, unlike a Python file
    # A dictionary only for the replication (one value per part): for responses it cost
    # more than it saved — a quarter of the encoding time, and files ~20% larger, on text
    # and on classifier outputs alike. Statistics for the keys, which readers filter on.
    pq.write_table(
        table,
        sink,
        compression="zstd",
        use_dictionary=[name for name in keys if name == "_replication_"],
        write_statistics=keys,
    )
    data: bytes = sink.getvalue().to_pybytes()
    return data
