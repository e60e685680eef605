"""Models, inference services and inference sessions, and the types they are made of.

A Model is the raw form of a system (e.g. weights); an InferenceService is a system packaged to
answer HTTP requests, run by one of the runner kinds; an InferenceSession is a running
deployment of a service with one or more replicas.

Public names are re-exported by :mod:`assay.schema.platform`.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

import pydantic
from pydantic import Field, StringConstraints

from assay.schema._entity import Entity, EntityIdentifier, File, ModelWithID
from assay.schema.base import LabelKey, SchemaModel, TagName, reference_wire
from assay.schema.dataschema import DataSchema

__all__ = [
    "NONNEGATIVE_QUANTITY_PATTERN",
    "Accelerator",
    "AcceleratorGPU",
    "ContainerImageSource",
    "DataView",
    "EnvVar",
    "ForeignInferenceService",
    "ForeignModel",
    "Frameworks",
    "InferenceInterface",
    "InferenceService",
    "InferenceServiceBase",
    "InferenceServiceBuilder",
    "InferenceServiceRunner",
    "InferenceServiceRunnerKind",
    "InferenceServiceSources",
    "InferenceServiceSpec",
    "InferenceSession",
    "InferenceSessionAndToken",
    "InferenceSessionBase",
    "InferenceSessionReference",
    "InferenceSessionSpec",
    "Model",
    "ModelArtifact",
    "ModelArtifactHuggingFaceCache",
    "ModelArtifactKind",
    "ModelBase",
    "ModelResources",
    "ModelSource",
    "ModelSourceGitLFS",
    "ModelSourceHuggingFaceHub",
    "ModelSourceKinds",
    "ModelSourceOpenLLM",
    "ModelSpec",
    "ModelStorage",
    "ModelStorageMedium",
    "NonNegativeQuantity",
    "ResourceAllocation",
    "SchemaAdapter",
    "Volume",
    "VolumeMount",
    "VolumeMountData",
    "VolumeMountKind",
    "VolumeMountScratch",
]

#: A Kubernetes quantity that is not negative, e.g. ``8Gi``, ``500m``, ``2``.
NONNEGATIVE_QUANTITY_PATTERN = (
    r"^(\+?)(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_NONNEGATIVE_QUANTITY_RE = re.compile(NONNEGATIVE_QUANTITY_PATTERN)


def _check_quantity(value: Any, info: pydantic.ValidationInfo) -> Any:
    if isinstance(value, str) and not _NONNEGATIVE_QUANTITY_RE.match(value):
        raise ValueError(
            f"{info.field_name}: {value!r} is not a non-negative quantity in Kubernetes "
            "notation; write e.g. '8Gi', '512Mi', '500m' or '2'"
        )
    return value


NonNegativeQuantity = Annotated[
    str,
    StringConstraints(pattern=NONNEGATIVE_QUANTITY_PATTERN),
    pydantic.BeforeValidator(_check_quantity),
]

#: The resource keys of :class:`ResourceAllocation` that Assay uses.
ADMITTED_RESOURCE = "workflows.assay.io/admitted"
REPLICAS_RESOURCE = "inference.assay.io/replicas"
GPUS_RESOURCE = "inference.assay.io/gpus"


class ResourceAllocation(SchemaModel):
    """What running a workflow takes while it runs (what ``resource_allocation()`` of an
    entity returns).

    Assay's keys: ``workflows.assay.io/admitted`` (one running workflow),
    ``inference.assay.io/replicas`` (replicas of an inference service) and
    ``inference.assay.io/gpus`` (GPUs, over all the replicas).
    """

    quantities: dict[LabelKey, NonNegativeQuantity] = Field(default_factory=dict)
    """The amount of each resource, by key (label-key rules), in Kubernetes quantity
    notation."""


def session_allocation(session: InferenceSessionBase | None) -> ResourceAllocation:
    """The allocation of a workflow that runs ``session`` (None: that runs no session)."""
    quantities = {ADMITTED_RESOURCE: "1"}
    if session is not None:
        quantities[REPLICAS_RESOURCE] = str(session.replicas)
        gpu = session.accelerator.gpu if session.accelerator is not None else None
        if gpu is not None:
            quantities[GPUS_RESOURCE] = str(gpu.count * session.replicas)
    return ResourceAllocation(quantities=quantities)


# -- models --------------------------------------------------------------------------------------


class AcceleratorGPU(SchemaModel):
    """GPU requirements."""

    hardwareTypes: list[str] = Field(min_length=1)
    """Acceptable GPU hardware types (e.g. ``nvidia.com/gpu-h100``)."""
    count: int = Field(default=1, ge=1)
    """Number of GPUs required."""
    memory: NonNegativeQuantity | None = None
    """Amount of GPU memory required, in Kubernetes quantity notation (deprecated)."""


class Accelerator(SchemaModel):
    """Accelerator hardware."""

    kind: str
    """The kind of accelerator; ``GPU`` is the one available kind."""
    gpu: AcceleratorGPU | None = None
    """GPU options, for ``kind = GPU``."""


class ModelResources(SchemaModel):
    """Resources needed to store and run a model, in Kubernetes quantity notation."""

    storage: NonNegativeQuantity | None = None
    """Storage needed for the packaged model, e.g. ``10Gi``."""
    memory: NonNegativeQuantity | None = None
    """Memory needed to run the model, e.g. ``8Gi``."""
    cpu: NonNegativeQuantity | None = None
    """CPU needed to run the model, e.g. ``2`` or ``500m``."""


class ModelSourceKinds(enum.StrEnum):
    """Where a model's files come from."""

    GitLFS = "GitLFS"
    HuggingFaceHub = "HuggingFaceHub"
    Mock = "Mock"
    OpenLLM = "OpenLLM"
    Upload = "Upload"


class ModelSourceGitLFS(SchemaModel):
    """A model fetched from a Git LFS repository."""

    url: pydantic.HttpUrl
    """The URL of the Git LFS repository."""


class ModelSourceHuggingFaceHub(SchemaModel):
    """A model fetched from the Hugging Face Hub (arguments of ``snapshot_download()``)."""

    repoID: str
    """The repository id, e.g. ``openai-community/gpt2``."""
    revision: str
    """The revision (commit hash, branch or tag)."""
    allowPatterns: list[str] | None = None
    """Only files matching one of these glob patterns are fetched."""
    ignorePatterns: list[str] | None = None
    """Files matching one of these glob patterns are not fetched."""


class ModelSourceOpenLLM(SchemaModel):
    """A model built with OpenLLM."""

    modelKind: str
    """The kind of model (``openllm build <modelKind>``)."""
    modelID: str
    """The model identifier (``openllm build ... --model-id <modelID>``)."""
    modelVersion: str
    """The version of the model, e.g. a git commit hash."""


class ModelSource(SchemaModel):
    """Where a model's files came from."""

    kind: ModelSourceKinds
    """The kind of source."""
    gitLFS: ModelSourceGitLFS | None = None
    """The Git LFS source, for ``kind = GitLFS``."""
    huggingFaceHub: ModelSourceHuggingFaceHub | None = None
    """The Hugging Face Hub source, for ``kind = HuggingFaceHub``."""
    openLLM: ModelSourceOpenLLM | None = None
    """The OpenLLM source, for ``kind = OpenLLM``."""


class ModelStorageMedium(enum.StrEnum):
    """Where a model's files are stored."""

    Mock = "Mock"
    ObjectStorage = "ObjectStorage"
    PersistentVolume = "PersistentVolume"
    FUSEVolume = "FUSEVolume"


class ModelStorage(SchemaModel):
    """How a model's files are stored."""

    medium: ModelStorageMedium
    """The storage medium."""


class ModelArtifactKind(enum.StrEnum):
    """How a model's files are laid out."""

    HuggingFaceCache = "HuggingFaceCache"
    Mock = "Mock"
    Volume = "Volume"


class ModelArtifactHuggingFaceCache(SchemaModel):
    """A model laid out as a Hugging Face cache."""

    repoID: str
    """The repository id of the model in the cache."""
    revision: str
    """The revision of the model."""

    def snapshot_path(self) -> str:
        """The path of the model's snapshot directory inside the cache."""
        return f"models--{self.repoID.replace('/', '--')}/snapshots/{self.revision}"


class Volume(SchemaModel):
    """A set of files."""

    files: list[File]
    """The files in the volume."""


class ModelArtifact(SchemaModel):
    """How a model's files are represented."""

    kind: ModelArtifactKind
    """The layout of the files."""
    huggingFaceCache: ModelArtifactHuggingFaceCache | None = None
    """The Hugging Face cache, for ``kind = HuggingFaceCache``."""
    volume: Volume | None = None
    """The files, for ``kind = Volume``."""


class ModelBase(SchemaModel):
    """The fields of a Model that an InferenceService carries."""

    name: str
    """The name of the model."""
    artifact: ModelArtifact
    """How the model's files are represented."""
    storage: ModelStorage | None = None
    """How the model's files are stored."""


class ModelSpec(ModelBase):
    """The specification of a Model."""

    source: ModelSource
    """Where the model's files came from."""
    resources: ModelResources
    """Resources needed to store and run the model."""
    accelerators: list[Accelerator] | None = None
    """Accelerator hardware the model can run on."""


class Model(Entity, ModelSpec):
    """The raw form of a system (e.g. neural network weights), from which InferenceServices
    are built."""

    kind: Literal["Model"] = "Model"
    """Always ``Model``."""


class ForeignModel(ModelWithID, ModelBase):
    """A copy of the Model fields that an InferenceService carries."""


# -- inference services --------------------------------------------------------------------------


class InferenceServiceBuilder(SchemaModel):
    """How to build a service (reference platform; not used by Assay's runners)."""

    kind: str
    """The kind of builder."""
    args: list[str] | None = None
    """Arguments for the builder."""


class Frameworks(enum.StrEnum):
    """Machine-learning frameworks a model can be written for."""

    transformers = "transformers"


class InferenceServiceSources(enum.StrEnum):
    """Where an InferenceService comes from: uploaded as it is, or built on the platform."""

    upload = "upload"
    build = "build"


class InferenceServiceRunnerKind(enum.StrEnum):
    """The runner kinds: how a service is turned into something that answers HTTP.

    The reference platform's kinds (``bentoml_service_openllm``, ``container``, ``standalone``)
    plus Assay's: ``mock`` (a Python class, in-process), ``python`` (a class from a Module, in
    worker processes), ``http`` (an existing service at a URL), ``openai`` (an OpenAI-compatible
    endpoint), ``huggingface`` (transformers), ``vllm`` (GPU hosts), ``pipeline`` (a serving
    pipeline).
    """

    BENTOML_SERVICE_OPENLLM = "bentoml_service_openllm"
    CONTAINER = "container"
    HTTP = "http"
    HUGGINGFACE = "huggingface"
    MOCK = "mock"
    OPENAI = "openai"
    PIPELINE = "pipeline"
    PYTHON = "python"
    STANDALONE = "standalone"
    VLLM = "vllm"


#: The runner kinds the reference's schema knows; a service of one of Assay's own kinds has
#: no runner on the reference's wire (the reference's ``runner`` is optional).
REFERENCE_RUNNER_KINDS = frozenset(
    {
        InferenceServiceRunnerKind.BENTOML_SERVICE_OPENLLM,
        InferenceServiceRunnerKind.CONTAINER,
        InferenceServiceRunnerKind.HUGGINGFACE,
        InferenceServiceRunnerKind.MOCK,
        InferenceServiceRunnerKind.STANDALONE,
        InferenceServiceRunnerKind.VLLM,
    }
)

_IMAGE_NAME_PATTERN = r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$"


class ContainerImageSource(SchemaModel):
    """A container image in a registry, pulled by digest."""

    host: str
    """The host of the registry, without scheme or path, e.g. ``docker.io``."""
    name: str = Field(pattern=_IMAGE_NAME_PATTERN)
    """The name of the image, e.g. ``library/python``."""
    digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    """The digest of the image, ``sha256:<64 hex>``; the image is always pulled by digest."""
    tag: TagName | None = None
    """The tag of the image (informative; the digest decides)."""

    def url(self) -> str:
        """``<host>/<name>@<digest>``."""
        return f"{self.host}/{self.name}@{self.digest}"

    @pydantic.field_validator("host")
    @classmethod
    def _check_host(cls, value: str) -> str:
        if "/" in value:
            raise ValueError(
                f"host: {value!r} contains '/'; give the registry host name only, "
                "without scheme or path (e.g. 'docker.io')"
            )
        if "_" in value:
            raise ValueError(
                f"host: {value!r} contains '_', which registry host names may not contain"
            )
        return value


class EnvVar(SchemaModel):
    """An environment variable."""

    name: str
    """The variable's name."""
    value: str
    """The variable's value."""


class VolumeMountKind(enum.StrEnum):
    """The kinds of volume mount."""

    data = "Data"
    scratch = "Scratch"


class VolumeMountData(SchemaModel):
    """A mount of an entity's data."""

    source: EntityIdentifier
    """The entity whose data is mounted."""


class VolumeMountScratch(SchemaModel):
    """A scratch volume."""

    capacity: NonNegativeQuantity
    """The size of the volume, in Kubernetes quantity notation."""


class VolumeMount(SchemaModel):
    """A volume mounted into a container."""

    kind: VolumeMountKind
    """The kind of mount."""
    name: str
    """A descriptive name for the mount."""
    mountPath: str
    """Where to mount the volume in the container (an absolute path)."""
    data: VolumeMountData | None = None
    """The data to mount, for ``kind = Data``."""
    scratch: VolumeMountScratch | None = None
    """The scratch volume, for ``kind = Scratch``."""

    @pydantic.model_validator(mode="after")
    def _kind_matches_payload(self) -> VolumeMount:
        wanted = "data" if self.kind is VolumeMountKind.data else "scratch"
        other = "scratch" if wanted == "data" else "data"
        if getattr(self, wanted) is None or getattr(self, other) is not None:
            raise ValueError(
                f"kind: a VolumeMount of kind {self.kind.value!r} needs .{wanted} set "
                f"and .{other} unset"
            )
        return self


def _reference_runner(runner: InferenceServiceRunner, data: dict[str, Any]) -> None:
    data.setdefault("resources", {})
    mock_type = (runner.configuration or {}).get("mockType")
    if runner.kind == InferenceServiceRunnerKind.MOCK and "args" not in data and mock_type:
        data["args"] = [str(mock_type)]


def _reference_service(service: InferenceServiceBase, data: dict[str, Any]) -> None:
    if service.runner is not None and service.runner.kind not in REFERENCE_RUNNER_KINDS:
        data.pop("runner", None)


class InferenceServiceRunner(SchemaModel):
    """How to run a service. ``kind`` picks the runner; the container fields apply to the
    ``container`` kind, ``configuration`` to Assay's kinds."""

    kind: InferenceServiceRunnerKind
    """The runner kind."""
    configuration: dict[str, Any] | None = None
    """Settings of Assay's runner kinds (JSON), e.g. ``{"url": ...}`` for ``http``,
    ``{"baseURL": ..., "model": ...}`` for ``openai``, the mock class for ``mock``."""
    accelerator: Accelerator | None = None
    """Accelerator hardware to use, per node."""
    nodes: int = Field(default=1, ge=1)
    """Number of nodes; resource requirements apply to each node."""
    resources: ModelResources | None = None
    """Resources needed to run the service."""
    args: list[str] | None = None
    """Arguments for the runner (the container's entrypoint, for ``container``)."""
    command: list[str] | None = None
    """The container's entrypoint (``container`` only)."""
    env: list[EnvVar] | None = None
    """Environment variables for the service."""
    image: ContainerImageSource | None = None
    """The container image in an external registry (``container`` only)."""
    imageRef: EntityIdentifier | None = None
    """A container image stored on the platform (``container`` only)."""
    volumeMounts: list[VolumeMount] | None = None
    """Volumes to mount into the container (``container`` only)."""
    workingDir: str | None = None
    """The container's working directory (``container`` only)."""

    # On the reference's wire: no ``configuration`` (Assay's), ``resources`` always (the
    # reference requires it; ``{}``: none stated), and a mock's class in ``args[0]``, where
    # the reference client names it (``assay.server.compat``).
    _reference_wire = reference_wire("configuration", transform=_reference_runner)


class SchemaAdapter(SchemaModel):
    """One step of an adapter pipeline (see :mod:`assay.schema.adapters`)."""

    kind: str
    """The adapter, e.g. ``TransformJSON``, ``ExplodeCollections``."""
    configuration: dict[str, Any] | None = None
    """The adapter's configuration (JSON)."""


class DataView(SchemaModel):
    """A view of some data produced by an adapter pipeline."""

    id: str
    """Unique id of the view."""
    viewOf: str
    """The id of the entity whose data this is a view of."""
    schema_: DataSchema = Field(alias="schema")
    """Schema of the view's data."""
    adapterPipeline: list[SchemaAdapter] | None = None
    """The adapters that produce the view."""


class InferenceInterface(SchemaModel):
    """How to move data in and out of a service."""

    endpoint: str
    """The HTTP endpoint for inference, e.g. ``generate``."""
    outputSchema: DataSchema
    """Schema of the inference outputs (after the output pipeline)."""
    inputPipeline: list[SchemaAdapter] | None = None
    """Adapters applied to each instance before it is sent."""
    outputPipeline: list[SchemaAdapter] | None = None
    """Adapters applied to each response; each resulting item is one element of
    ``responses``."""


class InferenceServiceBase(SchemaModel):
    """The fields of an InferenceService that its create request shares."""

    name: str
    """The name of the service."""
    builder: InferenceServiceBuilder | None = None
    """How to build the service (reference platform)."""
    runner: InferenceServiceRunner | None = None
    """How to run the service."""
    interface: InferenceInterface
    """How to move data in and out of the service."""
    outputViews: list[DataView] = Field(default_factory=list)
    """Views of the service's outputs."""

    # On the reference's wire, a runner of one of Assay's own kinds is left out.
    _reference_wire = reference_wire(transform=_reference_service)


class InferenceServiceSpec(InferenceServiceBase):
    """The specification of an InferenceService."""

    model: ForeignModel | None = None
    """The Model backing the service, if any."""


class InferenceService(Entity, InferenceServiceSpec):
    """A system packaged to answer inference requests over HTTP."""

    kind: Literal["InferenceService"] = "InferenceService"
    """Always ``InferenceService``."""

    def _dependencies(self) -> list[str | None]:
        return [self.model.id if self.model else None, *self.runner_modules()]

    def _query_refs(self) -> dict[str, list[str | None]]:
        return {"model": [self.model.id if self.model else None], "modules": self.runner_modules()}

    def runner_modules(self) -> list[str | None]:
        """The Modules a ``python`` runner loads the service's class from."""
        if self.runner is None or self.runner.kind != InferenceServiceRunnerKind.PYTHON:
            return []
        config = self.runner.configuration or {}
        found = [config.get("module"), *(config.get("modules") or [])]
        return [m if isinstance(m, str) else None for m in found]


class ForeignInferenceService(ModelWithID, InferenceServiceSpec):
    """A copy of the InferenceService fields that sessions and evaluations carry."""


# -- inference sessions --------------------------------------------------------------------------


class InferenceSessionBase(SchemaModel):
    """The fields of an InferenceSession that its create request shares."""

    expires: datetime | None = None
    """When the session stops by itself (UTC); set it to avoid paying for a forgotten one."""
    replicas: int = Field(default=1, ge=1)
    """Number of replicas of the service."""
    accelerator: Accelerator | None = None
    """Accelerator hardware to use."""
    useSpotPods: bool = True
    """Use cheaper preemptible capacity where the platform has it."""


class InferenceSessionSpec(InferenceSessionBase):
    """The specification of an InferenceSession."""

    inferenceService: ForeignInferenceService
    """The service the session runs."""


class InferenceSession(Entity, InferenceSessionSpec):
    """A running deployment of an InferenceService that answers inference requests."""

    kind: Literal["InferenceSession"] = "InferenceSession"
    """Always ``InferenceSession``."""

    is_workflow: ClassVar[bool] = True

    def _dependencies(self) -> list[str | None]:
        return [self.inferenceService.id]

    def _query_refs(self) -> dict[str, list[str | None]]:
        model = self.inferenceService.model
        return {
            "inferenceService": [self.inferenceService.id],
            "model": [model.id if model else None],
        }

    def resource_allocation(self) -> ResourceAllocation | None:
        """One running workflow, the session's replicas and their GPUs."""
        return session_allocation(self)


class InferenceSessionAndToken(SchemaModel):
    """A new session and a token to call it (the answer of ``POST /inferencesessions``)."""

    inferencesession: InferenceSession
    """The session."""
    token: str
    """A bearer token for the session's inference endpoints."""

    @property
    def session(self) -> str:
        """The token: the reference tutorial reads it as ``session_and_token.session``."""
        return self.token


class InferenceSessionReference(SchemaModel):
    """A running session and the interface to call it with."""

    session: str
    """The id of a running inference session."""
    interface: InferenceInterface
    """How to move data in and out of the service."""
