"""The routes every resource kind has: create, get, query (filters, labels, paging), labels,
documentation and delete — for each kind, over HTTP."""

from __future__ import annotations

import json

import pytest
from tests.server.conftest import ALICE
from tests.server.helpers import RESOURCES, Caller, Server, model_request

KINDS = {
    "datasets": "Dataset",
    "evaluations": "Evaluation",
    "families": "Family",
    "inferenceservices": "InferenceService",
    "inferencesessions": "InferenceSession",
    "measurements": "Measurement",
    "methods": "Method",
    "models": "Model",
    "modules": "Module",
    "reports": "Report",
    "safetycases": "SafetyCase",
}


def test_every_kind_get_query_label_document_delete(
    server: Server, alice: Caller, world: dict[str, str]
) -> None:
    assert sorted(world) == sorted(RESOURCES)
    for resource, id in world.items():
        kind = KINDS[resource]
        entity = alice.ok("GET", f"/{resource}/{id}")
        assert (entity["id"], entity["kind"], entity["account"]) == (id, kind, ALICE)

        listed = alice.ok("GET", f"/{resource}")
        assert id in [e["id"] for e in listed], resource
        assert all(e["kind"] == kind for e in listed)

        labelled = alice.ok("PATCH", f"/{resource}/{id}/labels", json={"labels": {"team": "red"}})
        assert labelled["labels"] == {"team": "red"}
        found = alice.ok("GET", f"/{resource}", params={"labels": json.dumps({"team": "red"})})
        assert [e["id"] for e in found] == [id]
        assert alice.ok("GET", f"/{resource}", params={"labels": '{"team": "blue"}'}) == []
        removed = alice.ok("PATCH", f"/{resource}/{id}/labels", json={"labels": {"team": None}})
        assert removed["labels"] == {}

        doc = alice.ok(
            "PATCH", f"/{resource}/{id}/documentation", json={"title": "T", "summary": "S"}
        )
        assert (doc["entity"], doc["title"], doc["summary"]) == (id, "T", "S")
        alice.ok("PATCH", f"/{resource}/{id}/documentation", json={"summary": None})
        doc = alice.ok("GET", f"/{resource}/{id}/documentation")
        assert doc["title"] == "T" and "summary" not in doc

        status = alice.ok("PUT", f"/{resource}/{id}/delete")
        assert status == {"status": "Deleted", "reason": "DeleteCommand"}
        assert alice.ok("GET", f"/{resource}/{id}")["status"] == "Deleted"


def test_session_create_answers_the_session_and_a_token(
    alice: Caller, world: dict[str, str]
) -> None:
    body = {"account": ALICE, "inferenceService": world["inferenceservices"]}
    created = alice.create("inferencesessions", body)
    assert set(created) == {"inferencesession", "token"}
    assert created["inferencesession"]["kind"] == "InferenceSession"
    assert created["token"].count(".") == 2


def test_create_returns_201_and_fills_defaults(alice: Caller) -> None:
    response = alice.post("/models", json=model_request(ALICE))
    assert response.status_code == 201
    model = response.json()
    assert model["status"] == "Ready" and model["schemaVersion"] == "0.1"
    assert len(model["id"]) == 32


def test_get_of_an_other_kind_or_unknown_id_is_404(alice: Caller, world: dict[str, str]) -> None:
    response = alice.get(f"/datasets/{world['models']}")
    assert response.status_code == 404
    assert world["models"] in response.json()["detail"]
    assert alice.get("/datasets/" + "0" * 32).status_code == 404
    assert alice.get("/datasets/not-an-id").status_code == 404


def test_query_filters_paging_and_order(server: Server, alice: Caller) -> None:
    ids = [
        alice.create("models", {**model_request(ALICE), "name": f"m{i}"})["id"] for i in range(5)
    ]
    everything = [m["id"] for m in alice.ok("GET", "/models")]
    assert everything == ids

    # the reference client sends every filter, empty ones included
    params = {"query": "", "id": "", "account": "", "status": "", "name": "m3", "labels": ""}
    assert [m["id"] for m in alice.ok("GET", "/models", params=params)] == [ids[3]]

    # query is a JSON object; a list value means any of
    query = json.dumps({"name": ["m1", "m4"]})
    assert [m["id"] for m in alice.ok("GET", "/models", params={"query": query})] == [
        ids[1],
        ids[4],
    ]
    # a parameter given twice means any of too
    twice = alice.ok("GET", "/models", params=[("id", ids[0]), ("id", ids[2])])
    assert [m["id"] for m in twice] == [ids[0], ids[2]]

    page1 = alice.ok("GET", "/models", params={"limit": 2})
    page2 = alice.ok("GET", "/models", params={"limit": 2, "after": page1[-1]["id"]})
    page3 = alice.ok("GET", "/models", params={"limit": 2, "after": page2[-1]["id"]})
    assert [m["id"] for m in page1 + page2 + page3] == ids
    newest = alice.ok("GET", "/models", params={"order": "descending", "limit": 1})
    assert [m["id"] for m in newest] == [ids[-1]]
    assert alice.ok("GET", "/models", params={"status": "Ready", "account": ALICE, "limit": 10})
    assert alice.ok("GET", "/models", params={"status": "Error"}) == []


def test_query_by_reference_and_by_name_of_the_reference(
    alice: Caller, world: dict[str, str]
) -> None:
    by_method = alice.ok("GET", "/measurements", params={"method": world["methods"]})
    assert [m["id"] for m in by_method] == [world["measurements"]]
    by_name = alice.ok("GET", "/measurements", params={"methodName": "lengths"})
    assert [m["id"] for m in by_name] == [world["measurements"]]
    assert alice.ok("GET", "/measurements", params={"methodName": "nothing"}) == []
    sessions = alice.ok(
        "GET", "/inferencesessions", params={"inferenceService": world["inferenceservices"]}
    )
    assert [s["id"] for s in sessions] == [world["inferencesessions"]]
    reports = alice.ok("GET", "/reports", params={"report": world["reports"]})
    assert [r["id"] for r in reports] == [world["reports"]]


@pytest.mark.parametrize(
    ("params", "status", "words"),
    [
        ({"colour": "red"}, 422, "unknown parameter 'colour'"),
        ({"limit": "many"}, 422, "limit must be an integer from 1"),
        ({"limit": "0"}, 422, "limit must be an integer from 1"),
        ({"limit": str(2**64)}, 422, "limit must be an integer from 1"),  # was a 500
        ({"order": "sideways"}, 422, "order must be"),
        ({"query": "{not json"}, 400, "not valid JSON"),
        ({"query": "[1, 2]"}, 422, "must be a JSON object"),
        ({"query": '{"colour": "red"}'}, 422, "'colour' cannot be used in query"),
        ({"query": '{"name": "a"}', "name": "b"}, 422, "given both"),
        ({"query": '{"name": 3}'}, 422, "must be a string or a non-empty list"),
        ({"labels": "{bad"}, 400, "not valid JSON"),
        ({"after": "f" * 32}, 422, "after"),
        ({"orderBy": "name"}, 422, "orderBy"),
    ],
)
def test_bad_query_parameters(
    alice: Caller, params: dict[str, str], status: int, words: str
) -> None:
    response = alice.get("/models", params=params)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


@pytest.mark.parametrize("path", ["/scores", "/safetycases/scores", "/safetycases/curves"])
def test_a_score_query_limit_is_checked_too(alice: Caller, path: str) -> None:
    for limit in ("0", "many", str(2**64)):
        response = alice.get(path, params={"limit": limit})
        assert response.status_code == 422
        assert "limit must be an integer from 1" in response.json()["detail"]
    assert alice.ok("GET", path, params={"limit": str(2**31 - 1)}) == []


def test_labels_are_checked(alice: Caller) -> None:
    model = alice.create("models", model_request(ALICE))["id"]
    response = alice.patch(f"/models/{model}/labels", json={"labels": {"bad key!": "x"}})
    assert response.status_code == 422
    assert "bad key!" in response.json()["detail"]
    response = alice.patch(f"/models/{model}/labels", json={"labels": {"assay.io/x": "y"}})
    assert response.status_code == 422 and "reserved" in response.json()["detail"]
    assert alice.ok("GET", f"/models/{model}")["labels"] == {}


def test_create_validation_names_the_field_and_creates_nothing(alice: Caller) -> None:
    bad = {**model_request(ALICE), "resources": {"storage": 5}, "colour": "red"}
    response = alice.post("/models", json=bad)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "colour: unknown field" in detail and "resources.storage" in detail
    response = alice.post("/evaluations", json={"account": ALICE, "dataset": "f" * 32})
    assert response.status_code == 422
    response = alice.post(
        "/evaluations",
        json={
            "account": ALICE,
            "dataset": "f" * 32,
            "inferenceSession": {"inferenceService": "e" * 32},
        },
    )
    assert response.status_code == 404 and "f" * 32 in response.json()["detail"]
    assert alice.ok("GET", "/models") == [] and alice.ok("GET", "/evaluations") == []
