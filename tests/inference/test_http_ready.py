"""Waiting for a service that runs elsewhere (``http``, ``openai`` runners), with real sockets:
nothing listening fails the session in seconds, saying what to do; a readiness path that
answers 503 is waited for; a service that sets ``readyTimeoutSeconds`` is waited for."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from tests.conftest import ACCOUNT

from assay import errors
from assay.inference.runners.http import REFUSED_GRACE, wait_for
from assay.inference.runners.openai import openai_interface
from assay.local import LocalPlatform
from assay.schema.requests import InferenceSessionCreateRequest
from assay.schema.status import Status


def _free_port() -> int:
    """A loopback port where nothing listens (bound once, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Health(BaseHTTPRequestHandler):
    """Answers ``GET /health`` 503 until ``ready_at`` (server attribute), then 200."""

    def do_GET(self) -> None:
        server: Any = self.server
        server.hits += 1
        ready = time.monotonic() >= server.ready_at
        self.send_response(200 if ready else 503)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def loading() -> Iterator[Any]:
    """A server that answers 503 on /health for a while (``server.ready_at``), then 200."""
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    server.hits = 0
    server.ready_at = time.monotonic() + 3600
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _session(platform: LocalPlatform, kind: str, url: str, **config: Any) -> Any:
    key = "url" if kind == "http" else "baseURL"
    configuration = {key: url, **config}
    if kind == "openai":
        configuration["model"] = "fake-model"
    service = platform.inferenceservices.create(
        {
            "account": ACCOUNT,
            "name": "elsewhere",
            "runner": {"kind": kind, "configuration": configuration},
            "interface": openai_interface("fake-model").model_dump(by_alias=True),
        }
    )
    created = platform.inferencesessions.create(
        InferenceSessionCreateRequest(account=ACCOUNT, inferenceService=service.id)
    )
    return created.inferencesession


@pytest.mark.parametrize("kind", ["http", "openai"])
def test_nothing_listening_fails_the_session_fast(platform: LocalPlatform, kind: str) -> None:
    url = f"http://127.0.0.1:{_free_port()}/v1"
    started = time.monotonic()
    session = _session(platform, kind, url)
    elapsed = time.monotonic() - started
    assert session.status == Status.Error
    assert elapsed < 10, f"it took {elapsed:.1f} s"
    message = session.message or ""
    assert url in message and "nothing listens there" in message
    assert "connection was refused" in message
    assert "Start the service" in message and "readyTimeoutSeconds" in message


def test_a_host_that_does_not_resolve_fails_fast() -> None:
    started = time.monotonic()
    with pytest.raises(errors.UnavailableError) as info:
        wait_for("http://nothing-here.invalid", {}, None, 120, "the service", refused_grace=0.5)
    assert time.monotonic() - started < 10
    assert "does not resolve" in str(info.value) and "nothing-here.invalid" in str(info.value)


def test_a_ready_path_answering_503_is_waited_for(loading: Any) -> None:
    """503 means something is there, loading: not 'nothing listens', even past the grace."""
    loading.ready_at = time.monotonic() + 0.6
    url = f"http://127.0.0.1:{loading.server_address[1]}"
    wait_for(url, {}, "/health", 30, "the service", refused_grace=0.1)
    assert loading.hits >= 2
    loading.ready_at = time.monotonic() + 3600
    with pytest.raises(errors.UnavailableError) as info:
        wait_for(url, {}, "/health", 0.5, "the service", refused_grace=0.1)
    assert "did not become ready in 0.5 s" in str(info.value) and "answered 503" in str(info.value)


def test_a_session_waits_for_its_ready_path(platform: LocalPlatform, loading: Any) -> None:
    loading.ready_at = time.monotonic() + 0.5
    url = f"http://127.0.0.1:{loading.server_address[1]}"
    session = _session(platform, "http", url, readyPath="/health")
    assert session.status == Status.Ready, session.message
    assert loading.hits >= 2


@pytest.mark.slow
def test_a_service_that_sets_its_ready_timeout_is_waited_for(platform: LocalPlatform) -> None:
    """Refused connections are retried for readyTimeoutSeconds when the service sets it (it may
    be starting): a listener that opens late is found."""
    port = _free_port()
    listener = socket.socket()

    def open_late() -> None:
        time.sleep(REFUSED_GRACE + 0.5)
        listener.bind(("127.0.0.1", port))
        listener.listen()

    opener = threading.Thread(target=open_late)
    opener.start()
    try:
        session = _session(
            platform, "http", f"http://127.0.0.1:{port}", readyTimeoutSeconds=REFUSED_GRACE + 20
        )
    finally:
        opener.join()
        listener.close()
    assert session.status == Status.Ready, session.message
