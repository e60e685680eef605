"""Inference sessions over HTTP: create (with a token), token, ready, infer with the session
token, terminate — and what a session token may not do."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from tests.server.conftest import ALICE
from tests.server.helpers import Caller, Server, model_request, service_request


def _ready_session(server: Server, alice: Caller) -> tuple[str, str]:
    service = alice.create("inferenceservices", service_request(ALICE))["id"]
    created = alice.create("inferencesessions", {"account": ALICE, "inferenceService": service})
    session = created["inferencesession"]["id"]
    assert server.wait(session)["status"] == "Ready"
    return session, created["token"]


def test_session_token_ready_infer_terminate(server: Server, alice: Caller) -> None:
    session, token = _ready_session(server, alice)
    with_session_token = Caller(server.client, token)

    ready = with_session_token.get(f"/inferencesessions/{session}/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})

    reply = with_session_token.ok(
        "POST", f"/inferencesessions/{session}/infer/generate", json={"text": "Hello"}
    )
    # the service's reply as it is (this mock answers a list of completions)
    assert isinstance(reply, list) and reply and all(r["text"].startswith("Hello") for r in reply)
    other = with_session_token.ok(
        "POST", f"/inferencesessions/{session}/infer/generate", json={"text": "Bye"}
    )
    assert all(r["text"].startswith("Bye") for r in other)

    # a new token, with an expiry, from the account's token (the reference sends expires)
    expires = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    fresh = alice.ok("POST", f"/inferencesessions/{session}/token", json={"expires": expires})
    assert isinstance(fresh, str) and fresh != token
    assert isinstance(alice.ok("POST", f"/inferencesessions/{session}/token", json={}), str)
    assert isinstance(alice.ok("POST", f"/inferencesessions/{session}/token"), str)
    assert (
        Caller(server.client, fresh).get(f"/inferencesessions/{session}/ready").status_code == 200
    )

    status = alice.ok("PUT", f"/inferencesessions/{session}/terminate")
    assert (status["status"], status["reason"]) == ("Terminated", "TerminateCommand")
    ready = with_session_token.get(f"/inferencesessions/{session}/ready")
    assert (ready.status_code, ready.json()) == (202, {"ready": False})
    response = with_session_token.post(
        f"/inferencesessions/{session}/infer/generate", json={"text": "Hello"}
    )
    assert response.status_code == 409 and "Terminated" in response.json()["detail"]


def test_a_session_token_allows_only_its_own_session(server: Server, alice: Caller) -> None:
    session, token = _ready_session(server, alice)
    other, _ = _ready_session(server, alice)
    holder = Caller(server.client, token)

    response = holder.post(f"/inferencesessions/{other}/infer/generate", json={"text": "x"})
    assert response.status_code == 404  # it cannot see the other session at all
    for method, path in [
        ("GET", f"/inferencesessions/{session}"),
        ("GET", "/inferencesessions"),
        ("PUT", f"/inferencesessions/{session}/terminate"),
        ("PUT", f"/inferencesessions/{session}/delete"),
        ("POST", f"/inferencesessions/{session}/token"),
        ("GET", "/models"),
    ]:
        response = holder.request(method, path)
        assert response.status_code == 403, (method, path, response.text)
    response = holder.post("/models", json=model_request(ALICE))
    assert response.status_code == 403
    assert alice.ok("GET", f"/inferencesessions/{session}")["status"] == "Ready"


def test_infer_on_a_session_that_is_not_ready_is_503_with_retry_after(
    server: Server, alice: Caller
) -> None:
    # a model that waits for its upload keeps the service, and so the session, waiting
    model = alice.create(
        "models",
        {
            **model_request(ALICE),
            "artifact": {"kind": "Volume", "volume": {"files": [{"path": "w.bin", "size": 1}]}},
            "source": {"kind": "Upload"},
        },
    )["id"]
    service = alice.create("inferenceservices", service_request(ALICE, model))["id"]
    created = alice.create("inferencesessions", {"account": ALICE, "inferenceService": service})
    session, token = created["inferencesession"]["id"], created["token"]
    response = Caller(server.client, token).post(
        f"/inferencesessions/{session}/infer/generate", json={"text": "x"}
    )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "Ready" in response.json()["detail"]
    assert alice.get(f"/inferencesessions/{session}/ready").status_code == 202


def test_infer_body_must_be_a_json_object(server: Server, alice: Caller) -> None:
    session, token = _ready_session(server, alice)
    holder = Caller(server.client, token)
    assert holder.post(f"/inferencesessions/{session}/infer/generate", json=[1]).status_code == 400
    response = holder.post(
        f"/inferencesessions/{session}/infer/generate",
        content=b"{nope",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400


def test_session_create_returns_at_once(server: Server, alice: Caller) -> None:
    service = alice.create("inferenceservices", service_request(ALICE))["id"]
    started = time.monotonic()
    created = alice.create("inferencesessions", {"account": ALICE, "inferenceService": service})
    assert time.monotonic() - started < 5
    assert created["inferencesession"]["status"] in ("Created", "Admitted", "Ready")
