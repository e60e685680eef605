"""The resource kinds the API serves, as data: each one's path segment, entity kind, create
request, query filters and extra routes. The route modules build the same routes for every
kind from this table, so learning one kind's routes teaches all (STYLE item 3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from assay.schema import requests
from assay.schema.platform import Entity, entity_class

__all__ = ["RESOURCE_KINDS", "ResourceKind", "resource_kind"]


@dataclass(frozen=True)
class ResourceKind:
    """One resource group of the API."""

    resource: str
    """The path segment and grant resource name, e.g. ``datasets``."""
    kind: str
    """The entity kind, e.g. ``Dataset``."""
    create_request: type[requests.EntityCreateRequest]
    """The body of ``POST /<resource>``."""
    query_request: type[requests.QueryRequest]
    """The filters of ``GET /<resource>`` (documentation of the query parameters)."""
    uploads: bool = False
    """The entity's files are uploaded (``upload`` and ``finalize`` routes)."""
    name_filters: tuple[tuple[str, str, str], ...] = ()
    """Filters by the name of a referenced entity: (parameter, referenced kind's resource,
    reference filter), e.g. ``("methodName", "methods", "method")``."""

    @property
    def entity_type(self) -> type[Entity]:
        return entity_class(self.kind)

    def group(self, core: Any) -> Any:
        """This kind's API group of ``core``."""
        return getattr(core, self.resource)


_SERVICE_NAME = ("inferenceServiceName", "inferenceservices", "inferenceService")
_MODEL_NAME = ("modelName", "models", "model")
_METHOD_NAME = ("methodName", "methods", "method")

RESOURCE_KINDS: tuple[ResourceKind, ...] = (
    ResourceKind(
        "datasets",
        "Dataset",
        requests.DatasetCreateRequest,
        requests.DatasetQueryRequest,
        uploads=True,
    ),
    ResourceKind(
        "evaluations",
        "Evaluation",
        requests.EvaluationCreateRequest,
        requests.EvaluationQueryRequest,
        name_filters=(_SERVICE_NAME, _MODEL_NAME),
    ),
    ResourceKind("families", "Family", requests.FamilyCreateRequest, requests.FamilyQueryRequest),
    ResourceKind(
        "inferenceservices",
        "InferenceService",
        requests.InferenceServiceCreateRequest,
        requests.InferenceServiceQueryRequest,
        name_filters=(_MODEL_NAME,),
    ),
    ResourceKind(
        "inferencesessions",
        "InferenceSession",
        requests.InferenceSessionCreateRequest,
        requests.InferenceSessionQueryRequest,
        name_filters=(_SERVICE_NAME, _MODEL_NAME),
    ),
    ResourceKind(
        "measurements",
        "Measurement",
        requests.AnalysisCreateRequest,
        requests.MeasurementQueryRequest,
        name_filters=(_METHOD_NAME,),
    ),
    ResourceKind("methods", "Method", requests.MethodCreateRequest, requests.MethodQueryRequest),
    ResourceKind(
        "models", "Model", requests.ModelCreateRequest, requests.ModelQueryRequest, uploads=True
    ),
    ResourceKind(
        "modules", "Module", requests.ModuleCreateRequest, requests.ModuleQueryRequest, uploads=True
    ),
    ResourceKind("reports", "Report", requests.ReportCreateRequest, requests.ReportQueryRequest),
    ResourceKind(
        "safetycases",
        "SafetyCase",
        requests.AnalysisCreateRequest,
        requests.SafetyCaseQueryRequest,
        name_filters=(_METHOD_NAME,),
    ),
)


def resource_kind(resource: str) -> ResourceKind:
    """The resource kind served under ``resource``."""
    for rk in RESOURCE_KINDS:
        if rk.resource == resource:
            return rk
    raise KeyError(resource)
