"""The groups of the kinds whose create only resolves references: models, services, sessions,
evaluations, methods, measurements, safety cases, reports and families."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from assay import errors
from assay.core.datasets import open_entity_data
from assay.core.groups import EntityGroup
from assay.schema.platform import (
    Evaluation,
    Family,
    ForeignInferenceService,
    ForeignMethod,
    ForeignModel,
    InferenceService,
    InferenceSession,
    Method,
    Model,
    Report,
)
from assay.schema.requests import (
    AnalysisCreateRequest,
    EvaluationCreateRequest,
    FamilyCreateRequest,
    InferenceServiceCreateRequest,
    InferenceSessionCreateRequest,
    MethodCreateRequest,
    ModelCreateRequest,
    ReportCreateRequest,
)

if TYPE_CHECKING:
    import pyarrow.dataset

__all__ = [
    "Evaluations",
    "Families",
    "InferenceServices",
    "InferenceSessions",
    "Measurements",
    "Methods",
    "Models",
    "Reports",
    "SafetyCases",
]


def foreign(foreign_type: type[Any], entity: Any) -> dict[str, Any]:
    """The fields of ``entity`` that its ``Foreign*`` copy carries (by wire name)."""
    wire = entity.to_wire()
    names = {f.alias or n for n, f in foreign_type.model_fields.items()}
    return {k: v for k, v in wire.items() if k in names}


class Models(EntityGroup[Model]):
    kind = "Model"
    request_type = ModelCreateRequest


class InferenceServices(EntityGroup[InferenceService]):
    kind = "InferenceService"
    request_type = InferenceServiceCreateRequest
    ref_filters = ("model",)

    def _build(self, request: Any) -> InferenceService:
        body = request.model_dump(
            by_alias=True, exclude_none=True, exclude={"schemaVersion", "model"}
        )
        if request.model:
            body["model"] = foreign(
                ForeignModel, self._resolve("Model", request.model, field="model")
            )
        return self._new(body)


class InferenceSessions(EntityGroup[InferenceSession]):
    kind = "InferenceSession"
    request_type = InferenceSessionCreateRequest
    ref_filters = ("inferenceService", "model")

    def _build(self, request: Any) -> InferenceSession:
        body = request.model_dump(by_alias=True, exclude_none=True, exclude={"schemaVersion"})
        service = self._resolve(
            "InferenceService", request.inferenceService, field="inferenceService"
        )
        body["inferenceService"] = foreign(ForeignInferenceService, service)
        return self._new(body)


class _OutputData:
    """``open(id)`` for kinds whose workflow writes Parquet data (evaluations, measurements).

    The data is every ``.parquet`` artifact of the entity outside hidden directories (a
    workflow keeps its bookkeeping under ``.assay/``); it can be opened once the workflow is
    ``Complete``, never before, so a reader never sees half the data.
    """

    def open(self, id: str) -> pyarrow.dataset.Dataset:
        """The workflow's output data as a ``pyarrow.dataset.Dataset`` (read lazily)."""
        group: Any = self
        entity = group.get(id)
        group._require_success(entity, "open")
        paths = [
            info.path
            for info in group._core.storage.list(id)
            if info.path.endswith(".parquet")
            and not any(p.startswith(".") for p in info.path.split("/"))
        ]
        return open_entity_data(group._core, entity, paths)


class Evaluations(_OutputData, EntityGroup[Evaluation]):
    kind = "Evaluation"
    request_type = EvaluationCreateRequest
    ref_filters = ("dataset", "inferenceService", "model", "inferenceSession")

    def _build(self, request: Any) -> Evaluation:
        body = request.model_dump(
            by_alias=True, exclude_none=True, exclude={"schemaVersion", "inferenceSession"}
        )
        self._resolve("Dataset", request.dataset, field="dataset")
        if request.inferenceSessionReference:
            session = self._resolve(
                "InferenceSession",
                request.inferenceSessionReference,
                field="inferenceSessionReference",
            )
            spec = session.to_wire()
            names = {"inferenceService", "expires", "replicas", "accelerator", "useSpotPods"}
            body["inferenceSession"] = {k: v for k, v in spec.items() if k in names}
        else:
            spec = request.inferenceSession.model_dump(by_alias=True, exclude_none=True)
            service = self._resolve(
                "InferenceService",
                spec["inferenceService"],
                field="inferenceSession.inferenceService",
            )
            spec["inferenceService"] = foreign(ForeignInferenceService, service)
            body["inferenceSession"] = spec
        return self._new(body)


class Methods(EntityGroup[Method]):
    kind = "Method"
    request_type = MethodCreateRequest
    ref_filters = ("modules",)

    def _build(self, request: Any) -> Method:
        for i, module in enumerate(request.modules):
            self._resolve("Module", module, field=f"modules[{i}]")
        return super()._build(request)


class _Analyses(EntityGroup[Any]):
    """Measurements and safety cases: both apply a Method to some inputs."""

    request_type = AnalysisCreateRequest
    ref_filters = ("method", "dataset", "evaluation", "inferenceService", "model", "inputs")
    output_kind: str

    def _build(self, request: Any) -> Any:
        method: Method = self._resolve("Method", request.method, field="method")
        what = f"{self.kind} create request"
        if method.output.kind != self.output_kind:
            other = "measurements" if method.output.kind == "Measurement" else "safetycases"
            raise errors.ValidationError(
                f"{what}: Method {method.id} ({method.name!r}) produces a {method.output.kind}, "
                f"not a {self.kind}; create it with {other}.create(...)",
                field="method",
                value=method.id,
            )
        declared = {i.keyword: i.kind for i in method.inputs}
        given = {i.keyword: i.entity for i in request.inputs}
        for keyword in sorted(set(given) - set(declared)):
            raise errors.ValidationError(
                f"{what}: input {keyword!r} is not an input of Method {method.id}; "
                f"its inputs are {sorted(declared) or 'none'}",
                field="inputs",
                value=keyword,
            )
        for keyword in sorted(set(declared) - set(given)):
            raise errors.ValidationError(
                f"{what}: Method {method.id} needs the input {keyword!r} "
                f"(a {declared[keyword].value if hasattr(declared[keyword], 'value') else declared[keyword]}); "
                "add it to inputs",
                field="inputs",
                value=keyword,
            )
        for keyword, entity_id in given.items():
            kind = getattr(declared[keyword], "value", declared[keyword])
            self._resolve(kind, entity_id, field=f"inputs[{keyword}]")
        parameters = {p.keyword for p in method.parameters}
        for argument in request.arguments:
            if argument.keyword not in parameters:
                raise errors.ValidationError(
                    f"{what}: argument {argument.keyword!r} is not a parameter of Method "
                    f"{method.id}; its parameters are {sorted(parameters) or 'none'}",
                    field="arguments",
                    value=argument.keyword,
                )
        scope = request.scope.model_dump(by_alias=True, exclude_none=True)
        if scope.get("evaluation"):
            evaluation: Evaluation = self._resolve(
                "Evaluation", scope["evaluation"], field="scope.evaluation"
            )
            service = evaluation.inferenceSession.inferenceService
            scope.setdefault("dataset", evaluation.dataset)
            scope.setdefault("inferenceService", service.id)
            if service.model is not None:
                scope.setdefault("model", service.model.id)
        if scope.get("inferenceService") and not scope.get("model"):
            service_entity: InferenceService = self._resolve(
                "InferenceService", scope["inferenceService"], field="scope.inferenceService"
            )
            if service_entity.model is not None:
                scope["model"] = service_entity.model.id
        scope_kind = getattr(method.scope, "value", method.scope)
        needed = (
            ["evaluation", "inferenceService", "dataset"]
            if scope_kind == "Evaluation"
            else ["inferenceService"]
        )
        missing = [k for k in needed if not scope.get(k)]
        if missing:
            raise errors.ValidationError(
                f"{what}: Method {method.id} has scope {scope_kind}, so scope.{missing[0]} must be set "
                f"(set scope.evaluation and the rest is filled in from the Evaluation)",
                field=f"scope.{missing[0]}",
            )
        body = request.model_dump(
            by_alias=True, exclude_none=True, exclude={"schemaVersion", "method", "scope"}
        )
        body["scope"] = scope
        body["method"] = foreign(ForeignMethod, method)
        body.update(self._output_fields(method))
        return self._new(body)

    def _output_fields(self, method: Method) -> dict[str, Any]:
        raise NotImplementedError


class Measurements(_OutputData, _Analyses):
    kind = "Measurement"
    output_kind = "Measurement"

    def _output_fields(self, method: Method) -> dict[str, Any]:
        spec = method.output.measurement
        if spec is None:  # guarded by the Method's own validation
            raise errors.PlatformError(f"Method {method.id} has no measurement spec")
        return spec.model_dump(by_alias=True, exclude_none=True)


class SafetyCases(_Analyses):
    kind = "SafetyCase"
    output_kind = "SafetyCase"

    def _output_fields(self, method: Method) -> dict[str, Any]:
        spec = method.output.safetyCase
        if spec is None:
            raise errors.PlatformError(f"Method {method.id} has no safety case spec")
        return spec.model_dump(by_alias=True, exclude_none=True)


class Reports(EntityGroup[Report]):
    kind = "Report"
    request_type = ReportCreateRequest
    ref_filters = ("evaluation", "dataset", "inferenceService", "model")

    def _build(self, request: Any) -> Report:
        evaluation: Evaluation = self._resolve("Evaluation", request.evaluation, field="evaluation")
        for i, module in enumerate(request.modules):
            self._resolve("Module", module, field=f"modules[{i}]")
        body = request.model_dump(by_alias=True, exclude_none=True, exclude={"schemaVersion"})
        service = evaluation.inferenceSession.inferenceService
        body.update(dataset=evaluation.dataset, inferenceService=service.id)
        if service.model is not None:
            body["model"] = service.model.id
        return self._new(body)


class Families(EntityGroup[Family]):
    kind = "Family"
    request_type = FamilyCreateRequest
