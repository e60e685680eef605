"""The requests that create entities.

A create request holds what the caller decides; the platform adds the id, the status, the
timestamps, and copies of the entities the request refers to by id.

Public names are re-exported by :mod:`assay.schema.requests`.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pydantic
from pydantic import Field

from assay import errors
from assay.schema._analysis import (
    AnalysisRequestBase,
    AnalysisScope,
    MethodBase,
    MethodImplementationKind,
    MethodOutputKind,
)
from assay.schema._data import (
    AuditRequirement,
    DatasetBase,
    EvaluationRequestBase,
    FamilyBase,
    ModuleBase,
    ReportBase,
)
from assay.schema._entity import Artifact
from assay.schema._inference import (
    DataView,
    InferenceServiceBase,
    InferenceServiceRunnerKind,
    InferenceSessionBase,
    ModelArtifact,
    ModelSpec,
)
from assay.schema._request_base import EntityCreateRequest, RequestBase
from assay.schema.paths import check_entity_path

__all__ = [
    "AnalysisCreateRequest",
    "AuditProcedureCreateRequest",
    "DataSourceCreateRequest",
    "DatasetCreateRequest",
    "EvaluationCreateRequest",
    "FamilyCreateRequest",
    "InferenceServiceCreateRequest",
    "InferenceSessionCreateRequest",
    "InferenceSessionTokenCreateRequest",
    "MethodCreateRequest",
    "ModelCreateRequest",
    "ModuleCreateRequest",
    "ReportCreateRequest",
]

_ENTITY_ID_RE = re.compile(r"^[0-9a-f]{32}$")


def _check_path(path: str, field: str) -> None:
    """Re-raise a bad path (:func:`check_entity_path`) with the fix, for pydantic to report
    (an :class:`assay.errors.UnsafePathError` is a ``ValueError``; the server answers 400)."""
    try:
        check_entity_path(path, field=field)
    except errors.ValidationError as exc:
        raise errors.UnsafePathError(
            f"{exc.message}; give a relative '/'-separated path inside the entity, "
            "e.g. 'data/part-0.parquet'"
        ) from None


def _check_artifacts(artifacts: list[Artifact], what: str) -> list[Artifact]:
    if not artifacts:
        raise ValueError(
            f"artifacts: a {what} needs at least one artifact (the files to upload); got none"
        )
    for i, artifact in enumerate(artifacts):
        _check_path(artifact.path, f"artifacts[{i}].path")
    return artifacts


def _check_unique(items: list[Any], field: str) -> None:
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.keyword in seen:
            raise ValueError(
                f"{field}[{i}].keyword: {item.keyword!r} is already used by "
                f"{field}[{seen[item.keyword]}]; every keyword must be unique"
            )
        seen[item.keyword] = i


class DatasetCreateRequest(EntityCreateRequest, DatasetBase):
    """Creates a Dataset; upload its artifacts afterwards, then finalize it."""

    @pydantic.field_validator("artifacts", mode="after")
    @classmethod
    def _artifact_paths(cls, artifacts: list[Artifact]) -> list[Artifact]:
        return _check_artifacts(artifacts, "data set")

    @pydantic.field_validator("artifacts", mode="before")
    @classmethod
    def _not_empty(cls, artifacts: Any) -> Any:
        if isinstance(artifacts, list) and not artifacts:
            return _check_artifacts([], "data set")
        return artifacts


class DataSourceCreateRequest(EntityCreateRequest):
    """Creates a DataSource."""

    name: str
    """The name of the source."""
    sourceKind: str
    """The kind of source, e.g. ``huggingface``, ``upload``, ``zenodo``."""
    source: str | None = None
    """Where the data comes from (kind-specific)."""


class EvaluationCreateRequest(EntityCreateRequest, EvaluationRequestBase):
    """Runs an InferenceService on every instance of a Dataset: on a new session
    (``inferenceSession``) or on a running one (``inferenceSessionReference``)."""


class InferenceServiceCreateRequest(EntityCreateRequest, InferenceServiceBase):
    """Creates an InferenceService."""

    model: str | None = None
    """The id of the Model behind the service, if any."""

    @pydantic.model_validator(mode="after")
    def _runner_is_complete(self) -> InferenceServiceCreateRequest:
        runner = self.runner
        if runner is None:
            kinds = ", ".join(k.value for k in InferenceServiceRunnerKind)
            raise ValueError(
                "runner: a new service needs a runner, e.g. InferenceServiceRunner(kind='http', "
                f"configuration={{'url': ...}}); runner kinds: {kinds}"
            )
        if runner.kind is InferenceServiceRunnerKind.CONTAINER and (
            (runner.image is None) == (runner.imageRef is None)
        ):
            raise ValueError(
                "runner.image: a 'container' runner needs exactly one of runner.image (an "
                "image in a registry) or runner.imageRef (an image stored on the platform)"
            )
        return self


class InferenceSessionCreateRequest(EntityCreateRequest, InferenceSessionBase):
    """Starts an InferenceSession."""

    inferenceService: str
    """The id of the InferenceService to run."""


class InferenceSessionTokenCreateRequest(RequestBase):
    """Asks for a new token for a running InferenceSession."""

    expires: datetime | None = None
    """When the token expires (timezone-aware; at most the session's expiry, which is the
    default)."""


class MethodCreateRequest(EntityCreateRequest, MethodBase):
    """Creates a Method."""

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> MethodCreateRequest:
        impl = self.implementation
        fields = {
            MethodImplementationKind.PythonFunction: "pythonFunction",
            MethodImplementationKind.JupyterNotebook: "jupyterNotebook",
            MethodImplementationKind.PythonRubric: "pythonRubric",
        }
        wanted = fields[impl.kind]
        filled = [name for name in fields.values() if getattr(impl, name) is not None]
        if filled != [wanted]:
            raise ValueError(
                f"implementation.{wanted}: implementation.kind is {impl.kind.value!r}, so "
                f"implementation.{wanted} must be set and no other; got "
                f"{', '.join(filled) or 'none'} set"
            )
        notebook = impl.jupyterNotebook
        if notebook is not None:
            _check_path(notebook.notebookPath, "implementation.jupyterNotebook.notebookPath")
        if notebook is not None and notebook.notebookModule not in self.modules:
            raise ValueError(
                f"modules: the notebook's Module {notebook.notebookModule!r} "
                "(implementation.jupyterNotebook.notebookModule) is not in modules; "
                "add it to modules"
            )
        out = self.output
        wanted = "measurement" if out.kind is MethodOutputKind.Measurement else "safetyCase"
        filled = [n for n in ("measurement", "safetyCase") if getattr(out, n) is not None]
        if filled != [wanted]:
            raise ValueError(
                f"output.{wanted}: output.kind is {out.kind.value!r}, so output.{wanted} must "
                f"be set and no other; got {', '.join(filled) or 'none'} set"
            )
        _check_unique(self.parameters, "parameters")
        _check_unique(self.inputs, "inputs")
        return self


class ModelCreateRequest(EntityCreateRequest, ModelSpec):
    """Creates a Model."""

    @pydantic.field_validator("artifact", mode="after")
    @classmethod
    def _file_paths(cls, artifact: ModelArtifact) -> ModelArtifact:
        if artifact.volume is not None:
            for i, file in enumerate(artifact.volume.files):
                _check_path(file.path, f"artifact.volume.files[{i}].path")
        return artifact


class ModuleCreateRequest(EntityCreateRequest, ModuleBase):
    """Creates a Module; upload its files afterwards, then finalize it."""

    @pydantic.field_validator("artifacts", mode="after")
    @classmethod
    def _artifact_paths(cls, artifacts: list[Artifact]) -> list[Artifact]:
        return _check_artifacts(artifacts, "module")

    @pydantic.field_validator("artifacts", mode="before")
    @classmethod
    def _not_empty(cls, artifacts: Any) -> Any:
        if isinstance(artifacts, list) and not artifacts:
            return _check_artifacts([], "module")
        return artifacts


class ReportCreateRequest(EntityCreateRequest, ReportBase):
    """Creates a Report (reference platform; prefer Methods and Measurements)."""

    datasetView: str | DataView | None = None
    """View of the Dataset the rubric needs (a view, or the id of one)."""
    evaluationView: str | DataView | None = None
    """View of the evaluation outputs the rubric needs (a view, or the id of one)."""


class FamilyCreateRequest(EntityCreateRequest, FamilyBase):
    """Creates a Family."""


class AuditProcedureCreateRequest(EntityCreateRequest):
    """Creates an AuditProcedure."""

    name: str
    """The name of the procedure."""
    requirements: list[AuditRequirement] = Field(default_factory=list)
    """The reports the procedure needs."""


class AnalysisCreateRequest(EntityCreateRequest, AnalysisRequestBase):
    """Runs a Method on some inputs: creates a Measurement or a SafetyCase, depending on the
    Method's output."""

    @pydantic.field_validator("scope", mode="after")
    @classmethod
    def _scope_ids(cls, scope: AnalysisScope) -> AnalysisScope:
        for name in ("dataset", "inferenceService", "evaluation", "model"):
            value = getattr(scope, name)
            if value is not None and not _ENTITY_ID_RE.match(value):
                raise ValueError(
                    f"scope.{name}: {value!r} is not an entity id; give the 32-hex-digit id "
                    f"of the {name[0].upper() + name[1:]}"
                )
        return scope

    @pydantic.model_validator(mode="after")
    def _unique_keywords(self) -> AnalysisCreateRequest:
        _check_unique(self.arguments, "arguments")
        _check_unique(self.inputs, "inputs")
        return self
