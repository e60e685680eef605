"""The durable front of the inference log: a write-ahead journal that every writer of a log
folder appends to, one *group commit* at a time, and from which the Parquet segments are made.

Layout, under ``<log folder>/journal/``:

- ``current.wal``: the journal being appended to;
- ``sealed-<first seq>.wal``: full journals, waiting to become segments (oldest first);
- ``lock``: locked (``flock``) by a writer for each commit, so that writers in any process
  append whole entries one after another and number their records without a gap;
- ``compact.lock``: locked by the one process that turns sealed journals into segments.

A journal file is a header (``ASSAYWL1``, then the sequence number of its first record) and
entries: ``AWE1``, the log (0: records, 1: failures), the form of the payload, the sequence
number of the entry's first record, its number of records, the length and CRC-32 of the
payload, then the payload: the records (without ``seq``: record *i* of an entry has
``first + i``) as an Arrow IPC stream (form 0), or, for a few records whose values are plain
JSON values (cheaper to write than a table), as JSON columns (form 1: ``{"time": [µs since
the epoch], name: [values]}``); both become the same Arrow columns in the segments.

The sequence (``seq``) is the log's: one count for records and failures, in commit order,
across processes and restarts — a writer that takes the lock first reads what others appended
since its last commit (and cuts a torn entry a killed writer left at the end), so the next
number is always the one after the last durable record. A commit is ``write`` under the lock,
then ``fsync`` outside it: one ``fsync`` for every record the commit carries.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import secrets
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ARROW",
    "CURRENT",
    "JSON",
    "Entry",
    "Journal",
    "journal_rows",
    "read_entries",
    "sealed_files",
]

logger = logging.getLogger("assay.pipelines.log")

_FILE = struct.Struct("<8sq")
_FILE_MAGIC = b"ASSAYWL1"
_ENTRY = struct.Struct("<4sBB2xqIII")
_ENTRY_MAGIC = b"AWE1"
_SEALED = re.compile(r"^sealed-(\d+)\.wal$")
CURRENT = "current.wal"
#: The forms of a payload.
ARROW, JSON = 0, 1


@dataclass
class Entry:
    """One entry of a journal: records of one log (``kind`` 0: records, 1: failures), as an
    Arrow IPC stream (``form`` ARROW) or JSON columns (JSON)."""

    kind: int
    rows: int
    payload: bytes | memoryview
    first: int = -1
    """The sequence number of its first record (set when it is committed)."""
    form: int = ARROW


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _parse(data: bytes | memoryview, offset: int, expect: int | None) -> Iterator[Entry]:
    """The whole, intact entries of ``data`` from ``offset`` (each with its ``first``), in
    order; stops at the first torn or damaged one, or at a number out of sequence."""
    view = memoryview(data)
    size = len(view)
    while offset + _ENTRY.size <= size:
        magic, kind, form, first, rows, length, crc = _ENTRY.unpack_from(view, offset)
        start = offset + _ENTRY.size
        if magic != _ENTRY_MAGIC or kind > 1 or form > JSON or start + length > size:
            return
        if expect is not None and first != expect:
            return
        payload = view[start : start + length]
        if zlib.crc32(payload) != crc:
            return
        yield Entry(kind, rows, payload, first, form)
        expect = first + rows
        offset = start + length


def read_entries(path: Path) -> tuple[int, list[Entry], bool]:
    """A journal file's first sequence number, its intact entries and whether it ends with
    something else (a torn or damaged entry)."""
    data = path.read_bytes()
    if len(data) < _FILE.size:
        return -1, [], bool(data)
    magic, base = _FILE.unpack_from(data, 0)
    if magic != _FILE_MAGIC:
        return -1, [], True
    entries = list(_parse(data, _FILE.size, base))
    end = _FILE.size + sum(_ENTRY.size + len(e.payload) for e in entries)
    return base, entries, end != len(data)


def sealed_files(folder: Path) -> list[Path]:
    """The sealed journals of ``folder``, oldest first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _SEALED.match(p.name))]
    return [p for _, p in sorted(found)]


_SUMMARIES: dict[Path, tuple[tuple[int, int], tuple[int, list[int]]]] = {}
_SUMMARIES_LOCK = threading.Lock()


def _summary(path: Path) -> tuple[int, list[int]]:
    """A journal file's number after its last record, and its records per log (remembered
    for a file that has not changed)."""
    info = path.stat()
    stamp = (info.st_size, info.st_mtime_ns)
    with _SUMMARIES_LOCK:
        known = _SUMMARIES.get(path)
    if known is not None and known[0] == stamp:
        return known[1][0], list(known[1][1])
    base, entries, _ = read_entries(path)
    rows = [0, 0]
    for entry in entries:
        rows[entry.kind] += entry.rows
    following = entries[-1].first + entries[-1].rows if entries else max(base, 0)
    with _SUMMARIES_LOCK:
        _SUMMARIES[path] = (stamp, (following, rows))
    return following, list(rows)


def journal_rows(folder: Path, *, after: Callable[[], int]) -> tuple[int, list[int]]:
    """As :meth:`Journal.state`, read without taking the lock (for a closed log): the
    number of the next record and the records per log in the journal files of ``folder``;
    ``after()`` gives the number after the segments' last record."""
    rows = [0, 0]
    following = -1
    paths = sealed_files(folder)
    if (folder / CURRENT).exists():
        paths.append(folder / CURRENT)
    for path in paths:
        try:
            found, counts = _summary(path)
        except FileNotFoundError:  # sealed and compacted meanwhile
            continue
        following = max(following, found)
        rows = [a + b for a, b in zip(rows, counts, strict=True)]
    return (following if following >= 0 else after()), rows


class Journal:
    """This writer's handle on the journal of a log folder: commits, sealing, and what the
    journal holds. ``after_segments()`` gives the sequence number after the newest record in
    the folder's segments (where numbering resumes when no journal is left)."""

    def __init__(
        self,
        directory: Path,
        *,
        seal_rows: int,
        seal_seconds: float,
        after_segments: Callable[[], int],
    ) -> None:
        self.folder = directory / "journal"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.seal_rows = seal_rows
        self.seal_seconds = seal_seconds
        self.after_segments = after_segments
        self._mutex = threading.Lock()  # this object's threads; the flock is for processes
        self._lock_fd = os.open(self.folder / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        self._compact_fd = os.open(self.folder / "compact.lock", os.O_RDWR | os.O_CREAT, 0o644)
        self._compact_mutex = threading.Lock()
        self._fd = -1
        self._ino = -1
        self._end = 0  # the end of the intact entries of the current file, as last read
        self._next = 0  # the sequence number of the next record
        self._rows: list[int] = [0, 0]  # records in the current file, per log
        self._since: float | None = None  # when this writer first saw it hold records
        self._closed = False

    # -- locking ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._mutex:
            if self._closed:
                raise OSError(f"the journal of {str(self.folder.parent)!r} is closed")
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def compacting(self, *, blocking: bool) -> Iterator[bool]:
        """Hold the right to turn sealed journals into segments (True), or (not ``blocking``)
        False when another writer holds it."""
        if not self._compact_mutex.acquire(blocking=blocking):
            yield False
            return
        try:
            flags = fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB)
            try:
                fcntl.flock(self._compact_fd, flags)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(self._compact_fd, fcntl.LOCK_UN)
        finally:
            self._compact_mutex.release()

    # -- the current file (under the lock) ----------------------------------------------------

    def _catch_up(self) -> None:
        """Bring this writer's view of ``current.wal`` up to date: open it again if it was
        sealed, read the entries other writers appended, cut a torn end."""
        path = self.folder / CURRENT
        try:
            info = os.stat(path)
        except FileNotFoundError:
            self._create(self._recover_next())
            return
        if info.st_ino != self._ino:
            fd = os.open(path, os.O_RDWR)
            head = os.pread(fd, _FILE.size, 0)
            if len(head) < _FILE.size or _FILE.unpack(head)[0] != _FILE_MAGIC:
                os.close(fd)
                broken = self.folder / f"broken-{time.time_ns()}.wal"
                logger.error(
                    "inference log %s: %s is damaged; kept as %s", self.folder, path, broken
                )
                os.rename(path, broken)
                self._create(self._recover_next())
                return
            if self._fd >= 0:
                os.close(self._fd)
            self._fd, self._ino = fd, info.st_ino
            self._end, self._next = _FILE.size, _FILE.unpack(head)[1]
            self._rows, self._since = [0, 0], None
        if info.st_size != self._end:
            self._read_new(info.st_size)

    def _read_new(self, size: int) -> None:
        if size < self._end:  # pragma: no cover - only a writer's torn end is ever cut
            self._ino = -1
            self._catch_up()
            return
        data = os.pread(self._fd, size - self._end, self._end)
        end = self._end
        for entry in _parse(data, 0, self._next):
            self._next = entry.first + entry.rows
            self._rows[entry.kind] += entry.rows
            end += _ENTRY.size + len(entry.payload)
        if end != size:  # a torn end: a writer died writing it (we hold the lock)
            logger.warning(
                "inference log %s: cutting %d bytes of a torn journal entry",
                self.folder,
                size - end,
            )
            os.ftruncate(self._fd, end)
        self._end = end
        if self._since is None and sum(self._rows) > 0:
            self._since = time.monotonic()

    def _create(self, first: int) -> None:
        """A new, empty ``current.wal`` whose first record will be ``first``."""
        temporary = self.folder / f".current-{os.getpid()}-{secrets.token_hex(6)}.tmp"
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, _FILE.pack(_FILE_MAGIC, first))
            os.fsync(fd)
            os.rename(temporary, self.folder / CURRENT)
        except BaseException:
            os.close(fd)
            temporary.unlink(missing_ok=True)
            raise
        _fsync_folder(self.folder)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._ino = fd, os.fstat(fd).st_ino
        self._end, self._next = _FILE.size, first
        self._rows, self._since = [0, 0], None

    def _recover_next(self) -> int:
        """The number after the last durable record, with no ``current.wal`` to say it."""
        after = self.after_segments()
        for path in sealed_files(self.folder):
            after = max(after, _summary(path)[0])
        return int(after)

    def _seal(self) -> bool:
        """Seal ``current.wal`` if it holds records; True if it did."""
        if not sum(self._rows):
            return False
        base = _FILE.unpack(os.pread(self._fd, _FILE.size, 0))[1]
        os.rename(self.folder / CURRENT, self.folder / f"sealed-{base:020d}.wal")
        self._create(self._next)  # fsyncs the folder: the new names are durable
        return True

    # -- the writer's operations ----------------------------------------------------------------

    def commit(self, entries: list[Entry]) -> tuple[int, bool]:
        """Append ``entries`` (numbering their records) and return a descriptor of the file
        they are in, to ``fsync`` and close (the caller does, outside the lock), and whether a
        full journal was sealed."""
        with self._locked():
            self._catch_up()
            parts: list[bytes | memoryview] = []
            seq = self._next
            for entry in entries:
                entry.first = seq
                parts.append(
                    _ENTRY.pack(
                        _ENTRY_MAGIC,
                        entry.kind,
                        entry.form,
                        seq,
                        entry.rows,
                        len(entry.payload),
                        zlib.crc32(entry.payload),
                    )
                )
                parts.append(entry.payload)
                seq += entry.rows
            data = memoryview(b"".join(parts))
            written = 0
            try:
                while written < len(data):  # at the end of the entries, wherever the offset is
                    written += os.pwrite(self._fd, data[written:], self._end + written)
            except BaseException:
                os.ftruncate(self._fd, self._end)  # no torn entry left behind
                raise
            self._end += len(data)
            self._next = seq
            for entry in entries:
                self._rows[entry.kind] += entry.rows
            if self._since is None:
                self._since = time.monotonic()
            fd = os.dup(self._fd)
            sealed = sum(self._rows) >= self.seal_rows and self._seal()
        return fd, sealed

    def seal(self, *, force: bool = False) -> bool:
        """Seal ``current.wal`` when it is due (``seal_rows`` records, or records older than
        ``seal_seconds``) or, with ``force``, whenever it holds records; True if sealed."""
        with self._locked():
            self._catch_up()
            due = force or (
                self._since is not None and time.monotonic() - self._since >= self.seal_seconds
            )
            return due and self._seal()

    def state(self) -> tuple[int, list[int]]:
        """The number of the next record, and the records per log in the journal (current
        and sealed); consistent with the segments while the caller holds
        :meth:`compacting` (no sealed journal becomes segments meanwhile)."""
        with self._locked():
            self._catch_up()
            rows = list(self._rows)
            for path in sealed_files(self.folder):
                rows = [a + b for a, b in zip(rows, _summary(path)[1], strict=True)]
            return self._next, rows

    def close(self) -> None:
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            for fd in (self._fd, self._lock_fd, self._compact_fd):
                if fd >= 0:
                    os.close(fd)
            self._fd = -1
