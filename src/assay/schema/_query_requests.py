"""The query requests: the filters of ``GET /<resource>?...``.

Every filter is a string; ``query`` and ``labels`` are JSON objects given as strings (a dict
is accepted and encoded). A filter left out does not restrict the results.

Public names are re-exported by :mod:`assay.schema.requests`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import pydantic
from pydantic import Field

from assay.schema._request_base import RequestModel

__all__ = [
    "CurveQueryRequest",
    "DatasetQueryRequest",
    "EntityQueryRequest",
    "EvaluationQueryRequest",
    "FamilyQueryRequest",
    "InferenceServiceQueryRequest",
    "InferenceSessionQueryRequest",
    "MeasurementQueryRequest",
    "MethodQueryRequest",
    "ModelQueryRequest",
    "ModuleQueryRequest",
    "QueryRequest",
    "ReportQueryRequest",
    "SafetyCaseQueryRequest",
    "ScoreQueryRequest",
]


def _json_object(value: Any, info: pydantic.ValidationInfo) -> Any:
    """Encode a dict as JSON; check that a string is the JSON of an object."""
    field = info.field_name
    if isinstance(value, dict):
        try:
            return json.dumps(value, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{field}: {value!r} cannot be encoded as JSON ({exc})") from None
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{field}: {value!r} is not valid JSON ({exc.msg}); give a JSON object, "
                'e.g. \'{"key": "value"}\', or a dict'
            ) from None
        if not isinstance(decoded, dict):
            raise ValueError(
                f"{field}: {value!r} is JSON but not an object; give a JSON object, "
                'e.g. \'{"key": "value"}\', or a dict'
            )
    return value


JsonObjectString = Annotated[str, pydantic.BeforeValidator(_json_object)]
"""A JSON object as a string (a dict is encoded)."""


class QueryRequest(RequestModel):
    """The filters and paging common to every query."""

    query: JsonObjectString | None = None
    """More filters as a JSON object of field → value (a list value means any of)."""
    id: str | None = None
    """Only the entity with this id."""
    order: Literal["ascending", "descending"] | None = None
    """Sort order of the results."""
    orderBy: str | None = None
    """The field to sort the results by (default: creation time)."""
    limit: int | None = Field(default=None, ge=1)
    """The most results to return in one page."""
    after: str | None = None
    """Return the page after the one that ended with this id."""


class EntityQueryRequest(QueryRequest):
    """The filters every entity kind supports."""

    account: str | None = None
    """Only entities owned by this account."""
    status: str | None = None
    """Only entities with this status."""
    reason: str | None = None
    """Only entities with this reason."""
    labels: JsonObjectString | None = None
    """Only entities with these labels, as a JSON object of key → value."""
    name: str | None = None
    """Only entities with this name."""


class DatasetQueryRequest(EntityQueryRequest):
    """Filters for Datasets."""


class EvaluationQueryRequest(EntityQueryRequest):
    """Filters for Evaluations."""

    dataset: str | None = None
    """Only evaluations of this Dataset."""
    inferenceService: str | None = None
    """Only evaluations of this InferenceService."""
    inferenceServiceName: str | None = None
    """Only evaluations of InferenceServices with this name."""
    model: str | None = None
    """Only evaluations of services backed by this Model."""
    modelName: str | None = None
    """Only evaluations of services backed by Models with this name."""
    inferenceSession: str | None = None
    """Only evaluations that used this running InferenceSession."""


class FamilyQueryRequest(EntityQueryRequest):
    """Filters for Families."""


class InferenceServiceQueryRequest(EntityQueryRequest):
    """Filters for InferenceServices."""

    model: str | None = None
    """Only services backed by this Model."""
    modelName: str | None = None
    """Only services backed by Models with this name."""
    modules: str | None = None
    """Only services that use this Module (``python`` runner)."""


class InferenceSessionQueryRequest(EntityQueryRequest):
    """Filters for InferenceSessions."""

    inferenceService: str | None = None
    """Only sessions of this InferenceService."""
    inferenceServiceName: str | None = None
    """Only sessions of InferenceServices with this name."""
    model: str | None = None
    """Only sessions of services backed by this Model."""
    modelName: str | None = None
    """Only sessions of services backed by Models with this name."""


class _AnalysisQueryRequest(EntityQueryRequest):
    """Filters for the outputs of analyses."""

    method: str | None = None
    """Only outputs of this Method."""
    methodName: str | None = None
    """Only outputs of Methods with this name."""
    dataset: str | None = None
    """Only outputs about this Dataset."""
    evaluation: str | None = None
    """Only outputs about this Evaluation."""
    inferenceService: str | None = None
    """Only outputs about this InferenceService."""
    model: str | None = None
    """Only outputs about this Model."""
    inputs: str | None = None
    """Only outputs that read this entity."""


class MeasurementQueryRequest(_AnalysisQueryRequest):
    """Filters for Measurements."""


class SafetyCaseQueryRequest(_AnalysisQueryRequest):
    """Filters for SafetyCases."""


class MethodQueryRequest(EntityQueryRequest):
    """Filters for Methods."""

    outputKind: str | None = None
    """Only Methods with this output kind (``Measurement`` or ``SafetyCase``)."""
    modules: str | None = None
    """Only Methods that use this Module."""


class ModelQueryRequest(EntityQueryRequest):
    """Filters for Models."""


class ModuleQueryRequest(EntityQueryRequest):
    """Filters for Modules."""


class ReportQueryRequest(EntityQueryRequest):
    """Filters for Reports."""

    report: str | None = None
    """Only the report with this id."""
    dataset: str | None = None
    """Only reports about this Dataset."""
    evaluation: str | None = None
    """Only reports of this Evaluation."""
    inferenceService: str | None = None
    """Only reports about this InferenceService."""
    model: str | None = None
    """Only reports about this Model."""


class ScoreQueryRequest(QueryRequest):
    """Filters for Scores."""

    name: str | None = None
    """Only scores with this name."""
    analysis: str | None = None
    """Only scores of this analysis (SafetyCase)."""
    method: str | None = None
    """Only scores of this Method."""
    methodName: str | None = None
    """Only scores of Methods with this name."""
    dataset: str | None = None
    """Only scores about this Dataset."""
    evaluation: str | None = None
    """Only scores about this Evaluation."""
    inferenceService: str | None = None
    """Only scores about this InferenceService."""
    model: str | None = None
    """Only scores about this Model."""


class CurveQueryRequest(ScoreQueryRequest):
    """Filters for Curves (the same as for Scores)."""
