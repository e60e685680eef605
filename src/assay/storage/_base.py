"""The interface every artifact storage backend implements (a local directory, an S3 bucket).

Artifacts live under ``<entity id>/<path>``. Every write is atomic (readers see the old
artifact or the new one, never a part) and reports the md5 digest and size it computed while
streaming; nothing reads a whole artifact into memory except :meth:`read_bytes`.
"""

from __future__ import annotations

import abc
import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol, runtime_checkable

from assay import errors
from assay.schema.ids import is_entity_id
from assay.schema.paths import validate_artifact_path

if TYPE_CHECKING:
    import pyarrow.fs

__all__ = ["CHUNK_SIZE", "ArtifactInfo", "ArtifactStorage", "Chunks", "iter_chunks", "md5_hasher"]

#: Bytes read or written at a time when streaming.
CHUNK_SIZE = 1 << 20


@runtime_checkable
class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


#: What :meth:`ArtifactStorage.put_stream` accepts: an iterable of byte chunks, or a binary
#: file object (read in :data:`CHUNK_SIZE` blocks, never by lines).
Chunks = Iterable[bytes] | BinaryIO


@dataclass(frozen=True, slots=True)
class ArtifactInfo:
    """One stored artifact."""

    path: str
    """The path inside the entity, ``/``-separated, e.g. ``data/part-0.parquet``."""
    size: int
    """Size in bytes."""
    md5: str | None
    """Hex md5 digest; None where it was not asked for (see :meth:`ArtifactStorage.list`)."""
    sha256: str | None = None
    """Hex sha256 digest, where it was computed while writing (:meth:`ArtifactStorage.put_stream`)
    — the digest of provenance (:mod:`assay.provenance`); md5 is the upload checksum."""


def md5_hasher() -> hashlib._Hash:
    """A new md5 hasher (md5 is a checksum here, not a security measure)."""
    return hashlib.md5(usedforsecurity=False)


def iter_chunks(chunks: Chunks) -> Iterator[bytes]:
    """The byte chunks of ``chunks``: a file is read in blocks, never by lines."""
    if isinstance(chunks, _Readable):
        while block := chunks.read(CHUNK_SIZE):
            yield block
    else:
        for chunk in chunks:
            yield bytes(chunk) if not isinstance(chunk, bytes) else chunk


class ArtifactStorage(abc.ABC):
    """Artifacts of entities, addressed by entity id and a relative path.

    Subclasses implement the abstract methods; the others have portable defaults built on
    them, which a backend may override with something faster.
    """

    # -- writing -------------------------------------------------------------------------------

    @abc.abstractmethod
    def put_stream(self, id: str, path: str, chunks: Chunks) -> ArtifactInfo:
        """Store the bytes of ``chunks`` as ``path`` of entity ``id``, atomically, replacing
        any artifact at that path. Returns its size, md5 and sha256 (computed while
        streaming)."""

    def put_bytes(self, id: str, path: str, data: bytes) -> ArtifactInfo:
        """Store ``data`` as ``path`` of entity ``id`` (atomically)."""
        return self.put_stream(id, path, [data])

    def put_file(self, id: str, path: str, source: Path) -> ArtifactInfo:
        """Copy the local file ``source`` to ``path`` of entity ``id`` (atomically)."""
        try:
            handle = open(source, "rb")  # noqa: SIM115 - closed below, after put_stream
        except FileNotFoundError:
            raise errors.NotFoundError(
                f"cannot store {path!r} of entity {id!r}: the source file {str(source)!r} "
                "does not exist"
            ) from None
        with handle:
            return self.put_stream(id, path, handle)

    # -- reading -------------------------------------------------------------------------------

    @abc.abstractmethod
    def open(self, id: str, path: str) -> BinaryIO:
        """Open ``path`` of entity ``id`` for reading. NotFoundError if there is none."""

    def read_bytes(self, id: str, path: str) -> bytes:
        """The whole content of ``path`` of entity ``id`` (for small artifacts)."""
        with self.open(id, path) as handle:
            return handle.read()

    @abc.abstractmethod
    def exists(self, id: str, path: str) -> bool:
        """True if entity ``id`` has an artifact at ``path``."""

    @abc.abstractmethod
    def list(self, id: str, prefix: str = "", *, md5: bool = False) -> list[ArtifactInfo]:
        """The artifacts of entity ``id`` whose path starts with ``prefix``, sorted by path.
        Digests are computed only when ``md5`` is True (it reads every file)."""

    def md5(self, id: str, path: str) -> str:
        """The hex md5 digest of ``path`` of entity ``id``, computed by streaming it."""
        hasher = md5_hasher()
        with self.open(id, path) as handle:
            for block in iter_chunks(handle):
                hasher.update(block)
        return hasher.hexdigest()

    def hashes(self, id: str, path: str) -> tuple[str, str]:
        """The hex md5 and sha256 digests of ``path`` of entity ``id``, in one read."""
        md5, sha256 = md5_hasher(), hashlib.sha256()
        with self.open(id, path) as handle:
            for block in iter_chunks(handle):
                md5.update(block)
                sha256.update(block)
        return md5.hexdigest(), sha256.hexdigest()

    def sha256(self, id: str, path: str) -> str:
        """The hex sha256 digest of ``path`` of entity ``id``, read from its bytes every time
        (never a digest a backend remembers): what verification compares."""
        hasher = hashlib.sha256()
        with self.open(id, path) as handle:
            for block in iter_chunks(handle):
                hasher.update(block)
        return hasher.hexdigest()

    def verify(self, id: str, path: str, expected_md5: str) -> None:
        """Raise DataIntegrityError unless the md5 of ``path`` of entity ``id`` is
        ``expected_md5`` — read from the bytes every time (never a digest a backend
        remembers)."""
        actual = ArtifactStorage.md5(self, id, path)
        if actual != str(expected_md5).strip().lower():
            raise errors.DataIntegrityError(
                f"artifact {path!r} of entity {id!r} is corrupt or incomplete: expected md5 "
                f"{expected_md5}, found {actual}; upload it again",
                field=path,
                value=actual,
                entity=id,
            )

    # -- housekeeping --------------------------------------------------------------------------

    @abc.abstractmethod
    def delete(self, id: str, path: str) -> bool:
        """Delete the artifact ``path`` of entity ``id``. False if there was none."""

    @abc.abstractmethod
    def delete_entity(self, id: str) -> bool:
        """Delete every artifact of entity ``id``. False if it had none."""

    def link(self, id: str, target: str | os.PathLike[str]) -> Path:
        """Make the artifacts of entity ``id`` the files of the local directory ``target``
        (an "editable" package). Only local backends can; the others raise ValidationError."""
        raise errors.ValidationError(
            f"cannot link entity {id!r} to the local directory {os.fspath(target)!r}: "
            f"{type(self).__name__} does not keep artifacts on this machine; upload the "
            "files instead, or use LocalStorage",
            field="target",
            value=os.fspath(target),
            entity=id,
        )

    def local_path(self, id: str, path: str) -> Path | None:
        """The local file of ``path`` of entity ``id``, or None if the backend is not local."""
        return None

    def local_dir(self, id: str) -> Path | None:
        """The local directory of entity ``id``'s artifacts (which may not exist yet), or None
        if the backend is not local."""
        return None

    def local_copy(self, id: str, paths: Iterable[str] | None = None) -> Path:
        """A directory on this machine that holds the artifacts of entity ``id`` (every one,
        or those in ``paths``) as files, for code that needs files (an analysis process, a
        replica, the checks of a Module): ``<directory>/<path>``. A local backend gives the
        entity's own directory; a remote one downloads into a cache on this machine, again
        only what changed since. ``paths=()`` gives the directory without fetching anything
        (a place to work in before storing). Read it, never write artifacts into it."""
        directory = self.local_dir(id)
        if directory is None:
            raise errors.ValidationError(
                f"entity {id!r}: {type(self).__name__} cannot copy artifacts to this machine",
                entity=id,
            )
        for path in paths or ():
            self.check_path(id, path)
        return directory

    def signed_url(
        self, id: str, path: str, method: str, *, lifetime: float, md5: str | None = None
    ) -> tuple[str, dict[str, str]] | None:
        """A URL that the storage itself serves for ``method`` (``GET`` or ``PUT``) on
        ``path`` of entity ``id`` for ``lifetime`` seconds, and the headers a request to it
        must carry (a ``PUT`` of a file whose ``md5`` is known is refused by the storage
        unless its bytes have that digest); None where the storage serves no URLs (the
        server then signs URLs of its own, ``assay.server.signed_urls``)."""
        return None

    @abc.abstractmethod
    def arrow_location(self, id: str, prefix: str = "") -> tuple[pyarrow.fs.FileSystem, str]:
        """A pyarrow file system and the location in it of ``prefix`` of entity ``id``
        (the entity's root for ``""``), for reading and writing data sets with Arrow."""

    # -- helpers for backends ------------------------------------------------------------------

    @staticmethod
    def check_id(id: str) -> str:
        """``id`` if it is an entity id (so it cannot name another directory), else
        ValidationError."""
        if not is_entity_id(id):
            raise errors.ValidationError(
                f"artifact storage: {id!r} is not an entity id (32 lowercase hex digits)",
                field="id",
                value=id,
            )
        return id

    @staticmethod
    def check_path(id: str, path: str) -> str:
        """``path`` if it is a valid artifact path, else ValidationError naming the entity."""
        return validate_artifact_path(path, entity=id)

    @staticmethod
    def check_prefix(id: str, prefix: str) -> str:
        """``prefix`` (``""`` for everything) if it could begin an artifact path."""
        if prefix and (not isinstance(prefix, str) or prefix.strip("/") == ""):
            raise errors.ValidationError(
                f"entity {id}: prefix {prefix!r} is not a path prefix", field="prefix"
            )
        if prefix:
            validate_artifact_path(prefix.rstrip("/"), field="prefix", entity=id)
        return prefix

    @staticmethod
    def missing(id: str, path: str) -> errors.NotFoundError:
        """The error for an artifact that does not exist."""
        return errors.NotFoundError(
            f"entity {id!r} has no artifact {path!r} (list its artifacts to see which exist)",
            kind="Artifact",
            id=id,
        )
