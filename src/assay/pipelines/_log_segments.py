"""The writing side of the inference log: a queue drained by a commit thread into the log's
journal (``_log_journal``), one group commit at a time, and a compaction thread that turns full
journals into append-only Parquet segments, each written atomically (temporary file, fsync,
hard link to its final name, fsync of the folder), so that a file named ``segment-*.parquet``
is always whole.

The commit thread takes every record queued since its last commit, builds them into Arrow
(merging the calls that arrived together), appends them to the journal with one ``write`` and
makes them durable with one ``fsync``, then releases every caller waiting for them. A caller
that waits (the default of a durable log) is answered only once its records are durable; one
that does not wait may lose, in a crash, what the commit thread had not yet written — the last
few milliseconds. Records get their sequence number (``seq``) as they are committed.

Several writers — InferenceLog objects in one process, or processes — may append to one folder
at once: they share its journal (under a lock) and its segments. Each writes its own temporary
segment file (``.segment-<pid>-<random>.tmp``), and publishes it with :func:`os.link`, which is
atomic and, unlike :func:`os.replace`, refuses a name that exists: a writer that loses the race
for a segment number rescans the folder and takes the next free one, so no segment is ever
overwritten. A starting writer removes only the temporaries of processes that are gone. One
writer at a time compacts the full journals, oldest first, so segments receive the records in
``seq`` order; readers order records by their ``time`` column.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from assay import errors
from assay.pipelines._log_archive import Archive
from assay.pipelines._log_journal import JSON, Entry, Journal, read_entries, sealed_files
from assay.pipelines._records import Records, concat, from_json, to_json

__all__ = ["DROPS_FILE", "KINDS", "SegmentWriter", "dropped_records", "segment_files"]

logger = logging.getLogger("assay.pipelines.log")

#: The two logs: successful inferences, and failed ones (with their ``error``).
KINDS = ("log", "failures")

_SEGMENT = re.compile(r"^segment-(\d+)\.parquet$")


def segment_files(folder: Path) -> list[Path]:
    """The whole segments in ``folder``, oldest first (temporary files are left out)."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _SEGMENT.match(p.name))]
    return [p for _, p in sorted(found)]


def _sequence(path: Path) -> int:
    match = _SEGMENT.match(path.name)
    return int(match.group(1)) if match else -1


def _next_free(folder: Path) -> int:
    """The number after the highest segment in ``folder``."""
    existing = segment_files(folder)
    return _sequence(existing[-1]) + 1 if existing else 0


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (on this machine); unsure counts as alive."""
    if pid <= 0:  # 0 and negative numbers name process groups, not a process
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except OSError:  # PermissionError: it exists, under another user
        return True
    return True


def _remove_stale_temporaries(folder: Path, prefix: str = ".segment") -> None:
    """Remove the temporary files that no live writer will finish: those of processes that are
    gone (a write a crash interrupted), and any without a pid in their name."""
    pattern = re.compile(rf"^{re.escape(prefix)}-(\d+)-(\w+)\.tmp$")
    for path in folder.glob(f"{prefix}-*.tmp"):
        match = pattern.match(path.name)
        if match is None or not _alive(int(match.group(1))):
            path.unlink(missing_ok=True)


#: The file where every writer notes the records it dropped (one JSON line per drop), so
#: that the counters of any process see them: a drop is never silent, wherever it happened.
DROPS_FILE = "drops.jsonl"


def _record_drop(directory: Path, kind: str, rows: int) -> None:
    line = json.dumps(
        {"time": datetime.now(UTC).isoformat(), "pid": os.getpid(), "log": kind, "records": rows}
    )
    try:  # one short append: whole lines even with several writers (O_APPEND)
        with open(directory / DROPS_FILE, "a", encoding="utf-8") as file:
            file.write(line + "\n")
    except OSError:  # the disk refuses even this: the process's counter and warning remain
        logger.exception("inference log %s: could not record %d dropped records", directory, rows)


def dropped_records(directory: Path) -> int:
    """Records dropped by every writer of the log in ``directory`` (from its drops file)."""
    try:
        text = (directory / DROPS_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return 0
    total = 0
    for line in text.splitlines():
        try:
            total += int(json.loads(line)["records"])
        except (ValueError, KeyError, TypeError):  # a line a crash cut short
            continue
    return total


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_SEQ_RANGES: dict[Path, tuple[tuple[int, int], tuple[int, int] | None]] = {}
_SEQ_LOCK = threading.Lock()


def seq_range(path: Path) -> tuple[int, int] | None:
    """The smallest and largest ``seq`` of a segment (from its footer's statistics; None for
    a segment without the column), remembered per segment: a segment never changes."""
    info = path.stat()
    stamp = (info.st_size, info.st_mtime_ns)
    with _SEQ_LOCK:
        known = _SEQ_RANGES.get(path)
    if known is not None and known[0] == stamp:
        return known[1]
    meta = pq.read_metadata(path)
    found: tuple[int, int] | None = None
    leaf = next((i for i in range(meta.num_columns) if meta.schema.column(i).path == "seq"), None)
    if leaf is not None:
        lows, highs = [], []
        for group in range(meta.num_row_groups):
            stats = meta.row_group(group).column(leaf).statistics
            if stats is not None and stats.has_min_max:
                lows.append(int(stats.min))
                highs.append(int(stats.max))
        if highs:
            found = (min(lows), max(highs))
    with _SEQ_LOCK:
        _SEQ_RANGES[path] = (stamp, found)
    return found


def after_segments(directory: Path, others: list[Path] | None = None) -> int:
    """The sequence number after the newest record in the segments of both logs of
    ``directory``, and in the segment files ``others`` (0: none)."""
    highest = -1
    paths = [path for kind in KINDS for path in segment_files(directory / kind)]
    for path in paths + list(others or ()):
        try:
            found = seq_range(path)
        except FileNotFoundError:  # pragma: no cover - segments are never removed
            continue
        if found is not None:
            highest = max(highest, found[1])
    return highest + 1


def _payload(table: pa.Table) -> pa.Buffer:
    """``table`` as an Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _with_seq(table: pa.Table, entries: list[Entry]) -> pa.Table:
    """``table`` (the records of ``entries``, in order) with its ``seq`` after ``time``."""
    seq = np.concatenate([np.arange(e.first, e.first + e.rows, dtype=np.int64) for e in entries])
    position = 1 if table.num_columns and table.column_names[0] == "time" else 0
    return table.add_column(position, "seq", pa.array(seq))


#: The fsyncs of written records (``durable=True``) are at least this far apart: the
#: records written meanwhile share the next one. What a power loss can lose is at most this
#: long plus an fsync; a process's death loses nothing.
SYNC_SECONDS = 0.005

#: Up to this many records, a commit writes plain values as JSON rather than a table.
JSON_ROWS = 256


def _as_json(run: list[_Item]) -> bytes | None:
    """The JSON payload of a run of a few column-built records of plain values, or None."""
    if sum(item.rows for item in run) > JSON_ROWS:
        return None
    parts = [item.data for item in run if isinstance(item.data, Records)]
    if len(parts) < len(run) or any(p.built() for p in parts):
        return None
    return to_json(concat(parts))


def _decoded(entry: Entry) -> tuple[Any, pa.Table | Records]:
    """An entry's records, and their shape: entries of one shape are built together."""
    if entry.form == JSON:
        records = from_json(entry.payload)
        return ("json", entry.kind, tuple(records.names)), records
    table = pa.ipc.open_stream(pa.py_buffer(entry.payload)).read_all()
    return ("arrow", entry.kind, table.schema), table


@dataclass(eq=False)
class _Item:
    kind: str
    data: pa.Table | Records
    rows: int
    done: bool = False
    error: BaseException | None = None

    def shape(self) -> tuple[Any, ...]:
        """Items of one shape are built into one table."""
        data = self.data
        if isinstance(data, Records) and not data.built():
            return (self.kind, tuple(data.names))
        table = data.table() if isinstance(data, Records) else data
        return (self.kind, table.schema)

    def table(self) -> pa.Table:
        return self.data.table() if isinstance(self.data, Records) else self.data


class SegmentWriter:
    """The queue of records, the thread that commits them to the journal and the thread
    that turns full journals into segments."""

    def __init__(
        self,
        directory: Path,
        *,
        flush_rows: int,
        flush_seconds: float,
        queue_limit: int,
        archive: Archive | None = None,
    ) -> None:
        self.directory = directory
        self.archive = archive
        self._ship_wanted = archive is not None  # segments a crash or an outage left behind
        self._ship_lock = threading.Lock()
        self._published = 0  # segments this writer published (a new one is to be shipped)
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.queue_limit = queue_limit
        self._folders = {kind: directory / kind for kind in KINDS}
        self._next: dict[str, int] = {}
        # the segments other folders (machines) put in the bucket: this folder's records are
        # numbered after theirs (read once: a bucket that fails later does not stop writes)
        archived = [p for kind in KINDS for p in archive.others(kind)] if archive else []
        for kind, folder in self._folders.items():
            folder.mkdir(parents=True, exist_ok=True)
            _remove_stale_temporaries(folder)
            self._next[kind] = _next_free(folder)  # a guess: other writers may take it first
        self.journal = Journal(
            directory,
            seal_rows=flush_rows,
            seal_seconds=flush_seconds,
            after_segments=lambda: after_segments(directory, archived),
        )
        _remove_stale_temporaries(self.journal.folder, ".current")
        self._cond = threading.Condition()
        self._queue: deque[_Item] = deque()
        self._pending = 0  # records accepted and not yet durable
        self._last: _Item | None = None  # the newest item accepted
        self._closing = False
        self._compact_wanted = True  # full journals a crash may have left
        self._error: BaseException | None = None
        self._counters = {"written": 0, "failed": 0, "dropped": 0, "segments": 0}
        self._unsynced: list[int] = []  # descriptors of journal files written, not fsynced
        self._unsynced_rows = 0
        self._synced_at = 0.0  # when the last fsync of written records began
        name = directory.name
        self._committer = threading.Thread(
            target=self._commits, name=f"assay-log-commit:{name}", daemon=True
        )
        self._compactor = threading.Thread(
            target=self._compactions, name=f"assay-log-compact:{name}", daemon=True
        )
        self._committer.start()
        self._compactor.start()

    # -- the caller's side --------------------------------------------------------------------

    def put(self, kind: str, data: pa.Table | Records, *, wait: bool) -> _Item | None:
        """Queue ``data`` for the journal: the item to :meth:`wait` for. A caller that will
        wait is never refused; one that will not gets None (and the records count as
        dropped) when more than ``queue_limit`` records wait already."""
        rows = data.num_rows
        if rows == 0:
            return None
        with self._cond:
            if self._closing:
                raise errors.ConflictError(
                    f"inference log {str(self.directory)!r} is closed; open a new InferenceLog "
                    "on the folder to append to it"
                )
            if not wait and self._pending + rows > self.queue_limit:
                first = self._counters["dropped"] == 0
                self._counters["dropped"] += rows
                if first:
                    logger.warning(
                        "inference log %s: queue full (%d records pending, limit %d); dropping "
                        "%d records — see counters()['dropped'] for the running total, and raise "
                        "queue_limit or lower flush_seconds",
                        self.directory,
                        self._pending,
                        self.queue_limit,
                        rows,
                    )
                _record_drop(self.directory, kind, rows)
                return None
            item = _Item(kind, data, rows)
            self._queue.append(item)
            self._pending += rows
            self._last = item
            self._cond.notify_all()
        return item

    def write(self, parts: list[tuple[str, pa.Table | Records]]) -> None:
        """Write ``parts`` (kind, records) to the journal on the caller's thread, in one
        commit, and return: the records are then in the operating system's hands, so that
        the death of this process (SIGKILL, a crash) cannot lose them; the commit thread
        ``fsync``s them within moments, one ``fsync`` for every write since its last (a
        power loss can lose those moments). Raises what kept them from the journal."""
        items = [_Item(kind, data, data.num_rows) for kind, data in parts if data.num_rows]
        if not items:
            return
        with self._cond:
            if self._closing:
                raise errors.ConflictError(
                    f"inference log {str(self.directory)!r} is closed; open a new InferenceLog "
                    "on the folder to append to it"
                )
            self._pending += sum(item.rows for item in items)
        entries = self._entries(items)
        fd, sealed = -1, False
        try:
            if entries:
                fd, sealed = self.journal.commit(entries)
        except BaseException as exc:
            with self._cond:
                self._pending -= sum(item.rows for item in items if not item.done)
            if isinstance(exc, Exception):
                raise errors.PlatformError(
                    f"inference log {str(self.directory)!r}: writing the journal failed "
                    f"({type(exc).__name__}: {exc}); the records were not logged, so the "
                    "inference is not answered (free space or fix the folder's permissions)"
                ) from exc
            raise
        with self._cond:
            written = sum(item.rows for item in items if not item.done)
            self._pending -= written
            if fd >= 0:
                self._unsynced.append(fd)
                self._unsynced_rows += written
                if sealed:
                    self._compact_wanted = True
                if sealed or len(self._unsynced) == 1:  # else the commit thread knows
                    self._cond.notify_all()
        for item in items:
            if item.error is not None:
                raise item.error

    def _sync(self) -> None:
        """``fsync`` what :meth:`write` wrote since the last time: once per journal file."""
        with self._cond:
            self._synced_at = time.monotonic()
            fds, self._unsynced = self._unsynced, []
            rows, self._unsynced_rows = self._unsynced_rows, 0
        if not fds:
            return
        try:
            synced: set[int] = set()
            for fd in reversed(fds):  # the newest descriptor of each file covers the others
                inode = os.fstat(fd).st_ino
                if inode not in synced:
                    os.fsync(fd)
                    synced.add(inode)
        except BaseException:
            with self._cond:  # retried by the next sync
                self._unsynced[:0] = fds
                self._unsynced_rows += rows
            raise
        for fd in fds:
            os.close(fd)

    def wait(self, item: _Item, timeout: float | None = None) -> None:
        """Return once ``item`` is durable; raise what kept it from the journal (the records
        of an item that cannot be built), or a PlatformError while the journal cannot be
        written (the item stays queued, and the commit thread retries)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not item.done:
                if self._error is not None:
                    raise errors.PlatformError(
                        f"inference log {str(self.directory)!r}: writing the journal failed "
                        f"({self._error}); the records are not durable yet (the writer retries)"
                    )
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise errors.WaitTimeoutError(
                        f"inference log {str(self.directory)!r}: {self._pending} records still "
                        f"not durable after {timeout} s"
                    )
                self._cond.wait(0.5 if left is None else min(left, 0.5))
        if item.error is not None:
            raise item.error

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every record accepted before the call is durable, then turn the
        journal — every writer's records in it — into segments."""
        with self._cond:
            last = self._last
        if last is not None:
            self.wait(last, timeout)
        self._sync()
        self.journal.seal(force=True)
        try:
            self._compact(blocking=True)
        except Exception as exc:
            raise errors.PlatformError(
                f"inference log {str(self.directory)!r}: writing a segment failed ({exc}); the "
                "records stay in the journal and the writer retries"
            ) from exc
        self._ship()

    def close(self) -> None:
        """Commit everything queued, turn the journal into segments, stop; idempotent."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
        for thread in (self._committer, self._compactor):
            if threading.current_thread() is not thread:
                thread.join()
        try:
            self._sync()
            self.journal.seal(force=True)
            self._compact(blocking=True)
        except Exception:
            logger.exception(
                "inference log %s: closing with records left in the journal (they become "
                "segments when the log is opened again)",
                self.directory,
            )
        self._ship(force=True)
        self.journal.close()

    def unshipped(self) -> int:
        """Segments of this folder not yet copied to the bucket (0 without an archive)."""
        if self.archive is None:
            return 0
        return sum(len(self.archive.pending(k, segment_files(f))) for k, f in self._folders.items())

    def _ship(self, *, force: bool = False) -> None:
        """Copy the new segments to the bucket, if the log has one (a failure is logged and
        tried again later: the segments stay in the folder meanwhile)."""
        archive = self.archive
        if archive is None or not (self._ship_wanted or force):
            return
        with self._ship_lock:
            written = self._published
            local = {kind: segment_files(folder) for kind, folder in self._folders.items()}
            archive.ship(local, force=force)
            left = any(archive.pending(kind, paths) for kind, paths in local.items())
            self._ship_wanted = left or self._published != written

    def counters(self) -> dict[str, int]:
        """This writer's ``written``, ``failed`` (records it put in segments), ``dropped``
        (refused because the queue was full), ``segments``, and ``queued`` (records accepted
        and not yet durable)."""
        with self._cond:
            return {**self._counters, "queued": self._pending, "unsynced": self._unsynced_rows}

    # -- the commit thread --------------------------------------------------------------------

    def _commits(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._unsynced:
                    if self._closing:
                        return
                    self._cond.wait()
                due = self._synced_at + SYNC_SECONDS
                wait = not self._queue and not self._closing and time.monotonic() < due
            if wait:  # written records only: the writes of the next moments join the fsync
                # a plain sleep: no writer's notice wakes this thread to contend for the GIL
                time.sleep(max(due - time.monotonic(), 0.0))
            with self._cond:
                items = list(self._queue)
                self._queue.clear()
            if self._unsynced:
                try:
                    self._sync()
                except BaseException:
                    logger.exception(
                        "inference log %s: fsync of the journal failed", self.directory
                    )
                    with self._cond:
                        self._cond.wait(0.05)
            if not items:
                continue
            sealed = False
            try:
                entries = self._entries(items)
                if entries:
                    fd, sealed = self.journal.commit(entries)
                    try:
                        os.fsync(fd)  # one fsync for every record of the commit
                    finally:
                        os.close(fd)
            except BaseException as exc:  # keep them queued, retry after a pause
                logger.exception("inference log %s: writing the journal failed", self.directory)
                with self._cond:
                    self._error = exc
                    self._queue.extendleft(reversed([i for i in items if not i.done]))
                    self._cond.notify_all()
                    if self._closing:
                        logger.error(
                            "inference log %s: closing with %d records not durable",
                            self.directory,
                            self._pending,
                        )
                        return
                    self._cond.wait(max(min(self.flush_seconds, 1.0), 0.05))
                continue
            with self._cond:
                self._error = None
                for item in items:
                    if not item.done:
                        item.done = True
                        self._pending -= item.rows
                if sealed:
                    self._compact_wanted = True
                self._cond.notify_all()

    def _entries(self, items: list[_Item]) -> list[Entry]:
        """The journal entries of ``items``: one per run of items of one log and shape, built
        at once. An item whose records cannot be built is not written: it gets the error
        (its caller raises it) and its records count as dropped."""
        runs: list[tuple[tuple[Any, ...], list[_Item]]] = []
        for item in items:
            if item.done:  # refused by an earlier attempt
                continue
            shape = item.shape()
            if runs and runs[-1][0] == shape:
                runs[-1][1].append(item)
            else:
                runs.append((shape, [item]))
        entries = []
        for _, run in runs:
            kind = KINDS.index(run[0].kind)
            text = _as_json(run)  # a few records of plain values: cheaper than a table
            if text is not None:
                entries.append(Entry(kind, sum(i.rows for i in run), text, form=JSON))
                continue
            try:
                tables = [self._build(run)]
            except Exception:
                tables = []
                for item in run:  # find the one that cannot be built
                    try:
                        tables.append(self._build([item]))
                    except Exception as exc:
                        self._refuse(item, exc)
            for table in tables:
                entries.append(Entry(kind, table.num_rows, _payload(table)))
        return entries

    @staticmethod
    def _build(run: list[_Item]) -> pa.Table:
        first = run[0].data
        if isinstance(first, Records) and not first.built():
            return concat([item.data for item in run if isinstance(item.data, Records)]).table()
        return pa.concat_tables([item.table() for item in run])

    def _refuse(self, item: _Item, exc: Exception) -> None:
        logger.error(
            "inference log %s: %d records cannot be written (%s: %s); dropped",
            self.directory,
            item.rows,
            type(exc).__name__,
            exc,
        )
        _record_drop(self.directory, item.kind, item.rows)
        with self._cond:
            item.error = errors.ValidationError(
                f"inference log {str(self.directory)!r}: the records cannot be logged: "
                f"{type(exc).__name__}: {exc}"
            )
            item.done = True
            self._pending -= item.rows
            self._counters["dropped"] += item.rows
            self._cond.notify_all()

    # -- the compaction thread ----------------------------------------------------------------

    def _compactions(self) -> None:
        pause = max(min(self.flush_seconds / 2, 0.5), 0.005)
        while True:
            with self._cond:
                if not self._compact_wanted and not self._closing:
                    self._cond.wait(pause)
                if self._closing:
                    return
                self._compact_wanted = False
            try:
                self.journal.seal()  # when its records are older than flush_seconds
                self._compact(blocking=False)
                self._ship()
            except Exception:
                logger.exception("inference log %s: writing a segment failed", self.directory)
                with self._cond:
                    self._compact_wanted = True
                    self._cond.wait(max(min(self.flush_seconds, 1.0), 0.05))

    def _compact(self, *, blocking: bool) -> None:
        """Turn the sealed journals into segments, oldest first, under the folder's
        compaction lock (without ``blocking``: nothing, if another writer holds it)."""
        with self.journal.compacting(blocking=blocking) as held:
            if not held:
                return
            for path in sealed_files(self.journal.folder):
                self._compact_file(path)

    def _compact_file(self, path: Path) -> None:
        base, entries, damaged = read_entries(path)
        if damaged:
            end = entries[-1].first + entries[-1].rows if entries else base
            logger.error(
                "inference log %s: the journal %s is damaged from record %d on (a crash of the "
                "machine?); what follows is lost",
                self.directory,
                path.name,
                end,
            )
        present: pa.Array | None = None
        if entries and entries[0].first < after_segments(self.directory):
            present = self._seqs_in_segments(entries[0].first)  # a compaction a crash cut
        # consecutive entries of one shape are built together (as the commits that merged
        # the calls they carried), each log's in commit order
        groups: list[tuple[Any, list[Entry], list[pa.Table | Records]]] = []
        for entry in entries:
            shape, data = _decoded(entry)
            if groups and groups[-1][0] == shape:
                groups[-1][1].append(entry)
                groups[-1][2].append(data)
            else:
                groups.append((shape, [entry], [data]))
        tables: dict[str, list[pa.Table]] = {kind: [] for kind in KINDS}
        for shape, members, parts in groups:
            if shape[0] == "json":
                table = concat([p for p in parts if isinstance(p, Records)]).table()
            else:
                table = pa.concat_tables([p for p in parts if isinstance(p, pa.Table)])
            table = _with_seq(table, members)
            if present is not None:
                table = table.filter(pc.invert(pc.is_in(table.column("seq"), present)))
            if table.num_rows:
                tables[KINDS[shape[1]]].append(table)
        for kind, parts in tables.items():
            runs: list[list[pa.Table]] = []
            for table in parts:
                if runs and runs[-1][0].schema.equals(table.schema):
                    runs[-1].append(table)
                else:
                    runs.append([table])
            for run in runs:
                table = pa.concat_tables(run)
                self._write_segment(kind, table)
                with self._cond:
                    self._counters["written" if kind == "log" else "failed"] += table.num_rows
                    self._counters["segments"] += 1
        path.unlink()
        _fsync_folder(self.journal.folder)

    def _seqs_in_segments(self, first: int) -> pa.Array:
        """The ``seq`` values from ``first`` on that segments hold already."""
        found: list[pa.Array] = []
        for kind in KINDS:
            for segment in segment_files(self._folders[kind]):
                known = seq_range(segment)
                if known is not None and known[1] >= first:
                    column = pq.read_table(segment, columns=["seq"]).column("seq")
                    found.extend(column.chunks)
        if not found:
            return pa.array([], pa.int64())
        return pa.concat_arrays(found)

    def _write_segment(self, kind: str, table: pa.Table) -> None:
        folder = self._folders[kind]
        temporary = folder / f".segment-{os.getpid()}-{secrets.token_hex(8)}.tmp"
        try:
            with open(temporary, "wb") as file:
                pq.write_table(table, file, compression="zstd")
                file.flush()
                os.fsync(file.fileno())
            seq = self._next[kind]
            while True:
                # link, not replace: it fails if another writer published this number first
                try:
                    os.link(temporary, folder / f"segment-{seq:012d}.parquet")
                    break
                except FileExistsError:
                    seq = max(seq + 1, _next_free(folder))
        finally:
            temporary.unlink(missing_ok=True)  # published under its final name, or failed
        _fsync_folder(folder)
        self._next[kind] = seq + 1
        self._published += 1
        self._ship_wanted = self.archive is not None
