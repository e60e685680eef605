"""Artifact storage in a local directory: ``<root>/<entity id>/<path>``.

Writes go to a temporary file in the target's directory, are flushed to disk (``fsync``) and
renamed over the target, so a reader sees the old artifact or the new one and a crash leaves
no partial file under the artifact's name. Every path is checked twice: by the artifact path
rules, then by resolving it on disk, so that a symbolic link inside an entity's directory
cannot lead a read or a write outside it. See ``docs/design/store.md``.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from assay import errors, provenance

from ._base import ArtifactInfo, ArtifactStorage, Chunks, iter_chunks, md5_hasher

if TYPE_CHECKING:
    import pyarrow.fs

__all__ = ["TEMP_PREFIX", "LocalStorage"]

#: Name prefix of the temporary files of writes in progress; never listed as artifacts.
TEMP_PREFIX = ".assay-tmp-"


class LocalStorage(ArtifactStorage):
    """Artifacts in the directory ``root`` (created if missing), one subdirectory per entity.

    Safe for concurrent use by threads and processes: each write has its own temporary file,
    and the last rename wins.
    """

    #: Digests remembered (by file: size, modification time and inode), so that listing the
    #: downlinks of a large output again does not read every byte again.
    DIGESTS_REMEMBERED = 4096

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = Path(root).resolve()
        self._root.mkdir(parents=True, exist_ok=True)
        self._digests: dict[Path, tuple[tuple[int, int, int], str]] = {}
        self._digests_lock = threading.Lock()

    @property
    def root(self) -> Path:
        """The storage directory."""
        return self._root

    def __repr__(self) -> str:
        return f"LocalStorage({str(self._root)!r})"

    def entity_dir(self, id: str) -> Path:
        """The directory of entity ``id`` (which may not exist yet)."""
        return self._root / self.check_id(id)

    # -- writing -------------------------------------------------------------------------------

    def put_stream(self, id: str, path: str, chunks: Chunks) -> ArtifactInfo:
        target = self._locate(id, path)
        directory = target.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise self._not_a_directory(id, path) from None
        self._locate(id, path)  # again, now that the directories exist
        if target.is_dir():
            raise errors.ValidationError(
                f"entity {id}: cannot write {path!r}: a directory of that name exists",
                field="path",
                value=path,
                entity=id,
            )
        temp = directory / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        hasher, size = md5_hasher(), 0
        sha256 = hashlib.sha256() if provenance.ENABLED else None
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666)
            with open(fd, "wb") as out:
                for chunk in iter_chunks(chunks):
                    out.write(chunk)
                    hasher.update(chunk)
                    if sha256 is not None:
                        sha256.update(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_directory(directory)
        return ArtifactInfo(
            path=path,
            size=size,
            md5=hasher.hexdigest(),
            sha256=sha256.hexdigest() if sha256 is not None else None,
        )

    # -- reading -------------------------------------------------------------------------------

    def open(self, id: str, path: str) -> BinaryIO:
        target = self._locate(id, path)
        try:
            return open(target, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise self.missing(id, path) from None

    def exists(self, id: str, path: str) -> bool:
        return self._locate(id, path).is_file()

    def list(self, id: str, prefix: str = "", *, md5: bool = False) -> list[ArtifactInfo]:
        self.check_prefix(id, prefix)
        base = self.entity_dir(id)
        if not base.is_dir():
            return []
        real_base = base.resolve()
        start_rel = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = base / start_rel if start_rel else base
        if not start.resolve().is_relative_to(real_base) or not start.is_dir():
            return []
        found = [
            (rel, size)
            for rel, size in _walk(start, start_rel, real_base)
            if rel.startswith(prefix)
        ]
        found.sort()
        return [
            ArtifactInfo(path=rel, size=size, md5=self.md5(id, rel) if md5 else None)
            for rel, size in found
        ]

    def local_dir(self, id: str) -> Path:
        return self.entity_dir(id)

    def md5(self, id: str, path: str) -> str:
        """The hex md5 of the file, remembered while its size, modification time and inode
        stay the same (artifacts are written once, by rename). :meth:`verify` never uses what
        was remembered."""
        file = self._locate(id, path)
        try:
            info = file.stat()
        except FileNotFoundError:
            return super().md5(id, path)  # says which artifact is missing
        stamp = (info.st_size, info.st_mtime_ns, info.st_ino)
        with self._digests_lock:
            known = self._digests.get(file)
        if known is not None and known[0] == stamp:
            return known[1]
        digest = super().md5(id, path)
        with self._digests_lock:
            self._digests.pop(file, None)
            self._digests[file] = (stamp, digest)
            while len(self._digests) > self.DIGESTS_REMEMBERED:
                del self._digests[next(iter(self._digests))]
        return digest

    def local_path(self, id: str, path: str) -> Path:
        """The file of ``path`` of entity ``id`` (which may not exist yet)."""
        return self._locate(id, path)

    def arrow_location(self, id: str, prefix: str = "") -> tuple[pyarrow.fs.FileSystem, str]:
        import pyarrow.fs

        self.check_prefix(id, prefix)
        location = self.entity_dir(id)
        if prefix.strip("/"):
            location = self._locate(id, prefix.strip("/"))
        return pyarrow.fs.LocalFileSystem(), str(location)

    # -- housekeeping --------------------------------------------------------------------------

    def delete(self, id: str, path: str) -> bool:
        target = self._locate(id, path)
        if target.is_dir() and not target.is_symlink():
            return False  # a directory is not an artifact
        try:
            target.unlink()
        except FileNotFoundError:
            return False
        except NotADirectoryError:
            return False  # a parent is a file: no such artifact
        return True

    def delete_entity(self, id: str) -> bool:
        """Delete the artifacts of entity ``id``; for a linked entity, only the link."""
        directory = self.entity_dir(id)
        if directory.is_symlink():
            directory.unlink()
            return True
        if not directory.exists():
            return False
        # Rename first, so that the entity's artifacts disappear at once, then remove.
        doomed = self._root / f"{TEMP_PREFIX}{id}-{secrets.token_hex(4)}"
        try:
            directory.rename(doomed)
        except FileNotFoundError:
            return False  # deleted by someone else meanwhile
        shutil.rmtree(doomed)
        return True

    def link(self, id: str, target: str | os.PathLike[str]) -> Path:
        """Make the directory of entity ``id`` a symbolic link to the existing directory
        ``target`` (an "editable" package: its files are read where they are). Returns the
        entity directory. ConflictError if the entity already has a directory."""
        source = Path(target)
        if not source.is_dir():
            raise errors.ValidationError(
                f"cannot link entity {id!r} to {str(source)!r}: it is not an existing directory",
                field="target",
                value=str(source),
                entity=id,
            )
        directory = self.entity_dir(id)
        try:
            directory.symlink_to(source.resolve(), target_is_directory=True)
        except FileExistsError:
            raise errors.ConflictError(
                f"entity {id!r} already has artifacts in {str(directory)!r}; "
                "delete them (delete_entity) before linking"
            ) from None
        return directory

    # -- internals -----------------------------------------------------------------------------

    def _locate(self, id: str, path: str) -> Path:
        """The file of ``path`` of entity ``id``, checked to resolve inside the entity's
        directory (symbolic links included)."""
        base = self.entity_dir(id)
        self.check_path(id, path)
        target = base / path
        if _no_links(base, path):
            return target  # the usual case, checked without resolving the whole path
        if not target.resolve().is_relative_to(base.resolve()):
            raise errors.ValidationError(
                f"entity {id}: path {path!r} leads outside the entity's directory through a "
                "symbolic link; artifacts must stay inside it",
                field="path",
                value=path,
                entity=id,
            )
        return target

    @staticmethod
    def _not_a_directory(id: str, path: str) -> errors.ValidationError:
        return errors.ValidationError(
            f"entity {id}: cannot write {path!r}: one of its parent directories is a file",
            field="path",
            value=path,
            entity=id,
        )


_O_BINARY: int = getattr(os, "O_BINARY", 0)  # Windows only


def _no_links(base: Path, path: str) -> bool:
    """Whether neither the entity directory ``base`` nor anything that exists on the way from
    it to ``path`` is a symbolic link: then ``base / path`` is inside ``base`` as written,
    since a valid artifact path has no ``..``, ``.`` or empty segment.

    One ``lstat`` per segment below the storage root (which is resolved once, when the
    storage is made). Resolving the whole path instead (``Path.resolve``, pure Python) walks
    every segment from ``/``, twice per check (the target and the entity directory): a
    quarter of the time of the threads that store an evaluation's parts. Nothing is cached,
    so a directory replaced by a link meanwhile is seen at once; where a link is found, the
    caller resolves the path as before."""
    current = str(base)
    segments = path.split("/")
    for k in range(len(segments) + 1):
        if k:
            current = os.path.join(current, segments[k - 1])
        try:
            mode = os.lstat(current).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return True  # nothing exists below a missing entry or a file: no link either
        if stat.S_ISLNK(mode):
            return False
    return True


def _walk(directory: Path, rel: str, real_base: Path) -> Iterator[tuple[str, int]]:
    """``(path, size)`` of the files under ``directory`` (``rel`` inside the entity), skipping
    writes in progress and symbolic links that lead outside the entity or to directories."""
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith(TEMP_PREFIX):
                continue
            path = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_symlink():
                real = Path(entry.path).resolve()
                if real.is_relative_to(real_base) and real.is_file():
                    yield path, real.stat().st_size
            elif entry.is_dir():
                yield from _walk(Path(entry.path), path, real_base)
            elif entry.is_file():
                yield path, entry.stat().st_size


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; a no-op where directories cannot be
    opened, as on Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
