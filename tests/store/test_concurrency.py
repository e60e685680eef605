"""The entity store under concurrent use by OS processes and threads: nothing is lost.

Runs on SQLite and on PostgreSQL (see ``tests/postgres.py``).
"""

from __future__ import annotations

import multiprocessing
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from tests.postgres import postgres_schema

from assay.schema.ids import generate_entity_id
from assay.store import EntityStore

PROCESSES = 4
WAIT_S = 120.0
DATABASES = ["sqlite", "postgresql"]


@contextmanager
def fresh_database(kind: str, directory: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a new, empty database: a SQLite file, or a PostgreSQL schema of its own."""
    if kind == "sqlite":
        yield f"sqlite:///{directory / 'assay.db'}"
        return
    with postgres_schema(request.getfixturevalue("postgres_url")) as url:
        yield url


@pytest.fixture(params=DATABASES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path, request) as fresh:
        yield fresh


def _add_labels(url: str, entity: str, worker: int, count: int, start: Any) -> None:
    """Process body: add ``count`` labels of its own to the same entity, one update each."""
    with EntityStore(url) as store:
        start.wait(WAIT_S)
        for i in range(count):

            def add(doc: dict[str, Any], key: str = f"w{worker}-l{i}") -> dict[str, Any]:
                doc["labels"][key] = str(worker)
                return doc

            store.update(entity, add)


def _create_entities(url: str, worker: int, count: int, start: Any) -> None:
    """Process body: create ``count`` entities, one transaction each."""
    with EntityStore(url) as store:
        start.wait(WAIT_S)
        for i in range(count):
            store.create(
                {
                    "id": generate_entity_id(),
                    "kind": "Dataset",
                    "account": f"worker-{worker}",
                    "labels": {"i": str(i)},
                },
                refs={"dataset": [generate_entity_id()]},
            )


def _claim(url: str, entity: str, worker: int, start: Any, results: Any) -> None:
    """Process body: try to claim the entity; report whether it succeeded."""
    with EntityStore(url) as store:
        start.wait(WAIT_S)
        results.put((worker, store.claim(entity, f"worker-{worker}", ttl=600)))


def run_processes(
    monkeypatch: pytest.MonkeyPatch,
    target: Callable[..., None],
    args: Callable[[int, Any], tuple[Any, ...]],
) -> None:
    """Run ``target`` in PROCESSES fresh (spawned) interpreters, released together by a
    barrier; fail if any of them fails."""
    # Spawned children import this module by its name: put its root on their sys.path.
    root = Path(__file__).resolve().parents[len(__name__.split(".")) - 1]
    monkeypatch.setattr(sys, "path", [str(root), *sys.path])
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    workers = [
        context.Process(target=target, args=args(worker, start), name=f"store-worker-{worker}")
        for worker in range(PROCESSES)
    ]
    for process in workers:
        process.start()
    try:
        for process in workers:
            process.join(WAIT_S)
    finally:
        for process in workers:
            if process.is_alive():
                process.kill()
                process.join()
    assert [p.exitcode for p in workers] == [0] * PROCESSES


def test_label_updates_from_four_processes_are_all_kept(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    entity = generate_entity_id()
    with EntityStore(url) as store:
        store.create({"id": entity, "kind": "Dataset", "account": "alice", "labels": {}})
    run_processes(monkeypatch, _add_labels, lambda w, start: (url, entity, w, 50, start))
    with EntityStore(url) as store:
        record = store.require(entity)
        assert len(record.doc["labels"]) == PROCESSES * 50
        assert record.version == 1 + PROCESSES * 50
        assert store.count(labels={"w3-l49": "3"}) == 1


def test_creates_from_four_processes_are_all_kept(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    EntityStore(url).close()
    run_processes(monkeypatch, _create_entities, lambda w, start: (url, w, 250, start))
    with EntityStore(url) as store:
        assert store.count() == PROCESSES * 250
        assert store.count(account="worker-2") == 250
        assert store.count(labels={"i": "249"}) == PROCESSES
        assert len(store.query(after=store.query(limit=1)[0]["id"])) == PROCESSES * 250 - 1


def test_exactly_one_process_wins_a_claim(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    entity = generate_entity_id()
    EntityStore(url).close()
    results = multiprocessing.get_context("spawn").Queue()
    run_processes(monkeypatch, _claim, lambda w, start: (url, entity, w, start, results))
    outcomes = dict(results.get(timeout=WAIT_S) for _ in range(PROCESSES))
    winners = [worker for worker, won in outcomes.items() if won]
    assert len(winners) == 1
    with EntityStore(url) as store:
        owner = store.claim_owner(entity)
        assert owner is not None and owner[0] == f"worker-{winners[0]}"


def test_concurrent_updates_from_threads_are_all_kept(url: str) -> None:
    with EntityStore(url) as store:
        entity = generate_entity_id()
        store.create({"id": entity, "kind": "Dataset", "account": "alice", "count": 0})

        def increment(doc: dict[str, Any]) -> dict[str, Any]:
            doc["count"] += 1
            return doc

        def work(_: int) -> None:
            for _ in range(25):
                store.update(entity, increment)

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(work, range(8)))
        assert store.require(entity).doc["count"] == 200
        assert store.require(entity).version == 201


def test_exactly_one_thread_wins_a_claim(url: str) -> None:
    entity = generate_entity_id()
    stores = [EntityStore(url) for _ in range(8)]
    try:
        start = threading.Barrier(len(stores))

        def attempt(index: int) -> bool:
            start.wait(WAIT_S)
            return stores[index].claim(entity, f"thread-{index}", ttl=600)

        with ThreadPoolExecutor(max_workers=len(stores)) as pool:
            outcomes = list(pool.map(attempt, range(len(stores))))
        assert outcomes.count(True) == 1
        owner = stores[0].claim_owner(entity)
        assert owner is not None and owner[0] == f"thread-{outcomes.index(True)}"
    finally:
        for store in stores:
            store.close()
