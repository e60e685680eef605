"""A pipeline's inference log: every inference, losslessly, in append-only Parquet segments.

```python
log = InferenceLog(Path("pipelines/p1"))
log.append(records)              # time, in.*, out.*, out_<name>.*, anomaly.*, metadata.*
log.append_failures(failed)      # the same, plus an ``error`` column
table, more = log.read(limit=100, valid=False)
log.export("logs", data_size_limit="10 MiB")
log.close()
```

Layout: ``<directory>/log/segment-<n>.parquet``, ``<directory>/failures/segment-<n>.parquet``
and ``<directory>/journal/`` (``_log_journal``). An appended record goes to a commit thread
that writes every record queued since its last commit to the journal and ``fsync``s once (a
*group commit*); full journals (``flush_rows`` records, or records older than
``flush_seconds``) become Parquet segments, written to a temporary file, fsynced and linked to
their final name (never over another), so a ``segment-*.parquet`` file is always whole and
several processes can append to one log. Every record gets ``seq``: its number in the log
(records and failures together, in commit order, across processes and restarts; stored after
``time``). Readers read the segments; ``read``, ``export`` and ``flush`` first turn the
journal into segments.

``durable=True`` (the default): ``append`` writes the records to the journal on the
caller's thread and returns once they are written — in the operating system's hands, so that
the death of the process (SIGKILL, a crash, the OOM killer) loses no record an ``append``
returned for; the commit thread ``fsync``s every write since its last at once (a group
commit), moments later, so a power loss or a kernel crash can lose those moments.
``durable="fsync"``: ``append`` returns only once its records are fsynced too (queued to the
commit thread, which writes and fsyncs every record queued since its last commit at once), so
a power loss loses nothing either; each call then waits for an ``fsync``. ``durable=False`` (or ``append(..., wait=False)``): ``append`` returns at once and a crash
loses what the commit thread had not yet written, the last few milliseconds; when more than
``queue_limit`` records wait for it, ``append`` refuses the records and counts them in
``counters()["dropped"]`` (with a warning the first time, and a line in the folder's
``drops.jsonl`` that every process's counters read) — records are never lost silently. A clean
exit (``close()``, or the end of the interpreter: ``close`` is registered with :mod:`atexit`)
loses nothing either way.

``archive`` (:mod:`._log_archive`; given where the platform's artifacts are in a bucket): each
segment, once whole, is copied to the bucket too, and readers read every segment there
(those other folders — other machines — wrote as well as this folder's); the journal stays
in ``directory``.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import threading
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from assay import errors
from assay.pipelines._log_archive import Archive
from assay.pipelines._log_export import (
    ExportResult,
    export_segments,
    in_order,
    parse_size,
    segment_tables,
)
from assay.pipelines._log_journal import journal_rows
from assay.pipelines._log_read import TIME, Query, columns_of, open_segments, shaped
from assay.pipelines._log_segments import SegmentWriter, dropped_records, segment_files
from assay.pipelines._records import Records
from assay.pipelines.inputs import bookkeeping as _bookkeeping

__all__ = [
    "Durability",
    "ExportResult",
    "InferenceLog",
    "check_durability",
    "open_shared",
    "parse_size",
    "release_shared",
]

_GROUPS = ("in", "out", "anomaly", "metadata")

#: How durable an appended record is when ``append`` returns: True, written (survives the
#: process's death); ``"fsync"``, fsynced too (survives a power loss); False, queued.
Durability = bool | Literal["fsync"]


def _close_at_exit(ref: weakref.ReferenceType[InferenceLog]) -> None:
    log = ref()
    if log is not None:
        log.close()


def _checked(table: pa.Table, what: str, directory: Path, *, error: bool) -> pa.Table:
    """``table`` with its ``time`` column as ``timestamp[us, UTC]``; refused if malformed."""
    if not isinstance(table, pa.Table):
        raise errors.ValidationError(
            f"inference log {str(directory)!r}: {what} takes a pyarrow.Table of flattened "
            f"records, got {type(table).__name__}",
            field="table",
        )
    names = table.schema.names
    if "time" not in names or not pa.types.is_timestamp(table.schema.field("time").type):
        found = str(table.schema.field("time").type) if "time" in names else "missing"
        raise errors.ValidationError(
            f"inference log {str(directory)!r}: {what}: the column 'time' is {found}, expected "
            "a timestamp (timestamp[us, tz=UTC]) — the time of each inference",
            field="time",
        )
    if error and ("error" not in names or not pa.types.is_string(table.schema.field("error").type)):
        raise errors.ValidationError(
            f"inference log {str(directory)!r}: {what}: failed records need a string column "
            f"'error' (their columns: {', '.join(names)})",
            field="error",
        )
    if "seq" in names:
        raise errors.ValidationError(
            f"inference log {str(directory)!r}: {what}: the column 'seq' is the log's own (it "
            "numbers the records as they are committed); leave it out",
            field="seq",
        )
    bad = [
        n
        for n in names
        if n not in ("time", "error") and not n.startswith(tuple(f"{g}." for g in _GROUPS))
        if not (n.startswith("out_") and "." in n)
    ]
    if bad:
        raise errors.ValidationError(
            f"inference log {str(directory)!r}: {what}: column {bad[0]!r} is not a log column; "
            "the columns are time, in.*, out.*, out_<name>.*, anomaly.*, metadata.*"
            + (", error" if error else ""),
            field=bad[0],
        )
    if table.schema.field("time").type != TIME:
        table = table.set_column(names.index("time"), "time", table.column("time").cast(TIME))
    return table


_ROWS: dict[Path, tuple[tuple[int, int], int]] = {}
_ROWS_LOCK = threading.Lock()


def _on_disk(paths: list[Path]) -> tuple[int, int]:
    """The records and the segments in the segment files ``paths`` (row counts from the
    Parquet footers, remembered per segment: a segment never changes)."""
    total = 0
    for path in paths:
        try:
            info = path.stat()
        except FileNotFoundError:  # pragma: no cover - segments are never removed
            continue
        stamp = (info.st_size, info.st_mtime_ns)
        with _ROWS_LOCK:
            known = _ROWS.get(path)
        if known is None or known[0] != stamp:
            known = (stamp, pq.read_metadata(path).num_rows)
            with _ROWS_LOCK:
                _ROWS[path] = known
        total += known[1]
    return total, len(paths)


_SHARED: dict[Path, tuple[InferenceLog, int]] = {}
_SHARED_LOCK = threading.Lock()


def open_shared(directory: Path, *, archive: Archive | None = None) -> InferenceLog:
    """The one open :class:`InferenceLog` of ``directory`` in this process, shared by every
    user (a pipeline's replicas, its ``platform.pipelines`` object); give it back with
    :func:`release_shared`. Other processes append to the same folder with logs of their own
    (segment names never clash). ``archive``: as :class:`InferenceLog` takes it."""
    key = Path(directory).resolve()
    with _SHARED_LOCK:
        log, users = _SHARED.get(key, (None, 0))
        if log is None or log._closed:
            log, users = InferenceLog(key, archive=archive), 0
        _SHARED[key] = (log, users + 1)
        return log


def release_shared(log: InferenceLog) -> None:
    """One user of a log from :func:`open_shared` is done; the last one closes it (writing
    everything queued)."""
    with _SHARED_LOCK:
        log_, users = _SHARED.get(log.directory.resolve(), (None, 0))
        if log_ is not log:
            return
        if users > 1:
            _SHARED[log.directory.resolve()] = (log, users - 1)
            return
        del _SHARED[log.directory.resolve()]
    log.close()


class InferenceLog:
    """The inference log of one pipeline, in ``directory``; see the module's docstring."""

    def __init__(
        self,
        directory: Path,
        *,
        durable: Durability = True,
        flush_rows: int = 10_000,
        flush_seconds: float = 1.0,
        queue_limit: int = 1_000_000,
        archive: Archive | None = None,
    ) -> None:
        check_durability(durable, "durable")
        for name, value, low in (
            ("flush_rows", flush_rows, 1),
            ("flush_seconds", flush_seconds, 0),
            ("queue_limit", queue_limit, 1),
        ):
            if not value >= low:
                raise errors.ValidationError(
                    f"inference log: {name} must be at least {low}, got {value!r}", field=name
                )
        self.directory = Path(directory)
        self.durable = durable
        self._writer = SegmentWriter(
            self.directory,
            flush_rows=flush_rows,
            flush_seconds=flush_seconds,
            queue_limit=queue_limit,
            archive=archive,
        )
        self.archive = archive
        self._closed = False
        self._at_exit = lambda ref=weakref.ref(self): _close_at_exit(ref)
        atexit.register(self._at_exit)

    # -- writing ------------------------------------------------------------------------------

    def append(self, table: pa.Table | Records, *, wait: Durability | None = None) -> bool:
        """Log successful inferences (flattened records). ``wait`` (default: the log's
        ``durable``): return once they are written (True) or fsynced (``"fsync"``). Without waiting, False when the queue is
        full and the records were dropped (counted in ``counters()["dropped"]``)."""
        data = (
            table
            if isinstance(table, Records)
            else _checked(table, "append", self.directory, error=False)
        )
        return self._put("log", data, wait)

    def append_failures(self, table: pa.Table | Records, *, wait: Durability | None = None) -> bool:
        """Log failed inferences (flattened records with an ``error`` column); as
        :meth:`append`."""
        data = (
            table
            if isinstance(table, Records)
            else _checked(table, "append_failures", self.directory, error=True)
        )
        return self._put("failures", data, wait)

    def append_inference(
        self,
        records: Records | None,
        failures: Records | None,
        *,
        wait: Durability | None = None,
    ) -> None:
        """The records and the failure records of one call (a pipeline's, trusted: not
        checked), in one commit; ``wait`` as in :meth:`append`, for both."""
        wait = self.durable if wait is None else wait
        if wait is True:
            parts = (("failures", failures), ("log", records))
            self._writer.write([(kind, data) for kind, data in parts if data is not None])
            return
        items = [
            self._writer.put(kind, data, wait=bool(wait))
            for kind, data in (("failures", failures), ("log", records))
            if data is not None
        ]
        for item in items:
            if wait and item is not None:
                self._writer.wait(item)

    def _put(self, kind: str, data: pa.Table | Records, wait: Durability | None) -> bool:
        wait = self.durable if wait is None else wait
        if wait is True:
            self._writer.write([(kind, data)])
            return True
        item = self._writer.put(kind, data, wait=bool(wait))
        if item is not None and wait:
            self._writer.wait(item)
        return item is not None or data.num_rows == 0

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every record appended before the call is durable, then turn the journal
        into segments (so that readers of the segments, in any process, see them)."""
        self._writer.flush(timeout)

    def close(self) -> None:
        """Write everything queued, then stop the writer; idempotent. Reading still works."""
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        atexit.unregister(self._at_exit)

    def __enter__(self) -> InferenceLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def counters(self) -> dict[str, int]:
        """What the log holds, whoever wrote it (this process or another): ``written`` and
        ``failed``, durable records of the log and of the failure log (in segments or still
        in the journal); ``last_seq``, the ``seq`` of the last durable record (-1: none) —
        with nothing lost, ``written + failed == last_seq + 1`` (for a log that numbered its
        records from the start), so a loss shows as a gap; ``journaled``, durable records not
        yet in segments; ``segments``, the segment files; ``dropped``, records any writer
        refused because its queue was full (each drop is noted in the folder's
        ``drops.jsonl``); ``queued``, records this process accepted and has yet to write;
        ``unsynced``, records this process wrote and has yet to fsync; with an archive (a
        bucket), ``unshipped``, segments of this folder not yet copied there."""
        journal = self._writer.journal
        with journal.compacting(blocking=True) if not self._closed else contextlib.nullcontext():
            written, log_segments = _on_disk(self._segments(False))
            failed, failure_segments = _on_disk(self._segments(True))
            if self._closed:
                following, rows = journal_rows(journal.folder, after=journal.after_segments)
            else:
                following, rows = journal.state()
        return {
            "written": written + rows[0],
            "failed": failed + rows[1],
            "last_seq": following - 1,
            "journaled": rows[0] + rows[1],
            "dropped": dropped_records(self.directory),
            "segments": log_segments + failure_segments,
            **{k: v for k, v in self._writer.counters().items() if k in ("queued", "unsynced")},
            **({"unshipped": self._writer.unshipped()} if self.archive is not None else {}),
        }

    # -- reading ------------------------------------------------------------------------------

    def _folder(self, failures: bool) -> Path:
        return self.directory / ("failures" if failures else "log")

    def _segments(self, failures: bool) -> list[Path]:
        """The segment files of the log (or the failure log): this folder's, then those
        other folders put in the bucket (with an archive)."""
        local = segment_files(self._folder(failures))
        if self.archive is None:
            return local
        return local + self.archive.others("failures" if failures else "log")

    def _export_logs(
        self,
        failures: bool,
        valid: bool | None,
        start: int | None,
        start_failures: int | None,
    ) -> list[tuple[str, Sequence[Path], int | None]]:
        """The logs an export reads, as ``_log_export.segment_tables`` takes them: the log
        (or the failure log), then, for ``valid=False``, the failure log too."""
        for name, value in (("start_sequence", start), ("start_failure_sequence", start_failures)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise errors.ValidationError(
                    f"inference log: {name} must be a sequence number (an int, from an "
                    f"export's resume), got {value!r}",
                    field=name,
                )
        logs: list[tuple[str, Sequence[Path], int | None]] = [
            ("start_sequence", in_order(self._segments(failures)), start)
        ]
        if valid is False and not failures:
            logs.append(("start_failure_sequence", in_order(self._segments(True)), start_failures))
        elif start_failures is not None:
            raise errors.ValidationError(
                "inference log: start_failure_sequence goes with valid=False (which adds the "
                "failure log to the export); with failures=True, give start_sequence",
                field="start_failure_sequence",
            )
        return logs

    def read(
        self,
        limit: int | None = 100,
        start_datetime: dt.datetime | None = None,
        end_datetime: dt.datetime | None = None,
        valid: bool | None = None,
        dataset: Sequence[str] | str | None = None,
        dataset_exclude: Sequence[str] | str | None = None,
        dataset_separator: Sequence[str] | str | None = ".",
        failures: bool = False,
    ) -> tuple[pa.Table, bool]:
        """Logged records and whether more match than were returned.

        Without a time window: the newest ``limit``, newest first. With ``start_datetime``
        and/or ``end_datetime`` (the window ``[start, end)``; naive datetimes are UTC): the
        first ``limit`` of the window, oldest first. ``limit=None``: all. ``valid``: True for
        records with ``anomaly.count == 0`` (or no validations), False for the others: those
        with ``anomaly.count > 0`` and the failed inferences (from the failure log, with their
        ``error``). ``dataset``: the column groups to return (``_log_read.columns_of``: None or
        ``"*"`` is ``time``, ``in``, ``out``, ``check_failures`` (``anomaly.*``) and
        ``error``; add ``"metadata"`` for it); ``dataset_exclude``: groups or names to leave
        out; ``dataset_separator``: ``"."`` flattened names, another string flattened names
        joined by it, None nested columns (structs). ``failures``: read only the failure log.
        Everything appended before the call is written first.
        """
        if limit is not None and (isinstance(limit, bool) or limit < 0):
            raise errors.ValidationError(
                f"inference log: limit must be a non-negative int or None, got {limit!r}",
                field="limit",
            )
        query = Query(start_datetime, end_datetime, valid)
        if not self._closed:
            self.flush()
        files = self._segments(failures)
        if valid is False and not failures:  # the failed inferences are not valid either
            files += self._segments(True)
        data = open_segments(self._folder(failures), files)
        if data is None:
            return shaped(pa.table({"time": pa.array([], TIME)}), dataset_separator), False
        columns = columns_of(data.schema.names, dataset, dataset_exclude, dataset_separator)
        table, more = query.read(data, columns, limit)
        return shaped(table, dataset_separator), more

    def export(
        self,
        directory: Path | str = "logs",
        file_prefix: str | None = None,
        data_size_limit: str | int = "100 MiB",
        arrow: bool = False,
        start_datetime: dt.datetime | None = None,
        end_datetime: dt.datetime | None = None,
        valid: bool | None = None,
        dataset: Sequence[str] | str | None = None,
        dataset_exclude: Sequence[str] | str | None = None,
        dataset_separator: Sequence[str] | str | None = ".",
        limit: int | None = None,
        failures: bool = False,
        start_sequence: int | None = None,
        start_failure_sequence: int | None = None,
    ) -> ExportResult:
        """Write logged records to ``directory`` as JSON Lines (``<prefix>-<n>.jsonl``, one
        record per line with the log's keys, times in ISO 8601) or Arrow IPC files
        (``<prefix>-<n>.arrow``), a new file at each change of schema, in the order they were
        logged (their sequence numbers: a record's position in its log). Stops before the
        files in ``directory`` — those already there included — would pass
        ``data_size_limit`` ("100 MiB", "1GB", or bytes), or after ``limit`` records; the
        result (and a log message) says how far it got and, in ``resume``, the arguments that
        go on from there: ``start_sequence`` (the first record not exported) and, when
        ``valid=False`` adds the failure log (exported after the log's records),
        ``start_failure_sequence``. Selection as in :meth:`read`."""
        size = parse_size(data_size_limit)
        query = Query(start_datetime, end_datetime, valid)
        if not self._closed:
            self.flush()
        return export_segments(
            self._export_logs(failures, valid, start_sequence, start_failure_sequence),
            Path(directory),
            prefix=file_prefix or self.directory.name,
            size_limit=size,
            arrow=arrow,
            query=query,
            dataset=dataset,
            dataset_exclude=dataset_exclude,
            dataset_separator=dataset_separator,
            limit=limit,
        )

    def export_tables(
        self,
        start_datetime: dt.datetime | None = None,
        end_datetime: dt.datetime | None = None,
        valid: bool | None = None,
        dataset: Sequence[str] | str | None = None,
        dataset_exclude: Sequence[str] | str | None = None,
        dataset_separator: Sequence[str] | str | None = ".",
        limit: int | None = None,
        failures: bool = False,
        start_sequence: int | None = None,
        start_failure_sequence: int | None = None,
    ) -> Iterator[pa.Table]:
        """The tables :meth:`export` writes, in its order: one per segment (an empty one for a
        segment with nothing selected), until ``limit`` records, each with its records'
        sequence numbers (``_log_export.SEQUENCE``). A server sends these to a client, whose
        export writes the same files (``_log_export.write_tables``)."""
        query = Query(start_datetime, end_datetime, valid)
        if not self._closed:
            self.flush()
        return segment_tables(
            self._export_logs(failures, valid, start_sequence, start_failure_sequence),
            query=query,
            dataset=dataset,
            dataset_exclude=dataset_exclude,
            dataset_separator=dataset_separator,
            limit=limit,
        )

    def to_dataset_files(
        self,
        directory: Path | str,
        start_datetime: dt.datetime | None = None,
        end_datetime: dt.datetime | None = None,
        *,
        valid: bool | None = None,
    ) -> tuple[Path, Path]:
        """Write the records of ``[start, end)`` as the files of a Dataset and of an
        Evaluation's output; returns ``(inputs, outputs)``, two folders.

        ``inputs/part-0.parquet``: ``_index_`` (0, 1, … in time order) and the ``in.*``
        fields without their prefix — for ``datasets.create_arrow_dataset`` and
        ``upload_arrow_dataset``. ``outputs/part-0.parquet``: ``_index_``, ``_replication_``
        (``"0"``) and ``responses``, one response per record holding ``_response_index_`` (0)
        and the ``out.*`` fields without their prefix — for ``evaluations.import_data``.
        """
        query = Query(start_datetime, end_datetime, valid)
        query.ranged = True
        if not self._closed:
            self.flush()
        target = Path(directory)
        data = open_segments(self._folder(False), self._segments(False))
        names = data.schema.names if data is not None else []
        # the platform's own columns an evaluation's requests carried (in._index_): the new
        # Dataset numbers its instances itself
        inputs = [n for n in names if n.startswith("in.") and not _bookkeeping(n[3:])]
        outputs = [n for n in names if n.startswith("out.")]
        if data is None or not inputs or not outputs:
            raise errors.ValidationError(
                f"inference log {str(self.directory)!r}: no logged records with in.* and out.* "
                "columns to make a Dataset from",
                field="start_datetime",
            )
        table, _ = query.read(data, ["time", *inputs, *outputs], None)
        if table.num_rows == 0:
            raise errors.ValidationError(
                f"inference log {str(self.directory)!r}: no record between {start_datetime} "
                f"and {end_datetime}; widen the window",
                field="start_datetime",
            )
        n = table.num_rows
        index = pa.array(np.arange(n, dtype=np.int64))
        rows = pa.table(
            {"_index_": index, **{c[3:]: table.column(c) for c in inputs}}
        ).combine_chunks()
        fields = pa.StructArray.from_arrays(
            [pa.array(np.zeros(n, dtype=np.int64))]
            + [table.column(c).combine_chunks() for c in outputs],
            names=["_response_index_", *(c[4:] for c in outputs)],
        )
        responses = pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32)), fields)
        answers = pa.table(
            {
                "_index_": index,
                "_replication_": pc.cast(pa.array(np.zeros(n, dtype=np.int64)), pa.string()),
                "responses": responses,
            }
        )
        folders = (target / "inputs", target / "outputs")
        for folder, part in zip(folders, (rows, answers), strict=True):
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(part, folder / "part-0.parquet")
        return folders


def check_durability(value: object, field: str) -> None:
    """Refuse a durability that is not True, False or ``"fsync"``."""
    if value is not True and value is not False and value != "fsync":
        raise errors.ValidationError(
            f'inference log: {field} must be True (written before answering), "fsync" '
            f"(fsynced before answering) or False (queued), got {value!r}",
            field=field,
            value=value,
        )
