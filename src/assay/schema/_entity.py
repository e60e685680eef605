"""The common base of every entity kind, and the small types that all kinds share.

An entity is a record the platform stores and serves: it has an ``id`` (32 hex digits), belongs
to an ``account``, has a ``kind``, a ``status`` (with ``reason`` and ``message``), timestamps,
``labels``, ``annotations`` and ``metadata``. Each kind says which other entities it depends on
(:meth:`Entity.dependencies`) and which references queries may filter on
(:meth:`Entity.query_refs`).

Public names are re-exported by :mod:`assay.schema.platform`.
"""

from __future__ import annotations

import enum
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import pydantic
from pydantic import Field

from assay import errors
from assay.schema.base import (
    ANNOTATION_KEY_MAX_LENGTH,
    LABEL_KEY_MAX_LENGTH,
    LABEL_KEY_PATTERN,
    LABEL_VALUE_MAX_LENGTH,
    LABEL_VALUE_PATTERN,
    AccountName,
    EntityID,
    LabelKey,
    LabelValue,
    SchemaModel,
)
from assay.schema.status import Status

if TYPE_CHECKING:
    from assay.schema._inference import ResourceAllocation

__all__ = [
    "APIFunctions",
    "APIKey",
    "AccessGrant",
    "Account",
    "Annotation",
    "Artifact",
    "ArtifactURL",
    "Digest",
    "Documentation",
    "DocumentationBase",
    "Entities",
    "Entity",
    "EntityIdentifier",
    "EntityKind",
    "EntityMetadata",
    "File",
    "Identity",
    "Label",
    "Labeled",
    "ModelWithID",
    "Resources",
    "StatusInfo",
    "StorageSignedURL",
    "check_labels",
    "unique",
]

EntityKind = Literal[
    "Account",
    "Audit",
    "AuditProcedure",
    "Curve",
    "DataSource",
    "Dataset",
    "Evaluation",
    "Family",
    "History",
    "InferenceService",
    "InferenceSession",
    "Measurement",
    "Method",
    "Model",
    "Module",
    "Pipeline",
    "Report",
    "Revision",
    "SafetyCase",
    "Score",
]
"""The ``kind`` of anything that has an id on the platform."""


def now_utc() -> datetime:
    """The time now, in UTC (the default of ``creationTime`` fields)."""
    return datetime.now(UTC)


def unique(ids: list[str | None]) -> list[str]:
    """``ids`` without ``None`` and without repeats, in first-seen order."""
    return list(dict.fromkeys(i for i in ids if i is not None))


class Entities(enum.StrEnum):
    """The kinds of things that have an id on the platform (the ``kind`` field)."""

    Account = "Account"
    Audit = "Audit"
    AuditProcedure = "AuditProcedure"
    Curve = "Curve"
    DataSource = "DataSource"
    Dataset = "Dataset"
    Evaluation = "Evaluation"
    Family = "Family"
    History = "History"
    InferenceService = "InferenceService"
    InferenceSession = "InferenceSession"
    Measurement = "Measurement"
    Method = "Method"
    Model = "Model"
    Module = "Module"
    Pipeline = "Pipeline"
    Report = "Report"
    Revision = "Revision"
    SafetyCase = "SafetyCase"
    Score = "Score"

    @staticmethod
    def for_resource(resource: Resources | str) -> Entities:
        """The kind served under the resource name ``resource`` (e.g. ``"datasets"``)."""
        try:
            res = Resources(resource)
        except ValueError:
            res = None
        if res is None or res is Resources.ALL:
            valid = ", ".join(r.value for r in Resources if r is not Resources.ALL)
            raise errors.ValidationError(
                f"unknown resource {str(resource)!r}: expected one of {valid}",
                field="resource",
                value=resource,
            )
        return Entities[res.name]


class Resources(enum.StrEnum):
    """Resource names: the path segment of each kind in the REST API and in access grants."""

    Account = "accounts"
    Audit = "audits"
    AuditProcedure = "auditprocedures"
    Curve = "curves"
    DataSource = "datasources"
    Dataset = "datasets"
    Evaluation = "evaluations"
    Family = "families"
    History = "histories"
    InferenceService = "inferenceservices"
    InferenceSession = "inferencesessions"
    Measurement = "measurements"
    Method = "methods"
    Model = "models"
    Module = "modules"
    Pipeline = "pipelines"
    Report = "reports"
    Revision = "revisions"
    SafetyCase = "safetycases"
    Score = "scores"
    ALL = "*"
    """Every resource (only meaningful in an :class:`AccessGrant`)."""

    @staticmethod
    def for_kind(kind: Entities | str) -> Resources:
        """The resource name of the entity kind ``kind`` (e.g. ``"Dataset"`` → ``datasets``)."""
        name = kind.value if isinstance(kind, Entities) else str(kind)
        if name == "ALL" or name not in Resources.__members__:
            valid = ", ".join(e.value for e in Entities)
            raise errors.ValidationError(
                f"unknown entity kind {name!r}: expected one of {valid}",
                field="kind",
                value=kind,
            )
        return Resources[name]


class APIFunctions(enum.StrEnum):
    """The functions an :class:`AccessGrant` can allow on a resource."""

    consume = "consume"
    create = "create"
    get = "get"
    query = "query"
    edit = "edit"
    download = "download"
    upload = "upload"
    data = "data"
    strata = "strata"
    terminate = "terminate"
    delete = "delete"
    all = "*"
    """Every function."""


# -- labels, annotations, documentation ----------------------------------------------------------

_LABEL_KEY_RE = re.compile(LABEL_KEY_PATTERN)
_LABEL_VALUE_RE = re.compile(LABEL_VALUE_PATTERN)
LABEL_KEY_RULE = (
    "a label key is a DNS label (letters, digits and '-', at most 63 characters, starting and "
    "ending with a letter or digit), optionally prefixed by a DNS domain and '/', "
    "e.g. 'my-key' or 'example.com/my-key'"
)
LABEL_VALUE_RULE = (
    "a label value has at most 63 characters: letters, digits, '-', '_' or '.', starting and "
    "ending with a letter or digit (or it is empty)"
)


def check_labels(value: Any, *, field: str = "labels") -> Any:
    """Check the keys and values of a labels dict, raising ``ValueError`` with a message that
    names the bad key or value and the rule; other values pass through to normal validation."""
    if not isinstance(value, dict):
        return value
    for key, val in value.items():
        if (
            not isinstance(key, str)
            or len(key) > LABEL_KEY_MAX_LENGTH
            or not _LABEL_KEY_RE.match(key)
        ):
            raise ValueError(f"{field}: key {key!r} is not a valid label key; {LABEL_KEY_RULE}")
        if val is None:
            continue
        if (
            not isinstance(val, str)
            or len(val) > LABEL_VALUE_MAX_LENGTH
            or not _LABEL_VALUE_RE.match(val)
        ):
            raise ValueError(
                f"{field}[{key!r}]: value {val!r} is not a valid label value; {LABEL_VALUE_RULE}"
            )
    return value


class Label(SchemaModel):
    """A key-value label: an identifying attribute of an entity that is meaningful to users and
    has no meaning to the platform (keys under ``assay.io/`` and ``dyff.io/`` excepted)."""

    key: LabelKey
    """The label key: a DNS label with an optional DNS domain prefix, e.g. ``my-key``,
    ``example.com/key_0``. Keys under ``assay.io/`` and ``dyff.io/`` are reserved."""
    value: LabelValue | None = None
    """The label value: letters, digits, ``-``, ``_`` or ``.``; at most 63 characters."""


class Labeled(SchemaModel):
    """Something that carries labels."""

    labels: dict[LabelKey, LabelValue | None] = Field(default_factory=dict)
    """Key-value labels (Kubernetes label rules); queries can filter on them."""

    @pydantic.field_validator("labels", mode="before")
    @classmethod
    def _check_labels(cls, value: Any) -> Any:
        return check_labels(value)


class Annotation(SchemaModel):
    """A key-value annotation: arbitrary, non-identifying metadata attached to an entity."""

    key: str = Field(max_length=ANNOTATION_KEY_MAX_LENGTH, pattern=LABEL_KEY_PATTERN)
    """The annotation key: a DNS label with an optional DNS domain prefix (label-key rules,
    at most 253 characters)."""
    value: str
    """The annotation value: any string."""


class DocumentationBase(SchemaModel):
    """Human-readable documentation of an entity."""

    title: str | None = None
    """A short plain string suitable as a title or headline."""
    summary: str | None = None
    """A brief summary for small UI elements; Markdown."""
    fullPage: str | None = None
    """Long-form documentation; Markdown."""


class Documentation(DocumentationBase):
    """The documentation of one entity, as served by ``GET /R/{id}/documentation``."""

    entity: str | None = None
    """The id of the documented entity."""
    schemaVersion: Literal["0.1"] = "0.1"
    """Version of the schema of this record."""


class StatusInfo(Status):
    """The status fields of an entity, as returned by ``PUT /R/{id}/delete`` and similar calls:
    a :class:`~assay.schema.status.Status` (the same fields; an older Assay name for it)."""


class EntityIdentifier(SchemaModel):
    """Identifies one entity by kind and id."""

    id: str
    """The ``id`` of the entity."""
    kind: EntityKind
    """The ``kind`` of the entity."""

    @staticmethod
    def of(entity: Entity) -> EntityIdentifier:
        """The identifier of ``entity``."""
        return EntityIdentifier.model_validate({"id": entity.id, "kind": entity.kind})

    def resource_path(self) -> str:
        """``<resource>/<id>``, e.g. ``datasets/0123...``."""
        return f"{Resources.for_kind(self.kind).value}/{self.id}"


class EntityMetadata(SchemaModel):
    """Metadata of an entity that is not part of its specification."""

    documentation: DocumentationBase = Field(default_factory=DocumentationBase)
    """Human-readable documentation of the entity."""
    preconditions: list[EntityIdentifier] = Field(default_factory=list)
    """Entities that must reach a success status before this one's workflow may start, in
    addition to the dependencies implied by its specification."""
    revision: str | None = None
    """The id of the entity's current Revision, if it has one."""


class ModelWithID(SchemaModel):
    """Something with an entity ``id`` owned by an ``account``."""

    id: EntityID
    """Unique identifier of the entity: 32 lowercase hex digits."""
    account: AccountName
    """The account that owns the entity."""


class Entity(ModelWithID, Labeled):
    """The base of every entity kind (``DyffEntity`` in the reference).

    Subclasses narrow ``kind`` to their own name, and say what they depend on
    (:meth:`dependencies`) and what queries can filter on (:meth:`query_refs`).
    """

    kind: str
    """The kind of entity (``Dataset``, ``Evaluation``, ...)."""
    status: str = Status.Created
    """Top-level status, assigned by the platform (see :class:`assay.schema.status.Status`)."""
    reason: str | None = None
    """Why the entity has its status, assigned by the platform."""
    message: str | None = None
    """What happened, in words (progress, or what went wrong and what to do)."""
    creationTime: datetime = Field(default_factory=now_utc)
    """When the entity was created (UTC), assigned by the platform (now, when an entity is
    made without it)."""
    lastTransitionTime: datetime | None = None
    """When ``status`` or ``reason`` last changed (UTC)."""
    annotations: list[Annotation] = Field(default_factory=list)
    """Non-identifying key-value metadata (Kubernetes annotation rules)."""
    schemaVersion: Literal["0.1"] = "0.1"
    """Version of the schema of this record."""
    metadata: EntityMetadata = Field(default_factory=EntityMetadata)
    """Documentation, preconditions and revision of the entity."""

    is_workflow: ClassVar[bool] = False
    """True for kinds whose creation starts work that the engine runs."""

    def _dependencies(self) -> list[str | None]:
        """The ids this kind's specification depends on (not the preconditions)."""
        return []

    def _query_refs(self) -> dict[str, list[str | None]]:
        """The named references of this kind's specification."""
        return {}

    def dependencies(self) -> list[str]:
        """Ids of the entities that must reach a success status before this entity's workflow
        can start (unique, in order): those implied by its specification, then the
        ``metadata.preconditions``.

        A workflow waiting on a dependency has ``reason = UnsatisfiedDependency``; if a
        dependency fails, the workflow fails with ``reason = FailedDependency``.
        """
        return unique([*self._dependencies(), *(p.id for p in self.metadata.preconditions)])

    def resource_allocation(self) -> ResourceAllocation | None:
        """What running this entity's workflow takes while it runs, or None for kinds that
        run no workflow (Family, Method, Model, ...). A workflow takes one
        ``workflows.assay.io/admitted``; kinds that run an inference session add its replicas
        and GPUs (see :class:`~assay.schema.platform.ResourceAllocation`)."""
        if not self.is_workflow:
            return None
        from assay.schema._inference import session_allocation

        return session_allocation(None)

    def query_refs(self) -> dict[str, list[str]]:
        """The named references that queries filter on, e.g. ``{"dataset": [id]}``; names with
        no reference are left out."""
        refs = {name: unique(ids) for name, ids in self._query_refs().items()}
        return {name: ids for name, ids in refs.items() if ids}

    def resource_path(self) -> str:
        """``<resource>/<id>``, e.g. ``evaluations/0123...``."""
        return f"{Resources.for_kind(self.kind).value}/{self.id}"


# -- artifacts -----------------------------------------------------------------------------------


class Digest(SchemaModel):
    """Digests of some data."""

    md5: str | None = None
    """md5 digest of the data, as hex."""


class Artifact(SchemaModel):
    """A file that is part of an entity, stored under ``<entity id>/<path>``."""

    kind: str | None = None
    """The kind of artifact (free-form, e.g. ``parquet``)."""
    path: str
    """The path of the file relative to the entity's directory, ``/``-separated."""
    digest: Digest = Field(default_factory=Digest)
    """Digests of the file's data, checked on upload and download."""


class File(SchemaModel):
    """A file with its size and media type."""

    mediaType: str | None = None
    """The media type of the file, if known."""
    path: str
    """The path of the file relative to its volume, ``/``-separated."""
    size: int = Field(ge=0)
    """Size of the file in bytes."""
    digest: Digest = Field(default_factory=Digest)
    """Digests of the file's data."""


class StorageSignedURL(SchemaModel):
    """A URL that grants access to one object in storage, without other credentials."""

    url: str
    """The signed URL."""
    method: str
    """The HTTP method to use with the URL (``GET`` or ``PUT``)."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Headers that must be sent with the request."""


class ArtifactURL(SchemaModel):
    """An artifact with a signed URL to download it."""

    artifact: Artifact
    """The artifact."""
    signedURL: StorageSignedURL
    """Where to download it from."""


# -- accounts and access -------------------------------------------------------------------------


def _value(x: enum.Enum | str) -> str:
    return str(x.value) if isinstance(x, enum.Enum) else str(x)


class AccessGrant(SchemaModel):
    """Permission to call some functions on some resources.

    A grant applies to the entities owned by the listed ``accounts`` and to the entities listed
    in ``entities``; ``"*"`` in any list matches everything. Grants are additive: a subject may
    do something if any of its grants allows it.
    """

    resources: list[Resources] = Field(min_length=1)
    """The resource types the grant applies to (``"*"`` for all)."""
    functions: list[APIFunctions] = Field(min_length=1)
    """The functions the grant allows on those resources (``"*"`` for all)."""
    accounts: list[str] = Field(default_factory=list)
    """The grant applies to every entity owned by these accounts (``"*"`` for all)."""
    entities: list[str] = Field(default_factory=list)
    """The grant applies to the entities with these ids (``"*"`` for all)."""

    def allows(
        self,
        resource: Resources | str,
        function: APIFunctions | str,
        account: str | None = None,
        entity_id: str | None = None,
    ) -> bool:
        """True if this grant allows calling ``function`` on ``resource`` for an entity owned by
        ``account`` and/or with id ``entity_id``.

        With neither ``account`` nor ``entity_id`` the question is whether the grant allows the
        function on that resource type at all (true if it names any account or entity); the
        caller then filters the entities it returns.
        """
        resources = {_value(r) for r in self.resources}
        functions = {_value(f) for f in self.functions}
        if "*" not in resources and _value(resource) not in resources:
            return False
        if "*" not in functions and _value(function) not in functions:
            return False
        if account is None and entity_id is None:
            return bool(self.accounts or self.entities)
        if account is not None and ("*" in self.accounts or account in self.accounts):
            return True
        return entity_id is not None and ("*" in self.entities or entity_id in self.entities)


class APIKey(SchemaModel):
    """A set of access grants given to one subject (an account or a workload). API tokens
    are signed APIKeys."""

    id: str
    """Unique id of the key (the JWT ``jti`` claim)."""
    subject: str
    """Who the grants are given to, ``<kind>/<id>`` (the JWT ``sub`` claim)."""
    created: datetime
    """When the key was created (the JWT ``iat`` claim)."""
    expires: datetime
    """When the key expires (the JWT ``exp`` claim)."""
    secret: str | None = None
    """For account keys: a secret value checked when the key is verified."""
    grants: list[AccessGrant] = Field(default_factory=list)
    """The permissions given by the key."""


class Identity(SchemaModel):
    """The identity of an account at external identity providers."""

    google: str | None = None
    """Google account id."""
    github: str | None = None
    """GitHub account id."""
    gitlab: str | None = None
    """GitLab account id."""
    authentik: str | None = None
    """Authentik account id."""


class Account(SchemaModel):
    """An account: every entity is owned by one."""

    name: AccountName
    """The account name (label-value rules)."""
    id: str | None = None
    """Unique identifier of the account."""
    identity: Identity = Field(default_factory=Identity)
    """The account's identity at external providers."""
    apiKeys: list[APIKey] = Field(default_factory=list)
    """The API keys issued to the account."""
    status: str = "Active"
    """``Active`` or ``Suspended``."""
    reason: str | None = None
    """Why the account has its status."""
    message: str | None = None
    """More about the status, in words."""
    creationTime: datetime | None = None
    """When the account was created (UTC)."""
    lastTransitionTime: datetime | None = None
    """When the status last changed (UTC)."""
