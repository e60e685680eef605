"""The requests a client sends: create, edit and query requests.

```python
from assay.schema.requests import DatasetCreateRequest, EvaluationCreateRequest
```

Requests name the entities they refer to by id; the platform answers with the full entity
(see :mod:`assay.schema.platform`). All requests derive from :class:`RequestModel`: datetimes
must carry a timezone, and ``to_wire()`` leaves out the fields that were not set, so the server
fills in its defaults. Edit requests follow JSON Merge Patch (``None`` removes a value).

The definitions live in private modules: ``_request_base`` (bases and edit requests),
``_create_requests`` and ``_query_requests``.
"""

from __future__ import annotations

from assay.schema._create_requests import (
    AnalysisCreateRequest,
    AuditProcedureCreateRequest,
    DatasetCreateRequest,
    DataSourceCreateRequest,
    EvaluationCreateRequest,
    FamilyCreateRequest,
    InferenceServiceCreateRequest,
    InferenceSessionCreateRequest,
    InferenceSessionTokenCreateRequest,
    MethodCreateRequest,
    ModelCreateRequest,
    ModuleCreateRequest,
    ReportCreateRequest,
)
from assay.schema._data import EvaluationInferenceSessionRequest
from assay.schema._query_requests import (
    CurveQueryRequest,
    DatasetQueryRequest,
    EntityQueryRequest,
    EvaluationQueryRequest,
    FamilyQueryRequest,
    InferenceServiceQueryRequest,
    InferenceSessionQueryRequest,
    MeasurementQueryRequest,
    MethodQueryRequest,
    ModelQueryRequest,
    ModuleQueryRequest,
    QueryRequest,
    ReportQueryRequest,
    SafetyCaseQueryRequest,
    ScoreQueryRequest,
)
from assay.schema._request_base import (
    DocumentationEditRequest,
    EntityCreateRequest,
    FamilyMembersEditRequest,
    LabelsEditRequest,
    MergePatchRequest,
    RequestBase,
    RequestModel,
)

# The reference platform's names.
DyffEntityCreateRequest = EntityCreateRequest
DyffEntityQueryRequest = EntityQueryRequest
DyffRequestBase = RequestBase
DyffRequestDefaultValidators = RequestModel
LabelUpdateRequest = LabelsEditRequest

__all__ = [
    "AnalysisCreateRequest",
    "AuditProcedureCreateRequest",
    "CurveQueryRequest",
    "DataSourceCreateRequest",
    "DatasetCreateRequest",
    "DatasetQueryRequest",
    "DocumentationEditRequest",
    "DyffEntityCreateRequest",
    "DyffEntityQueryRequest",
    "DyffRequestBase",
    "DyffRequestDefaultValidators",
    "EntityCreateRequest",
    "EntityQueryRequest",
    "EvaluationCreateRequest",
    "EvaluationInferenceSessionRequest",
    "EvaluationQueryRequest",
    "FamilyCreateRequest",
    "FamilyMembersEditRequest",
    "FamilyQueryRequest",
    "InferenceServiceCreateRequest",
    "InferenceServiceQueryRequest",
    "InferenceSessionCreateRequest",
    "InferenceSessionQueryRequest",
    "InferenceSessionTokenCreateRequest",
    "LabelUpdateRequest",
    "LabelsEditRequest",
    "MeasurementQueryRequest",
    "MergePatchRequest",
    "MethodCreateRequest",
    "MethodQueryRequest",
    "ModelCreateRequest",
    "ModelQueryRequest",
    "ModuleCreateRequest",
    "ModuleQueryRequest",
    "QueryRequest",
    "ReportCreateRequest",
    "ReportQueryRequest",
    "RequestBase",
    "RequestModel",
    "SafetyCaseQueryRequest",
    "ScoreQueryRequest",
]
