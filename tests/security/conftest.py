"""Fixtures of the attack tests: a real ``assay serve`` with its multi-user defaults and two
accounts — ``alice`` (the victim) and ``bob`` (the attacker, with an ordinary token).

Each test module gets its own server (``attack_server``), so an attack that damages it cannot
hide another test's result. ``alice`` and ``bob`` are ``assay.client.Client`` objects over real
HTTP; ``server.data`` is the data directory (where the key and the database are).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.server.loopback import Served, serve

from assay.client import Client

ALICE = "alice"
BOB = "bob"


@pytest.fixture(scope="module")
def attack_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(tmp_path_factory.mktemp("attack")) as served:
        yield served


@pytest.fixture(scope="module")
def alice(attack_server: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with Client(
        attack_server.url,
        attack_server.token(ALICE),
        progress=False,
        cache_dir=tmp_path_factory.mktemp("alice-cache"),
    ) as client:
        yield client


@pytest.fixture(scope="module")
def bob(attack_server: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with Client(
        attack_server.url,
        attack_server.token(BOB),
        progress=False,
        cache_dir=tmp_path_factory.mktemp("bob-cache"),
    ) as client:
        yield client


def secret_key(served: Served) -> bytes:
    """The server's token-signing key, as the attacker would like to read it."""
    return (Path(served.data) / ".assay" / "secret.key").read_bytes()
