"""Attacks through the host of an ``http``/``openai`` service: bob points his service at the
server's own loopback, the cloud metadata address, a private network — written plainly or
disguised — so that the server makes requests there for him (server-side request forgery).

A multi-user server refuses them when the service is created (a real ``assay serve``, with
its defaults: no allowed hosts), and again when a session starts: a host name that resolved
to a public address at creation and to loopback later (DNS rebinding) is caught then
(in-process, with the resolver replaced).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from tests.security.conftest import BOB
from tests.security.recorder import Recorder, recorder
from tests.server.helpers import Server

from assay import errors
from assay.client import Client
from assay.inference.runners.hosts import check_service_host
from assay.inference.runners.openai import openai_interface
from assay.server import ServerSettings, create_app

PUBLIC = "93.184.216.34"
REBINDING = "rebinding.test"


def service(url: str, kind: str = "http") -> dict[str, Any]:
    key = "url" if kind == "http" else "baseURL"
    return {
        "account": BOB,
        "name": "ssrf",
        "runner": {"kind": kind, "configuration": {key: url, "readyPath": "/"}},
        "interface": openai_interface("m").model_dump(by_alias=True),
    }


@pytest.fixture(scope="module")
def spy() -> Iterator[Recorder]:
    with recorder() as made:
        yield made


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}",
        "http://localhost:{port}",
        "http://127.1:{port}",  # a host name that resolves to loopback
        "http://2130706433:{port}",  # 127.0.0.1 as one number
        "http://[::1]:{port}",
        "http://[::ffff:127.0.0.1]:{port}",  # IPv4-mapped
        "http://0.0.0.0:{port}",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://[fe80::1]/",
        "http://10.1.2.3/",
        "http://192.168.0.1/",
        "http://[fd00::1]/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
    ],
)
def test_bob_cannot_aim_a_service_at_private_addresses(
    bob: Client, spy: Recorder, url: str
) -> None:
    target = url.format(port=spy.port)
    for kind in ("http", "openai"):
        field = "url" if kind == "http" else "baseURL"
        with pytest.raises(errors.ValidationError) as refused:
            bob.inferenceservices.create(service(target, kind))
        message = str(refused.value)
        assert f"runner.configuration.{field}" in message and target.rstrip("/") in message
        assert "--allowed-hosts" in message and "ASSAY_ALLOWED_HOSTS" in message
    assert spy.requests == []


def test_hosts_and_networks_the_operator_lists_are_allowed() -> None:
    what, field = "InferenceService 's'", "runner.configuration.url"
    for url, allowed in [
        ("http://127.0.0.1:8080", ("127.0.0.1",)),
        ("http://10.1.2.3/", ("10.0.0.0/8",)),
        ("http://localhost:8080", ("localhost",)),
        ("http://[::ffff:10.0.0.1]/", ("10.0.0.0/8",)),
        (f"http://{PUBLIC}/", ()),
    ]:
        check_service_host(url, allowed, what=what, field=field, unresolved_ok=False)
    with pytest.raises(errors.ValidationError, match=r"169\.254\.169\.254"):
        check_service_host(
            "http://169.254.169.254/", ("10.0.0.0/8",), what=what, field=field, unresolved_ok=True
        )
    # embedded (allowed_hosts None): anywhere
    check_service_host("http://127.0.0.1/", None, what=what, field=field, unresolved_ok=False)


@pytest.fixture
def rebinding(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """``rebinding.test`` resolves to what ``answer["address"]`` says at the time."""
    answer = {"address": PUBLIC}
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == REBINDING:
            return real(answer["address"], port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answer


def test_a_host_that_rebinds_to_loopback_is_refused_when_the_session_starts(
    tmp_path: Path, rebinding: dict[str, str], spy: Recorder
) -> None:
    settings = ServerSettings(
        data_dir=tmp_path / "data", executor="threads", shutdown_timeout=20, sandbox=False
    )
    with TestClient(create_app(settings)) as client:
        server = Server(client, settings)
        bob = server.as_account(BOB)
        created = bob.create("inferenceservices", service(f"http://{REBINDING}:{spy.port}"))
        rebinding["address"] = "127.0.0.1"  # the attacker's DNS now answers loopback
        made = bob.create("inferencesessions", {"account": BOB, "inferenceService": created["id"]})
        session = server.wait(made["inferencesession"]["id"])
    assert session["status"] == "Error", session
    assert "resolves to 127.0.0.1" in session["message"] and "loopback" in session["message"]
    assert spy.requests == []
