"""The entity kinds and their supporting types (``assay.schema.platform``)."""

from __future__ import annotations

import enum
import inspect
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pydantic
import pytest

from assay import errors
from assay.schema import ids
from assay.schema import platform as P
from assay.schema.base import validate_model

NOW = datetime(2024, 5, 17, 12, 30, tzinfo=UTC)
ACCOUNT = "audit-team"
SCHEMA = P.DataSchema(arrowSchema="QUJDRA==", dyffSchema=P.DyffDataSchema(components=["text.Text"]))


def hex_id(n: int) -> str:
    return f"{n:032x}"


DATASET, MODEL, SERVICE, SESSION, EVALUATION = (hex_id(i) for i in range(1, 6))
MODULE, NOTEBOOK_MODULE, METHOD, MEASUREMENT, SAFETYCASE = (hex_id(i) for i in range(6, 11))
REPORT, FAMILY, HISTORY, REVISION, PROCEDURE = (hex_id(i) for i in range(11, 16))
AUDIT, SOURCE, PRECONDITION, REVISION0 = (hex_id(i) for i in range(16, 20))


def common(id: str, **extra: Any) -> dict[str, Any]:
    """The fields every entity has, filled in realistically."""
    return {
        "id": id,
        "account": ACCOUNT,
        "creationTime": NOW,
        "lastTransitionTime": NOW + timedelta(minutes=5),
        "status": "Complete",
        "reason": None,
        "message": "done",
        "labels": {"example.com/team": "red", "stage": "", "gone": None},
        "annotations": [P.Annotation(key="example.com/note", value="anything: goes!")],
        **extra,
    }


def model_base() -> dict[str, Any]:
    return {
        "name": "gpt2",
        "artifact": P.ModelArtifact(
            kind=P.ModelArtifactKind.HuggingFaceCache,
            huggingFaceCache=P.ModelArtifactHuggingFaceCache(repoID="gpt2", revision="abc123"),
        ),
        "storage": P.ModelStorage(medium="ObjectStorage"),
    }


def make_model() -> P.Model:
    return P.Model(
        **common(MODEL),
        **model_base(),
        source=P.ModelSource(
            kind="HuggingFaceHub",
            huggingFaceHub=P.ModelSourceHuggingFaceHub(
                repoID="gpt2", revision="abc123", allowPatterns=["*.json"]
            ),
        ),
        resources=P.ModelResources(storage="10Gi", memory="8Gi", cpu="500m"),
        accelerators=[
            P.Accelerator(kind="GPU", gpu=P.AcceleratorGPU(hardwareTypes=["nvidia-h100"]))
        ],
    )


def service_spec(with_model: bool = True) -> dict[str, Any]:
    return {
        "name": "text-completion",
        "runner": P.InferenceServiceRunner(
            kind="mock",
            configuration={"class": "assay.local.mocks.TextCompletion", "seed": 1},
            resources=P.ModelResources(memory="1Gi"),
            env=[P.EnvVar(name="MODE", value="fast")],
        ),
        "interface": P.InferenceInterface(
            endpoint="generate",
            outputSchema=SCHEMA,
            inputPipeline=[
                P.SchemaAdapter(kind="TransformJSON", configuration={"prompt": "$.text"})
            ],
            outputPipeline=[P.SchemaAdapter(kind="ExplodeCollections")],
        ),
        "model": P.ForeignModel(id=MODEL, account=ACCOUNT, **model_base()) if with_model else None,
    }


def foreign_service() -> P.ForeignInferenceService:
    return P.ForeignInferenceService(id=SERVICE, account=ACCOUNT, **service_spec())


def make_service() -> P.InferenceService:
    return P.InferenceService(**common(SERVICE), **service_spec())


def make_session() -> P.InferenceSession:
    return P.InferenceSession(
        **common(SESSION, status="Admitted"),
        inferenceService=foreign_service(),
        replicas=2,
        expires=NOW + timedelta(hours=1),
        useSpotPods=False,
    )


def make_dataset() -> P.Dataset:
    return P.Dataset(
        **common(DATASET, status="Ready"),
        name="prompts",
        artifacts=[
            P.Artifact(kind="parquet", path="data/part-0.parquet", digest=P.Digest(md5="0" * 32))
        ],
        schema=SCHEMA,
        views=[
            P.DataView(
                id=hex_id(99),
                viewOf=DATASET,
                schema=SCHEMA,
                adapterPipeline=[P.SchemaAdapter(kind="Select", configuration={"fields": ["a"]})],
            )
        ],
    )


def make_evaluation(reference: bool = False) -> P.Evaluation:
    return P.Evaluation(
        **common(EVALUATION),
        metadata=P.EntityMetadata(
            documentation=P.DocumentationBase(title="Eval", summary="An evaluation"),
            preconditions=[P.EntityIdentifier(kind="Module", id=PRECONDITION)],
            revision=REVISION,
        ),
        dataset=DATASET,
        replications=2,
        workersPerReplica=4,
        client=P.EvaluationClientConfiguration(batchSize=500, badRequestPolicy="Skip"),
        inferenceSession=P.InferenceSessionSpec(inferenceService=foreign_service(), replicas=2),
        inferenceSessionReference=SESSION if reference else None,
    )


def make_module() -> P.Module:
    return P.Module(**common(MODULE), name="metrics", artifacts=[P.Artifact(path="pkg/m.py")])


def score(name: str, priority: str = "primary", **extra: Any) -> P.ScoreSpec:
    return P.ScoreSpec(
        name=name, title=name.title(), summary=f"The {name}", priority=priority, **extra
    )


def method_spec() -> dict[str, Any]:
    return {
        "name": "accuracy",
        "scope": "Evaluation",
        "description": "Exact-match accuracy",
        "implementation": P.MethodImplementation(
            kind="JupyterNotebook",
            jupyterNotebook=P.MethodImplementationJupyterNotebook(
                notebookModule=NOTEBOOK_MODULE, notebookPath="case.ipynb"
            ),
        ),
        "parameters": [P.MethodParameter(keyword="threshold", description="cut-off")],
        "inputs": [
            P.MethodInput(kind="Evaluation", keyword="outputs"),
            P.MethodInput(kind="Dataset", keyword="dataset"),
        ],
        "output": P.MethodOutput(kind="SafetyCase", safetyCase=P.SafetyCaseSpec(name="case")),
        "scores": [
            score("accuracy", valence="positive", minimum=0, maximum=1, format="{quantity:.2f}"),
            score("latency", "secondary", unit="ms", format="{quantity:.0f} {unit}"),
            P.CurveSpec(
                name="roc",
                title="ROC",
                summary="ROC curve",
                dimensions={"fpr": score("fpr"), "tpr": score("tpr")},
            ),
        ],
        "modules": [MODULE, NOTEBOOK_MODULE, MODULE],
    }


def make_method() -> P.Method:
    return P.Method(**common(METHOD, status="Ready"), **method_spec())


def analysis_fields() -> dict[str, Any]:
    return {
        "method": P.ForeignMethod(id=METHOD, account=ACCOUNT, **method_spec()),
        "scope": P.AnalysisScope(
            evaluation=EVALUATION, dataset=DATASET, inferenceService=SERVICE, model=MODEL
        ),
        "arguments": [P.AnalysisArgument(keyword="threshold", value="0.5")],
        "inputs": [
            P.AnalysisInput(keyword="outputs", entity=EVALUATION),
            P.AnalysisInput(keyword="dataset", entity=DATASET),
        ],
        "data": [P.AnalysisData(key="extra", value="aGVsbG8=")],
    }


def make_measurement() -> P.Measurement:
    return P.Measurement(
        **common(MEASUREMENT),
        **analysis_fields(),
        name="per-instance",
        level="Instance",
        schema=SCHEMA,
    )


def make_safetycase() -> P.SafetyCase:
    return P.SafetyCase(
        **common(SAFETYCASE), **analysis_fields(), name="case", description="A case"
    )


def make_report() -> P.Report:
    return P.Report(
        **common(REPORT),
        rubric="classification.TopKAccuracy",
        evaluation=EVALUATION,
        modules=[MODULE],
        dataset=DATASET,
        inferenceService=SERVICE,
        model=MODEL,
    )


def make_family() -> P.Family:
    member = P.FamilyMember(
        name="v1",
        family=FAMILY,
        creationTime=NOW,
        entity=P.EntityIdentifier(kind="Dataset", id=DATASET),
        description="first version",
    )
    return P.Family(**common(FAMILY), memberKind="Dataset", members={"v1": member})


def make_history() -> P.History:
    first = P.ForeignRevision(id=REVISION0, creationTime=NOW)
    latest = P.ForeignRevision(id=REVISION, creationTime=NOW, previousRevision=REVISION0)
    return P.History(**common(HISTORY), historyOf=DATASET, latest=latest, revisions=[first, latest])


def make_revision() -> P.Revision:
    return P.Revision(
        **{**common(REVISION), "creationTime": NOW},
        revisionOf=DATASET,
        previousRevision=REVISION0,
        data=P.RevisionData(format="Snapshot", snapshot=make_dataset()),
    )


def make_procedure() -> P.AuditProcedure:
    return P.AuditProcedure(
        **common(PROCEDURE),
        name="toxicity",
        requirements=[P.AuditRequirement(dataset=DATASET, rubric="toxicity.Rate")],
    )


def make_audit() -> P.Audit:
    return P.Audit(**common(AUDIT), auditProcedure=PROCEDURE, inferenceService=SERVICE)


def make_source() -> P.DataSource:
    return P.DataSource(**common(SOURCE), name="imdb", sourceKind="huggingface", source="imdb")


BUILDERS: dict[str, Callable[[], P.Entity]] = {
    "Audit": make_audit,
    "AuditProcedure": make_procedure,
    "DataSource": make_source,
    "Dataset": make_dataset,
    "Evaluation": make_evaluation,
    "Family": make_family,
    "History": make_history,
    "InferenceService": make_service,
    "InferenceSession": make_session,
    "Measurement": make_measurement,
    "Method": make_method,
    "Model": make_model,
    "Module": make_module,
    "Report": make_report,
    "Revision": make_revision,
    "SafetyCase": make_safetycase,
}


def no_none_fields(value: Any, path: str = "") -> list[str]:
    """Paths of ``None`` values in the wire form, except label values (None is meaningful)."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if item is None and not path.endswith("labels"):
                found.append(f"{path}.{key}")
            found += no_none_fields(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += no_none_fields(item, f"{path}[{i}]")
    return found


def keys(value: Any) -> set[str]:
    out: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            out.add(key)
            out |= keys(item)
    elif isinstance(value, list):
        for item in value:
            out |= keys(item)
    return out


# -- wire round trip -----------------------------------------------------------------------------


def test_builders_cover_every_kind() -> None:
    assert set(BUILDERS) == set(P.ENTITY_KINDS)
    assert list(P.ENTITY_KINDS) == sorted(P.ENTITY_KINDS)


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_wire_round_trip(kind: str) -> None:
    entity = BUILDERS[kind]()
    wire = entity.to_wire()
    assert wire["kind"] == kind
    assert wire["schemaVersion"] == "0.1"
    assert wire["creationTime"] == "2024-05-17T12:30:00Z"
    assert wire["labels"] == {"example.com/team": "red", "stage": "", "gone": None}
    assert no_none_fields(wire) == []
    assert "schema_" not in keys(wire)
    parsed = P.parse_entity(json.loads(json.dumps(wire)))
    assert type(parsed) is type(entity)
    assert parsed == entity
    assert P.entity_class(kind) is type(entity)


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("Dataset", ("schema",)),
        ("Dataset", ("views", 0, "schema")),
        ("Measurement", ("schema",)),
        ("Revision", ("data", "snapshot", "schema")),
    ],
)
def test_schema_field_has_wire_name(kind: str, path: tuple[str | int, ...]) -> None:
    value: Any = BUILDERS[kind]().to_wire()
    for part in path:
        value = value[part]
    assert value["arrowSchema"] == "QUJDRA=="


def test_unset_optional_fields_are_absent_on_wire() -> None:
    wire = make_evaluation().to_wire()
    assert "reason" not in wire
    assert "inferenceSessionReference" not in wire
    assert wire["client"]["batchSize"] == 500
    assert wire["client"]["transientErrorRetryLimit"] == 120


def test_entity_defaults() -> None:
    module = P.Module(
        id=MODULE, account=ACCOUNT, creationTime=NOW, name="m", artifacts=[P.Artifact(path="a")]
    )
    assert module.status == "Created"
    assert module.labels == {}
    assert module.annotations == []
    assert module.metadata.preconditions == []
    assert module.schemaVersion == "0.1"
    assert P.DyffEntity is P.Entity


def test_naive_entity_datetime_is_taken_as_utc() -> None:
    module = P.Module(
        id=MODULE,
        account=ACCOUNT,
        creationTime=datetime(2024, 1, 1, 12),
        lastTransitionTime=datetime(2024, 1, 1, 14, tzinfo=timezone(timedelta(hours=2))),
        name="m",
        artifacts=[P.Artifact(path="a")],
    )
    assert module.creationTime == datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert module.lastTransitionTime == datetime(2024, 1, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("field", "value"),
    [("id", "not-an-id"), ("id", "A" * 32), ("account", "Bad Account!"), ("kind", "Evaluation")],
)
def test_entity_fields_are_checked(field: str, value: str) -> None:
    wire = make_module().to_wire()
    wire[field] = value
    with pytest.raises(errors.ValidationError) as info:
        validate_model(P.Module, wire)
    assert info.value.field == field


def test_unknown_field_is_refused() -> None:
    wire = make_module().to_wire()
    wire["nmae"] = "typo"
    with pytest.raises(errors.ValidationError, match="nmae"):
        P.parse_entity(wire)


# -- dependencies and query refs -----------------------------------------------------------------

DEPENDENCIES: dict[str, list[str]] = {
    "Audit": [PROCEDURE, SERVICE],
    "AuditProcedure": [],
    "DataSource": [],
    "Dataset": [],
    "Evaluation": [DATASET, SERVICE, PRECONDITION],
    "Family": [],
    "History": [],
    "InferenceService": [MODEL],
    "InferenceSession": [SERVICE],
    "Measurement": [METHOD, EVALUATION, DATASET],
    "Method": [MODULE, NOTEBOOK_MODULE],
    "Model": [],
    "Module": [],
    "Report": [EVALUATION, MODULE],
    "Revision": [],
    "SafetyCase": [METHOD, EVALUATION, DATASET],
}

ANALYSIS_REFS = {
    "method": [METHOD],
    "dataset": [DATASET],
    "evaluation": [EVALUATION],
    "inferenceService": [SERVICE],
    "model": [MODEL],
    "inputs": [EVALUATION, DATASET],
}
QUERY_REFS: dict[str, dict[str, list[str]]] = {
    "Audit": {"auditProcedure": [PROCEDURE], "inferenceService": [SERVICE]},
    "AuditProcedure": {},
    "DataSource": {},
    "Dataset": {},
    "Evaluation": {"dataset": [DATASET], "inferenceService": [SERVICE], "model": [MODEL]},
    "Family": {"members": [DATASET]},
    "History": {"historyOf": [DATASET]},
    "InferenceService": {"model": [MODEL]},
    "InferenceSession": {"inferenceService": [SERVICE], "model": [MODEL]},
    "Measurement": ANALYSIS_REFS,
    "Method": {"modules": [MODULE, NOTEBOOK_MODULE]},
    "Model": {},
    "Module": {},
    "Report": {
        "evaluation": [EVALUATION],
        "dataset": [DATASET],
        "inferenceService": [SERVICE],
        "model": [MODEL],
    },
    "Revision": {"revisionOf": [DATASET]},
    "SafetyCase": ANALYSIS_REFS,
}

WORKFLOWS = {"Audit", "Dataset", "Evaluation", "InferenceSession", "Measurement", "Report"}
WORKFLOWS |= {"SafetyCase"}


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_dependencies(kind: str) -> None:
    assert BUILDERS[kind]().dependencies() == DEPENDENCIES[kind]


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_query_refs(kind: str) -> None:
    assert BUILDERS[kind]().query_refs() == QUERY_REFS[kind]


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_is_workflow(kind: str) -> None:
    assert P.entity_class(kind).is_workflow is (kind in WORKFLOWS)


def test_evaluation_on_a_running_session_depends_on_it() -> None:
    evaluation = make_evaluation(reference=True)
    assert evaluation.dependencies() == [DATASET, SERVICE, SESSION, PRECONDITION]
    assert evaluation.query_refs()["inferenceSession"] == [SESSION]


def test_preconditions_are_dependencies_without_repeats() -> None:
    module = make_module()
    module.metadata.preconditions = [
        P.EntityIdentifier(kind="Dataset", id=DATASET),
        P.EntityIdentifier(kind="Dataset", id=DATASET),
    ]
    assert module.dependencies() == [DATASET]


def test_service_without_model_has_no_dependencies() -> None:
    service = P.InferenceService(**common(SERVICE), **service_spec(with_model=False))
    assert service.dependencies() == []
    assert service.query_refs() == {}


# -- kinds, resources, lookups -------------------------------------------------------------------


def test_entity_class_unknown_kind() -> None:
    with pytest.raises(errors.ValidationError) as info:
        P.entity_class("Datset")
    message = str(info.value)
    assert "'Datset'" in message
    assert "Dataset" in message and "SafetyCase" in message
    assert info.value.field == "kind"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [({"id": DATASET}, "kind: required"), ({"kind": "Nope"}, "unknown entity kind")],
)
def test_parse_entity_needs_a_known_kind(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(errors.ValidationError, match=fragment):
        P.parse_entity(data)


def test_parse_entity_error_names_entity_and_field() -> None:
    wire = make_dataset().to_wire()
    del wire["name"]
    with pytest.raises(errors.ValidationError) as info:
        P.parse_entity(wire)
    assert DATASET in str(info.value)
    assert info.value.field == "name"


@pytest.mark.parametrize(
    ("kind", "resource"),
    [
        ("Dataset", "datasets"),
        ("InferenceService", "inferenceservices"),
        ("InferenceSession", "inferencesessions"),
        ("SafetyCase", "safetycases"),
        ("Family", "families"),
        ("History", "histories"),
        ("AuditProcedure", "auditprocedures"),
        ("DataSource", "datasources"),
        ("Score", "scores"),
        ("Curve", "curves"),
        ("Account", "accounts"),
        ("Pipeline", "pipelines"),
    ],
)
def test_resources_for_kind(kind: str, resource: str) -> None:
    assert P.Resources.for_kind(kind).value == resource
    assert P.Resources.for_kind(P.Entities(kind)) is P.Resources(resource)
    assert P.Entities.for_resource(resource).value == kind


@pytest.mark.parametrize("kind", P.ENTITY_KINDS)
def test_every_kind_has_a_resource(kind: str) -> None:
    entity = BUILDERS[kind]()
    assert entity.resource_path() == f"{P.Resources.for_kind(kind).value}/{entity.id}"
    assert P.EntityIdentifier.of(entity).resource_path() == entity.resource_path()


@pytest.mark.parametrize("bad", ["Nope", "ALL", "*"])
def test_resources_for_unknown_kind(bad: str) -> None:
    with pytest.raises(errors.ValidationError, match="unknown entity kind"):
        P.Resources.for_kind(bad)


def test_entities_for_unknown_resource() -> None:
    with pytest.raises(errors.ValidationError, match="unknown resource 'dataset'"):
        P.Entities.for_resource("dataset")


def test_api_functions() -> None:
    assert [f.value for f in P.APIFunctions] == [
        "consume", "create", "get", "query", "edit", "download", "upload", "data", "strata",
        "terminate", "delete", "*",
    ]  # fmt: skip
    assert P.Resources.ALL.value == "*"


# -- access grants -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grant", "call", "allowed"),
    [
        ({"resources": ["datasets"], "functions": ["get"], "accounts": ["a"]},
         ("datasets", "get", "a", DATASET), True),
        ({"resources": ["datasets"], "functions": ["get"], "accounts": ["a"]},
         ("datasets", "get", "b", DATASET), False),
        ({"resources": ["datasets"], "functions": ["get"], "accounts": ["a"]},
         ("datasets", "delete", "a", DATASET), False),
        ({"resources": ["datasets"], "functions": ["get"], "accounts": ["a"]},
         ("models", "get", "a", MODEL), False),
        ({"resources": ["*"], "functions": ["*"], "accounts": ["*"]},
         ("safetycases", "terminate", "anyone", SAFETYCASE), True),
        ({"resources": ["*"], "functions": ["get"], "entities": [DATASET]},
         ("datasets", "get", "b", DATASET), True),
        ({"resources": ["*"], "functions": ["get"], "entities": [DATASET]},
         ("datasets", "get", "b", MODEL), False),
        ({"resources": ["*"], "functions": ["get"], "entities": ["*"]},
         ("models", "get", None, MODEL), True),
        ({"resources": ["datasets"], "functions": ["create"], "accounts": ["a"]},
         ("datasets", "create", "a", None), True),
        ({"resources": ["datasets"], "functions": ["query"], "accounts": ["a"]},
         ("datasets", "query", None, None), True),
        ({"resources": ["datasets"], "functions": ["query"]},
         ("datasets", "query", None, None), False),
        ({"resources": ["datasets"], "functions": ["*"], "accounts": ["a"]},
         (P.Resources.Dataset, P.APIFunctions.upload, "a", None), True),
    ],
)  # fmt: skip
def test_access_grant_allows(
    grant: dict[str, Any], call: tuple[Any, Any, str | None, str | None], allowed: bool
) -> None:
    resource, function, account, entity_id = call
    assert P.AccessGrant(**grant).allows(resource, function, account, entity_id) is allowed


@pytest.mark.parametrize(
    "grant",
    [
        {"resources": [], "functions": ["get"]},
        {"resources": ["datasets"], "functions": []},
        {"resources": ["dataset"], "functions": ["get"]},
        {"resources": ["datasets"], "functions": ["read"]},
    ],
)
def test_access_grant_is_checked(grant: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        P.AccessGrant(**grant)


def test_api_key_and_account_round_trip() -> None:
    key = P.APIKey(
        id=hex_id(50),
        subject=f"Account/{hex_id(51)}",
        created=NOW,
        expires=NOW + timedelta(days=1),
        grants=[P.AccessGrant(resources=["*"], functions=["*"], accounts=[ACCOUNT])],
    )
    account = P.Account(name=ACCOUNT, id=hex_id(51), apiKeys=[key], creationTime=NOW)
    assert P.Account.model_validate(json.loads(json.dumps(account.to_wire()))) == account
    assert account.status == "Active"


# -- labels, annotations, quantities -------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["a", "my-key", "example.com/key-0", "a.b.c/x", "x" * 63, "UPPER", "sub.assay.io/k"],
)
def test_good_label_keys(key: str) -> None:
    assert P.Label(key=key, value="v").key == key
    module = P.Module.model_validate({**make_module().to_wire(), "labels": {key: "v"}})
    assert module.labels == {key: "v"}


@pytest.mark.parametrize(
    "key", ["", "-a", "a-", "a_b", "has space", "x" * 64, "/k", "a/b/c", "ex ample.com/k"]
)
def test_bad_label_keys(key: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        P.Label(key=key)
    with pytest.raises(errors.ValidationError) as info:
        P.parse_entity({**make_module().to_wire(), "labels": {key: "v"}})
    message = str(info.value)
    assert "labels" in message and repr(key) in message and "DNS label" in message


@pytest.mark.parametrize("value", ["", "v", "a.b-c_d", "A1", "x" * 63])
def test_good_label_values(value: str) -> None:
    assert P.Label(key="k", value=value).value == value


@pytest.mark.parametrize("value", ["-v", "v-", "_v", "has space", "x" * 64, "é"])
def test_bad_label_values(value: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        P.Label(key="k", value=value)
    with pytest.raises(errors.ValidationError) as info:
        P.parse_entity({**make_module().to_wire(), "labels": {"k": value}})
    assert "labels['k']" in str(info.value) and "label value" in str(info.value)


@pytest.mark.parametrize(("key", "ok"), [("example.com/note", True), ("bad key", False)])
def test_annotation_keys(key: str, ok: bool) -> None:
    if ok:
        assert P.Annotation(key=key, value="anything at all").key == key
    else:
        with pytest.raises(pydantic.ValidationError):
            P.Annotation(key=key, value="x")


@pytest.mark.parametrize(
    ("value", "quantity", "nonnegative"),
    [
        ("8Gi", True, True),
        ("500m", True, True),
        ("2", True, True),
        ("1.5", True, True),
        (".5", True, True),
        ("1e3", True, True),
        ("+1Ki", True, True),
        ("-1", True, False),
        ("8GB", False, False),
        ("Gi", False, False),
        ("", False, False),
        ("1 Gi", False, False),
    ],
)
def test_quantity_patterns(value: str, quantity: bool, nonnegative: bool) -> None:
    adapter = pydantic.TypeAdapter(P.Quantity)
    if quantity:
        assert adapter.validate_python(value) == value
    else:
        with pytest.raises(pydantic.ValidationError):
            adapter.validate_python(value)
    if nonnegative:
        assert P.ModelResources(memory=value).memory == value
    else:
        with pytest.raises(pydantic.ValidationError) as info:
            P.ModelResources(memory=value)
        assert "memory" in str(info.value) and "'8Gi'" in str(info.value)


# -- scores and curves ---------------------------------------------------------------------------


def test_score_spec_defaults() -> None:
    spec = score("accuracy")
    assert (spec.valence, spec.priority, spec.format, spec.unit) == (
        "neutral", "primary", "{quantity:.1f}", None,
    )  # fmt: skip
    assert spec.format_quantity(0.8765) == "0.9"
    assert spec.quantity_string(12) == "12.0"


@pytest.mark.parametrize(
    ("fmt", "unit", "expected"),
    [
        ("{quantity:.2f}", None, "3.14"),
        ("{quantity:.0f} {unit}", "ms", "3 ms"),
        ("{quantity:.0f} {unit}", None, "3"),
        ("{quantity:.1%}", None, "314.2%"),
        ("score: {quantity}", None, "score: 3.14159"),
        ("{{literal}} {quantity:.1f}", None, "{literal} 3.1"),
    ],
)
def test_score_format(fmt: str, unit: str | None, expected: str) -> None:
    assert score("s", format=fmt, unit=unit).format_quantity(3.14159) == expected


@pytest.mark.parametrize(
    ("fmt", "fragment"),
    [
        ("{q:.1f}", "uses the placeholder(s) {q}"),
        ("{quantity} {value}", "{value}"),
        ("{}", "{}"),
        ("{0}", "{0}"),
        ("{quantity.real}", "{quantity.real}"),
        ("no placeholder", "no {quantity} placeholder"),
        ("{unit}", "no {quantity} placeholder"),
        ("{quantity:d}", "cannot format a number"),
        ("{quantity} {unit:.2f}", "cannot format a number"),
        ("{quantity", "not a valid format string"),
    ],
)
def test_bad_score_format(fmt: str, fragment: str) -> None:
    with pytest.raises(errors.ValidationError) as info:
        validate_model(P.ScoreSpec, {"name": "s", "title": "t", "summary": "s", "format": fmt})
    message = str(info.value)
    assert "format" in message and fragment in message and "{quantity:.1f}" in message


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("name", "1st", "not an identifier"),
        ("name", "my score", "not an identifier"),
        ("name", "x" * 128, "not an identifier"),
        ("title", "t" * 141, "at most 140"),
        ("summary", "s" * 281, "at most 280"),
        ("valence", "good", "'positive', 'negative' or 'neutral'"),
        ("priority", "main", "'primary' or 'secondary'"),
    ],
)
def test_bad_score_spec_field(field: str, value: str, fragment: str) -> None:
    data = {"name": "s", "title": "t", "summary": "s", field: value}
    with pytest.raises(errors.ValidationError) as info:
        validate_model(P.ScoreSpec, data)
    assert info.value.field == field
    assert fragment in str(info.value)


def test_score_spec_minimum_maximum() -> None:
    assert score("s", minimum=0, maximum=0).minimum == 0
    assert score("s", minimum=-1).maximum is None
    with pytest.raises(
        pydantic.ValidationError, match=r"minimum: 2\.0 is greater than maximum 1\.0"
    ):
        score("s", minimum=2, maximum=1)


def test_curve_spec_needs_dimensions() -> None:
    with pytest.raises(pydantic.ValidationError, match="dimensions"):
        P.CurveSpec(name="c", title="t", summary="s", dimensions={})


def method_with_scores(scores: list[Any]) -> dict[str, Any]:
    return {**method_spec(), "scores": scores}


@pytest.mark.parametrize(
    ("scores", "fragment"),
    [
        ([score("a"), score("a", "secondary")], "scores[1].name: 'a' is already used by scores[0]"),
        (
            [
                score("a"),
                P.CurveSpec(name="a", title="t", summary="s", dimensions={"x": score("x")}),
            ],
            "scores[1].name: 'a' is already used",
        ),
        ([score("a", "secondary"), score("b", "secondary")], "found 0: none"),
        ([score("a"), score("b"), score("c", "secondary")], "found 2: 'a', 'b'"),
    ],
)
def test_method_score_rules(scores: list[Any], fragment: str) -> None:
    with pytest.raises(errors.ValidationError) as info:
        validate_model(P.MethodBase, method_with_scores(scores))
    assert fragment in str(info.value)
    assert info.value.field == "scores"


@pytest.mark.parametrize(
    "scores",
    [
        [],
        [score("a")],
        [score("a"), score("b", "secondary")],
        [P.CurveSpec(name="c", title="t", summary="s", dimensions={"x": score("x", "secondary")})],
    ],
)
def test_method_scores_accepted(scores: list[Any]) -> None:
    method = P.MethodBase(**method_with_scores(scores))
    assert [s.name for s in method.score_specs() + method.curve_specs()] == [s.name for s in scores]


def test_method_scores_from_json_keep_their_types() -> None:
    method = make_method()
    again = P.Method.model_validate(json.loads(json.dumps(method.to_wire())))
    assert [type(s) for s in again.scores] == [P.ScoreSpec, P.ScoreSpec, P.CurveSpec]


def refs() -> P.ScoreMetadata:
    return P.ScoreMetadata(refs=P.ScoreMetadataRefs(method=METHOD, evaluation=EVALUATION))


def test_score_id_and_quantity_string_are_derived() -> None:
    result = P.Score(
        name="accuracy",
        title="Accuracy",
        summary="Exact match",
        format="{quantity:.2f}",
        analysis=SAFETYCASE,
        quantity=0.8123,
        text="Better than chance",
        metadata=refs(),
    )
    assert result.id == ids.score_id(SAFETYCASE, "accuracy")
    assert result.quantityString == "0.81"
    assert result.kind == "Score"
    wire = result.to_wire()
    assert P.Score.model_validate(json.loads(json.dumps(wire))) == result


def test_score_interval_is_kept_checked_and_rendered() -> None:
    fields: dict[str, Any] = {
        "name": "accuracy",
        "title": "Accuracy",
        "summary": "Exact match",
        "format": "{quantity:.1%}",
        "analysis": SAFETYCASE,
        "quantity": 0.95,
        "text": "t",
        "metadata": refs(),
    }
    result = P.Score(**fields, interval=[0.93, 0.967], confidence=0.95)
    assert result.value_string() == "95.0% [93.0%, 96.7%]"
    assert P.Score.model_validate(json.loads(json.dumps(result.to_wire()))) == result
    assert P.Score(**fields).value_string() == "95.0%"  # the reference's scores have none
    # Assay's extensions: on Assay's wire, not on the reference's (whose Score lacks them)
    reference = result.to_wire(reference=True)
    assert not {"interval", "confidence"} & set(reference)
    assert P.Score.model_validate(reference) == P.Score(**fields)
    assert result.model_dump()["interval"] == [0.93, 0.967]
    for interval, confidence, fragment in (
        ([0.96, 0.99], 0.95, "does not hold the quantity"),
        ([0.99, 0.9], 0.95, "low <= high"),
        ([0.9], 0.95, "at least 2"),
        (None, 0.95, "only with an interval"),
        ([0.9, 0.99], 1.5, "less than 1"),
    ):
        with pytest.raises(pydantic.ValidationError, match=fragment):
            P.Score(**fields, interval=interval, confidence=confidence)


def test_score_id_must_match() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"ids\.score_id"):
        P.Score(
            id=hex_id(1),
            name="accuracy",
            title="Accuracy",
            summary="Exact match",
            analysis=SAFETYCASE,
            quantity=0.5,
            text="t",
            metadata=refs(),
        )


def curve(points: dict[str, list[float]]) -> dict[str, Any]:
    return {
        "name": "roc",
        "title": "ROC",
        "summary": "ROC curve",
        "dimensions": {"fpr": score("fpr"), "tpr": score("tpr")},
        "analysis": SAFETYCASE,
        "metadata": refs(),
        "points": points,
    }


def test_curve_round_trip() -> None:
    result = P.Curve(**curve({"fpr": [0, 0.5, 1], "tpr": [0, 0.8, 1]}))
    assert result.id == ids.score_id(SAFETYCASE, "roc")
    assert P.Curve.model_validate(json.loads(json.dumps(result.to_wire()))) == result


@pytest.mark.parametrize(
    ("points", "fragment"),
    [
        ({"fpr": [0, 1]}, "missing the dimension(s) 'tpr'"),
        ({"fpr": [0, 1], "tpr": [0]}, "same number of values"),
        ({"fpr": [], "tpr": []}, "at least one point"),
    ],
)
def test_bad_curve_points(points: dict[str, list[float]], fragment: str) -> None:
    with pytest.raises(errors.ValidationError) as info:
        validate_model(P.Curve, curve(points))
    assert fragment in str(info.value) and "points" in str(info.value)


# -- other supporting types ----------------------------------------------------------------------


def test_evaluation_client_configuration_defaults() -> None:
    config = P.EvaluationClientConfiguration()
    assert config.model_dump() == {
        "badRequestPolicy": "Abort",
        "transientErrorRetryLimit": 120,
        "transientErrorRetryDelaySeconds": 30,
        "transientErrorRetryBudgetSeconds": 600,
        "duplicateOutputPolicy": "Deduplicate",
        "missingOutputPolicy": "Error",
        "requestTimeoutSeconds": 30,
        "totalTimeoutSeconds": 7200,
        "batchSize": 1000,
        "cache": False,
        "extraOptions": {},
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("badRequestPolicy", "Retry"),
        ("transientErrorRetryLimit", -1),
        ("transientErrorRetryDelaySeconds", 0),
        ("batchSize", 0),
        ("missingOutputPolicy", "Skip"),
    ],
)
def test_evaluation_client_configuration_is_checked(field: str, value: Any) -> None:
    with pytest.raises(errors.ValidationError) as info:
        validate_model(P.EvaluationClientConfiguration, {field: value})
    assert info.value.field == field


def test_runner_kinds_include_reference_and_assay_kinds() -> None:
    kinds = {k.value for k in P.InferenceServiceRunnerKind}
    assert {"bentoml_service_openllm", "container", "huggingface", "mock", "standalone"} <= kinds
    assert {"python", "http", "openai", "vllm", "pipeline"} <= kinds
    runner = P.InferenceServiceRunner(kind="http", configuration={"url": "http://x/v1"})
    assert runner.to_wire() == {"kind": "http", "configuration": {"url": "http://x/v1"}, "nodes": 1}


#: Assay's extensions: the wire fields the reference's schema lacks (and a runner's
#: ``configuration``: adapters have one in the reference too).
EXTENSIONS = {"interval", "confidence", "cache", "requestBatchSize"}
EXTENSIONS |= {"transientErrorRetryBudgetSeconds"}


def runners(value: Any) -> list[Any]:
    """The ``runner`` values anywhere in a wire form."""
    found: list[Any] = []
    if isinstance(value, dict):
        found += [value["runner"]] if "runner" in value else []
        for item in value.values():
            found += runners(item)
    elif isinstance(value, list):
        for item in value:
            found += runners(item)
    return found


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_reference_wire_leaves_out_assays_extensions_and_still_parses(kind: str) -> None:
    entity = BUILDERS[kind]()
    reference = entity.to_wire(reference=True)
    assert not keys(reference) & EXTENSIONS
    assert all("configuration" not in r and "resources" in r for r in runners(reference))
    assert no_none_fields(reference) == []
    parsed = P.parse_entity(json.loads(json.dumps(reference)))  # Assay reads it too
    assert type(parsed) is type(entity)
    assert entity.to_wire() == P.parse_entity(entity.to_wire()).to_wire()


def test_a_runner_on_the_reference_wire() -> None:
    mock = P.InferenceServiceRunner(
        kind="mock", configuration={"mockType": "assay.local.mocks.TextCompletion", "kwargs": {}}
    )
    assert mock.to_wire(reference=True) == {
        "kind": "mock",
        "nodes": 1,
        "resources": {},  # the reference requires it
        "args": ["assay.local.mocks.TextCompletion"],  # where the reference client names it
    }
    assert mock.to_wire()["configuration"]["mockType"] == "assay.local.mocks.TextCompletion"
    stated = P.InferenceServiceRunner(
        kind="mock", resources=P.ModelResources(memory="1Gi"), args=["assay.local.mocks.Echo"]
    )
    assert stated.to_wire(reference=True)["resources"] == {"memory": "1Gi"}
    assert stated.to_wire(reference=True)["args"] == ["assay.local.mocks.Echo"]

    # a service of one of Assay's own runner kinds has no runner on the reference's wire
    # (the reference's runner is optional), wherever the service is: alone, in a session
    http = P.InferenceServiceRunner(kind="http", configuration={"url": "http://x/v1"})
    service = make_service().model_copy(update={"runner": http})
    assert "runner" not in service.to_wire(reference=True)
    assert service.to_wire()["runner"]["kind"] == "http"
    foreign = P.ForeignInferenceService.model_validate(
        {k: v for k, v in service.to_wire().items() if k in P.ForeignInferenceService.model_fields}
    )
    session = make_session().model_copy(update={"inferenceService": foreign})
    assert "runner" not in session.to_wire(reference=True)["inferenceService"]
    assert session.to_wire()["inferenceService"]["runner"]["kind"] == "http"


def test_evaluation_client_options_on_the_reference_wire() -> None:
    config = P.EvaluationClientConfiguration(cache=True, requestBatchSize=8)
    assert {"cache", "requestBatchSize", "transientErrorRetryBudgetSeconds"} <= set(
        config.to_wire()
    )
    reference = config.to_wire(reference=True)
    assert not {"cache", "requestBatchSize", "transientErrorRetryBudgetSeconds"} & set(reference)
    assert reference["batchSize"] == 1000 and reference["transientErrorRetryLimit"] == 120


@pytest.mark.parametrize(
    ("host", "fragment"), [("https://docker.io", "contains '/'"), ("my_host", "contains '_'")]
)
def test_container_image_host(host: str, fragment: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=fragment):
        P.ContainerImageSource(host=host, name="library/python", digest="sha256:" + "a" * 64)


def test_container_image_url() -> None:
    image = P.ContainerImageSource(
        host="docker.io", name="library/python", digest="sha256:" + "a" * 64, tag="3.11"
    )
    assert image.url() == "docker.io/library/python@sha256:" + "a" * 64


def test_session_and_token() -> None:
    both = P.InferenceSessionAndToken(inferencesession=make_session(), token="tok")
    assert both.session == "tok"  # the reference tutorial's spelling
    again = P.InferenceSessionAndToken.model_validate(json.loads(json.dumps(both.to_wire())))
    assert again == both


def test_revision_data_needs_its_payload() -> None:
    with pytest.raises(pydantic.ValidationError, match="jsonMergePatch: required"):
        P.RevisionData(format="JsonMergePatch")


def test_volume_mount_kind_matches_payload() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"needs \.scratch set"):
        P.VolumeMount(kind="Scratch", name="tmp", mountPath="/tmp")
    mount = P.VolumeMount(
        kind="Scratch", name="tmp", mountPath="/tmp", scratch=P.VolumeMountScratch(capacity="1Gi")
    )
    assert mount.scratch is not None


# -- status predicates ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "terminal", "success", "failure"),
    [
        ("Created", False, False, False),
        ("Schedulable", False, False, False),
        ("Admitted", False, False, False),
        ("Complete", True, True, False),
        ("Ready", True, True, False),
        ("Approved", True, True, False),
        ("Error", True, False, True),
        ("Failed", True, False, True),
        ("Denied", True, False, True),
        ("Terminated", True, False, False),
        ("Deleted", True, False, False),
        (None, False, False, False),
    ],
)
def test_status_predicates(
    status: str | None, terminal: bool, success: bool, failure: bool
) -> None:
    assert P.is_status_terminal(status) is terminal
    assert P.is_status_success(status) is success
    assert P.is_status_failure(status) is failure


def test_status_constants_are_exported() -> None:
    assert P.Status.Complete == "Complete"
    assert P.Reason.UnsatisfiedDependency == "UnsatisfiedDependency"
    assert P.StatusInfo(status="Deleted", reason="DeleteCommand").to_wire() == {
        "status": "Deleted",
        "reason": "DeleteCommand",
    }


# -- the module's public surface -----------------------------------------------------------------


def test_all_is_sorted_complete_and_importable() -> None:
    assert len(P.__all__) == len(set(P.__all__))
    for name in P.__all__:
        assert hasattr(P, name), name
    public_models = {
        name
        for name, obj in vars(P).items()
        if not name.startswith("_")
        and inspect.isclass(obj)
        and issubclass(obj, pydantic.BaseModel | enum.Enum)
    }
    assert public_models <= set(P.__all__)


def exported_models() -> list[type[pydantic.BaseModel]]:
    return sorted(
        {
            obj
            for name in P.__all__
            if inspect.isclass(obj := getattr(P, name)) and issubclass(obj, pydantic.BaseModel)
        },
        key=lambda cls: cls.__name__,
    )


@pytest.mark.parametrize("model", exported_models(), ids=lambda cls: cls.__name__)
def test_every_field_is_documented(model: type[pydantic.BaseModel]) -> None:
    undocumented = [n for n, f in model.model_fields.items() if not (f.description or "").strip()]
    assert undocumented == []
    assert (model.__doc__ or "").strip()


def test_import_is_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, assay.schema.platform, assay.schema.requests; "
        "print([m for m in ('pyarrow', 'pandas', 'numpy', 'sqlalchemy') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_request_timeout_longer_than_the_total_is_refused() -> None:
    with pytest.raises(errors.ValidationError) as info:
        validate_model(
            P.EvaluationClientConfiguration,
            {"requestTimeoutSeconds": 120, "totalTimeoutSeconds": 60},
        )
    message = str(info.value)
    assert "requestTimeoutSeconds (120)" in message and "totalTimeoutSeconds (60)" in message
    # 0: no total limit, so any request timeout fits
    validate_model(
        P.EvaluationClientConfiguration, {"requestTimeoutSeconds": 120, "totalTimeoutSeconds": 0}
    )
