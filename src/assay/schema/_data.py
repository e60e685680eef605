"""Data sets, evaluations, modules, reports, families and audits.

A Dataset is Arrow data with a schema; an Evaluation runs an InferenceService on every
instance of a Dataset; a Module is a set of files (code, notebooks) that analyses can import;
a Family groups versions of one kind of entity under tags.

Public names are re-exported by :mod:`assay.schema.platform`.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

import pydantic
from pydantic import Field, StringConstraints

from assay.schema._entity import (
    Artifact,
    DocumentationBase,
    Entity,
    EntityIdentifier,
    now_utc,
)
from assay.schema._inference import (
    DataView,
    InferenceSessionBase,
    InferenceSessionSpec,
    ResourceAllocation,
    SchemaAdapter,
    session_allocation,
)
from assay.schema.base import SUMMARY_MAX_LENGTH, SchemaModel, TagName, reference_wire
from assay.schema.dataschema import DataSchema

__all__ = [
    "ArchiveFormat",
    "Audit",
    "AuditProcedure",
    "AuditRequirement",
    "DataSource",
    "Dataset",
    "DatasetBase",
    "DatasetFilter",
    "Evaluation",
    "EvaluationBase",
    "EvaluationClientConfiguration",
    "EvaluationInferenceSessionRequest",
    "EvaluationRequestBase",
    "ExtractorStep",
    "Family",
    "FamilyBase",
    "FamilyMember",
    "FamilyMemberBase",
    "FamilyMemberKind",
    "FamilyMembers",
    "Module",
    "ModuleBase",
    "Report",
    "ReportBase",
    "TaskSchema",
]


# -- data sets -----------------------------------------------------------------------------------


class DatasetBase(SchemaModel):
    """The fields of a Dataset that its create request shares."""

    name: str
    """The name of the data set."""
    artifacts: list[Artifact] = Field(min_length=1)
    """The files that make up the data set (Arrow or Parquet)."""
    schema_: DataSchema = Field(alias="schema")
    """Schema of the data; inputs include the ``_index_`` field."""
    views: list[DataView] = Field(default_factory=list)
    """Views of the data set produced by adapter pipelines."""


class Dataset(Entity, DatasetBase):
    """A data set, ingested into Arrow format."""

    kind: Literal["Dataset"] = "Dataset"
    """Always ``Dataset``."""

    is_workflow: ClassVar[bool] = True


class DataSource(Entity):
    """A source of raw data from which a Dataset can be built."""

    kind: Literal["DataSource"] = "DataSource"
    """Always ``DataSource``."""
    name: str
    """The name of the source."""
    sourceKind: str
    """The kind of source, e.g. ``huggingface``, ``upload``, ``zenodo``."""
    source: str | None = None
    """Where the data comes from (kind-specific, e.g. a repository id)."""


class ArchiveFormat(SchemaModel):
    """One of the archives that make up a DataSource."""

    name: str
    """The name of the archive (e.g. its file name)."""
    format: str
    """The archive format, e.g. ``zip`` or ``tar.gz``."""


class ExtractorStep(SchemaModel):
    """One step of turning a hierarchical DataSource into a Dataset."""

    action: str
    """What the step does, e.g. ``extract`` or ``select``."""
    name: str | None = None
    """The name of what the step acts on, where it has one."""
    type: str | None = None
    """The type of what the step acts on, where it matters."""


class DatasetFilter(SchemaModel):
    """A rule that restricts which instances of a Dataset are returned."""

    field: str
    """The field the rule looks at."""
    relation: str
    """The comparison, e.g. ``==``."""
    value: str
    """The value compared with (JSON)."""


class TaskSchema(SchemaModel):
    """The input and output schemas of a task, with its objective."""

    input: DataSchema
    """Schema of the inputs."""
    output: DataSchema
    """Schema of the outputs."""
    objective: str
    """What the task is, in words."""


# -- evaluations ---------------------------------------------------------------------------------


class EvaluationClientConfiguration(SchemaModel):
    """How the evaluation client sends instances to the session and handles its answers."""

    badRequestPolicy: Literal["Abort", "Skip"] = "Abort"
    """On a 400 answer: ``Abort`` the evaluation, or ``Skip`` the instance."""
    transientErrorRetryLimit: int = Field(default=120, ge=0)
    """How many times to retry a transient error (timeouts, 429, 502-504) per request."""
    transientErrorRetryDelaySeconds: int = Field(default=30, ge=1)
    """Seconds to wait before retrying a transient error (the longest back-off)."""
    transientErrorRetryBudgetSeconds: int = Field(default=600, ge=0)
    """The longest time one request may spend being retried after transient errors, from
    its first one (0: no limit but ``transientErrorRetryLimit``): a service that stays down
    fails the evaluation in minutes, not hours."""
    duplicateOutputPolicy: Literal["Deduplicate", "Error", "Ignore"] = "Deduplicate"
    """What to do when an instance has more than one output row."""
    missingOutputPolicy: Literal["Error", "Ignore"] = "Error"
    """What to do when an instance has no output."""
    requestTimeoutSeconds: int = Field(default=30, ge=0)
    """Timeout of one inference request, in seconds (0: none), counted from when a replica
    can take it: a request waiting behind others in a busy replica gets one more timeout for
    each call it waits behind."""
    totalTimeoutSeconds: int = Field(default=7200, ge=0)
    """Timeout of the whole evaluation, in seconds (0: none)."""
    batchSize: int = Field(default=1000, ge=1)
    """Number of instances the data set is read, tracked and resumed in; output parts hold
    one or more whole batches (more when the service answers fast)."""
    requestBatchSize: int | None = Field(default=None, ge=1)
    """Instances per request when the session's replicas accept batches (Assay's replica
    processes whose service has ``infer_batch``); 1 sends one instance per request. Unset:
    the platform's choice — 32, fewer where a batch would take more than a quarter of
    ``requestTimeoutSeconds``."""
    cache: bool = False
    """Reuse answers from the platform's response cache (keyed by service, endpoint and
    request) and keep new ones there: a re-run pays only for answers not received before."""
    extraOptions: dict[str, str] = Field(default_factory=dict)
    """Further client options, by name."""
    inputPipeline: list[SchemaAdapter] | None = None
    """Adapters applied to each instance before the service's own input pipeline."""

    # Assay's options, which the reference's client configuration lacks: on Assay's wire only
    _reference_wire = reference_wire(
        "transientErrorRetryBudgetSeconds", "requestBatchSize", "cache"
    )

    @pydantic.model_validator(mode="after")
    def _timeouts_fit(self) -> EvaluationClientConfiguration:
        if self.totalTimeoutSeconds and self.requestTimeoutSeconds > self.totalTimeoutSeconds:
            raise ValueError(
                f"client.requestTimeoutSeconds ({self.requestTimeoutSeconds}) is longer than "
                f"client.totalTimeoutSeconds ({self.totalTimeoutSeconds}): the evaluation would "
                "end before one request may; raise totalTimeoutSeconds (0: no limit) or lower "
                "requestTimeoutSeconds"
            )
        return self


class EvaluationInferenceSessionRequest(InferenceSessionBase):
    """The session to start for an evaluation."""

    inferenceService: str
    """The id of the InferenceService to run."""

    @pydantic.field_validator("expires")
    @classmethod
    def _expires_has_timezone(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(
                f"expires: {value.isoformat()!r} has no timezone; pass a timezone-aware "
                "datetime, e.g. datetime.now(timezone.utc) + timedelta(hours=1)"
            )
        return value


class EvaluationBase(SchemaModel):
    """The fields of an Evaluation that its create request shares."""

    dataset: str
    """The id of the Dataset to evaluate on."""
    replications: int = Field(default=1, ge=1)
    """How many times to run every instance."""
    workersPerReplica: int | None = Field(default=None, ge=1)
    """Concurrent requests per session replica. Unset: the platform's choice — what each of
    Assay's replica processes says it serves at once (its ``threads``, plus as many waiting),
    and for services that run elsewhere (``http``, ``openai``) a limit found out as the
    evaluation runs (raised while answers come back fast, lowered on 429/503 and timeouts)."""
    client: EvaluationClientConfiguration = Field(default_factory=EvaluationClientConfiguration)
    """How the evaluation client behaves."""


class EvaluationRequestBase(EvaluationBase):
    """An evaluation to run: on a new session, or on a running one."""

    inferenceSession: EvaluationInferenceSessionRequest | None = None
    """The session to start for the evaluation (or give ``inferenceSessionReference``)."""
    inferenceSessionReference: str | None = None
    """The id of a running session to use instead of starting one."""

    @pydantic.model_validator(mode="after")
    def _exactly_one_session(self) -> EvaluationRequestBase:
        has_new = self.inferenceSession is not None
        has_ref = self.inferenceSessionReference is not None
        if has_new == has_ref:
            got = "both" if has_new else "neither"
            raise ValueError(
                f"inferenceSession: give exactly one of inferenceSession (a new session, e.g. "
                "EvaluationInferenceSessionRequest(inferenceService=<service id>)) or "
                f"inferenceSessionReference (the id of a running session); got {got}"
            )
        return self


class Evaluation(Entity, EvaluationBase):
    """Runs an InferenceService on every instance of a Dataset; the outputs are Arrow data
    with one row per instance and replication."""

    kind: Literal["Evaluation"] = "Evaluation"
    """Always ``Evaluation``."""
    inferenceSession: InferenceSessionSpec
    """The session that performs the inference."""
    inferenceSessionReference: str | None = None
    """The id of the running session used, when the evaluation did not start its own."""

    is_workflow: ClassVar[bool] = True

    def _dependencies(self) -> list[str | None]:
        return [
            self.dataset,
            self.inferenceSession.inferenceService.id,
            self.inferenceSessionReference,
        ]

    def _query_refs(self) -> dict[str, list[str | None]]:
        service = self.inferenceSession.inferenceService
        return {
            "dataset": [self.dataset],
            "inferenceService": [service.id],
            "model": [service.model.id if service.model else None],
            "inferenceSession": [self.inferenceSessionReference],
        }

    def resource_allocation(self) -> ResourceAllocation | None:
        """One running workflow, and the replicas and GPUs of the session it starts (none
        when it uses a running session: ``inferenceSessionReference``)."""
        if self.inferenceSessionReference:
            return session_allocation(None)
        return session_allocation(self.inferenceSession)


# -- modules and reports -------------------------------------------------------------------------


class ModuleBase(SchemaModel):
    """The fields of a Module that its create request shares."""

    name: str
    """The name of the Module."""
    artifacts: list[Artifact] = Field(min_length=1)
    """The files of the Module (its root directory)."""


class Module(Entity, ModuleBase):
    """A set of files (Python packages, notebooks) that analyses can import."""

    kind: Literal["Module"] = "Module"
    """Always ``Module``."""


class ReportBase(SchemaModel):
    """The fields of a Report that its create request shares."""

    rubric: str
    """The rubric to apply, e.g. ``classification.TopKAccuracy``."""
    evaluation: str
    """The id of the Evaluation whose outputs the report reads."""
    modules: list[str] = Field(default_factory=list)
    """Ids of Modules to make importable."""


class Report(Entity, ReportBase):
    """Statistics computed from an Evaluation by a rubric (reference platform; Methods and
    Measurements supersede it)."""

    kind: Literal["Report"] = "Report"
    """Always ``Report``."""
    dataset: str
    """The id of the evaluation's Dataset."""
    inferenceService: str
    """The id of the evaluation's InferenceService."""
    model: str | None = None
    """The id of the Model behind the service, if any."""
    datasetView: DataView | None = None
    """View of the Dataset the rubric needs (e.g. ground-truth labels)."""
    evaluationView: DataView | None = None
    """View of the evaluation outputs the rubric needs."""

    is_workflow: ClassVar[bool] = True

    def _dependencies(self) -> list[str | None]:
        return [self.evaluation, *self.modules]

    def _query_refs(self) -> dict[str, list[str | None]]:
        return {
            "evaluation": [self.evaluation],
            "dataset": [self.dataset],
            "inferenceService": [self.inferenceService],
            "model": [self.model],
        }


# -- families ------------------------------------------------------------------------------------


class FamilyMemberKind(enum.StrEnum):
    """The kinds of entity that can be members of a Family."""

    Dataset = "Dataset"
    InferenceService = "InferenceService"
    Method = "Method"
    Model = "Model"
    Module = "Module"


class FamilyMemberBase(SchemaModel):
    """A member of a Family, as given in an edit."""

    entity: EntityIdentifier
    """The member entity."""
    description: Annotated[str, StringConstraints(max_length=SUMMARY_MAX_LENGTH)] | None = None
    """How this version differs from the others (at most 280 characters); Markdown."""

    @property
    def resource(self) -> str:
        """The id of the member entity (``entity.id``; the older reference schema's
        ``resource`` field)."""
        return self.entity.id


class FamilyMember(FamilyMemberBase):
    """A member of a Family under a tag."""

    name: TagName
    """The member's tag, unique in the Family, e.g. ``v1.2``."""
    family: str
    """The id of the Family."""
    creationTime: datetime = Field(default_factory=now_utc)
    """When the tag was created (UTC; now, when a member is made without it)."""


class FamilyMembers(SchemaModel):
    """The members of a Family."""

    members: dict[TagName, FamilyMember] = Field(default_factory=dict)
    """The members, by tag."""


class FamilyBase(SchemaModel):
    """The fields of a Family that its create request shares."""

    memberKind: FamilyMemberKind
    """The kind of entity the Family's members are."""


class Family(Entity, FamilyBase, FamilyMembers):
    """Versions of one kind of entity under tags (``family@tag`` names a member)."""

    kind: Literal["Family"] = "Family"
    """Always ``Family``."""

    @pydantic.model_validator(mode="before")
    @classmethod
    def _documentation_in_metadata(cls, data: Any) -> Any:
        """Take the documented top-level ``documentation`` (the older reference schema's
        field) into ``metadata.documentation``, where the wire carries it."""
        if not isinstance(data, dict) or "documentation" not in data:
            return data
        data = dict(data)
        documentation = data.pop("documentation")
        metadata = data.get("metadata")
        if isinstance(metadata, pydantic.BaseModel):
            metadata = metadata.model_dump(exclude_unset=True)
        metadata = dict(metadata or {})
        if metadata.get("documentation") is not None:
            raise ValueError(
                "documentation: given twice (as documentation and as "
                "metadata.documentation); give one of them"
            )
        metadata["documentation"] = documentation
        data["metadata"] = metadata
        return data

    @property
    def documentation(self) -> DocumentationBase:
        """The Family's documentation (``metadata.documentation``)."""
        return self.metadata.documentation

    def _query_refs(self) -> dict[str, list[str | None]]:
        return {"members": [m.entity.id for m in self.members.values()]}


# -- audits --------------------------------------------------------------------------------------


class AuditRequirement(SchemaModel):
    """An evaluation report that must exist before an AuditProcedure can be applied."""

    dataset: str
    """The id of the Dataset."""
    rubric: str
    """The rubric of the report."""


class AuditProcedure(Entity):
    """A procedure that can be run against a set of evaluation reports."""

    kind: Literal["AuditProcedure"] = "AuditProcedure"
    """Always ``AuditProcedure``."""
    name: str
    """The name of the procedure."""
    requirements: list[AuditRequirement] = Field(default_factory=list)
    """The reports the procedure needs."""


class Audit(Entity):
    """An application of an AuditProcedure to an InferenceService."""

    kind: Literal["Audit"] = "Audit"
    """Always ``Audit``."""
    auditProcedure: str
    """The id of the AuditProcedure to run."""
    inferenceService: str
    """The id of the InferenceService to audit."""

    is_workflow: ClassVar[bool] = True

    def _dependencies(self) -> list[str | None]:
        return [self.auditProcedure, self.inferenceService]

    def _query_refs(self) -> dict[str, list[str | None]]:
        return {
            "auditProcedure": [self.auditProcedure],
            "inferenceService": [self.inferenceService],
        }
