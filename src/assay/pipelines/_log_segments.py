"""The writing side of the inference log: a bounded queue drained by one writer thread into
append-only Parquet segments, each written atomically (temporary file, fsync, hard link to its
final name, fsync of the folder), so that a file named ``segment-*.parquet`` is always whole.

Several writers — InferenceLog objects in one process, or processes — may append to one folder
at once. Each writes its own temporary file (``.segment-<pid>-<random>.tmp``), and publishes it
with :func:`os.link`, which is atomic and, unlike :func:`os.replace`, refuses a name that
exists: a writer that loses the race for a segment number rescans the folder and takes the next
free one, so no segment is ever overwritten. A starting writer removes only the temporaries of
processes that are gone. Segment numbers are then in publishing order, not in time order across
writers; readers order records by their ``time`` column.

What a crash can lose: the records that were queued and not yet written — at most what
arrives in ``flush_seconds`` or ``flush_rows`` records, whichever comes first (plus a write
in progress). Everything written before is on disk and readable; :meth:`SegmentWriter.flush`
returns only once every record queued before it is durable.
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

import pyarrow as pa
import pyarrow.parquet as pq

from assay import errors

__all__ = ["DROPS_FILE", "KINDS", "SegmentWriter", "dropped_records", "segment_files"]

logger = logging.getLogger("assay.pipelines.log")

#: The two logs: successful inferences, and failed ones (with their ``error``).
KINDS = ("log", "failures")

_SEGMENT = re.compile(r"^segment-(\d+)\.parquet$")
#: A segment being written: ``.segment-<pid of its writer>-<random>.tmp``.
_TEMPORARY = re.compile(r"^\.segment-(\d+)-(\w+)\.tmp$")


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


def _remove_stale_temporaries(folder: Path) -> None:
    """Remove the temporary files that no live writer will finish: those of processes that are
    gone (a write a crash interrupted), and any without a pid in their name."""
    for path in folder.glob(".segment-*.tmp"):
        match = _TEMPORARY.match(path.name)
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


@dataclass
class _Item:
    kind: str
    table: pa.Table
    written: bool = False


class SegmentWriter:
    """A bounded queue of tables and the thread that writes them as segments."""

    def __init__(
        self, directory: Path, *, flush_rows: int, flush_seconds: float, queue_limit: int
    ) -> None:
        self.directory = directory
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.queue_limit = queue_limit
        self._folders = {kind: directory / kind for kind in KINDS}
        self._next: dict[str, int] = {}
        for kind, folder in self._folders.items():
            folder.mkdir(parents=True, exist_ok=True)
            _remove_stale_temporaries(folder)
            self._next[kind] = _next_free(folder)  # a guess: other writers may take it first
        self._cond = threading.Condition()
        self._queue: deque[_Item] = deque()
        self._pending = 0  # records queued
        self._oldest = 0.0  # monotonic time the oldest queued item arrived
        self._enqueued = 0  # items ever queued
        self._durable = 0  # items ever written
        self._flush_wanted = False
        self._closing = False
        self._error: BaseException | None = None
        self._counters = {"written": 0, "failed": 0, "dropped": 0, "segments": 0}
        self._thread = threading.Thread(
            target=self._run, name=f"assay-log-writer:{directory.name}", daemon=True
        )
        self._thread.start()

    # -- the caller's side --------------------------------------------------------------------

    def put(self, kind: str, table: pa.Table) -> bool:
        """Queue ``table``; False (and the records counted as dropped) if the queue is full."""
        rows = table.num_rows
        if rows == 0:
            return True
        with self._cond:
            if self._closing:
                raise errors.ConflictError(
                    f"inference log {str(self.directory)!r} is closed; open a new InferenceLog "
                    "on the folder to append to it"
                )
            if self._pending + rows > self.queue_limit:
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
                return False
            first = not self._queue
            if first:
                self._oldest = time.monotonic()
            self._queue.append(_Item(kind, table))
            self._pending += rows
            self._enqueued += 1
            if first or self._pending >= self.flush_rows:  # start the clock, or write now
                self._cond.notify_all()
            return True

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every record queued before the call is in a whole segment on disk."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._enqueued
            if self._durable >= target:
                return
            self._flush_wanted = True
            self._cond.notify_all()
            while self._durable < target:
                if self._error is not None:
                    raise errors.PlatformError(
                        f"inference log {str(self.directory)!r}: writing a segment failed "
                        f"({self._error}); the records stay queued and the writer retries"
                    )
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise errors.WaitTimeoutError(
                        f"inference log {str(self.directory)!r}: {self._pending} records still "
                        f"not written after {timeout} s"
                    )
                self._cond.wait(0.5 if left is None else min(left, 0.5))

    def close(self) -> None:
        """Write everything queued, then stop the writer; idempotent."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def counters(self) -> dict[str, int]:
        """``written``, ``failed`` (records in whole segments of each log), ``dropped`` (refused
        because the queue was full), ``queued`` (waiting to be written), ``segments``."""
        with self._cond:
            return {**self._counters, "queued": self._pending}

    # -- the writer thread --------------------------------------------------------------------

    def _due(self) -> bool:
        return bool(self._queue) and (
            self._closing
            or self._flush_wanted
            or self._pending >= self.flush_rows
            or time.monotonic() - self._oldest >= self.flush_seconds
        )

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._due():
                    if self._closing and not self._queue:
                        return
                    wait = (
                        None
                        if not self._queue
                        else max(self._oldest + self.flush_seconds - time.monotonic(), 0.0)
                    )
                    self._cond.wait(wait)
                items = list(self._queue)
                self._queue.clear()
                self._pending = 0
                self._flush_wanted = False
            try:
                self._write(items)
            except BaseException as exc:  # keep what was not written, retry after a pause
                logger.exception("inference log %s: writing a segment failed", self.directory)
                with self._cond:
                    self._error = exc
                    left = [item for item in items if not item.written]
                    self._durable += len(items) - len(left)
                    self._queue.extendleft(reversed(left))
                    self._pending += sum(item.table.num_rows for item in left)
                    self._oldest = time.monotonic()
                    if self._closing:
                        logger.error(
                            "inference log %s: closing with %d records not written",
                            self.directory,
                            self._pending,
                        )
                        return
                    self._cond.wait(max(self.flush_seconds, 0.1))
                continue
            with self._cond:
                self._error = None
                self._durable += len(items)  # once all are written: flush() waits for order
                self._cond.notify_all()

    def _write(self, items: list[_Item]) -> None:
        """Write ``items`` as segments: one per log and run of equal schemas; each item is
        marked written (and counted) once its segment is whole on disk."""
        for kind in KINDS:
            runs: list[list[_Item]] = []
            for item in items:
                if item.kind != kind:
                    continue
                if runs and runs[-1][0].table.schema.equals(item.table.schema):
                    runs[-1].append(item)
                else:
                    runs.append([item])
            for run in runs:
                table = pa.concat_tables([item.table for item in run])
                self._write_segment(kind, table)
                with self._cond:
                    for item in run:
                        item.written = True
                    self._counters["written" if kind == "log" else "failed"] += table.num_rows
                    self._counters["segments"] += 1
                    self._cond.notify_all()

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
