"""Pipelines over the API: every route, its errors (404, 409, 422), and access (a token
without a grant on the account gets 404, a read-only token cannot deploy)."""

from __future__ import annotations

import io
import json
from typing import Any

import pyarrow as pa
import pytest
from tests.server.conftest import ALICE, BOB
from tests.server.helpers import Caller, Server

from assay.core.kinds import mock_service_request
from assay.local import mocks
from assay.server.routes.pipelines import ARROW_STREAM, MORE_HEADER


def _service(caller: Caller, mock: type, name: str, **kwargs: Any) -> str:
    request = mock_service_request(mock, account=ALICE, name=name, kwargs=kwargs)
    return str(caller.create("inferenceservices", request)["id"])


def _table(response: Any) -> pa.Table:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == ARROW_STREAM
    return pa.ipc.open_stream(io.BytesIO(response.content)).read_all()


def _definition(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"steps": list(steps)}


def _streams(data: bytes) -> list[pa.Table]:
    reader = pa.BufferReader(data)
    tables = []
    while reader.tell() < len(data):
        tables.append(pa.ipc.open_stream(reader).read_all())
    return tables


@pytest.fixture
def deployed(server: Server, alice: Caller) -> dict[str, str]:
    """Pipeline 'assistant' of alice, version 1 deployed: a text completion and a check."""
    writer = _service(alice, mocks.TextCompletion, "writer", seed=1)
    broken = _service(alice, mocks.Faulty, "broken", error_rate=1.0, seed=1)
    definition = _definition(
        {"kind": "model", "service": writer},
        {"kind": "validations", "checks": {"first": "in.text == 'q0'"}},
    )
    version = alice.ok("POST", "/pipelines/assistant/deploy", json={"definition": definition})
    assert version["version"] == 1 and version["pipeline"] == "assistant"
    return {"writer": writer, "broken": broken}


def test_deploy_get_infer_logs_and_rollback(
    server: Server, alice: Caller, deployed: dict[str, str]
) -> None:
    summary = alice.ok("GET", "/pipelines/assistant")
    assert summary["name"] == "assistant" and summary["account"] == ALICE
    assert summary["versions"] == 1 and summary["deployedVersion"] == 1
    assert summary["inferenceService"] and summary["inferenceSession"]
    assert summary["definition"]["steps"][0]["service"] == deployed["writer"]
    assert "writer" in summary["steps"][0]
    listed = alice.ok("GET", "/pipelines")
    assert [p["name"] for p in listed] == ["assistant"]
    assert {k: listed[0][k] for k in ("versions", "deployedVersion")} == {
        "versions": 1,
        "deployedVersion": 1,
    }

    rows = [{"text": f"q{i}"} for i in range(12)]
    records = _table(alice.post("/pipelines/assistant/infer", json={"rows": rows}))
    assert records.num_rows == 12
    assert pa.types.is_timestamp(records.schema.field("time").type)
    assert pa.types.is_integer(records.schema.field("anomaly.count").type)
    assert not any(c.startswith("metadata.") for c in records.column_names)
    with_metadata = _table(
        alice.post(
            "/pipelines/assistant/infer",
            json={"rows": rows[:2], "metadata": True, "concurrency": 2},
        )
    )
    assert "metadata.pipeline_version" in with_metadata.column_names
    # infer's dataset arguments: the groups asked for, nested with separator null
    body = {"rows": rows[:1], "dataset": ["in", "anomaly"], "separator": None}
    nested = _table(alice.post("/pipelines/assistant/infer", json=body))
    assert nested.column_names == ["in", "anomaly"] and pa.types.is_struct(nested.field("in").type)
    body = {"rows": rows[:1], "datasetExclude": ["out", "check_failures"], "separator": "/"}
    assert _table(alice.post("/pipelines/assistant/infer", json=body)).column_names == [
        "time",
        "in/text",
    ]

    response = alice.get("/pipelines/assistant/logs", params={"limit": 5})
    newest = _table(response)
    assert newest.num_rows == 5 and response.headers[MORE_HEADER] == "true"
    response = alice.get("/pipelines/assistant/logs", params={"all": "true"})
    assert _table(response).num_rows == 16 and response.headers[MORE_HEADER] == "false"
    assert _table(alice.get("/pipelines/assistant/logs")).num_rows == 16
    flagged = _table(alice.get("/pipelines/assistant/logs", params={"valid": "false"}))
    assert flagged.column("in.text").to_pylist() == ["q0", "q0", "q0", "q0"]
    only = alice.get("/pipelines/assistant/logs", params=[("dataset", "time"), ("dataset", "in")])
    assert set(_table(only).column_names) == {"time", "in.text"}
    nested_logs = _table(alice.get("/pipelines/assistant/logs", params={"nested": "true"}))
    assert nested_logs.column_names == ["time", "in", "out", "anomaly"]
    exported = alice.get("/pipelines/assistant/logs/export", params={"limit": 3})
    assert exported.headers["content-type"] == ARROW_STREAM
    assert sum(t.num_rows for t in _streams(exported.content)) == 3
    # resumed at a record: the records from it on
    resumed = alice.get("/pipelines/assistant/logs/export", params={"startSequence": 13})
    tables = [t for t in _streams(resumed.content) if t.num_rows]  # not the start markers
    texts = [text for t in tables for text in t.column("in.text").to_pylist()]
    assert texts == ["q1", "q0", "q0"]  # the metadata call's second row, then the two above
    # a selection refused before the stream starts: a 422, not a stream cut off after a 200
    refused = alice.get("/pipelines/assistant/logs/export", params={"dataset": "outputs"})
    assert refused.status_code == 422 and "selects no column" in refused.json()["detail"]
    counters = alice.ok("GET", "/pipelines/assistant/log-counters")
    assert counters["written"] == 16 and counters["dropped"] == 0

    # a failing step: 422 naming PipelineStepError; the failure is logged
    broken = _definition({"kind": "model", "service": deployed["broken"]})
    assert (
        alice.ok("POST", "/pipelines/assistant/deploy", json={"definition": broken})["version"] == 2
    )
    failed = alice.post("/pipelines/assistant/infer", json={"rows": [{"text": "doomed"}]})
    assert failed.status_code == 422, failed.text
    assert failed.headers["X-Assay-Error"] == "PipelineStepError"
    assert "step 0" in failed.json()["detail"]
    failures = _table(alice.get("/pipelines/assistant/logs", params={"failures": "true"}))
    assert failures.column("in.text").to_pylist() == ["doomed"]

    # rollback: version 1 again, whole
    assert alice.ok("POST", "/pipelines/assistant/deploy", json={"version": 1})["version"] == 1
    assert alice.ok("GET", "/pipelines/assistant")["deployedVersion"] == 1
    assert [v["version"] for v in alice.ok("GET", "/pipelines/assistant/versions")] == [1, 2]
    assert _table(alice.post("/pipelines/assistant/infer", json={"rows": rows[:1]})).num_rows == 1

    # the traffic as a Dataset and an Evaluation
    made = alice.ok("POST", "/pipelines/assistant/datasets", json={"name": "traffic"})
    assert made["dataset"]["name"] == "traffic" and made["dataset"]["account"] == ALICE
    assert made["evaluation"]["kind"] == "Evaluation"

    # undeploy: inference is a conflict, the records stay
    summary = alice.ok("POST", "/pipelines/assistant/undeploy")
    assert summary["deployedVersion"] is None and summary["inferenceSession"] is None
    conflict = alice.post("/pipelines/assistant/infer", json={"rows": rows[:1]})
    assert conflict.status_code == 409 and "deploy" in conflict.json()["detail"]
    assert _table(alice.get("/pipelines/assistant/logs", params={"all": "true"})).num_rows == 17


def test_errors(server: Server, alice: Caller, deployed: dict[str, str]) -> None:
    missing = alice.get("/pipelines/nothing")
    assert missing.status_code == 404 and "was ever deployed" in missing.json()["detail"]
    for method, path in [
        ("GET", "/pipelines/nothing/versions"),
        ("GET", "/pipelines/nothing/logs"),
        ("POST", "/pipelines/nothing/undeploy"),
        ("GET", "/pipelines/nothing/log-counters"),
    ]:
        assert alice.request(method, path).status_code == 404, path
    assert alice.post("/pipelines/nothing/infer", json={"rows": []}).status_code == 404
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", "/pipelines/assistant/infer", {"json": {"rows": "x"}}, "rows"),
        ("POST", "/pipelines/assistant/infer", {"json": {"rows": [], "timeout": 0}}, "timeout"),
        ("POST", "/pipelines/assistant/infer", {"json": {"rows": [], "concurrency": 0}}, "concur"),
        ("POST", "/pipelines/assistant/deploy", {"json": {"replicas": 0}}, "replicas"),
        ("POST", "/pipelines/assistant/deploy", {"json": {"version": 9}}, "no version 9"),
        ("POST", "/pipelines/assistant/deploy", {"json": {"definition": {"steps": 3}}}, "steps"),
        (
            "POST",
            "/pipelines/assistant/deploy",
            {"json": {"definition": {"steps": []}, "version": 1}},
            "not both",
        ),
        ("POST", "/pipelines/bad_name!/deploy", {"json": {}}, "name"),
        ("GET", "/pipelines/assistant/logs", {"params": {"limit": -1}}, "limit"),
        ("GET", "/pipelines/assistant/logs", {"params": {"limit": 1, "all": "true"}}, "all"),
        ("GET", "/pipelines/assistant/logs", {"params": {"start": "yesterday"}}, "start"),
        (
            "GET",
            "/pipelines/assistant/logs",
            {"params": {"nested": "true", "separator": "/"}},
            "not both",
        ),
        (
            "GET",
            "/pipelines/assistant/logs/export",
            {"params": {"startFailureSequence": 1}},
            "start_failure_sequence goes with",
        ),
    ]
    for method, path, kwargs, named in cases:
        response = alice.request(method, path, **kwargs)
        assert response.status_code in (404, 422), (path, kwargs, response.text)
        assert named in response.json()["detail"], (path, kwargs, response.text)
    assert alice.ok("GET", "/pipelines/assistant")["versions"] == 1  # nothing was stored


def test_access(server: Server, alice: Caller, bob: Caller, deployed: dict[str, str]) -> None:
    # no grant on alice's account: 404, exactly as for a pipeline that does not exist
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/pipelines/assistant", {}),
        ("GET", "/pipelines/assistant/versions", {}),
        ("POST", "/pipelines/assistant/deploy", {"json": {}}),
        ("POST", "/pipelines/assistant/undeploy", {}),
        ("POST", "/pipelines/assistant/infer", {"json": {"rows": [{"text": "x"}]}}),
        ("GET", "/pipelines/assistant/logs", {}),
        ("GET", "/pipelines/assistant/logs/export", {}),
        ("GET", "/pipelines/assistant/log-counters", {}),
        ("POST", "/pipelines/assistant/datasets", {"json": {}}),
    ]
    for method, path, kwargs in calls:
        response = bob.request(method, path, params={"account": ALICE}, **kwargs)
        assert response.status_code == 404, (path, response.text)
        unknown = bob.request(
            method, path.replace("assistant", "unknown"), params={"account": ALICE}, **kwargs
        )
        assert unknown.status_code == 404
        assert response.json()["detail"] == unknown.json()["detail"].replace("unknown", "assistant")
    assert bob.ok("GET", "/pipelines", params={"account": ALICE}) == []
    assert bob.ok("GET", "/pipelines") == []  # bob's own: none

    # read-only on alice's pipelines: can read, cannot deploy, infer or read logs (403)
    reader = server.as_account(
        BOB, [{"resources": ["pipelines"], "functions": ["get", "query"], "accounts": [ALICE]}]
    )
    assert reader.ok("GET", "/pipelines/assistant", params={"account": ALICE})["versions"] == 1
    assert len(reader.ok("GET", "/pipelines", params={"account": ALICE})) == 1
    for method, path, kwargs in calls[2:7]:
        response = reader.request(method, path, params={"account": ALICE}, **kwargs)
        assert response.status_code == 403, (path, response.text)
    assert alice.ok("GET", "/pipelines/assistant")["versions"] == 1

    # a grant for one pipeline, by its entity name <account>/<name>
    user = server.as_account(
        BOB,
        [
            {
                "resources": ["pipelines"],
                "functions": ["consume"],
                "entities": [f"{ALICE}/assistant"],
            }
        ],
    )
    records = _table(
        user.post(
            "/pipelines/assistant/infer",
            params={"account": ALICE},
            json={"rows": [{"text": "hello"}]},
        )
    )
    assert records.num_rows == 1
    # no grant on pipelines at all: 403 before anything is looked up
    other = server.as_account(
        BOB, [{"resources": ["datasets"], "functions": ["*"], "accounts": ["*"]}]
    )
    assert other.get("/pipelines/assistant", params={"account": ALICE}).status_code == 403
    # datasets from traffic need create on datasets and evaluations too
    deployer = server.as_account(
        BOB, [{"resources": ["pipelines"], "functions": ["*"], "accounts": [ALICE]}]
    )
    refused = deployer.post("/pipelines/assistant/datasets", params={"account": ALICE}, json={})
    assert refused.status_code == 403 and "datasets" in refused.json()["detail"]
    assert json.loads(refused.text)["detail"]
