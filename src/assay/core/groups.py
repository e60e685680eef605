"""The API groups: one per entity kind, all with the same shape.

Every group offers ``get``, ``create``, ``delete``, ``purge``, ``query(**filters)``,
``label(id, {...})``, ``documentation(id)`` and ``edit_documentation(id, ...)``; groups of
workflow kinds add ``wait(id, timeout=None)``. Kind-specific operations (uploads, ``open``)
live in subclasses in their own modules.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from assay import errors
from assay.engine.transitions import apply_transition, utc_now
from assay.schema import ids
from assay.schema.base import validate_model
from assay.schema.platform import Documentation, Entity, entity_class
from assay.schema.requests import (
    DocumentationEditRequest,
    EntityCreateRequest,
    LabelsEditRequest,
)
from assay.schema.status import Reason, Status, is_status_terminal

if TYPE_CHECKING:
    from assay.core.platform import PlatformCore

__all__ = ["COMMON_FILTERS", "EntityGroup"]

E = TypeVar("E", bound=Entity)

#: Filters every group's ``query`` accepts.
COMMON_FILTERS = ("id", "account", "status", "reason", "name", "labels", "order", "limit", "after")


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


class EntityGroup(Generic[E]):
    """Operations on the entities of one kind."""

    kind: ClassVar[str]
    request_type: ClassVar[type[EntityCreateRequest] | None] = None
    #: Reference filters this kind's ``query`` accepts (besides :data:`COMMON_FILTERS`).
    ref_filters: ClassVar[tuple[str, ...]] = ()

    def __init__(self, core: PlatformCore) -> None:
        self._core = core

    @property
    def entity_type(self) -> type[E]:
        return entity_class(self.kind)  # type: ignore[return-value]

    # -- reading -------------------------------------------------------------------------

    def get(self, id: str) -> E:
        """The entity with this id; :class:`assay.errors.NotFoundError` if there is none."""
        return self._parse(self._core.store.require(id, kind=self.kind).doc)

    def query(self, **filters: Any) -> list[E]:
        """Entities of this kind matching every filter. String filters match exactly; a list
        means "any of". ``labels`` is a dict (or its JSON) of key → value, list of values, or
        None (key present). ``order`` is ``ascending`` (default) or ``descending`` by creation
        time; page with ``limit`` and ``after`` (the id of the last entity of a page)."""
        return [
            self._parse(doc)
            for doc in self._core.store.query(kind=self.kind, **self._filters(filters))
        ]

    def _filters(self, filters: Mapping[str, Any]) -> dict[str, Any]:
        valid = COMMON_FILTERS + self.ref_filters
        unknown = sorted(set(filters) - set(valid))
        if unknown:
            raise errors.ValidationError(
                f"{self.kind} query: unknown filter {', '.join(map(repr, unknown))}; "
                f"valid filters are {', '.join(valid)}",
                field=unknown[0],
            )
        out: dict[str, Any] = {}
        refs: dict[str, Any] = {}
        for key, value in filters.items():
            if value is None:
                continue
            if key == "id":
                out["ids"] = value if isinstance(value, list | tuple) else [value]
            elif key == "labels":
                out["labels"] = _labels_filter(value, self.kind)
            elif key == "order":
                if value not in ("ascending", "descending"):
                    raise errors.ValidationError(
                        f"{self.kind} query: order must be 'ascending' or 'descending', got {value!r}",
                        field="order",
                        value=value,
                    )
                out["order"] = value
            elif key == "limit":
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise errors.ValidationError(
                        f"{self.kind} query: limit must be a positive integer, got {value!r}",
                        field="limit",
                        value=value,
                    )
                out["limit"] = value
            elif key in self.ref_filters:
                refs[key] = value
            else:
                out[key] = value
        if refs:
            out["refs"] = refs
        return out

    def _parse(self, doc: dict[str, Any]) -> E:
        return self.entity_type.model_validate(doc)

    # -- creating ------------------------------------------------------------------------

    def create(self, request: Any) -> E:
        """Create an entity from its create request (a request object or a dict)."""
        if self.request_type is None:
            raise errors.ValidationError(
                f"{self.kind} entities are made by the platform and cannot be created directly"
            )
        req = validate_model(self.request_type, request, what=f"{self.kind} create request")
        entity = self._build(req)
        return self._insert(entity)

    def _build(self, request: Any) -> E:
        """The new entity for a validated request (kinds override to resolve references)."""
        body = request.model_dump(by_alias=True, exclude_none=True, exclude={"schemaVersion"})
        return self._new(body)

    def _new(
        self, body: dict[str, Any], *, status: str = Status.Created, reason: str | None = None
    ) -> E:
        body = dict(body)
        body.update(
            id=body.get("id") or ids.generate_entity_id(),
            kind=self.kind,
            status=status,
            creationTime=iso(utc_now()),
        )
        if reason is not None:
            body["reason"] = reason
        try:
            return self.entity_type.model_validate(body)
        except Exception as exc:  # a bug in a _build: say so plainly
            raise errors.PlatformError(f"could not build the {self.kind} entity: {exc}") from exc

    def _insert(self, entity: E) -> E:
        """Store a new entity, already in the status its dependencies allow, and start its
        workflow when it has one to run."""
        core = self._core
        deps = entity.dependencies()
        refs = {k: list(v) for k, v in entity.query_refs().items() if v}
        if deps:
            refs["dependency"] = list(deps)
        status, reason, message = core.engine.initial_state(entity)
        doc = entity.to_wire()
        if (status, reason, message) != (entity.status, entity.reason, entity.message):
            apply_transition(doc, status, reason=reason, message=message)
        core.store.create(doc, refs=refs)
        # Runnable now, or waiting: schedule (a dependency may have succeeded since
        # initial_state looked, with nobody left to notify this entity).
        runnable = status == Status.Created and reason != Reason.WaitingForUpload
        if runnable and core.engine.schedule(entity.id):
            return self.get(entity.id)
        return self._parse(doc)

    def _resolve(self, kind: str, id: str, *, field: str) -> Any:
        """The entity ``id`` of ``kind``, referenced by ``field`` of a request."""
        record = self._core.store.get(id)
        if record is None or record.doc.get("kind") != kind:
            raise errors.NotFoundError(
                f"{self.kind} create request: {field} refers to {kind} {id!r}, which does not "
                f"exist (create it first, or check the id)",
                kind=kind,
                id=id,
            )
        return entity_class(kind).model_validate(record.doc)

    # -- changing ------------------------------------------------------------------------

    def label(self, id: str, labels: Mapping[str, str | None] | LabelsEditRequest) -> E:
        """Merge ``labels`` into the entity's labels; a value of None removes the key."""
        if isinstance(labels, LabelsEditRequest):
            req = labels
        else:
            req = validate_model(
                LabelsEditRequest, {"labels": dict(labels)}, what=f"{self.kind} {id} labels"
            )

        def mutate(doc: dict[str, Any]) -> dict[str, Any]:
            current = dict(doc.get("labels") or {})
            for key, value in req.labels.items():
                if value is None:
                    current.pop(key, None)
                else:
                    current[key] = value
            doc["labels"] = current
            return doc

        return self._parse(self._core.store.update(id, mutate, kind=self.kind).doc)

    def documentation(self, id: str) -> Documentation:
        """The entity's documentation (title, summary, full page)."""
        doc = self._core.store.require(id, kind=self.kind).doc
        body = dict((doc.get("metadata") or {}).get("documentation") or {})
        return Documentation.model_validate({"entity": id, **body})

    def edit_documentation(self, id: str, edit: Any = None, **fields: Any) -> Documentation:
        """Change the documentation: fields given are set, fields given as None removed,
        others kept. Pass a ``DocumentationEditRequest``, a dict, or keywords."""
        if edit is None:
            edit = fields
        elif fields:
            raise errors.ValidationError(
                f"{self.kind} {id} documentation: pass a request or keywords, not both"
            )
        req = validate_model(DocumentationEditRequest, edit, what=f"{self.kind} {id} documentation")
        patch = req.model_dump(exclude_unset=True, exclude_none=False, exclude={"schemaVersion"})

        def mutate(doc: dict[str, Any]) -> dict[str, Any]:
            metadata = dict(doc.get("metadata") or {})
            current = dict(metadata.get("documentation") or {})
            for key, value in patch.items():
                if value is None:
                    current.pop(key, None)
                else:
                    current[key] = value
            metadata["documentation"] = current
            doc["metadata"] = metadata
            return doc

        self._core.store.update(id, mutate, kind=self.kind)
        return self.documentation(id)

    def delete(self, id: str) -> None:
        """Mark the entity ``Deleted`` (its record and data stay until :meth:`purge`)."""
        self._core.store.require(id, kind=self.kind)
        self._core.engine.transition(
            id,
            Status.Deleted,
            Reason.DeleteCommand,
            None,
            expect=tuple(s for s in Status.ALL if s != Status.Deleted),
        )

    def purge(self, id: str, *, force: bool = False) -> None:
        """Remove the entity's record and artifacts for good. Refused while entities that are
        not deleted depend on it, unless ``force``."""
        self._core.store.require(id, kind=self.kind)
        if not force:
            dependents = [
                d
                for d in self._core.store.query(refs={"dependency": id})
                if d.get("status") != Status.Deleted
            ]
            if dependents:
                listed = ", ".join(f"{d['kind']} {d['id']}" for d in dependents[:5])
                raise errors.ConflictError(
                    f"{self.kind} {id} cannot be purged: {len(dependents)} entities depend on it "
                    f"({listed}); delete or purge them first, or pass force=True"
                )
        self._core.storage.delete_entity(id)
        self._core.store.delete(id)

    # -- workflows -----------------------------------------------------------------------

    def wait(self, id: str, timeout: float | None = None) -> E:
        """Block until the entity's status is terminal and return it (successful or not:
        check ``status``, ``reason`` and ``message``)."""
        return self._parse(self._core.engine.wait(id, kind=self.kind, timeout=timeout))

    def _require_success(self, entity: E, action: str) -> None:
        if entity.status not in ("Complete", "Ready"):
            state = entity.status + (f" ({entity.reason})" if entity.reason else "")
            hint = (
                "wait for it with .wait(id)"
                if not is_status_terminal(entity.status)
                else (entity.message or "it did not succeed")
            )
            raise errors.ConflictError(
                f"cannot {action} {self.kind} {entity.id}: it is {state}; {hint}"
            )


def _labels_filter(value: Any, kind: str) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise errors.ValidationError(
                f"{kind} query: labels must be a dict or its JSON, got {value!r} ({exc.msg})",
                field="labels",
                value=value,
            ) from None
    if not isinstance(value, Mapping):
        raise errors.ValidationError(
            f"{kind} query: labels must be a dict of key → value, got {value!r}",
            field="labels",
            value=value,
        )
    return dict(value)
