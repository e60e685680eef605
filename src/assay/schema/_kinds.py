"""The set of entity kinds: revisions and histories (which can hold any kind), and looking a
kind up by name.

Public names are re-exported by :mod:`assay.schema.platform`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import pydantic
from pydantic import Field

from assay import errors
from assay.schema._analysis import Measurement, Method, SafetyCase
from assay.schema._data import (
    Audit,
    AuditProcedure,
    Dataset,
    DataSource,
    Evaluation,
    Family,
    Module,
    Report,
)
from assay.schema._entity import Entity, now_utc
from assay.schema._inference import InferenceService, InferenceSession, Model
from assay.schema.base import SchemaModel, validate_model

__all__ = [
    "ENTITY_KINDS",
    "EntityType",
    "ForeignRevision",
    "History",
    "Revision",
    "RevisionData",
    "RevisionMetadata",
    "RevisionableEntity",
    "entity_class",
    "parse_entity",
]


class RevisionMetadata(SchemaModel):
    """When a revision was made, and from which."""

    previousRevision: str | None = None
    """The id of the revision this one was derived from (none for the first)."""
    creationTime: datetime = Field(default_factory=now_utc)
    """When the revision was created (UTC; now, when a revision is made without it)."""


class ForeignRevision(RevisionMetadata):
    """A revision, as listed in a History."""

    id: str
    """The id of the Revision."""


class History(Entity):
    """The revisions of one entity."""

    kind: Literal["History"] = "History"
    """Always ``History``."""
    historyOf: str
    """The id of the entity whose revisions these are."""
    latest: ForeignRevision
    """The latest revision."""
    revisions: list[ForeignRevision]
    """The known revisions, oldest first."""

    @pydantic.model_validator(mode="before")
    @classmethod
    def _documented_shape(cls, data: Any) -> Any:
        """Also take the older reference schema's shape: ``revisions`` as a mapping of
        revision ids to their metadata (in order, oldest first), and ``latest`` as the id of
        one of them. The wire shape stays a list of revisions and the latest revision."""
        if not isinstance(data, dict) or not isinstance(data.get("revisions"), dict):
            return data
        data = dict(data)
        revisions: dict[str, Any] = {}
        for id, metadata in data["revisions"].items():
            fields = _as_dict(metadata if metadata is not None else {})
            if not isinstance(fields, dict):
                raise ValueError(
                    f"revisions[{id!r}]: expected the revision's metadata (previousRevision, "
                    f"creationTime), got {type(metadata).__name__}"
                )
            revisions[id] = {**fields, "id": id}
        data["revisions"] = list(revisions.values())
        latest = data.get("latest")
        if isinstance(latest, str):
            if latest not in revisions:
                raise ValueError(
                    f"latest: {latest!r} is not one of the revisions "
                    f"({', '.join(revisions) or 'there are none'})"
                )
            data["latest"] = revisions[latest]
        return data

    def _query_refs(self) -> dict[str, list[str | None]]:
        return {"historyOf": [self.historyOf]}


def _as_dict(value: Any) -> Any:
    """A model as a dict of its fields; anything else as it is."""
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump()
    return value


RevisionableEntity = Annotated[
    Audit
    | AuditProcedure
    | DataSource
    | Dataset
    | Evaluation
    | Family
    | InferenceService
    | InferenceSession
    | Measurement
    | Method
    | Model
    | Module
    | Report
    | SafetyCase,
    Field(discriminator="kind"),
]
"""Any entity kind that has revisions (every kind but History and Revision)."""


class RevisionData(SchemaModel):
    """The content of a revision: a full snapshot, or a patch to the previous revision."""

    format: Literal["Snapshot", "JsonMergePatch"]
    """Which of the two fields holds the revision."""
    snapshot: RevisionableEntity | None = None
    """A full snapshot of the entity, for ``format = Snapshot``."""
    jsonMergePatch: str | None = None
    """A JSON Merge Patch (as a string) that turns the current revision into the previous
    one, for ``format = JsonMergePatch``."""

    @pydantic.model_validator(mode="after")
    def _format_matches(self) -> RevisionData:
        field = "snapshot" if self.format == "Snapshot" else "jsonMergePatch"
        if getattr(self, field) is None:
            raise ValueError(f"{field}: required when format is {self.format!r}")
        return self


class Revision(Entity, RevisionMetadata):
    """One revision of an entity."""

    kind: Literal["Revision"] = "Revision"
    """Always ``Revision``."""
    revisionOf: str
    """The id of the entity this is a revision of."""
    data: RevisionData
    """The revision's content."""

    @property
    def entity(self) -> RevisionableEntity | None:
        """The entity as of this revision, where the revision is a full snapshot (None for a
        ``JsonMergePatch`` revision: apply the patches to the current entity instead)."""
        return self.data.snapshot

    def _query_refs(self) -> dict[str, list[str | None]]:
        return {"revisionOf": [self.revisionOf]}


_CLASSES: dict[str, type[Entity]] = {
    cls.model_fields["kind"].default: cls
    for cls in (
        Audit,
        AuditProcedure,
        DataSource,
        Dataset,
        Evaluation,
        Family,
        History,
        InferenceService,
        InferenceSession,
        Measurement,
        Method,
        Model,
        Module,
        Report,
        Revision,
        SafetyCase,
    )
}

#: The names of the entity kinds, sorted.
ENTITY_KINDS: tuple[str, ...] = tuple(sorted(_CLASSES))

EntityType = Annotated[
    Audit
    | AuditProcedure
    | DataSource
    | Dataset
    | Evaluation
    | Family
    | History
    | InferenceService
    | InferenceSession
    | Measurement
    | Method
    | Model
    | Module
    | Report
    | Revision
    | SafetyCase,
    Field(discriminator="kind"),
]
"""Any entity kind, told apart by ``kind``."""


def entity_class(kind: str) -> type[Entity]:
    """The class of the entity kind ``kind`` (e.g. ``"Dataset"`` → :class:`Dataset`)."""
    cls = _CLASSES.get(str(kind))
    if cls is None:
        raise errors.ValidationError(
            f"unknown entity kind {str(kind)!r}: expected one of {', '.join(ENTITY_KINDS)}",
            field="kind",
            value=kind,
        )
    return cls


def parse_entity(data: dict[str, Any]) -> Entity:
    """Validate ``data`` (e.g. decoded JSON) as the entity kind named by its ``kind`` field,
    raising :class:`assay.errors.ValidationError` if it is not one."""
    if not isinstance(data, dict):
        raise errors.ValidationError(
            f"an entity must be a JSON object with a 'kind' field; got {type(data).__name__}",
            field="kind",
        )
    if "kind" not in data:
        raise errors.ValidationError(
            f"kind: required field is missing; expected one of {', '.join(ENTITY_KINDS)}",
            field="kind",
        )
    cls = entity_class(data["kind"])
    what = f"{cls.__name__} {data['id']}" if isinstance(data.get("id"), str) else cls.__name__
    return validate_model(cls, data, what=what)
