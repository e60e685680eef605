"""Error answers become the :mod:`assay.errors` class of their status, with the server's
detail as the message; credentials and configuration problems are clear."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.client.conftest import ALICE, BOB, LiveServer

from assay import errors
from assay.client import Client
from assay.core.tokens import TokenSigner
from assay.local import mocks
from assay.server import issue_token

ID = "b" * 32


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected", "message"),
    [
        (400, {"detail": "the request body is not valid JSON"}, {}, errors.ValidationError, None),
        (401, {"detail": "the token has expired"}, {}, errors.AuthenticationError, None),
        (403, {"detail": "not allowed"}, {}, errors.PermissionDeniedError, None),
        (404, {"detail": "Dataset 'b…' does not exist"}, {}, errors.NotFoundError, None),
        (408, {"detail": "too slow"}, {}, errors.WaitTimeoutError, None),
        (409, {"detail": "it is Admitted"}, {}, errors.ConflictError, None),
        (411, {"detail": "needs Content-Length"}, {}, errors.ValidationError, None),
        (413, {"detail": "body too large"}, {}, errors.ValidationError, None),
        (422, {"detail": "name: required"}, {}, errors.ValidationError, None),
        (
            422,
            {"detail": "md5 differs"},
            {"X-Assay-Error": "DataIntegrityError"},
            errors.DataIntegrityError,
            None,
        ),
        (429, {"detail": "slow down"}, {"Retry-After": "7"}, errors.UnavailableError, None),
        (
            500,
            {"detail": "internal error (KeyError)"},
            {},
            errors.PlatformError,
            "the server failed (HTTP 500): internal error (KeyError)",
        ),
        (
            502,
            b"<html><body>Bad gateway</body></html>",
            {"Content-Type": "text/html"},
            errors.UnavailableError,
            "HTTP 502 Bad Gateway: <html><body>Bad gateway</body></html>",
        ),
        (418, {"detail": "a teapot"}, {}, errors.ValidationError, None),
        (507, {"unexpected": 1}, {}, errors.PlatformError, None),
    ],
)
def test_status_codes_map_to_error_classes(
    status: int, body: Any, headers: dict[str, str], expected: type, message: str | None
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if isinstance(body, bytes):
            return httpx.Response(status, content=body, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    with (
        Client(
            "http://assay.test", "token", retries=0, transport=httpx.MockTransport(answer)
        ) as client,
        pytest.raises(errors.AssayError) as info,
    ):
        client.datasets.require(ID)  # get answers None for a 404; require raises it
    assert type(info.value) is expected
    if message is not None:
        assert str(info.value) == message
    elif isinstance(body, dict) and "detail" in body:
        assert str(info.value) == body["detail"]  # the server's words, nothing added
    if expected is errors.NotFoundError:
        assert (info.value.kind, info.value.id) == ("Dataset", ID)  # type: ignore[attr-defined]
    if status == 429:
        assert info.value.retry_after == 7  # type: ignore[attr-defined]


def test_credentials(live_server: LiveServer, make_client: Callable[..., Client]) -> None:
    forged = issue_token(TokenSigner(b"another secret, not the server's"), account=ALICE)
    with pytest.raises(errors.AuthenticationError, match="signature"):
        make_client(token=forged).datasets.query()
    with pytest.raises(errors.AuthenticationError):
        make_client(token="not-a-token").datasets.query()
    grant = {"resources": ["*"], "functions": ["*"], "accounts": [ALICE]}
    expired = live_server.core.signer.sign(
        subject=f"Account/{ALICE}", grants=[grant], expires=time.time() - 1
    )
    with pytest.raises(errors.AuthenticationError, match="expired"):
        make_client(token=expired).datasets.query()

    reader = live_server.token(
        ALICE, [{"resources": ["datasets"], "functions": ["get", "query"], "accounts": [ALICE]}]
    )
    with pytest.raises(errors.PermissionDeniedError, match="does not allow"):
        make_client(token=reader).families.create({"account": ALICE, "memberKind": "Dataset"})
    alice = make_client(ALICE)
    family = alice.families.create({"account": ALICE, "memberKind": "Dataset"})
    assert make_client(token=reader).datasets.query(id=family.id) == []
    assert make_client(BOB).families.get(family.id) is None  # as for an unknown id
    with pytest.raises(errors.NotFoundError) as info:
        make_client(BOB).families.require(family.id)  # another account's ids cannot be probed
    assert (info.value.kind, info.value.id) == ("Family", family.id)
    assert make_client(BOB).families.query(id=family.id) == []


def test_session_tokens(alice: Client) -> None:
    service = alice.inferenceservices.create_mock(mocks.TextCompletion, account=ALICE)
    first = alice.inferencesessions.create({"account": ALICE, "inferenceService": service.id})
    second = alice.inferencesessions.create({"account": ALICE, "inferenceService": service.id})
    one, two = first.inferencesession.id, second.inferencesession.id
    with pytest.raises(errors.PermissionDeniedError, match=f"InferenceSession {two}"):
        alice.inferencesessions.client(two, first.token)
    with pytest.raises(errors.AuthenticationError):
        alice.inferencesessions.client(one, "not-a-token")
    alice.inferencesessions.wait(one, timeout=60)
    session_client = alice.inferencesessions.client(one, first.token)
    assert session_client.infer({"text": "hi"})
    alice.inferencesessions.terminate(one)
    with pytest.raises(errors.ConflictError, match="Terminated"):
        session_client.infer({"text": "hi"})
    with pytest.raises(errors.ValidationError, match="timezone"):
        from datetime import datetime

        alice.inferencesessions.token(two, expires=datetime(2100, 1, 1))
    with pytest.raises(errors.ValidationError, match="id"):
        alice.inferenceservices.create_mock(mocks.TextCompletion, account=ALICE, id="c" * 32)
    alice.inferencesessions.terminate(two)


def test_configuration(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("ASSAY_API_ENDPOINT", raising=False)
    monkeypatch.delenv("ASSAY_API_TOKEN", raising=False)
    with pytest.raises(errors.ValidationError, match="ASSAY_API_ENDPOINT and an API token"):
        Client()
    with pytest.raises(errors.AuthenticationError, match="ASSAY_API_TOKEN"):
        Client(live_server.url)
    with pytest.raises(errors.ValidationError, match="not an http"):
        Client("127.0.0.1:8000", "token")
    with pytest.raises(errors.ValidationError, match="timeout"):
        Client(live_server.url, "token", timeout=0)

    monkeypatch.setenv("ASSAY_API_ENDPOINT", live_server.url + "/v0/")
    monkeypatch.setenv("ASSAY_API_TOKEN", live_server.token(ALICE))
    monkeypatch.setenv("ASSAY_CACHE_DIR", str(tmp_path / "cache"))
    with Client() as client:
        assert client.endpoint == live_server.url + "/v0"
        assert client.cache_dir == tmp_path / "cache"
        assert client.account == ALICE
        assert isinstance(client.datasets.query(limit=1), list)
        assert repr(client) == f"Client(endpoint='{live_server.url}/v0')"
    client.close()  # closing twice is harmless
    with pytest.raises(errors.ConflictError, match="is closed"):
        client.datasets.query()
