"""Fixtures: a fresh server (in-process, its own data directory) per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from tests.server.helpers import Caller, Server, build_world

from assay.server import ServerSettings, create_app

ALICE = "alice"
BOB = "bob"


@pytest.fixture
def settings(tmp_path: Path) -> ServerSettings:
    return ServerSettings(data_dir=tmp_path / "data", shutdown_timeout=20, executor="threads")


@pytest.fixture
def server(settings: ServerSettings) -> Iterator[Server]:
    with TestClient(create_app(settings)) as client:
        yield Server(client, settings)


@pytest.fixture
def alice(server: Server) -> Caller:
    return server.as_account(ALICE)


@pytest.fixture
def bob(server: Server) -> Caller:
    return server.as_account(BOB)


@pytest.fixture
def world(server: Server, alice: Caller) -> dict[str, str]:
    """One entity of every kind, owned by alice."""
    return build_world(server, alice, ALICE)
