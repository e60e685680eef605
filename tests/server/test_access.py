"""Account isolation, for every resource kind: another account can neither get, list, label,
document, delete, download nor use an account's entities (404, as if they did not exist), and
grants for accounts or single entities allow exactly what they name (403 for the rest)."""

from __future__ import annotations

import json

import pytest
from tests.server.conftest import ALICE, BOB
from tests.server.helpers import (
    RESOURCES,
    Caller,
    Server,
    dataset_request,
    model_request,
    parquet_bytes,
    service_request,
)


def _denied_calls(resource: str, id: str) -> list[tuple[str, str, dict[str, object]]]:
    calls: list[tuple[str, str, dict[str, object]]] = [
        ("GET", f"/{resource}/{id}", {}),
        ("PATCH", f"/{resource}/{id}/labels", {"json": {"labels": {"owned": "bob"}}}),
        ("GET", f"/{resource}/{id}/documentation", {}),
        ("PATCH", f"/{resource}/{id}/documentation", {"json": {"title": "bob was here"}}),
        ("PUT", f"/{resource}/{id}/delete", {}),
        ("GET", f"/{resource}/{id}/downlinks", {}),
        ("GET", f"/{resource}/{id}/logs", {}),
        ("GET", f"/{resource}/{id}/logs/workflow", {}),
    ]
    if resource in ("datasets", "models", "modules"):
        calls += [
            ("GET", f"/{resource}/{id}/upload/part-0.parquet", {}),
            ("POST", f"/{resource}/{id}/finalize", {}),
        ]
    if resource == "inferencesessions":
        calls += [
            ("POST", f"/{resource}/{id}/token", {"json": {}}),
            ("GET", f"/{resource}/{id}/ready", {}),
            ("PUT", f"/{resource}/{id}/terminate", {}),
            ("POST", f"/{resource}/{id}/infer/generate", {"json": {"text": "x"}}),
        ]
    if resource == "safetycases":
        calls += [
            ("GET", f"/{resource}/{id}/scores", {}),
            ("GET", f"/{resource}/{id}/curves", {}),
            ("GET", f"/{resource}/{id}/document", {}),
        ]
    return calls


def test_another_account_cannot_see_or_touch_anything(
    server: Server, alice: Caller, bob: Caller, world: dict[str, str]
) -> None:
    before = {r: alice.ok("GET", f"/{r}/{id}") for r, id in world.items()}
    bobs_model = bob.create("models", model_request(BOB))["id"]
    for resource, id in world.items():
        for method, path, kwargs in _denied_calls(resource, id):
            response = bob.request(method, path, **kwargs)
            assert response.status_code == 404, (method, path, response.text)
            # exactly what an id that does not exist answers
            missing = bob.request(method, path.replace(id, "0" * 32), **kwargs)
            assert missing.status_code == 404
            assert response.json()["detail"] == missing.json()["detail"].replace("0" * 32, id)
        for params in ({"id": id}, {"account": ALICE}, {"query": json.dumps({"id": [id]})}):
            assert bob.ok("GET", f"/{resource}", params=params) == [], (resource, params)
        assert [e["account"] for e in bob.ok("GET", f"/{resource}")] in ([], [BOB])
    assert [m["id"] for m in bob.ok("GET", "/models")] == [bobs_model]
    assert bob.get("/models", params={"after": world["models"]}).status_code == 422
    # alice's entities are as they were
    for resource, id in world.items():
        after = alice.ok("GET", f"/{resource}/{id}")
        assert after["labels"] == before[resource]["labels"] == {}
        assert after["status"] != "Deleted"
        assert "bob" not in json.dumps(alice.ok("GET", f"/{resource}/{id}/documentation"))


def test_another_account_cannot_create_for_or_build_on_an_account(
    bob: Caller, world: dict[str, str]
) -> None:
    response = bob.post("/models", json=model_request(ALICE))
    assert response.status_code == 403 and "alice" in response.json()["detail"]
    # an evaluation of alice's data set, or a session of alice's service, for bob's account
    response = bob.post(
        "/evaluations",
        json={
            "account": BOB,
            "dataset": world["datasets"],
            "inferenceSession": {"inferenceService": world["inferenceservices"]},
        },
    )
    assert response.status_code == 404
    assert "does not exist" in response.json()["detail"]
    assert world["datasets"] in response.text or world["inferenceservices"] in response.text
    response = bob.post(
        "/inferencesessions", json={"account": BOB, "inferenceService": world["inferenceservices"]}
    )
    assert response.status_code == 404
    assert bob.ok("GET", "/evaluations") == [] and bob.ok("GET", "/inferencesessions") == []


def test_a_grant_for_one_entity_allows_exactly_that_entity(
    server: Server, alice: Caller, world: dict[str, str]
) -> None:
    data, schema = parquet_bytes()
    other = alice.create("datasets", dataset_request(ALICE, data, schema, name="other"))["id"]
    shared = world["datasets"]
    grants = [{"resources": ["datasets"], "functions": ["get", "query"], "entities": [shared]}]
    guest = server.as_account(BOB, grants)

    assert guest.ok("GET", f"/datasets/{shared}")["id"] == shared
    assert [d["id"] for d in guest.ok("GET", "/datasets")] == [shared]
    assert guest.ok("GET", "/datasets", params={"name": "other"}) == []
    assert guest.get(f"/datasets/{other}").status_code == 404
    # it can see the entity, but not do other things to it: 403
    for method, path in [
        ("PUT", f"/datasets/{shared}/delete"),
        ("PATCH", f"/datasets/{shared}/labels"),
        ("GET", f"/datasets/{shared}/downlinks"),
    ]:
        response = guest.request(method, path, json={"labels": {"a": "b"}})
        assert response.status_code == 403, (method, path, response.text)
        assert "does not allow" in response.json()["detail"]
    # no grant on other resources at all: 403 before anything is looked up
    assert guest.get("/models").status_code == 403
    assert guest.get(f"/models/{world['models']}").status_code == 403
    assert guest.post("/datasets", json=dataset_request(BOB, data, schema)).status_code == 403


def test_a_grant_for_an_account_allows_its_functions_only(
    server: Server, alice: Caller, world: dict[str, str]
) -> None:
    reader = server.as_account(
        BOB, [{"resources": ["*"], "functions": ["get", "query"], "accounts": [ALICE]}]
    )
    for resource, id in world.items():
        assert reader.ok("GET", f"/{resource}/{id}")["id"] == id
        assert id in [e["id"] for e in reader.ok("GET", f"/{resource}")]
        assert reader.put(f"/{resource}/{id}/delete").status_code == 403
    # a wildcard account grant sees every account's entities
    operator = server.as_account(
        "ops", [{"resources": ["*"], "functions": ["*"], "accounts": ["*"]}]
    )
    bobs = server.as_account(BOB).create("models", model_request(BOB))["id"]
    listed = [m["id"] for m in operator.ok("GET", "/models")]
    assert listed == [world["models"], bobs]
    assert [m["id"] for m in operator.ok("GET", "/models", params={"account": BOB})] == [bobs]


def test_a_mixed_grant_pages_across_accounts_and_entities(server: Server) -> None:
    alice, carol = server.as_account(ALICE), server.as_account("carol")
    ids = []
    for i in range(3):
        ids.append(alice.create("models", {**model_request(ALICE), "name": f"a{i}"})["id"])
        ids.append(carol.create("models", {**model_request("carol"), "name": f"c{i}"})["id"])
    grants = [
        {"resources": ["models"], "functions": ["query", "get"], "accounts": [ALICE]},
        {"resources": ["models"], "functions": ["query"], "entities": [ids[3]]},  # carol's c1
    ]
    mixed = server.as_account(BOB, grants)
    visible = [ids[0], ids[2], ids[3], ids[4]]
    assert [m["id"] for m in mixed.ok("GET", "/models")] == visible
    page1 = mixed.ok("GET", "/models", params={"limit": 3})
    page2 = mixed.ok("GET", "/models", params={"limit": 3, "after": page1[-1]["id"]})
    assert [m["id"] for m in page1 + page2] == visible
    newest = mixed.ok("GET", "/models", params={"limit": 2, "order": "descending"})
    assert [m["id"] for m in newest] == [ids[4], ids[3]]
    # c1 is listed but 'get' was not granted on it: it is visible, so 403 (not 404)
    assert mixed.get(f"/models/{ids[3]}").status_code == 403
    assert mixed.get(f"/models/{ids[1]}").status_code == 404


@pytest.mark.parametrize("resource", RESOURCES)
def test_listing_is_refused_without_a_query_grant(server: Server, resource: str) -> None:
    nothing = server.as_account(
        BOB, [{"resources": ["families"], "functions": ["get"], "accounts": [BOB]}]
    )
    response = nothing.get(f"/{resource}")
    assert response.status_code == 403
    assert "'query'" in response.json()["detail"]


def test_session_of_another_account_cannot_be_used_with_its_token_by_id(
    server: Server, alice: Caller
) -> None:
    service = alice.create("inferenceservices", service_request(ALICE))["id"]
    first = alice.create("inferencesessions", {"account": ALICE, "inferenceService": service})
    second = alice.create("inferencesessions", {"account": ALICE, "inferenceService": service})
    server.wait(first["inferencesession"]["id"])
    server.wait(second["inferencesession"]["id"])
    holder = Caller(server.client, first["token"])
    target = second["inferencesession"]["id"]
    assert holder.get(f"/inferencesessions/{target}/ready").status_code == 404
