"""Immutable pipeline versions, stored as ``PipelineVersion`` documents in the platform's
entity store.

A version is written once (``EntityStore.create``) and never replaced. Its id is derived from
the account, the pipeline name and the version number (uuid5), so two processes deploying at
once cannot both write version *n*: the second gets a ConflictError and takes *n + 1*.
Design notes: ``docs/design/pipelines.md``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from assay import errors
from assay.pipelines.definition import PipelineDefinition

__all__ = ["KIND", "PipelineVersion", "VersionStore"]

KIND = "PipelineVersion"
_NAMESPACE = uuid.UUID("6f1c0d1e-8a0b-4f57-9d2e-3b7a2c5e9a10")


class PipelineVersion(BaseModel):
    """One deployed definition of a pipeline, as it was deployed."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    id: str
    """The id of the stored document."""
    pipeline: str
    """The name of the pipeline."""
    account: str
    """The account that owns the pipeline."""
    version: int
    """The version number: 1 for the first deploy, one more for each later one."""
    created: datetime
    """When the version was stored."""
    definition: PipelineDefinition
    """Every step, split, shadow and validation."""


class VersionStore:
    """The versions of one pipeline in an :class:`assay.store.EntityStore`."""

    def __init__(self, store: Any, *, pipeline: str, account: str) -> None:
        self._store = store
        self._pipeline = pipeline
        self._account = account

    def list(self) -> list[PipelineVersion]:
        """Every version, oldest first."""
        docs = self._store.query(kind=KIND, account=self._account, name=self._pipeline)
        versions = [_version(doc) for doc in docs]
        return sorted(versions, key=lambda v: v.version)

    def get(self, version: int) -> PipelineVersion:
        """Version ``version``; NotFoundError listing the versions there are."""
        if isinstance(version, bool) or not isinstance(version, int):
            raise errors.ValidationError(
                f"version must be a version number (int), got {version!r}", field="version"
            )
        record = self._store.get(self._id(version), kind=KIND)
        if record is None:
            known = [v.version for v in self.list()]
            raise errors.NotFoundError(
                f"pipeline {self._pipeline!r} has no version {version}; its versions are "
                f"{known or 'none (deploy it first)'}"
            )
        return _version(record.doc)

    def find(self, version: Any) -> PipelineVersion:
        """Version ``version``: its number (an int, or a str of one, like ``"3"``) or the
        id of its document."""
        if isinstance(version, str) and version.strip().isdecimal():
            return self.get(int(version.strip()))
        if isinstance(version, str):
            found = next((v for v in self.list() if v.id == version), None)
            if found is None:
                raise errors.NotFoundError(
                    f"pipeline {self._pipeline!r} has no version {version!r}; give a version "
                    f"number (one of {[v.version for v in self.list()] or 'none'}) or a "
                    "version's id"
                )
            return found
        return self.get(version)

    def add(self, definition: PipelineDefinition) -> PipelineVersion:
        """Store ``definition`` as the next version."""
        number = max((v.version for v in self.list()), default=0) + 1
        for _ in range(100):
            version = PipelineVersion(
                id=self._id(number),
                pipeline=self._pipeline,
                account=self._account,
                version=number,
                created=datetime.now(UTC),
                definition=definition,
            )
            doc = {
                "id": version.id,
                "kind": KIND,
                "account": self._account,
                "name": self._pipeline,
                "status": "Ready",
                "version": number,
                "created": version.created.isoformat(),
                "definition": definition.model_dump(mode="json", by_alias=True),
            }
            try:
                self._store.create(doc)
            except errors.ConflictError:
                number += 1
                continue
            return version
        raise errors.ConflictError(  # pragma: no cover - 100 concurrent deploys
            f"pipeline {self._pipeline!r}: could not store a new version; retry the deploy"
        )

    def _id(self, version: int) -> str:
        return uuid.uuid5(_NAMESPACE, f"{self._account}/{self._pipeline}/{version}").hex


def _version(doc: dict[str, Any]) -> PipelineVersion:
    return PipelineVersion(
        id=doc["id"],
        pipeline=doc["name"],
        account=doc["account"],
        version=doc["version"],
        created=datetime.fromisoformat(doc["created"]),
        definition=PipelineDefinition.model_validate(doc["definition"]),
    )
