"""Attacks on runner credentials, through a real multi-user ``assay serve``: bob's ``http``
service names a server environment variable, or alice's secret, as its credential, hoping
the server sends the value to bob's own URL with the first request.

The servers here list ``127.0.0.1`` as an allowed host (``--allowed-hosts``), so that bob's
recording service on loopback is reachable and only the credential rules stand in the way;
a control in each test shows that bob's own secret does reach it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.security.conftest import ALICE, BOB
from tests.security.recorder import Recorder, recorder
from tests.server.loopback import Served, serve

from assay import errors
from assay.client import Client
from assay.inference.runners.openai import openai_interface
from assay.schema.status import Status

CANARY_VARIABLE = "ASSAY_TEST_CANARY"
CANARY = "server-only-canary-value"
ALICE_KEY = "alice-api-key-value"
LOOPBACK = ["--allowed-hosts", "127.0.0.1"]


def http_service(account: str, url: str, credential: dict[str, str]) -> dict[str, Any]:
    return {
        "account": account,
        "name": "exfiltrate",
        "runner": {
            "kind": "http",
            "configuration": {"url": url, "credential": credential, "readyPath": "/health"},
        },
        "interface": openai_interface("m").model_dump(by_alias=True),
    }


def client(served: Served, account: str, cache: Path) -> Client:
    return Client(served.url, served.token(account), progress=False, cache_dir=cache)


def start(bob: Client, service: str) -> Any:
    made = bob.inferencesessions.create({"account": BOB, "inferenceService": service})
    return bob.inferencesessions.wait(made.inferencesession.id, timeout=120)


@pytest.fixture
def spy() -> Iterator[Recorder]:
    with recorder() as made:
        yield made


def test_bob_cannot_send_server_variables_or_alice_secrets_to_his_url(
    tmp_path: Path, spy: Recorder
) -> None:
    env = {CANARY_VARIABLE: CANARY}
    with (
        serve(tmp_path, args=LOOPBACK, env=env) as served,
        client(served, ALICE, tmp_path / "a") as alice,
        client(served, BOB, tmp_path / "b") as bob,
    ):
        alice.secrets.set("api-key", ALICE_KEY)
        assert alice.secrets.names() == ["api-key"]

        # server variables: refused when the service is created, naming the field and the fix
        for variable in ("ASSAY_SIGNING_SECRET", CANARY_VARIABLE, "HOME"):
            with pytest.raises(errors.ValidationError) as refused:
                bob.inferenceservices.create(http_service(BOB, spy.url, {"env": variable}))
            message = str(refused.value)
            assert "runner.configuration.credential.env" in message and variable in message
            assert "ASSAY_CREDENTIAL_ENV_ALLOW" in message and "assay secrets set" in message

        # alice's secret: bob's service looks in bob's account, and finds nothing there
        stolen = bob.inferenceservices.create(http_service(BOB, spy.url, {"secret": "api-key"}))
        session = start(bob, stolen.id)
        assert session.status == Status.Error, session
        missing = bob.inferenceservices.create(http_service(BOB, spy.url, {"secret": "no-key"}))
        unknown = start(bob, missing.id)
        # a name alice has reads exactly as a name nobody has
        assert session.message.replace("api-key", "X").replace(stolen.id, "S") == (
            unknown.message.replace("no-key", "X").replace(missing.id, "S")
        )
        assert "account 'bob' has no secret 'api-key'" in session.message
        assert spy.requests == []

        # bob cannot read, replace or delete alice's secrets either
        for call in (
            lambda: bob.secrets.names(account=ALICE),
            lambda: bob.secrets.set("api-key", "bob-value", account=ALICE),
            lambda: bob.secrets.delete("api-key", account=ALICE),
        ):
            with pytest.raises(errors.PermissionDeniedError, match="secrets of account 'alice'"):
                call()
        assert alice.secrets.names() == ["api-key"]

        # the control: bob's own secret does reach bob's service
        bob.secrets.set("bob-key", "bob-value")
        own = bob.inferenceservices.create(http_service(BOB, spy.url, {"secret": "bob-key"}))
        assert start(bob, own.id).status == Status.Ready
        assert set(spy.authorizations()) == {"Bearer bob-value"}
    log = (tmp_path / "serve.log").read_text()
    assert CANARY not in log and ALICE_KEY not in log


def test_a_variable_the_operator_no_longer_allows_is_refused_when_the_session_starts(
    tmp_path: Path, spy: Recorder
) -> None:
    env = {CANARY_VARIABLE: CANARY}
    allowed = {**env, "ASSAY_CREDENTIAL_ENV_ALLOW": CANARY_VARIABLE}
    with (
        serve(tmp_path, args=LOOPBACK, env=allowed) as served,
        client(served, BOB, tmp_path / "b") as bob,
    ):
        service = bob.inferenceservices.create(http_service(BOB, spy.url, {"env": CANARY_VARIABLE}))
    # the operator restarts the server without the variable in the allow-list
    with (
        serve(tmp_path, args=LOOPBACK, env=env) as served,
        client(served, BOB, tmp_path / "b") as bob,
    ):
        session = start(bob, service.id)
    assert session.status == Status.Error
    assert CANARY_VARIABLE in session.message and "ASSAY_CREDENTIAL_ENV_ALLOW" in session.message
    assert spy.requests == []
