"""Kinds whose data is uploaded: the entity is created first (``WaitingForUpload``), each
declared artifact is put, then ``finalize`` checks every digest and starts ingest.

Nothing is half-registered: an artifact whose digest does not match is removed as soon as it
is written, and a failed ``finalize`` leaves the entity waiting for its upload, so the upload
can be repeated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, TypeVar

from assay import errors
from assay.core.groups import EntityGroup
from assay.schema.paths import check_entity_path
from assay.schema.platform import Entity
from assay.schema.status import Reason, Status

__all__ = ["UploadGroup", "file_md5", "list_files"]

U = TypeVar("U", bound=Entity)

_CHUNK = 1 << 20


def file_md5(path: Path) -> str:
    """The md5 hex digest of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def list_files(root: Path, what: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise errors.ValidationError(
            f"{what}: {str(root)!r} is not a directory (give the directory that holds the files)",
            field="directory",
            value=str(root),
        )
    return root


class UploadGroup(EntityGroup[U]):
    """A group whose entities declare files (``artifacts``) that are uploaded after creation.

    A kind that declares its files elsewhere (a Model's ``artifact.volume.files``) overrides
    the three hooks :meth:`_declared`, :meth:`_declared_docs` and :meth:`_record`.
    """

    #: Where the declaration lives, for messages.
    declaration_field: ClassVar[str] = "artifacts"

    def _declared(self, entity: U) -> list[Any]:
        """The declared files (each with ``path`` and ``digest``)."""
        return list(entity.artifacts)  # type: ignore[attr-defined]

    def _declared_docs(self, doc: dict[str, Any]) -> list[dict[str, Any]]:
        """The declared files in the stored document, to record digests in."""
        return list(doc.get("artifacts") or [])

    def _record(self, item: dict[str, Any], md5: str, size: int) -> None:
        """Record a verified file's digest in its declaration."""
        item["digest"] = {"md5": md5}

    def _recorded_digests(self, entity: U) -> dict[str, str]:
        """The md5 of each declared file that has one (checked when a record is imported)."""
        return {a.path: a.digest.md5 for a in self._declared(entity) if a.digest and a.digest.md5}

    def _new(
        self, body: dict[str, Any], *, status: str = Status.Created, reason: str | None = None
    ) -> U:
        for i, artifact in enumerate(body.get("artifacts") or []):
            check_entity_path(artifact["path"], field=f"artifacts[{i}].path", entity=self.kind)
        return super()._new(body, status=status, reason=reason or Reason.WaitingForUpload)

    def _artifact(self, entity: U, path: str) -> Any:
        for artifact in self._declared(entity):
            if artifact.path == path:
                return artifact
        declared = ", ".join(repr(a.path) for a in self._declared(entity)[:10])
        raise errors.ValidationError(
            f"{self.kind} {entity.id}: {path!r} is not one of its files ({declared or 'none'}); "
            f"upload only the files declared in {self.declaration_field}",
            field="path",
            value=path,
            entity=entity.id,
        )

    def _require_waiting(self, entity: U) -> None:
        if entity.status != Status.Created or entity.reason != Reason.WaitingForUpload:
            raise errors.ConflictError(
                f"{self.kind} {entity.id} is not waiting for an upload (it is {entity.status}"
                f"{', ' + entity.reason if entity.reason else ''}); its data cannot change once "
                "finalized: create a new one instead"
            )

    def put_artifact(
        self, id: str, path: str, data: bytes | Path | BinaryIO | Iterable[bytes]
    ) -> str:
        """Store one declared artifact (bytes, a file path, a binary file or byte chunks) and
        return its md5. A digest declared at creation must match."""
        entity = self.require(id)
        self._require_waiting(entity)
        artifact = self._artifact(entity, path)
        storage = self._core.storage
        if isinstance(data, bytes):
            info = storage.put_bytes(id, path, data)
        elif isinstance(data, Path):
            info = storage.put_file(id, path, data)
        else:
            info = storage.put_stream(id, path, data)
        actual = info.md5 or storage.md5(id, path)
        expected = artifact.digest.md5 if artifact.digest else None
        if expected and actual != expected:
            storage.delete(id, path)
            raise errors.DataIntegrityError(
                f"{self.kind} {id}: artifact {path!r} has md5 {actual}, but {expected} was "
                "declared when the entity was created; the file changed since — upload the "
                "original, or create a new entity from the current files",
                field=f"artifacts[{path}]",
                entity=id,
            )
        return actual

    def finalize(self, id: str) -> U:
        """Check that every declared artifact is stored with its declared digest, record the
        digests, and start ingest. Returns the entity (``Ready`` once ingest is done)."""
        entity = self.require(id)
        self._require_waiting(entity)
        storage = self._core.storage
        declared = self._declared(entity)
        missing = [a.path for a in declared if not storage.exists(id, a.path)]
        if missing:
            raise errors.ValidationError(
                f"{self.kind} {id}: {len(missing)} declared files were not uploaded "
                f"({', '.join(repr(p) for p in missing[:5])}); upload them, then finalize again",
                field=self.declaration_field,
                entity=id,
            )
        sizes = {info.path: info.size for info in storage.list(id)}
        digests: dict[str, str] = {}
        for artifact in declared:
            actual = storage.md5(id, artifact.path)
            if artifact.digest and artifact.digest.md5 and artifact.digest.md5 != actual:
                raise errors.DataIntegrityError(
                    f"{self.kind} {id}: file {artifact.path!r} has md5 {actual}, expected "
                    f"{artifact.digest.md5}; upload it again",
                    field=self.declaration_field,
                    entity=id,
                )
            digests[artifact.path] = actual

        def mutate(doc: dict[str, Any]) -> dict[str, Any] | None:
            if doc.get("status") != Status.Created or doc.get("reason") != Reason.WaitingForUpload:
                return None
            for item in self._declared_docs(doc):
                self._record(item, digests[item["path"]], sizes[item["path"]])
            doc.pop("reason", None)
            doc.pop("message", None)
            return doc

        self._core.store.update(id, mutate, kind=self.kind)
        self._core.engine.schedule(id)
        return self.require(id)

    def _upload_directory(self, entity: U, directory: Path) -> U:
        """Put every declared artifact from ``directory`` and finalize; on any failure the
        files already put are removed and the entity keeps waiting for its upload."""
        directory = list_files(directory, f"{self.kind} {entity.id} upload")
        put: list[str] = []
        try:
            for artifact in self._declared(entity):
                source = directory / artifact.path
                if not source.is_file():
                    raise errors.ValidationError(
                        f"{self.kind} {entity.id}: {str(source)!r} is missing; upload from the "
                        "directory the entity was created from",
                        field="directory",
                        entity=entity.id,
                    )
                self.put_artifact(entity.id, artifact.path, source)
                put.append(artifact.path)
            return self.finalize(entity.id)
        except BaseException:
            for path in put:
                self._core.storage.delete(entity.id, path)
            raise
