"""The names the reference platform's documentation uses, under Assay's module names.

Each test imports a name from where the documents put it (``dyff.schema.platform`` →
``assay.schema.platform``, ``dyff.schema.requests`` → ``assay.schema.requests``,
``dyff.audit.local.mocks`` → ``assay.local.mocks``), uses it as the documents show, and checks
the documented fields and behaviour. The last test has the reference's own models read what
Assay writes, where the reference's environment (``.venv-dyff-client``) exists.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from assay import errors
from assay.local import LocalPlatform, mocks
from assay.schema import ids
from assay.schema.dataset import make_output_schema, text
from assay.schema.platform import (
    Accelerator,
    AcceleratorGPU,
    AnalysisOutputQueryFields,
    ArchiveFormat,
    DataSchema,
    DocumentationBase,
    DyffDataSchema,
    EntityIdentifier,
    Evaluation,
    ExtractorStep,
    Family,
    FamilyMember,
    FamilyMemberBase,
    Frameworks,
    History,
    InferenceServiceSources,
    InferenceSession,
    InferenceSessionAndToken,
    InferenceSessionSpec,
    QueryableDyffEntity,
    ResourceAllocation,
    Revision,
    RevisionData,
    RevisionMetadata,
    Status,
    StatusInfo,
    is_status_terminal,
)
from assay.schema.requests import InferenceSessionCreateRequest
from assay.schema.status import Status as StatusValues

ACCOUNT = "auditor"
PROMPT = "Open the pod bay doors, Hal!"
ROOT = Path(__file__).resolve().parents[2]
REFERENCE_PYTHON = ROOT / ".venv-dyff-client" / "bin" / "python"


def new_id() -> str:
    return ids.generate_entity_id()


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[LocalPlatform]:
    with LocalPlatform(storage_root=tmp_path / "assay-data", account=ACCOUNT) as p:
        yield p


@pytest.fixture
def session_and_token(platform: LocalPlatform) -> InferenceSessionAndToken:
    """The inference tutorial's steps: a TextCompletion mock service and a session of it."""
    service = platform.inferenceservices.create_mock(mocks.TextCompletion, account=ACCOUNT)
    request = InferenceSessionCreateRequest(account=ACCOUNT, inferenceService=service.id)
    created: InferenceSessionAndToken = platform.inferencesessions.create(request)
    return created


def family(**fields: Any) -> Family:
    return Family.model_validate(
        {"id": new_id(), "account": ACCOUNT, "memberKind": "Dataset", **fields}
    )


# -- assay.local.mocks ---------------------------------------------------------------------------


def check_completions(completion: list[dict[str, Any]], prompt: str = PROMPT) -> None:
    """What the documents say TextCompletion answers: a list of ``{"text": str}``, each the
    input text with "generated" text appended (two of them, as the reference mock gives)."""
    assert isinstance(completion, list) and len(completion) == 2
    for reply in completion:
        assert set(reply) == {"text"}
        assert reply["text"].startswith(prompt) and len(reply["text"]) > len(prompt)


def test_text_completion_answers_as_the_tutorial_shows(
    platform: LocalPlatform, session_and_token: InferenceSessionAndToken
) -> None:
    session = session_and_token.inferencesession
    token = session_and_token.session  # the tutorial's spelling of .token
    assert token == session_and_token.token
    inference_client = platform.inferencesessions.client(
        session.id, token, interface=session.inferenceService.interface
    )
    check_completions(inference_client.infer({"text": PROMPT}))
    got = platform.inferencesessions.get(session.id)
    assert got is not None and got.status == Status.Ready


def test_text_completion_mock_interface() -> None:
    mock = mocks.TextCompletion()
    assert isinstance(mock, mocks.InferenceServiceMock)
    assert mock.interface.endpoint == "generate"
    assert isinstance(mock.schema, DataSchema)
    assert mock.schema.arrowSchema == make_output_schema(text.Text).arrowSchema
    assert mock.interface.outputSchema == mock.schema
    check_completions(mock.infer("generate", {"text": PROMPT}))
    check_completions(mock.generate({"text": PROMPT}))
    with pytest.raises(ValueError, match="generate"):
        mock.infer("chat", {"text": PROMPT})


def test_inference_session_client_mock_is_the_documented_client() -> None:
    from assay.inference.client import InferenceSessionClient

    client = mocks.InferenceSessionClientMock(
        mocks.TextCompletion(seed=3), inference_endpoint="generate"
    )
    assert isinstance(client, InferenceSessionClient)
    assert mocks.InferenceSessionClientMock.__module__ == "assay.local.mocks"
    assert isinstance(client.service, mocks.TextCompletion)
    check_completions(client.infer({"text": PROMPT}))

    data = ds.dataset(pa.table({"_index_": pa.array([0, 1], pa.int64()), "text": ["a", "b c"]}))
    evaluation_id = new_id()
    batches = list(client.run_evaluation(data, id=evaluation_id, replications=2))
    rows = pa.Table.from_batches(batches).to_pylist()
    assert sorted((r["_index_"], r["_replication_"]) for r in rows) == sorted(
        (i, ids.replication_id(evaluation_id, k)) for i in (0, 1) for k in (0, 1)
    )
    for row in rows:
        assert [r["_response_index_"] for r in row["responses"]] == [0, 1]


def test_inference_session_client_mock_applies_the_adapters() -> None:
    def input_adapter(stream: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        return ({"text": x["prompt"]} for x in stream)

    def output_adapter(stream: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        return ({"completion": x["text"]} for x in stream)

    client = mocks.InferenceSessionClientMock(
        mocks.TextCompletion(),
        inference_endpoint="generate",
        input_adapter=input_adapter,
        output_adapter=output_adapter,
    )
    replies = client.infer({"prompt": PROMPT})
    assert len(replies) == 2 and all(r["completion"].startswith(PROMPT) for r in replies)


def test_inference_session_client_mock_refuses_what_it_cannot_call() -> None:
    with pytest.raises(errors.ValidationError, match="endpoints are"):
        mocks.InferenceSessionClientMock(mocks.TextCompletion(), inference_endpoint="chat")
    with pytest.raises(errors.ValidationError, match="InferenceServiceMock"):
        mocks.InferenceSessionClientMock(
            {"mockType": "TextCompletion"},  # type: ignore[arg-type]
            inference_endpoint="generate",
        )


def test_a_wrong_session_token_says_that_assay_checks_tokens(
    platform: LocalPlatform, session_and_token: InferenceSessionAndToken
) -> None:
    session = session_and_token.inferencesession
    with pytest.raises(errors.AuthenticationError) as info:
        platform.inferencesessions.client(session.id, "any-token")
    assert "Assay checks session tokens" in str(info.value)
    assert "reference" in str(info.value)


# -- the local platform --------------------------------------------------------------------------


def test_link_entity_takes_package_and_id(platform: LocalPlatform, tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "metrics.py").write_text("x = 1\n")
    id = new_id()
    assert platform.link_entity(package=package, id=id) == id
    assert (platform.entity_path(id) / "metrics.py").read_text() == "x = 1\n"
    generated = platform.link_entity(package=str(package))
    assert ids.is_entity_id(generated) and generated != id


def test_link_entity_says_that_assay_ids_are_hex(platform: LocalPlatform, tmp_path: Path) -> None:
    with pytest.raises(errors.ValidationError) as info:
        platform.link_entity(package=tmp_path, id="my-package")
    message = str(info.value)
    assert "32 lowercase hex digits" in message and "reference" in message
    assert "generate_entity_id" in message


# -- Status --------------------------------------------------------------------------------------


def test_status_is_the_documented_model() -> None:
    status = Status(status="Complete", reason=None)
    assert (status.status, status.reason, status.message) == ("Complete", None, None)
    assert Status(status="Error", reason="WorkflowError").to_wire() == {
        "status": "Error",
        "reason": "WorkflowError",
    }
    assert set(Status.model_fields) == {"status", "reason", "message"}
    with pytest.raises(Exception, match="status"):
        Status.model_validate({"reason": "QuotaLimit"})
    with pytest.raises(Exception, match="extra"):
        Status.model_validate({"status": "Created", "colour": "red"})
    assert isinstance(StatusInfo(status="Deleted"), Status)


def test_status_keeps_its_constants() -> None:
    assert Status is StatusValues
    assert (Status.Complete, Status.Created, Status.Ready) == ("Complete", "Created", "Ready")
    assert "Complete" in Status.ALL and len(Status.ALL) == len(set(Status.ALL))
    assert all(getattr(Status, value) == value for value in Status.ALL)
    assert is_status_terminal(Status(status=Status.Complete).status)
    assert family().status == Status.Created


# -- entities ------------------------------------------------------------------------------------


def test_resource_allocation_of_entities(session_and_token: InferenceSessionAndToken) -> None:
    assert family().resource_allocation() is None

    session = session_and_token.inferencesession
    allocation = session.resource_allocation()
    assert isinstance(allocation, ResourceAllocation)
    assert allocation.quantities == {
        "workflows.assay.io/admitted": "1",
        "inference.assay.io/replicas": "1",
    }
    gpu = Accelerator(kind="GPU", gpu=AcceleratorGPU(hardwareTypes=["nvidia.com/gpu"], count=2))
    big = InferenceSession.model_validate(
        {**session.model_dump(), "replicas": 3, "accelerator": gpu.model_dump()}
    )
    big_allocation = big.resource_allocation()
    assert big_allocation is not None
    assert big_allocation.quantities["inference.assay.io/replicas"] == "3"
    assert big_allocation.quantities["inference.assay.io/gpus"] == "6"

    spec = InferenceSessionSpec(inferenceService=session.inferenceService, replicas=2)
    evaluation = Evaluation(id=new_id(), account=ACCOUNT, dataset=new_id(), inferenceSession=spec)
    own = evaluation.resource_allocation()
    assert own is not None and own.quantities["inference.assay.io/replicas"] == "2"
    referenced = evaluation.model_copy(update={"inferenceSessionReference": session.id})
    shared = referenced.resource_allocation()
    assert shared is not None and shared.quantities == {"workflows.assay.io/admitted": "1"}


def test_creation_time_defaults_to_now() -> None:
    before = datetime.now(UTC)
    made = family()
    member = FamilyMember(
        name="v1", family=made.id, entity=EntityIdentifier(id=new_id(), kind="Dataset")
    )
    revision = RevisionMetadata()
    after = datetime.now(UTC)
    for when in (made.creationTime, member.creationTime, revision.creationTime):
        assert when.tzinfo is UTC and before <= when <= after
    assert "creationTime" in made.to_wire() and "creationTime" in member.to_wire()
    given = datetime(2024, 1, 2, tzinfo=UTC)
    assert family(creationTime=given).creationTime == given


def test_family_documentation() -> None:
    documented = family(documentation=DocumentationBase(title="Digits", summary="Versions"))
    assert documented.documentation.title == "Digits"
    assert documented.documentation is documented.metadata.documentation
    wire = documented.to_wire()
    assert "documentation" not in wire  # the wire keeps it in metadata, as the reference does
    assert wire["metadata"]["documentation"] == {"title": "Digits", "summary": "Versions"}
    assert Family.model_validate(wire).documentation.title == "Digits"
    assert family().documentation == DocumentationBase()
    with pytest.raises(Exception, match="given twice"):
        family(documentation={"title": "a"}, metadata={"documentation": {"title": "b"}})


def test_family_member_name_and_resource() -> None:
    member_id, family_id = new_id(), new_id()
    base = FamilyMemberBase(entity=EntityIdentifier(id=member_id, kind="Dataset"))
    assert base.resource == member_id
    member = FamilyMember(
        name="v1.2", family=family_id, entity=EntityIdentifier(id=member_id, kind="Dataset")
    )
    assert (member.name, member.resource, member.family) == ("v1.2", member_id, family_id)
    assert "resource" not in member.to_wire()


def test_revision_entity() -> None:
    snapshot = family()
    revision = Revision(
        id=new_id(),
        account=ACCOUNT,
        revisionOf=snapshot.id,
        data=RevisionData(format="Snapshot", snapshot=snapshot),
    )
    assert revision.entity == snapshot
    patch = Revision(
        id=new_id(),
        account=ACCOUNT,
        revisionOf=snapshot.id,
        data=RevisionData(format="JsonMergePatch", jsonMergePatch="{}"),
    )
    assert patch.entity is None
    assert "entity" not in revision.to_wire()


def test_history_takes_the_documented_field_types() -> None:
    first, second = new_id(), new_id()
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    history = History.model_validate(
        {
            "id": new_id(),
            "account": ACCOUNT,
            "historyOf": new_id(),
            "latest": second,  # the documented type: the id of the latest Revision
            "revisions": {  # the documented type: dict[str, RevisionMetadata]
                first: RevisionMetadata(creationTime=t0),
                second: {"creationTime": t0 + timedelta(hours=1), "previousRevision": first},
            },
        }
    )
    assert history.latest.id == second and history.latest.previousRevision == first
    assert [r.id for r in history.revisions] == [first, second]
    assert history.revisions[0].creationTime == t0
    wire = history.to_wire()
    assert isinstance(wire["revisions"], list) and wire["latest"]["id"] == second
    assert History.model_validate(wire) == history
    with pytest.raises(Exception, match="not one of the revisions"):
        History.model_validate({**wire, "latest": new_id(), "revisions": {first: {}}})


# -- data schemas --------------------------------------------------------------------------------


def test_data_schema_from_model() -> None:
    schema = DataSchema.from_model(text.Text)
    assert schema.arrow_schema().names == ["text"]  # as it is: no special fields added
    assert schema.jsonSchema == text.Text.model_json_schema()
    assert schema.dyffSchema is None


def test_dyff_data_schema_model_type() -> None:
    assert DyffDataSchema(components=["text.Text"]).model_type() is text.Text
    composite = DyffDataSchema(components=["text.Text", "classification.Label"]).model_type()
    assert list(composite.model_fields) == ["text", "label"]
    assert composite.model_validate({"text": "hi", "label": "greeting"}).text == "hi"  # type: ignore[attr-defined]


# -- supporting types ----------------------------------------------------------------------------


def test_analysis_output_query_fields() -> None:
    method_id = new_id()
    fields = AnalysisOutputQueryFields(method=QueryableDyffEntity(id=method_id, name="accuracy"))
    assert (fields.analysis, fields.inputs) == (None, None)
    assert fields.to_wire() == {"method": {"id": method_id, "name": "accuracy"}}
    full = AnalysisOutputQueryFields.model_validate(
        {"analysis": new_id(), "method": {"id": method_id, "name": "m"}, "inputs": [new_id()]}
    )
    assert full.method.name == "m" and full.inputs is not None and len(full.inputs) == 1
    with pytest.raises(Exception, match="name"):
        QueryableDyffEntity.model_validate({"id": method_id})


def test_archive_format_and_extractor_step() -> None:
    archive = ArchiveFormat(name="data.zip", format="zip")
    assert archive.to_wire() == {"name": "data.zip", "format": "zip"}
    with pytest.raises(Exception, match="format"):
        ArchiveFormat.model_validate({"name": "data.zip"})
    step = ExtractorStep(action="extract")
    assert (step.action, step.name, step.type) == ("extract", None, None)
    assert ExtractorStep(action="select", name="train", type="split").to_wire() == {
        "action": "select",
        "name": "train",
        "type": "split",
    }


def test_frameworks_and_inference_service_sources() -> None:
    assert [f.value for f in Frameworks] == ["transformers"]
    assert Frameworks("transformers") is Frameworks.transformers
    assert {s.value for s in InferenceServiceSources} == {"upload", "build"}
    assert InferenceServiceSources.upload == "upload"


# -- the reference reads what Assay writes -------------------------------------------------------


def _wire_samples() -> Sequence[tuple[str, dict[str, Any]]]:
    first, second = new_id(), new_id()
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    documented = family(documentation={"title": "Digits"})
    history = History.model_validate(
        {
            "id": new_id(),
            "account": ACCOUNT,
            "historyOf": documented.id,
            "latest": second,
            "revisions": {
                first: {"creationTime": t0},
                second: {"creationTime": t0, "previousRevision": first},
            },
        }
    )
    revision = Revision(
        id=new_id(),
        account=ACCOUNT,
        revisionOf=documented.id,
        data=RevisionData(format="Snapshot", snapshot=documented),
    )
    method = QueryableDyffEntity(id=new_id(), name="m")
    # (the reference's History is abstract, so it cannot read one: read its revisions)
    revisions = [history.to_wire()["latest"], *history.to_wire()["revisions"]]
    return [
        ("Family", documented.to_wire()),
        *(("ForeignRevision", r) for r in revisions),
        ("Revision", revision.to_wire()),
        ("Status", Status(status="Complete", reason="Done").to_wire()),
        ("ResourceAllocation", ResourceAllocation(quantities={"cpu": "2"}).to_wire()),
        ("AnalysisOutputQueryFields", AnalysisOutputQueryFields(method=method).to_wire()),
        ("ArchiveFormat", ArchiveFormat(name="a.zip", format="zip").to_wire()),
        ("ExtractorStep", ExtractorStep(action="extract").to_wire()),
        ("DataSchema", DataSchema.from_model(text.Text).to_wire()),
    ]


@pytest.mark.skipif(
    not REFERENCE_PYTHON.exists(), reason="the reference's environment .venv-dyff-client is absent"
)
def test_the_reference_models_read_what_assay_writes() -> None:
    samples = [[name, payload] for name, payload in _wire_samples()]
    code = (
        "import json, sys\n"
        "from dyff.schema import platform\n"
        "from dyff.schema.v0.r1 import platform as r1\n"
        "for name, payload in json.load(sys.stdin):\n"
        "    (getattr(platform, name, None) or getattr(r1, name)).model_validate(payload)\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [str(REFERENCE_PYTHON), "-c", code],
        input=json.dumps(samples),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
