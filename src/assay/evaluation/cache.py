"""The response cache: answers kept by (service, endpoint, request), so that re-running an
audit against a paid API costs nothing for the answers already received.

An evaluation uses it when ``client.cache`` is true. A cached answer is the list of
responses the interface's output pipeline made from the service's reply (what the output
holds); only successful answers are kept. The cache is one SQLite file in the platform's data
directory (``.assay/cache/responses.db``), shared by every evaluation and safe across
processes.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol

from assay.evaluation.outcomes import BadRequest, Outcome

__all__ = ["CachedDispatcher", "ResponseCache", "request_key"]

JSONObject = dict[str, Any]


def request_key(scope: str, request: JSONObject) -> str:
    """The cache key of ``request`` within ``scope`` (service and endpoint)."""
    body = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{scope}\n{body}".encode()).hexdigest()


class ResponseCache:
    """Responses by key, in one SQLite file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        self._db.execute("pragma journal_mode=wal")
        self._db.execute("pragma synchronous=normal")
        self._db.execute(
            "create table if not exists responses (key text primary key, responses text not null, created real not null)"
        )
        self._lock = threading.Lock()

    def get_many(self, keys: list[str]) -> dict[str, list[JSONObject]]:
        found: dict[str, list[JSONObject]] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for key, value in self._db.execute(
                    f"select key, responses from responses where key in ({marks})", chunk
                ):
                    found[key] = json.loads(value)
        return found

    def put_many(self, items: dict[str, list[JSONObject]]) -> None:
        if not items:
            return
        now = time.time()
        rows = [(k, json.dumps(v, separators=(",", ":")), now) for k, v in items.items()]
        with self._lock:
            self._db.execute("begin")
            self._db.executemany("insert or replace into responses values (?, ?, ?)", rows)
            self._db.execute("commit")

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("select count(*) from responses").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _Dispatcher(Protocol):
    def submit(self, requests: list[JSONObject | BadRequest]) -> Future[list[Outcome]]: ...

    def close(self) -> None: ...


class CachedDispatcher:
    """Answers the requests it has seen from the cache and sends only the others."""

    def __init__(self, inner: _Dispatcher, cache: ResponseCache, scope: str) -> None:
        self._inner = inner
        self._cache = cache
        self._scope = scope
        self.hits = 0

    def submit(self, requests: list[JSONObject | BadRequest]) -> Future[list[Outcome]]:
        keys = [
            None if isinstance(r, BadRequest) else request_key(self._scope, r) for r in requests
        ]
        cached = self._cache.get_many([k for k in keys if k is not None])
        self.hits += sum(1 for k in keys if k is not None and k in cached)
        misses = [i for i, k in enumerate(keys) if k is None or k not in cached]
        result: Future[list[Outcome]] = Future()

        def merge(inner: Future[list[Outcome]]) -> None:
            try:
                sent = inner.result()
            except BaseException as exc:
                result.set_exception(exc)
                return
            outcomes: list[Outcome] = [
                Outcome(responses=cached[k], attempts=0)
                if k is not None and k in cached
                else Outcome()
                for k in keys
            ]
            fresh: dict[str, list[JSONObject]] = {}
            for position, outcome in zip(misses, sent, strict=True):
                outcomes[position] = outcome
                key = keys[position]
                if key is not None and outcome.responses is not None:
                    fresh[key] = outcome.responses
            try:
                self._cache.put_many(fresh)
            except sqlite3.Error as exc:  # a cache that cannot be written loses nothing else
                result.set_exception(exc)
                return
            result.set_result(outcomes)

        if misses:
            self._inner.submit([requests[i] for i in misses]).add_done_callback(merge)
        else:
            done: Future[list[Outcome]] = Future()
            done.set_result([])
            merge(done)
        return result

    def close(self) -> None:
        self._inner.close()
