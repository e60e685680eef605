"""Attacks with tokens on a real ``assay serve``: a token made with a token (a session token)
that outlives, out-grants or survives the revocation of the token that made it; a revocation
that a running server does not see (``docs/design/server.md``, "Tokens made with tokens",
"Revocation")."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

import httpx
from tests.conftest import until
from tests.security.conftest import ALICE, BOB
from tests.server.helpers import service_request
from tests.server.loopback import Served, assay_command

from assay.core.tokens import TokenSigner


def _assay_token(served: Served, *args: str) -> str:
    made = subprocess.run(
        [*assay_command(), "token", *args, "--data", str(served.data)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return made.stdout.strip()


def make_token(
    served: Served, account: str, *, seconds: float | None = None, grants: Sequence[str] = ()
) -> str:
    """``assay token create`` for ``account``, expiring in ``seconds`` (default 30 days)."""
    args = ["create", "--account", account]
    if seconds is not None:
        args += ["--expires", repr(seconds / 86400)]
    for grant in grants:
        args += ["--grant", grant]
    return _assay_token(served, *args)


def revoke(served: Served, token: str) -> None:
    """``assay token revoke``, by the operator, while the server runs."""
    _assay_token(served, "revoke", token)


def expiry(served: Served, token: str) -> int:
    """A token's ``exp`` (the operator can read it with the server's key)."""
    secret = (served.data / ".assay" / "secret.key").read_bytes()
    exp: int = TokenSigner(secret).verify(token)["exp"]
    return exp


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@contextmanager
def api(served: Served, token: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=f"{served.url}/v0", headers=headers, timeout=30) as client:
        yield client


def new_session(served: Served, token: str, account: str) -> tuple[str, str]:
    """A session (of a mock service) made with ``token``, and the session token it came with."""
    with api(served, token) as http:
        service = http.post("/inferenceservices", json=service_request(account))
        assert service.status_code == 201, service.text
        created = http.post(
            "/inferencesessions",
            json={"account": account, "inferenceService": service.json()["id"]},
        )
        assert created.status_code == 201, created.text
        return created.json()["inferencesession"]["id"], created.json()["token"]


def ready_status(served: Served, token: str, session: str) -> httpx.Response:
    """What a session token's holder gets from the session's ``ready``."""
    with api(served, token) as http:
        return http.get(f"/inferencesessions/{session}/ready")


def test_a_minted_token_never_outlives_its_minter(attack_server: Served) -> None:
    """The reported attack: bob, given a short-lived token, makes a session token that expires
    in 2999 and goes on using the session after his own token has expired."""
    session, _ = new_session(attack_server, make_token(attack_server, BOB), BOB)
    minter = make_token(attack_server, BOB, seconds=8)
    minter_expires = expiry(attack_server, minter)
    with api(attack_server, minter) as http:
        path = f"/inferencesessions/{session}/token"
        refused = http.post(path, json={"expires": "2999-01-01T00:00:00Z"})
        assert refused.status_code == 422, refused.text
        detail = refused.json()["detail"]
        assert "expires 2999-01-01T00:00:00Z" in detail
        assert f"expiry of the token making it ({iso(minter_expires)})" in detail
        minted = http.post(path, json={})
        assert minted.status_code == 200, minted.text
        session_token = minted.json()
    assert ready_status(attack_server, session_token, session).status_code in (200, 202)

    until(lambda: time.time() > minter_expires, 20, "the minter's expiry")
    answer = ready_status(attack_server, session_token, session)
    assert answer.status_code == 401 and "expired" in answer.json()["detail"]


def test_revoking_a_token_revokes_the_tokens_it_made(attack_server: Served) -> None:
    minter = make_token(attack_server, ALICE)
    session, created_with = new_session(attack_server, minter, ALICE)
    with api(attack_server, minter) as http:
        minted = http.post(f"/inferencesessions/{session}/token", json={}).json()
    for token in (created_with, minted):
        assert ready_status(attack_server, token, session).status_code in (200, 202)

    revoke(attack_server, minter)
    minter_id = TokenSigner((attack_server.data / ".assay" / "secret.key").read_bytes()).verify(
        minter
    )["jti"]
    for token in (created_with, minted):
        answer = ready_status(attack_server, token, session)
        assert answer.status_code == 401, answer.text
        assert f"made with the token {minter_id}, which was revoked" in answer.json()["detail"]


def test_a_minted_token_never_out_grants_its_minter(attack_server: Served) -> None:
    """A token that may create sessions but not use them cannot get, with the session, a
    session token that may."""
    grants = ["inferenceservices,inferencesessions:create,get"]
    creator = make_token(attack_server, BOB, grants=grants)
    with api(attack_server, creator) as http:
        service = http.post("/inferenceservices", json=service_request(BOB)).json()["id"]
        created = http.post(
            "/inferencesessions", json={"account": BOB, "inferenceService": service}
        )
    assert created.status_code == 403, created.text
    assert "'consume'" in created.json()["detail"]
    with api(attack_server, make_token(attack_server, BOB)) as http:
        sessions = http.get("/inferencesessions", params={"account": BOB}).json()
    assert all(s["inferenceService"]["id"] != service for s in sessions)  # nothing created


def test_every_revocation_is_seen_by_the_running_server(attack_server: Served) -> None:
    first, second = make_token(attack_server, ALICE), make_token(attack_server, ALICE)
    for token in (first, second):  # verified and cached by the server
        with api(attack_server, token) as http:
            assert http.get("/models", params={"account": ALICE}).status_code == 200

    revoke(attack_server, first)
    with api(attack_server, first) as http:
        answer = http.get("/models", params={"account": ALICE})
        assert answer.status_code == 401 and "was revoked" in answer.json()["detail"]
    with api(attack_server, second) as http:
        assert http.get("/models", params={"account": ALICE}).status_code == 200

    revoke(attack_server, second)  # a second revocation, the server still running
    with api(attack_server, second) as http:
        answer = http.get("/models", params={"account": ALICE})
        assert answer.status_code == 401 and "was revoked" in answer.json()["detail"]
