"""The sealed segments of an inference log kept in the platform's artifact storage, when that
storage is not on this machine (``s3://bucket/prefix``): the log's journal stays in its local
folder (it needs appends, ``fsync`` and ``flock``, which a bucket does not offer), and every
segment, once written whole in that folder, is copied to the bucket. Readers on any machine
then see every segment of the log: those of this folder, and those other folders (other
machines, or this machine's before its folder was lost) put in the bucket.

Layout: the log's objects belong to a storage id of their own, derived from the account and
pipeline (:func:`archive_id`; no entity has it, so no artifact route reaches it), under
``<log|failures>/<origin>/segment-<n>.parquet``. ``origin`` names the folder that wrote a
segment: a random id kept in the folder's ``origin`` file, made when the folder has none, so
two folders never write the same key and a folder made anew never overwrites what an earlier
one shipped. Segments of other origins are read from copies on this machine
(:meth:`~assay.storage.ArtifactStorage.local_copy`, fetched again only when they change —
they never do). Design notes: ``docs/design/storage-s3.md``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from assay import errors

__all__ = ["ORIGIN_FILE", "Archive", "archive_id"]

logger = logging.getLogger("assay.pipelines.log")

#: The file of a log's folder that names the folder in the bucket (its ``origin``).
ORIGIN_FILE = "origin"

_ORIGIN = re.compile(r"^[0-9a-f]{16}$")
_SEGMENT = re.compile(r"^segment-(\d+)\.parquet$")

#: After a failed copy to the bucket, the next try waits this long (doubling up to the cap).
RETRY_SECONDS = (1.0, 60.0)


def archive_id(account: str, pipeline: str) -> str:
    """The storage id of the segments of ``account``'s pipeline ``pipeline`` (an entity id's
    form; random entity ids never take it)."""
    text = f"assay pipeline inference log\0{account}\0{pipeline}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _origin(directory: Path) -> str:
    """The origin of the log folder ``directory``, made if it has none (or a damaged one)."""
    path = directory / ORIGIN_FILE
    made = secrets.token_hex(8)
    temporary = directory / f".origin-{made}.tmp"
    temporary.write_text(made + "\n", encoding="ascii")
    try:
        with contextlib.suppress(FileExistsError):  # of two processes making it, one wins
            os.link(temporary, path)  # a link refuses an existing name
        text = path.read_text(encoding="ascii", errors="replace").strip()
        if not _ORIGIN.match(text):  # damaged: a new one (its segments keep the old name)
            os.replace(temporary, path)
            return made
        return text
    finally:
        temporary.unlink(missing_ok=True)


class Archive:
    """The bucket side of the inference log in ``directory``: ``storage`` holds its segments
    under the id ``id`` (:func:`archive_id`)."""

    def __init__(self, storage: Any, id: str, directory: Path) -> None:
        self.storage = storage
        self.id = id
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.origin = _origin(self.directory)
        self._lock = threading.Lock()
        self._shipped: dict[str, set[str]] | None = None  # per kind, names in the bucket
        self._retry_at = 0.0
        self._failures = 0

    def __repr__(self) -> str:
        return f"Archive({self.storage!r}, {self.id!r}, origin={self.origin!r})"

    # -- writing -------------------------------------------------------------------------------

    def pending(self, kind: str, local: list[Path]) -> list[Path]:
        """Of the segments ``local`` of log ``kind`` in this folder, those not in the bucket
        yet (as far as this process knows)."""
        with self._lock:
            shipped = (self._shipped or {}).get(kind)
        if shipped is None:
            return list(local)
        return [p for p in local if p.name not in shipped]

    def ship(self, local: dict[str, list[Path]], *, force: bool = False) -> int:
        """Copy to the bucket the segments of ``local`` (per log kind, this folder's segment
        files) not there yet; the number copied. A failure is logged (with its cause) and
        tried again on a later call, waiting longer after each failure, unless ``force``."""
        if not force and time.monotonic() < self._retry_at:
            return 0
        copied = 0
        try:
            with self._lock:
                if self._shipped is None:
                    self._shipped = {kind: self._names(kind, self.origin) for kind in local}
            for kind, paths in local.items():
                for path in self.pending(kind, paths):
                    self.storage.put_file(self.id, f"{kind}/{self.origin}/{path.name}", path)
                    with self._lock:
                        assert self._shipped is not None
                        self._shipped.setdefault(kind, set()).add(path.name)
                    copied += 1
        except (errors.AssayError, OSError) as exc:
            self._failures += 1
            wait = min(RETRY_SECONDS[0] * 2 ** (self._failures - 1), RETRY_SECONDS[1])
            self._retry_at = time.monotonic() + wait
            logger.warning(
                "inference log %s: copying its segments to %s failed (%s); they stay in the "
                "log's folder on this machine, and the copy is tried again in %.0f s",
                self.directory,
                getattr(self.storage, "url", self.storage),
                exc,
                wait,
            )
            return copied
        self._failures, self._retry_at = 0, 0.0
        return copied

    def _names(self, kind: str, origin: str) -> set[str]:
        prefix = f"{kind}/{origin}/"
        return {
            info.path[len(prefix) :]
            for info in self.storage.list(self.id, prefix)
            if _SEGMENT.match(info.path[len(prefix) :])
        }

    # -- reading -------------------------------------------------------------------------------

    def others(self, kind: str) -> list[Path]:
        """The segments of log ``kind`` that other folders put in the bucket, as files on this
        machine (copies), in origin then segment order. When the bucket cannot be read, the
        copies fetched before (logged: what is read may then miss the newest)."""
        try:
            found: list[tuple[str, int, str]] = []
            for info in self.storage.list(self.id, f"{kind}/"):
                parts = info.path.split("/")
                if len(parts) == 3 and self._other(parts[1]) and (m := _SEGMENT.match(parts[2])):
                    found.append((parts[1], int(m.group(1)), info.path))
            found.sort()
            paths = [path for *_, path in found]
            root = self.storage.local_copy(self.id, paths)
            return [root / path for path in paths]
        except (errors.AssayError, OSError) as exc:
            cached = self._copies(kind)
            logger.warning(
                "inference log %s: the segments other machines put in %s cannot be read (%s); "
                "reading this machine's segments and the %d copies of theirs fetched before",
                self.directory,
                getattr(self.storage, "url", self.storage),
                exc,
                len(cached),
            )
            return cached

    def _other(self, origin: str) -> bool:
        return origin != self.origin and _ORIGIN.match(origin) is not None

    def _copies(self, kind: str) -> list[Path]:
        """The copies of other folders' segments of log ``kind`` already on this machine."""
        root = self.storage.local_copy(self.id, ()) / kind
        found = [
            (origin.name, int(m.group(1)), path)
            for origin in (sorted(root.iterdir()) if root.is_dir() else ())
            if self._other(origin.name)
            for path in origin.iterdir()
            if (m := _SEGMENT.match(path.name))
        ]
        return [path for *_, path in sorted(found)]
