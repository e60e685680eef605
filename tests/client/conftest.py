"""Fixtures: one real server for the whole module set (uvicorn on a free loopback port, in a
thread, on a fresh data directory), and a ``Client`` per account speaking real HTTP to it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from assay.client import Client
from assay.core.platform import PlatformCore
from assay.server import ServerSettings, create_app, issue_token

ALICE = "alice"
BOB = "bob"


@dataclass
class LiveServer:
    """A running server: its URL and its platform core (to issue tokens)."""

    url: str
    core: PlatformCore
    data_dir: Path

    def token(self, account: str, grants: list[dict[str, Any]] | None = None) -> str:
        return issue_token(self.core, account=account, grants=grants)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    import uvicorn

    data = tmp_path_factory.mktemp("server") / "data"
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # the port it listens on: the base of its signed URLs (never a request's Host header)
    settings = ServerSettings(data_dir=data, port=port, shutdown_timeout=20, log_level="warning")
    app = create_app(settings)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive(), "the server thread ended before it started"
        assert time.monotonic() < deadline, "the server did not start within 60 s"
        time.sleep(0.02)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", app.state.assay.core, data)
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()


@pytest.fixture
def make_client(live_server: LiveServer, tmp_path: Path) -> Iterator[Callable[..., Client]]:
    """Clients for accounts (closed after the test); ``token=`` gives one a token of its own."""
    made: list[Client] = []

    def make(account: str = ALICE, *, token: str | None = None, **kwargs: Any) -> Client:
        kwargs.setdefault("progress", False)
        kwargs.setdefault("cache_dir", tmp_path / "cache")
        client = Client(live_server.url, token or live_server.token(account), **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def alice(make_client: Callable[..., Client]) -> Client:
    return make_client(ALICE)


@pytest.fixture
def bob(make_client: Callable[..., Client]) -> Client:
    return make_client(BOB)
