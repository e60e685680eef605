"""The API groups: one per entity kind, all with the same shape.

Every group offers ``get`` (None for an unknown id), ``require`` (the same, but
:class:`~assay.errors.NotFoundError` for an unknown id), ``create``, ``delete``, ``purge``,
``query(**filters)``,
``label(id, {...})``, ``documentation(id)`` and ``edit_documentation(id, ...)``; groups of
workflow kinds add ``wait(id, timeout=None)``, and those of jobs (evaluations, measurements,
safety cases; sessions have their own) ``terminate(id)`` (:class:`TerminableGroup`).
Kind-specific operations (uploads, ``open``) live in subclasses in their own modules.

``fetch(id)`` copies an entity from a server into this platform: the group asks its
:class:`RemoteSource` (set by ``LocalPlatform(remote_client=...)``) to download it, and the
source stores what it downloaded with :meth:`EntityGroup._import_record` (see
``docs/design/client.md``, "Remote mode").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from assay import errors
from assay.core import references
from assay.engine.transitions import apply_transition, utc_now
from assay.schema import ids
from assay.schema._request_base import lacks_account
from assay.schema.base import validate_model
from assay.schema.paths import validate_artifact_path
from assay.schema.platform import Documentation, Entity, entity_class
from assay.schema.requests import (
    DocumentationEditRequest,
    EntityCreateRequest,
    LabelsEditRequest,
)
from assay.schema.status import Reason, Status, is_status_success, is_status_terminal

if TYPE_CHECKING:
    from assay.core.platform import PlatformCore

__all__ = [
    "COMMON_FILTERS",
    "EntityGroup",
    "ImportedFiles",
    "RemoteSource",
    "TerminableGroup",
    "ended_conflict",
]

E = TypeVar("E", bound=Entity)

#: Filters every group's ``query`` accepts.
COMMON_FILTERS = ("id", "account", "status", "reason", "name", "labels", "order", "limit", "after")


#: Files to import with a record: artifact path → (a local file, the md5 its origin declared,
#: or None where it declared none).
ImportedFiles = Mapping[str, tuple[Path, str | None]]


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


class RemoteSource(Protocol):
    """Where ``fetch`` and a remote ``local_evaluation`` go: a server, reached through a
    ``Client`` (:class:`assay.local.remote.ClientSource` is the one ``LocalPlatform`` uses)."""

    def fetch(self, group: EntityGroup[Any], id: str) -> Entity:
        """Download entity ``id`` of ``group``'s kind and import it into ``group``."""
        ...

    def local_evaluation(self, group: Any, *, dataset: str, inferencesession: str) -> str:
        """Evaluate the local Dataset ``dataset`` with the server's session
        ``inferencesession``; the id of the local Evaluation."""
        ...


class EntityGroup(Generic[E]):
    """Operations on the entities of one kind."""

    kind: ClassVar[str]
    request_type: ClassVar[type[EntityCreateRequest] | None] = None
    #: Reference filters this kind's ``query`` accepts (besides :data:`COMMON_FILTERS`).
    ref_filters: ClassVar[tuple[str, ...]] = ()
    #: Filters on a nested field of the document: filter name → dotted path
    #: (``{"outputKind": "output.kind"}``).
    field_filters: ClassVar[Mapping[str, str]] = {}

    def __init__(self, core: PlatformCore) -> None:
        self._core = core
        self.remote_source: RemoteSource | None = None
        """Where :meth:`fetch` downloads from (None: nowhere; ``LocalPlatform(remote_client=
        ...)`` sets it)."""

    @property
    def entity_type(self) -> type[E]:
        return entity_class(self.kind)  # type: ignore[return-value]

    # -- reading -------------------------------------------------------------------------

    def get(self, id: str) -> E | None:
        """The entity with this id; None if there is none (as the reference platform's
        ``get``). :meth:`require` raises instead."""
        record = self._core.store.get(id, kind=self.kind)
        return None if record is None else self._parse(record.doc)

    def require(self, id: str) -> E:
        """The entity with this id; :class:`assay.errors.NotFoundError` if there is none."""
        entity = self.get(id)
        if entity is None:
            raise errors.NotFoundError.entity(self.kind, id)
        return entity

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
        valid = COMMON_FILTERS + self.ref_filters + tuple(self.field_filters)
        unknown = sorted(set(filters) - set(valid))
        if unknown:
            raise errors.ValidationError(
                f"{self.kind} query: unknown filter {', '.join(map(repr, unknown))}; "
                f"valid filters are {', '.join(valid)}",
                field=unknown[0],
            )
        out: dict[str, Any] = {}
        refs: dict[str, Any] = {}
        fields: dict[str, Any] = {}
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
                if (
                    not isinstance(value, int)
                    or isinstance(value, bool)
                    or not 1 <= value <= 2**31 - 1
                ):
                    raise errors.ValidationError(
                        f"{self.kind} query: limit must be an integer from 1 to 2**31 - 1, "
                        f"got {value!r}",
                        field="limit",
                        value=value,
                    )
                out["limit"] = value
            elif key in self.ref_filters:
                refs[key] = value
            elif key in self.field_filters:
                fields[self.field_filters[key]] = value
            else:
                out[key] = value
        if refs:
            out["refs"] = refs
        if fields:
            out["fields"] = fields
        return out

    def _parse(self, doc: dict[str, Any]) -> E:
        return self.entity_type.model_validate(doc)

    # -- creating ------------------------------------------------------------------------

    def create(self, request: Any) -> E:
        """Create an entity from its create request (a request object or a dict). A dict may
        leave ``account`` out: the entity is then the platform's default account's
        (``LocalPlatform(account=...)``)."""
        if self.request_type is None:
            raise errors.ValidationError(
                f"{self.kind} entities are made by the platform and cannot be created directly"
            )
        request = self._with_default_account(request)
        req = validate_model(self.request_type, request, what=f"{self.kind} create request")
        entity = self._build(req)
        return self._insert(entity)

    def _with_default_account(self, request: Any) -> Any:
        """``request`` with the platform's default account where it is a dict naming none
        (a core without a default account, a server's, leaves it as it is: there the route
        fills in the token's account, ``docs/design/client.md``, "The default account")."""
        account = self._core.default_account
        if account and lacks_account(request):
            return {**request, "account": account}
        return request

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
        refs = self._stored_refs(entity)
        status, reason, message = core.engine.initial_state(entity)
        doc = entity.to_wire()
        if (status, reason, message) != (entity.status, entity.reason, entity.message):
            apply_transition(doc, status, reason=reason, message=message)
        core.store.create(doc, refs=refs)
        # Runnable now, or waiting: schedule (a dependency may have succeeded since
        # initial_state looked, with nobody left to notify this entity).
        runnable = status == Status.Created and reason != Reason.WaitingForUpload
        if runnable and core.engine.schedule(entity.id):
            return self.require(entity.id)
        return self._parse(doc)

    @staticmethod
    def _stored_refs(entity: Entity) -> dict[str, list[str]]:
        """The references the store indexes for ``entity``: its query references and its
        dependencies (as ``dependency``). Written on create, and again by an edit that
        changes them (a Family's members)."""
        refs = {k: list(v) for k, v in entity.query_refs().items() if v}
        deps = entity.dependencies()
        if deps:
            refs["dependency"] = list(deps)
        return refs

    def _resolve(self, kind: str, id: str, *, field: str) -> Any:
        """The entity ``id`` of ``kind``, referenced by ``field`` of a request: looked up by
        :func:`assay.core.references.resolve`, so an entity the caller may not use is
        answered as one that does not exist."""
        return references.resolve(
            self._core, kind, id, what=f"{self.kind} create request", field=field
        )

    # -- importing -----------------------------------------------------------------------

    def fetch(self, id: str) -> E:
        """Download the entity ``id`` and all its artifacts from the server of
        ``LocalPlatform(remote_client=Client(...))`` into this platform (each file checked
        against its md5), and return the local copy: its record as the server has it (id,
        status, times), its data usable offline. An entity already here with the same record
        and files is left as it is. Only an entity in a success status (``Ready``,
        ``Complete``) can be fetched."""
        if self.remote_source is None:
            raise errors.ValidationError(
                f"cannot fetch {self.kind} {id}: this platform has no server to fetch from; "
                "open it with LocalPlatform(storage_root, remote_client=Client(endpoint, token))",
                field="remote_client",
            )
        self.remote_source.fetch(self, id)
        return self.require(id)

    def _import_record(
        self,
        doc: Mapping[str, Any],
        files: ImportedFiles | None = None,
        *,
        records: Sequence[Any] = (),
    ) -> E:
        """Store an entity record made by another platform as it is (its id, status and
        times; no workflow runs), with its artifacts ``files`` and, for a SafetyCase, its
        Score and Curve ``records``.

        Every file must have the md5 its origin declared and the one the record itself
        declares (a Dataset's ``artifacts``); otherwise :class:`~assay.errors.DataIntegrityError`
        and nothing is stored. Files are stored before the record, so the record never
        stands without its data. An entity already here with the same record and files is
        left as it is; one whose record or files differ is brought up to date."""
        what = f"imported {doc.get('kind', 'entity')} {doc.get('id', '')}".rstrip()
        if doc.get("kind") != self.kind:
            raise errors.ValidationError(
                f"{what}: the record is not a {self.kind} (it is a {doc.get('kind')!r}); "
                "import it into the group of its kind",
                field="kind",
                value=doc.get("kind"),
            )
        entity = validate_model(self.entity_type, dict(doc), what=what)
        id, storage = entity.id, self._core.storage
        files = dict(files or {})
        recorded = self._recorded_digests(entity)
        missing = sorted(set(recorded) - set(files))
        if missing and is_status_success(entity.status):
            raise errors.DataIntegrityError(
                f"{what}: the record declares files that were not given "
                f"({', '.join(map(repr, missing[:5]))}); import every declared file",
                field="artifacts",
                entity=id,
            )
        checked: dict[str, tuple[Path, str]] = {}
        for path, (source, declared) in sorted(files.items()):
            validate_artifact_path(path, entity=what)
            actual = _file_md5(source)
            for expected, by in ((declared, "its origin"), (recorded.get(path), "the record")):
                if expected and expected != actual:
                    raise errors.DataIntegrityError(
                        f"{what}: file {path!r} has md5 {actual}, but {by} declares {expected}; "
                        "nothing was stored — fetch it again, and report it if it persists",
                        field=path,
                        value=actual,
                        entity=id,
                    )
            checked[path] = (source, actual)
        existing = self._core.store.get(id)
        if existing is not None and existing.doc.get("kind") != self.kind:
            raise errors.ConflictError(
                f"{what}: this platform has a {existing.doc.get('kind')} with that id"
            )
        try:
            for path, (source, actual) in checked.items():
                if existing is not None and _stored(storage, id, path, source, actual):
                    continue
                info = storage.put_file(id, path, source)
                if (info.md5 or storage.md5(id, path)) != actual:
                    raise errors.DataIntegrityError(
                        f"{what}: file {path!r} changed while it was stored; import it again",
                        field=path,
                        entity=id,
                    )
            self._import_related(entity, records)
            refs = self._stored_refs(entity)
            wire = entity.to_wire()
            if existing is None:
                self._core.store.create(wire, refs=refs)
            elif self._parse(existing.doc).to_wire() != wire:
                self._core.store.replace(id, wire, expected_version=existing.version, refs=refs)
        except BaseException:
            if existing is None:
                storage.delete_entity(id)
            raise
        return self.require(id)

    def _recorded_digests(self, entity: E) -> dict[str, str]:
        """The md5 of each file, as the entity's own record declares them (none here)."""
        return {}

    def _import_related(self, entity: E, records: Sequence[Any]) -> None:
        """Store the records that come with an imported entity (a SafetyCase's scores)."""
        if records:
            raise errors.ValidationError(
                f"imported {self.kind} {entity.id}: {self.kind} entities have no related "
                "records to import",
                field="records",
            )

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
        """Mark the entity ``Deleted`` (its record and data stay until :meth:`purge`). Work
        still running stops as with ``terminate`` (at its next check), keeping what it wrote."""
        self._core.store.require(id, kind=self.kind)
        self._core.engine.transition(
            id,
            Status.Deleted,
            Reason.DeleteCommand,
            None,
            expect=tuple(s for s in Status.ALL if s != Status.Deleted),
        )

    def purge(self, id: str, *, force: bool = False) -> None:
        """Remove the entity's record and artifacts for good, with the Scores and Curves it
        published (a SafetyCase's). Refused while entities that are not deleted depend on
        it, unless ``force``."""
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
        # what it published first, its record last: a purge cut short can be run again
        self._core.scores._purge(id)
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


class TerminableGroup(EntityGroup[E]):
    """The group of a job kind (evaluations, measurements, safety cases): ``terminate(id)``
    stops work that has not ended."""

    def terminate(self, id: str) -> E:
        """Stop the workflow: it becomes ``Terminated`` (``TerminateCommand``) at once, and its
        handler, wherever it runs, stops at its next check (within a second), keeping what it
        wrote. :class:`~assay.errors.ConflictError` if it has ended already."""
        self.require(id)
        if not self._core.engine.terminate(id):
            raise ended_conflict(self.require(id), "terminate")
        return self.require(id)


def ended_conflict(entity: Entity, action: str) -> errors.ConflictError:
    """The refusal to ``action`` an entity that has ended: it names its status."""
    state = entity.status + (f" ({entity.reason})" if entity.reason else "")
    running = (
        "Created, Admitted or Ready" if entity.kind == "InferenceSession" else "Created or Admitted"
    )
    return errors.ConflictError(
        f"cannot {action} {entity.kind} {entity.id}: it has ended already (it is {state}); only "
        f"a {entity.kind} that is {running} can be stopped. Create a new one to run it again, "
        "or delete(id) to mark it Deleted"
    )


def _stored(storage: Any, id: str, path: str, source: Path, md5: str) -> bool:
    """True when ``path`` of entity ``id`` is stored with ``md5`` already (``source`` may be
    the stored file itself: a fetch hands over files it found here)."""
    if not storage.exists(id, path):
        return False
    return bool(storage.local_path(id, path) == source or storage.md5(id, path) == md5)


def _file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


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
