"""Attacks on the default account, against a real ``assay serve`` (multi-user defaults).

A create request may leave ``account`` out: the client, and the server for raw HTTP, fill in
the token's own account (its subject ``Account/<name>``). bob, with an ordinary token, tries
to make that default land in alice's account: by naming her, by a body whose account is
null, by a token whose grants name only alice, by a forged token that claims to be hers.
Each must be refused, and omitting the account must put the entity in bob's own account,
where alice cannot see it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.security.conftest import ALICE, BOB, secret_key
from tests.server.loopback import Served, assay_command

from assay import errors
from assay.client import Client
from assay.local import mocks


def _model(**fields: Any) -> dict[str, Any]:
    return {
        "name": "default-account",
        "artifact": {"kind": "Mock"},
        "source": {"kind": "Mock"},
        "resources": {"storage": "1Gi"},
        **fields,
    }


def _post(served: Served, token: str, body: Any) -> httpx.Response:
    return httpx.post(
        f"{served.url}/v0/models",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )


def _alices_models(alice: Client) -> list[str]:
    return [m.id for m in alice.models.query(account=ALICE)]


def test_bob_cannot_create_in_alices_account_by_naming_it(
    attack_server: Served, alice: Client, bob: Client
) -> None:
    before = _alices_models(alice)
    with pytest.raises(errors.PermissionDeniedError, match="'alice'"):
        bob.inferenceservices.create_mock(mocks.TextCompletion, account=ALICE)
    with pytest.raises(errors.PermissionDeniedError, match="'alice'"):
        bob.models.create(_model(account=ALICE))
    response = _post(attack_server, attack_server.token(BOB), _model(account=ALICE))
    assert response.status_code == 403, response.text
    assert _alices_models(alice) == before
    assert alice.inferenceservices.query(account=ALICE, name="mock-TextCompletion") == []


def test_omitting_the_account_puts_the_entity_in_bobs_own(
    attack_server: Served, alice: Client, bob: Client
) -> None:
    before = _alices_models(alice)
    service = bob.inferenceservices.create_mock(mocks.TextCompletion)
    model = bob.models.create(_model())
    assert (service.account, model.account) == (BOB, BOB)
    token = attack_server.token(BOB)
    for body in (_model(), _model(account=None)):  # raw HTTP: the server fills it in
        response = _post(attack_server, token, body)
        assert response.status_code == 201, response.text
        assert response.json()["account"] == BOB
    # alice cannot see them, and nothing landed in her account
    assert alice.inferenceservices.get(service.id) is None
    assert alice.models.get(model.id) is None
    assert _alices_models(alice) == before


def test_the_default_is_the_tokens_subject_never_an_account_of_its_grants(
    attack_server: Served, alice: Client
) -> None:
    """A token for bob whose only grant is on alice's account (an operator's mistake, or a
    shared reader): leaving the account out is bob's account, which the token may not
    write, so it is refused; it never becomes alice's."""
    made = subprocess.run(
        [
            *assay_command(),
            "token",
            "create",
            "--data",
            str(attack_server.data),
            "--account",
            BOB,
            "--grant",
            f"models:get,query:{ALICE}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    token = made.stdout.strip()
    before = _alices_models(alice)
    response = _post(attack_server, token, _model())
    assert response.status_code == 403, response.text
    assert "'bob'" in response.json()["detail"]
    assert _alices_models(alice) == before


def _forged(subject: str, key: bytes) -> str:
    """An HS256 token with an ordinary account's claims, signed with ``key``."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(time.time())
    claims = {
        "jti": "f" * 32,
        "sub": subject,
        "iat": now,
        "exp": now + 3600,
        "grants": [{"resources": ["*"], "functions": ["*"], "accounts": [ALICE], "entities": []}],
    }
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    signature = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


def test_a_forged_token_claiming_alices_account_fills_in_nothing(
    attack_server: Served, alice: Client, tmp_path: Path
) -> None:
    before = _alices_models(alice)
    wrong_key = bytes(reversed(secret_key(attack_server)))
    token = _forged(f"Account/{ALICE}", wrong_key)
    response = _post(attack_server, token, _model())
    assert response.status_code == 401, response.text
    # the client reads the subject without verifying it; the server still refuses it
    with Client(attack_server.url, token, progress=False, cache_dir=tmp_path) as forged:
        assert forged.account == ALICE
        with pytest.raises(errors.AuthenticationError):
            forged.models.create(_model())
    assert _alices_models(alice) == before
