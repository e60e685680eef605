"""Every error is ``{"detail": "..."}`` with the right status: bad bodies, unknown routes and
ids, oversized requests, and every way a token can be wrong."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from tests.server.conftest import ALICE
from tests.server.helpers import Caller, Server, model_request

from assay.core.tokens import TokenSigner
from assay.server import RevocationList, ServerSettings, create_app, issue_token


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (b'"text"', 400, "must be a JSON object"),
        (b"", 400, "body is missing"),
        (b'{"account": 7, "name": "m"}', 422, "account"),
        (b'{"account": "alice", "name": ["m"], "artifact": {}}', 422, "name"),
    ],
)
def test_bad_bodies(alice: Caller, body: bytes, status: int, words: str) -> None:
    response = alice.post("/models", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert set(response.json()) == {"detail"}
    assert isinstance(response.json()["detail"], str) and words in response.json()["detail"]
    assert alice.ok("GET", "/models") == []


def test_bad_bodies_of_edits(alice: Caller) -> None:
    model = alice.create("models", model_request(ALICE))["id"]
    response = alice.patch(
        f"/models/{model}/labels", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    response = alice.patch(f"/models/{model}/labels", json={"labels": ["a"]})
    assert response.status_code == 422 and "labels" in response.json()["detail"]
    response = alice.patch(f"/models/{model}/documentation", json={"title": "x" * 500})
    assert response.status_code == 422 and "title" in response.json()["detail"]


def test_unknown_routes_ids_and_methods(alice: Caller) -> None:
    response = alice.get("/gadgets")
    assert response.status_code == 404 and "no such route" in response.json()["detail"]
    response = alice.get("/models/" + "a" * 32)
    assert response.status_code == 404 and "a" * 32 in response.json()["detail"]
    response = alice.request("DELETE", "/models")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert "allowed: GET, POST" in response.json()["detail"]
    # the site root is the web UI's dashboard, which sends a browser without a session to
    # sign in (tests/ui/test_pages.py)
    root = alice.client.get("/", follow_redirects=False)
    assert root.status_code == 303 and root.headers["location"] == "/signin"


def test_oversized_bodies_are_413(tmp_path: Path) -> None:
    settings = ServerSettings(data_dir=tmp_path / "data", max_body_bytes=1000)
    with TestClient(create_app(settings)) as client:
        alice = Server(client, settings).as_account(ALICE)
        big = {**model_request(ALICE), "name": "x" * 2000}
        response = alice.post("/models", json=big)
        assert response.status_code == 413
        assert "1,000 bytes" in response.json()["detail"]

        def chunks() -> object:
            yield json.dumps(big).encode()

        response = alice.post(
            "/models", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 413
        response = alice.post("/models", content=b"{}", headers={"Content-Length": "many"})
        assert response.status_code == 400
        assert alice.ok("GET", "/models") == []
        assert alice.post("/models", json=model_request(ALICE)).status_code == 201


def test_internal_errors_are_500_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = ServerSettings(data_dir=tmp_path / "data")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        server = Server(client, settings)
        alice = server.as_account(ALICE)

        def broken(**filters: object) -> None:
            raise RuntimeError("secret internals")

        monkeypatch.setattr(server.core.models, "query", broken)
        response = alice.get("/models")
        assert response.status_code == 500
        detail = response.json()["detail"]
        assert "RuntimeError" in detail and "secret internals" not in detail
        assert "Traceback" not in response.text


# -- tokens ------------------------------------------------------------------------------------


def _detail(caller: Caller) -> tuple[int, str]:
    response = caller.get("/models")
    return response.status_code, response.json()["detail"]


def test_no_token_or_another_scheme_is_401(server: Server) -> None:
    response = server.anonymous().get("/models")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in response.json()["detail"]
    response = server.anonymous().get("/models", headers={"Authorization": "Basic YTpi"})
    assert response.status_code == 401 and "Basic" in response.json()["detail"]
    assert server.anonymous().get("/models", headers={"Authorization": "Bearer"}).status_code == 401


def test_malformed_foreign_and_altered_tokens_are_401(server: Server) -> None:
    client = server.client
    assert _detail(Caller(client, "not-a-token")) == (
        401,
        "the token is malformed (expected a signed JWT)",
    )
    foreign = issue_token(TokenSigner(b"another platform's secret!"), account=ALICE)
    status, detail = _detail(Caller(client, foreign))
    assert status == 401 and "signature is not valid" in detail
    genuine = server.token(ALICE)
    head, body, signature = genuine.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["grants"][0]["accounts"] = ["*"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    status, detail = _detail(Caller(client, f"{head}.{forged}.{signature}"))
    assert status == 401 and "signature is not valid" in detail


def test_expired_token_is_401(server: Server) -> None:
    expired = server.core.signer.sign(
        subject=f"Account/{ALICE}", grants=[], expires=time.time() - 5
    )
    status, detail = _detail(Caller(server.client, expired))
    assert status == 401 and "expired" in detail


def test_token_with_malformed_grants_is_401(server: Server) -> None:
    token = server.core.signer.sign(
        subject=f"Account/{ALICE}", grants=[{"resources": ["gadgets"]}], expires=time.time() + 60
    )
    status, detail = _detail(Caller(server.client, token))
    assert status == 401 and "grants are malformed" in detail


def test_revoked_token_is_401_at_once(server: Server) -> None:
    token = server.token(ALICE)
    caller = Caller(server.client, token)
    assert caller.get("/models").status_code == 200  # verified, and cached
    claims = server.core.signer.verify(token)
    # revoked by another process (the CLI writes the same file)
    RevocationList(server.settings.revoked_tokens_path).revoke(claims["jti"], expires=claims["exp"])
    status, detail = _detail(caller)
    assert status == 401 and "revoked" in detail and claims["jti"] in detail
    assert server.as_account(ALICE).get("/models").status_code == 200  # other tokens still work


def test_tokens_survive_a_restart_with_the_same_secret(tmp_path: Path) -> None:
    settings = ServerSettings(data_dir=tmp_path / "data")
    token = issue_token(TokenSigner(settings.secret()), account=ALICE)
    with TestClient(create_app(settings)) as client:
        model = Caller(client, token).create("models", model_request(ALICE))["id"]
    with TestClient(create_app(settings)) as client:
        assert Caller(client, token).ok("GET", f"/models/{model}")["id"] == model
    given = ServerSettings(data_dir=tmp_path / "data", signing_secret="a secret given by setting")
    with TestClient(create_app(given)) as client:
        assert Caller(client, token).get(f"/models/{model}").status_code == 401


def test_issue_token_checks_its_arguments(server: Server) -> None:
    from assay import errors

    with pytest.raises(errors.ValidationError, match="account"):
        issue_token(server.core, account="not valid!")
    with pytest.raises(errors.ValidationError, match="grants"):
        issue_token(server.core, account=ALICE, grants=[{"resources": []}])
    with pytest.raises(errors.ValidationError, match="expired"):
        issue_token(server.core, account=ALICE, expires=-1)
    with pytest.raises(errors.ValidationError, match="PlatformCore or a TokenSigner"):
        issue_token(object(), account=ALICE)


def test_errors_name_their_class_and_mocks_are_only_assays(alice: Caller) -> None:
    response = alice.get("/models/" + "b" * 32)
    assert response.headers["x-assay-error"] == "NotFoundError"
    request = {
        "account": ALICE,
        "name": "sneaky",
        "runner": {"kind": "mock", "configuration": {"mockType": "os.system"}},
        "interface": {"endpoint": "generate", "outputSchema": {"arrowSchema": ""}},
    }
    response = alice.post("/inferenceservices", json=request)
    assert response.status_code == 422, response.text
    assert "not one of Assay's mocks" in response.json()["detail"]
    assert response.headers["x-assay-error"] == "ValidationError"
    assert alice.ok("GET", "/inferenceservices") == []
