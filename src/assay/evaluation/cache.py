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
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol

from assay.evaluation.outcomes import Answers, BadRequest

__all__ = ["FLUSH_SECONDS", "CachedDispatcher", "ResponseCache", "request_key", "service_key"]

#: Seconds between two writes of the answers received meanwhile.
FLUSH_SECONDS = 0.2

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
    answered: int

    def submit_answers(
        self,
        requests: list[JSONObject | BadRequest],
        on_answer: Callable[[list[int], list[list[JSONObject]]], None] | None = None,
    ) -> Future[Answers]: ...

    def close(self) -> None: ...


def service_key(core: Any, service: Any) -> str:
    """What the service *is*, as a digest: its runner (kind and configuration, the Modules
    it names by the digests of their files, not their ids), its interface and its model.
    Two services made alike (a script run again makes new entities) have the same key, so a
    re-run finds the answers of the first run; a changed file, URL, model or setting makes a
    new key."""
    runner = service.runner
    dumped = runner.model_dump(mode="json", exclude_none=True) if runner is not None else None
    if dumped is not None:
        configuration = dict(dumped.get("configuration") or {})

        def files(module: Any) -> Any:
            if not isinstance(module, str) or core.store.get(module) is None:
                return module
            listed = core.storage.list(module, md5=True)
            return sorted([f.path, f.md5] for f in listed if not f.path.startswith(".assay/"))

        if "module" in configuration:
            configuration["module"] = files(configuration["module"])
        if isinstance(configuration.get("modules"), list):
            configuration["modules"] = [files(m) for m in configuration["modules"]]
        dumped["configuration"] = configuration
    spec = {
        "runner": dumped,
        "interface": service.interface.model_dump(mode="json", exclude_none=True),
        "model": service.model.id if service.model is not None else None,
    }
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class CachedDispatcher:
    """Answers the requests it has seen from the cache and sends only the others; keeps each
    new answer as it arrives (a run stopped half-way keeps what it was told).

    Answers are kept per replication: the ``r``-th replication of an instance finds the
    ``r``-th answer of an earlier run, never another replication's."""

    def __init__(self, inner: _Dispatcher, cache: ResponseCache, scope: str) -> None:
        self._inner = inner
        self._cache = cache
        self._scope = scope
        self.hits = 0
        self._fresh: dict[str, list[JSONObject]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._flusher = threading.Thread(
            target=self._flush_often, name="assay-response-cache", daemon=True
        )
        self._flusher.start()

    def __getattr__(self, name: str) -> Any:  # retries, describe, finishing, capacity ...
        return getattr(self._inner, name)

    @property
    def answered(self) -> int:
        return self.hits + self._inner.answered

    def submit_part(
        self, requests: list[JSONObject | BadRequest], replication: int
    ) -> Future[Answers]:
        scope = f"{self._scope}\n{replication}"
        keys = [None if isinstance(r, BadRequest) else request_key(scope, r) for r in requests]
        cached = self._cache.get_many([k for k in keys if k is not None])
        hits = [i for i, k in enumerate(keys) if k is not None and k in cached]
        self.hits += len(hits)
        misses = [i for i, k in enumerate(keys) if k is None or k not in cached]
        result: Future[Answers] = Future()

        def keep(positions: list[int], responses: list[list[JSONObject]]) -> None:
            with self._lock:
                for p, items in zip(positions, responses, strict=True):
                    key = keys[misses[p]]
                    if key is not None:
                        self._fresh[key] = items

        def merge(inner: Future[Answers]) -> None:
            try:
                sent = inner.result()
            except BaseException as exc:
                result.set_exception(exc)
                return
            answers = Answers([[]] * len(requests), {})
            for i in hits:
                answers.responses[i] = cached[keys[i]]  # type: ignore[index]
                answers.attempts[i] = 0
            for p, i in enumerate(misses):
                if p in sent.failed:
                    answers.failed[i] = sent.failed[p]
                    continue
                answers.responses[i] = sent.responses[p]
                if p in sent.attempts:
                    answers.attempts[i] = sent.attempts[p]
                if sent.latency is not None:
                    answers.took([i], sent.latency[p])
                if p in sent.usage:
                    answers.usage[i] = sent.usage[p]
            result.set_result(answers)

        self._inner.submit_answers([requests[i] for i in misses], on_answer=keep).add_done_callback(
            merge
        )
        return result

    def _flush_often(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            self.flush()

    def flush(self) -> None:
        """Keep the answers received since the last flush."""
        with self._lock:
            fresh, self._fresh = self._fresh, {}
        if not fresh:
            return
        try:
            self._cache.put_many(fresh)
        except sqlite3.Error as exc:  # a cache that cannot be written loses nothing else
            self._error = exc

    def close(self) -> None:
        self._stop.set()
        self._flusher.join(timeout=10)
        try:
            self.flush()
        finally:
            self._inner.close()
