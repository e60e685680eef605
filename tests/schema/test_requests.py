"""Create, edit and query requests (``assay.schema.requests``)."""

from __future__ import annotations

import inspect
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pydantic
import pytest

from assay import errors
from assay.schema import platform as P
from assay.schema import requests as R
from assay.schema.base import validate_model

ACCOUNT = "audit-team"
AWARE = datetime(2030, 1, 1, 12, tzinfo=UTC)
SCHEMA = {"arrowSchema": "QUJDRA=="}


def hex_id(n: int) -> str:
    return f"{n:032x}"


DATASET, SERVICE, SESSION, METHOD, MODULE, EVALUATION = (hex_id(i) for i in range(1, 7))


def error(model: type[pydantic.BaseModel], data: dict[str, Any]) -> errors.ValidationError:
    """The Assay error that validating ``data`` as ``model`` raises."""
    with pytest.raises(errors.ValidationError) as info:
        validate_model(model, data)
    return info.value


# -- the request base ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "data", "field"),
    [
        (R.InferenceSessionTokenCreateRequest, {"expires": datetime(2030, 1, 1)}, "expires"),
        (R.InferenceSessionTokenCreateRequest, {"expires": "2030-01-01T00:00:00"}, "expires"),
        (
            R.InferenceSessionCreateRequest,
            {"account": ACCOUNT, "inferenceService": SERVICE, "expires": datetime(2030, 1, 1)},
            "expires",
        ),
        (
            R.EvaluationCreateRequest,
            {
                "account": ACCOUNT,
                "dataset": DATASET,
                "inferenceSession": {"inferenceService": SERVICE, "expires": datetime(2030, 1, 1)},
            },
            "inferenceSession.expires",
        ),
    ],
)
def test_naive_datetimes_are_refused(
    model: type[pydantic.BaseModel], data: dict[str, Any], field: str
) -> None:
    err = error(model, data)
    assert err.field == field
    assert "has no timezone" in str(err) and "datetime.now(timezone.utc)" in str(err)


def test_aware_datetimes_are_converted_to_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    request = R.InferenceSessionTokenCreateRequest(expires=datetime(2030, 1, 1, 14, tzinfo=plus2))
    assert request.expires == datetime(2030, 1, 1, 12, tzinfo=UTC)
    assert request.to_wire() == {"expires": "2030-01-01T12:00:00Z"}


def test_to_wire_leaves_out_unset_fields() -> None:
    request = R.EvaluationCreateRequest(
        account=ACCOUNT,
        dataset=DATASET,
        inferenceSession=R.EvaluationInferenceSessionRequest(inferenceService=SERVICE),
    )
    assert request.to_wire() == {
        "account": ACCOUNT,
        "dataset": DATASET,
        "inferenceSession": {"inferenceService": SERVICE},
    }
    assert json.loads(request.model_dump_json()) == request.to_wire()
    # The platform's defaults are still there for whoever reads the request.
    assert request.client.batchSize == 1000
    assert request.replications == 1


def test_fields_set_to_their_default_are_sent() -> None:
    request = R.InferenceSessionCreateRequest(
        account=ACCOUNT, inferenceService=SERVICE, replicas=1, useSpotPods=True
    )
    assert request.to_wire() == {
        "account": ACCOUNT,
        "inferenceService": SERVICE,
        "replicas": 1,
        "useSpotPods": True,
    }


@pytest.mark.parametrize("account", ["", "Bad Account", "-team", "team-", "x" * 64, "a/b"])
def test_bad_account(account: str) -> None:
    err = error(R.FamilyCreateRequest, {"account": account, "memberKind": "Dataset"})
    assert err.field == "account"
    assert repr(account) in str(err) and "letters, digits" in str(err)


def test_unknown_field_is_refused() -> None:
    err = error(R.FamilyCreateRequest, {"account": ACCOUNT, "memberKind": "Dataset", "nmae": "x"})
    assert err.field == "nmae"


# -- create requests -----------------------------------------------------------------------------


def dataset_request(**extra: Any) -> dict[str, Any]:
    return {
        "account": ACCOUNT,
        "name": "prompts",
        "artifacts": [{"path": "data/part-0.parquet"}],
        "schema": SCHEMA,
        **extra,
    }


def test_dataset_request_wire_uses_schema_alias() -> None:
    request = validate_model(R.DatasetCreateRequest, dataset_request())
    wire = request.to_wire()
    assert wire["schema"] == SCHEMA
    assert "schema_" not in wire
    assert R.DatasetCreateRequest.model_validate(wire) == request


@pytest.mark.parametrize(
    "path", ["../escape", "/abs/path", "a//b", "a/./b", "what?.parquet", "50%.parquet", "CON", "x "]
)
@pytest.mark.parametrize(
    ("model", "base"),
    [
        (R.DatasetCreateRequest, dataset_request()),
        (R.ModuleCreateRequest, {"account": ACCOUNT, "name": "m", "artifacts": []}),
    ],
)
def test_bad_artifact_paths(
    model: type[pydantic.BaseModel], base: dict[str, Any], path: str
) -> None:
    data = {**base, "artifacts": [{"path": "fine.txt"}, {"path": path}]}
    err = error(model, data)
    assert err.field == "artifacts"
    message = str(err)
    assert "artifacts[1].path" in message and repr(path) in message and "relative" in message


@pytest.mark.parametrize("model", [R.DatasetCreateRequest, R.ModuleCreateRequest])
def test_at_least_one_artifact(model: type[pydantic.BaseModel]) -> None:
    data = {**dataset_request(), "artifacts": []}
    if model is R.ModuleCreateRequest:
        data.pop("schema")
    err = error(model, data)
    assert err.field == "artifacts" and "at least one artifact" in str(err)


def test_model_request_checks_volume_file_paths() -> None:
    data = {
        "account": ACCOUNT,
        "name": "weights",
        "artifact": {"kind": "Volume", "volume": {"files": [{"path": "../w.bin", "size": 1}]}},
        "source": {"kind": "Upload"},
        "resources": {"storage": "1Gi"},
    }
    err = error(R.ModelCreateRequest, data)
    assert "artifact.volume.files[0].path" in str(err)
    data["artifact"]["volume"]["files"][0]["path"] = "w.bin"
    assert validate_model(R.ModelCreateRequest, data).artifact.volume is not None


def evaluation_request(**extra: Any) -> dict[str, Any]:
    return {"account": ACCOUNT, "dataset": DATASET, **extra}


@pytest.mark.parametrize(
    ("extra", "got"),
    [
        ({}, "got neither"),
        (
            {
                "inferenceSession": {"inferenceService": SERVICE},
                "inferenceSessionReference": SESSION,
            },
            "got both",
        ),
    ],
)
def test_evaluation_needs_exactly_one_session(extra: dict[str, Any], got: str) -> None:
    err = error(R.EvaluationCreateRequest, evaluation_request(**extra))
    message = str(err)
    assert "inferenceSession" in message and "inferenceSessionReference" in message
    assert got in message


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"replications": 0}, "replications"),
        ({"workersPerReplica": 0}, "workersPerReplica"),
        ({"client": {"batchSize": 0}}, "client.batchSize"),
        ({"client": {"duplicateOutputPolicy": "Keep"}}, "client.duplicateOutputPolicy"),
    ],
)
def test_evaluation_numbers_are_checked(extra: dict[str, Any], field: str) -> None:
    data = evaluation_request(inferenceSessionReference=SESSION, **extra)
    assert error(R.EvaluationCreateRequest, data).field == field


def test_evaluation_on_running_session() -> None:
    request = validate_model(
        R.EvaluationCreateRequest,
        evaluation_request(inferenceSessionReference=SESSION, workersPerReplica=8),
    )
    assert request.inferenceSession is None
    assert request.to_wire()["inferenceSessionReference"] == SESSION


def service_request(**extra: Any) -> dict[str, Any]:
    return {
        "account": ACCOUNT,
        "name": "echo",
        "runner": {"kind": "http", "configuration": {"url": "http://localhost:8000"}},
        "interface": {"endpoint": "generate", "outputSchema": SCHEMA},
        **extra,
    }


def test_service_request() -> None:
    request = validate_model(R.InferenceServiceCreateRequest, service_request(model=hex_id(9)))
    assert request.model == hex_id(9)
    assert request.runner is not None and request.runner.kind is P.InferenceServiceRunnerKind.HTTP


@pytest.mark.parametrize(
    ("runner", "fragment"),
    [
        (None, "needs a runner"),
        ({"kind": "container"}, "exactly one of runner.image"),
        ({"kind": "teleport"}, "runner.kind"),
    ],
)
def test_service_request_runner(runner: dict[str, Any] | None, fragment: str) -> None:
    data = service_request()
    if runner is None:
        del data["runner"]
    else:
        data["runner"] = runner
    assert fragment in str(error(R.InferenceServiceCreateRequest, data))


@pytest.mark.parametrize(("replicas", "ok"), [(1, True), (4, True), (0, False), (-1, False)])
def test_session_replicas(replicas: int, ok: bool) -> None:
    data = {"account": ACCOUNT, "inferenceService": SERVICE, "replicas": replicas}
    if ok:
        assert validate_model(R.InferenceSessionCreateRequest, data).replicas == replicas
    else:
        assert error(R.InferenceSessionCreateRequest, data).field == "replicas"


def method_request(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "account": ACCOUNT,
        "name": "exact-match",
        "scope": "Evaluation",
        "implementation": {
            "kind": "PythonFunction",
            "pythonFunction": {"fullyQualifiedName": "metrics.exact_match"},
        },
        "parameters": [{"keyword": "threshold"}],
        "inputs": [
            {"kind": "Evaluation", "keyword": "outputs"},
            {"kind": "Dataset", "keyword": "dataset"},
        ],
        "output": {
            "kind": "Measurement",
            "measurement": {"name": "em", "level": "Instance", "schema": SCHEMA},
        },
        "modules": [MODULE],
    }
    data.update(changes)
    return data


MEASUREMENT_SPEC = {"name": "x", "level": "Dataset", "schema": SCHEMA}
NOTEBOOK = {
    "kind": "JupyterNotebook",
    "jupyterNotebook": {"notebookModule": hex_id(40), "notebookPath": "case.ipynb"},
}


def test_method_request() -> None:
    request = validate_model(R.MethodCreateRequest, method_request())
    assert request.implementation.kind is P.MethodImplementationKind.PythonFunction
    ok = method_request(implementation=NOTEBOOK, modules=[MODULE, hex_id(40)])
    assert validate_model(R.MethodCreateRequest, ok).module_ids() == [MODULE, hex_id(40)]


@pytest.mark.parametrize(
    ("changes", "fragments"),
    [
        (
            {"implementation": {**NOTEBOOK, "kind": "PythonFunction"}},
            ["implementation.pythonFunction", "'PythonFunction'", "got jupyterNotebook set"],
        ),
        (
            {"implementation": {"kind": "JupyterNotebook"}},
            ["implementation.jupyterNotebook", "got none set"],
        ),
        (
            {"implementation": NOTEBOOK},
            ["modules", repr(hex_id(40)), "add it to modules"],
        ),
        (
            {"output": {"kind": "SafetyCase", "measurement": MEASUREMENT_SPEC}},
            ["output.safetyCase", "'SafetyCase'", "got measurement set"],
        ),
        (
            {"parameters": [{"keyword": "k"}, {"keyword": "k"}]},
            ["parameters[1].keyword", "'k'", "unique"],
        ),
        (
            {"inputs": [{"kind": "Dataset", "keyword": "d"}, {"kind": "Report", "keyword": "d"}]},
            ["inputs[1].keyword", "'d'", "unique"],
        ),
        (
            {"scores": [{"name": "a", "title": "A", "summary": "a", "priority": "secondary"}]},
            ["scores", "priority='primary'", "found 0"],
        ),
        ({"scope": "Dataset"}, ["scope", "'InferenceService' or 'Evaluation'"]),
    ],
)  # fmt: skip
def test_bad_method_request(changes: dict[str, Any], fragments: list[str]) -> None:
    message = str(error(R.MethodCreateRequest, method_request(**changes)))
    for fragment in fragments:
        assert fragment in message


def analysis_request(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "account": ACCOUNT,
        "method": METHOD,
        "scope": {"evaluation": EVALUATION},
        "arguments": [{"keyword": "threshold", "value": "0.5"}],
        "inputs": [{"keyword": "outputs", "entity": EVALUATION}],
    }
    data.update(changes)
    return data


def test_analysis_request() -> None:
    request = validate_model(R.AnalysisCreateRequest, analysis_request())
    assert request.to_wire() == {
        "account": ACCOUNT,
        "method": METHOD,
        "scope": {"evaluation": EVALUATION},
        "arguments": [{"keyword": "threshold", "value": "0.5"}],
        "inputs": [{"keyword": "outputs", "entity": EVALUATION}],
    }


@pytest.mark.parametrize(
    ("changes", "fragments"),
    [
        ({"scope": {"dataset": "imdb"}}, ["scope.dataset", "'imdb'", "32-hex-digit"]),
        ({"scope": {"model": "ABCDEF" + "0" * 26}}, ["scope.model", "not an entity id"]),
        (
            {"arguments": [{"keyword": "t", "value": "1"}, {"keyword": "t", "value": "2"}]},
            ["arguments[1].keyword", "'t'", "unique"],
        ),
        (
            {"inputs": [{"keyword": "x", "entity": DATASET}, {"keyword": "x", "entity": DATASET}]},
            ["inputs[1].keyword", "'x'", "unique"],
        ),
        ({"arguments": [{"keyword": "t", "value": 1}]}, ["arguments[0].value"]),
    ],
)
def test_bad_analysis_request(changes: dict[str, Any], fragments: list[str]) -> None:
    message = str(error(R.AnalysisCreateRequest, analysis_request(**changes)))
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (R.ModelCreateRequest, {
            "name": "gpt2", "artifact": {"kind": "Mock"}, "source": {"kind": "Mock"},
            "resources": {"storage": "1Gi", "memory": "2Gi"},
        }),
        (R.ModuleCreateRequest, {"name": "metrics", "artifacts": [{"path": "pkg/__init__.py"}]}),
        (R.ReportCreateRequest, {"rubric": "classification.TopK", "evaluation": EVALUATION}),
        (R.ReportCreateRequest, {
            "rubric": "r", "evaluation": EVALUATION, "datasetView": "view-id",
            "evaluationView": {"id": "v", "viewOf": EVALUATION, "schema": SCHEMA},
        }),
        (R.FamilyCreateRequest, {"memberKind": "Model"}),
        (R.AuditProcedureCreateRequest, {
            "name": "toxicity", "requirements": [{"dataset": DATASET, "rubric": "toxicity"}],
        }),
        (R.DataSourceCreateRequest, {"name": "imdb", "sourceKind": "upload", "source": "imdb"}),
        (R.InferenceSessionCreateRequest, {"inferenceService": SERVICE, "expires": AWARE}),
    ],
)  # fmt: skip
def test_simple_create_requests_round_trip(
    model: type[pydantic.BaseModel], data: dict[str, Any]
) -> None:
    request = validate_model(model, {"account": ACCOUNT, **data})
    wire = json.loads(json.dumps(request.model_dump(mode="json")))
    assert wire["account"] == ACCOUNT
    assert model.model_validate(wire) == request


def test_model_request_quantities_are_checked() -> None:
    data = {
        "account": ACCOUNT,
        "name": "gpt2",
        "artifact": {"kind": "Mock"},
        "source": {"kind": "Mock"},
        "resources": {"memory": "2GB"},
    }
    err = error(R.ModelCreateRequest, data)
    assert err.field == "resources.memory" and "'2GB'" in str(err) and "'8Gi'" in str(err)


# -- edit requests -------------------------------------------------------------------------------


def test_documentation_edit_merge_patch() -> None:
    edit = R.DocumentationEditRequest(title="New title", summary=None)
    assert edit.to_wire() == {"title": "New title", "summary": None}
    assert edit.model_dump() == {"title": "New title", "summary": None}
    assert R.DocumentationEditRequest().to_wire() == {}


def test_documentation_edit_accepts_the_reference_body() -> None:
    edit = R.DocumentationEditRequest.model_validate({"documentation": {"fullPage": None}})
    assert edit.to_wire() == {"fullPage": None}


@pytest.mark.parametrize(
    ("field", "value"), [("title", "t" * 141), ("summary", "s" * 281), ("fullPage", 3)]
)
def test_documentation_edit_limits(field: str, value: Any) -> None:
    assert error(R.DocumentationEditRequest, {field: value}).field == field


def test_labels_edit_merge_patch() -> None:
    edit = R.LabelsEditRequest(labels={"example.com/team": "red", "gone": None})
    assert edit.to_wire() == {"labels": {"example.com/team": "red", "gone": None}}
    assert R.LabelUpdateRequest is R.LabelsEditRequest


@pytest.mark.parametrize(
    "key", ["assay.io/owner", "dyff.io/owner", "sub.assay.io/x", "a.b.dyff.io/y"]
)
def test_labels_edit_refuses_reserved_keys(key: str) -> None:
    err = error(R.LabelsEditRequest, {"labels": {key: "x"}})
    message = str(err)
    assert err.field == "labels"
    assert repr(key) in message and "reserved" in message and "example.com/" in message


@pytest.mark.parametrize(
    ("labels", "fragment"),
    [
        ({"bad key": "v"}, "'bad key' is not a valid label key"),
        ({"k": "bad value"}, "labels['k']: value 'bad value' is not a valid label value"),
        ({"k": "x" * 64}, "is not a valid label value"),
    ],
)
def test_labels_edit_checks_keys_and_values(labels: dict[str, str], fragment: str) -> None:
    err = error(R.LabelsEditRequest, {"labels": labels})
    assert err.field == "labels" and fragment in str(err)


@pytest.mark.parametrize("key", ["notassay.io/x", "assay.iox/y", "assay.io.example.com/x"])
def test_labels_edit_allows_lookalike_keys(key: str) -> None:
    assert R.LabelsEditRequest(labels={key: "v"}).labels == {key: "v"}


def test_family_members_edit() -> None:
    member = {"entity": {"kind": "Dataset", "id": DATASET}, "description": "first"}
    edit = validate_model(R.FamilyMembersEditRequest, {"members": {"v1": member, "old": None}})
    assert edit.to_wire() == {"members": {"v1": member, "old": None}}
    err = error(R.FamilyMembersEditRequest, {"members": {"bad tag!": member}})
    assert "members" in str(err)


# -- query requests ------------------------------------------------------------------------------


def test_query_request_wire() -> None:
    query = R.DatasetQueryRequest(
        account=ACCOUNT, labels={"example.com/team": "red"}, name="prompts", limit=10
    )
    assert query.to_wire() == {
        "account": ACCOUNT,
        "labels": '{"example.com/team": "red"}',
        "name": "prompts",
        "limit": 10,
    }
    assert R.DatasetQueryRequest().to_wire() == {}


@pytest.mark.parametrize(
    ("data", "field", "fragment"),
    [
        ({"limit": 0}, "limit", "greater than or equal to 1"),
        ({"order": "up"}, "order", "'ascending' or 'descending'"),
        ({"query": "{not json"}, "query", "not valid JSON"),
        ({"query": "[1, 2]"}, "query", "not an object"),
        ({"labels": "3"}, "labels", "not an object"),
        ({"status": 3}, "status", "valid string"),
    ],
)
def test_bad_query_request(data: dict[str, Any], field: str, fragment: str) -> None:
    err = error(R.EvaluationQueryRequest, data)
    assert err.field == field and fragment in str(err)


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        (R.EvaluationQueryRequest, {"dataset", "inferenceService", "model", "inferenceSession"}),
        (R.InferenceServiceQueryRequest, {"model", "modelName"}),
        (R.InferenceSessionQueryRequest, {"inferenceService", "model"}),
        (R.MeasurementQueryRequest, {"method", "dataset", "evaluation", "inputs", "model"}),
        (R.SafetyCaseQueryRequest, {"method", "methodName", "inferenceService"}),
        (R.MethodQueryRequest, {"outputKind"}),
        (R.ReportQueryRequest, {"report", "evaluation", "dataset"}),
        (R.ScoreQueryRequest, {"name", "analysis", "method", "inferenceService", "after"}),
        (R.ModelQueryRequest, {"name", "account", "labels"}),
        (R.ModuleQueryRequest, {"name", "status", "reason"}),
        (R.FamilyQueryRequest, {"id", "order", "orderBy", "limit", "after", "query"}),
    ],
)
def test_per_kind_query_fields(model: type[pydantic.BaseModel], fields: set[str]) -> None:
    assert fields <= set(model.model_fields)
    json_fields = ("labels", "query")
    filled = {n: "{}" if n in json_fields else "x" for n in fields if n not in ("limit", "order")}
    assert model.model_validate(filled).model_dump() == filled


# -- the module's public surface -----------------------------------------------------------------


def test_all_is_sorted_and_complete() -> None:
    assert len(R.__all__) == len(set(R.__all__))
    classes = {
        name
        for name, obj in vars(R).items()
        if inspect.isclass(obj) and issubclass(obj, pydantic.BaseModel)
    }
    assert classes == set(R.__all__)


def test_reference_aliases() -> None:
    assert R.DyffEntityCreateRequest is R.EntityCreateRequest
    assert R.DyffEntityQueryRequest is R.EntityQueryRequest
    assert issubclass(R.EntityCreateRequest, R.RequestModel)
    assert issubclass(R.QueryRequest, R.RequestModel)


@pytest.mark.parametrize(
    "model",
    sorted({getattr(R, n) for n in R.__all__}, key=lambda cls: cls.__name__),
    ids=lambda cls: cls.__name__,
)
def test_every_request_field_is_documented(model: type[pydantic.BaseModel]) -> None:
    undocumented = [n for n, f in model.model_fields.items() if not (f.description or "").strip()]
    assert undocumented == []
