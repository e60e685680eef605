"""Sending requests to a session's replicas: in-process (mocks) and over HTTP.

Both take the requests of one part and give back one :class:`Outcome` per instance. The HTTP
dispatcher keeps ``concurrency`` requests in flight over one aiohttp session (uvloop where
installed) in its own event-loop thread, sends ``requestBatchSize`` instances per request where
the replica accepts batches, and spreads requests over the replicas in turn. A batch that
fails as a whole is retried as a whole; a batch the service refuses (400) is retried instance
by instance, so one bad instance does not sink its neighbours.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from assay import errors
from assay.evaluation.outcomes import (
    BadRequest,
    FatalError,
    Outcome,
    Responder,
    RetryPolicy,
    TransientError,
)

if TYPE_CHECKING:
    import aiohttp

    from assay.inference.runners.base import ReplicaHandle

__all__ = ["HTTPDispatcher", "InProcessDispatcher", "Request"]

JSONObject = dict[str, Any]
#: A prepared request, or the BadRequest that stopped it being made.
Request = JSONObject | BadRequest


def _bad(outcomes: list[Outcome | None], requests: list[Request]) -> list[int]:
    """Fill in the instances whose request could not be made; return the others' positions."""
    ready = []
    for i, request in enumerate(requests):
        if isinstance(request, BadRequest):
            outcomes[i] = Outcome(error=str(request), kind="BadRequest", attempts=0)
        else:
            ready.append(i)
    return ready


class InProcessDispatcher:
    """Calls in-process services (mocks) directly: no HTTP, no event loop."""

    def __init__(
        self, handles: list[ReplicaHandle], endpoint: str, responder: Responder, policy: RetryPolicy
    ) -> None:
        self._services = itertools.cycle([h.service for h in handles])
        self._endpoint = endpoint
        self._responder = responder
        self._policy = policy

    def submit(self, requests: list[Request]) -> Future[list[Outcome]]:
        future: Future[list[Outcome]] = Future()
        try:
            future.set_result(self.run(requests))
        except BaseException as exc:
            future.set_exception(exc)
        return future

    def run(self, requests: list[Request]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(requests)
        todo = _bad(outcomes, requests)
        service = next(self._services)
        batch = getattr(service, "infer_batch", None)
        retry: list[int] = todo
        if callable(batch) and todo:
            retry = []
            try:
                replies = batch(self._endpoint, [requests[i] for i in todo])
            except Exception:
                replies = None
            if replies is None or len(replies) != len(todo):
                retry = todo
            else:
                for i, reply in zip(todo, replies, strict=True):
                    try:
                        outcomes[i] = Outcome(responses=self._responder(reply))
                    except TransientError:
                        retry.append(i)
        for i in retry:
            outcomes[i] = self._one(service, requests[i])  # type: ignore[arg-type]
        return outcomes  # type: ignore[return-value]

    def _one(self, service: Any, request: JSONObject) -> Outcome:
        attempt = 0
        while True:
            attempt += 1
            try:
                return Outcome(
                    responses=self._responder(service.infer(self._endpoint, request)),
                    attempts=attempt,
                )
            except errors.UnavailableError as exc:
                problem = TransientError(str(exc), exc.retry_after)
            except TransientError as exc:
                problem = exc
            except (errors.ValidationError, KeyError, TypeError, ValueError) as exc:
                return Outcome(error=_text(exc), kind="BadRequest", attempts=attempt)
            except errors.AssayError as exc:
                raise FatalError(str(exc)) from None
            except Exception as exc:  # a service bug: like an HTTP 500, worth another try
                problem = TransientError(_text(exc))
            if attempt > self._policy.limit:
                return Outcome(
                    error=f"gave up after {attempt} attempts: {problem}",
                    kind="Transient",
                    attempts=attempt,
                )
            time.sleep(self._policy.delay(attempt, problem.retry_after))

    def close(self) -> None:
        pass


def _text(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, errors.AssayError) else f"{type(exc).__name__}: {exc}"


class HTTPDispatcher:
    """Sends requests over HTTP with bounded concurrency, from an event-loop thread."""

    def __init__(
        self,
        handles: list[ReplicaHandle],
        endpoint: str,
        responder: Responder,
        policy: RetryPolicy,
        *,
        concurrency: int,
        request_timeout: float,
        batch_size: int,
    ) -> None:
        self._handles = handles
        self._cycle = itertools.cycle(handles)
        self._endpoint = endpoint.strip("/")
        self._responder = responder
        self._policy = policy
        self._concurrency = max(1, concurrency)
        self._timeout = request_timeout
        self._batch_size = batch_size if all(h.batching for h in handles) else 1
        self._loop = _new_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="assay-evaluation-http", daemon=True
        )
        self._thread.start()
        self._session: aiohttp.ClientSession | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._call(self._open())

    def _call(self, coroutine: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()  # type: ignore[arg-type]

    async def _open(self) -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self._concurrency, limit_per_host=self._concurrency)
        timeout = aiohttp.ClientTimeout(total=self._timeout or None)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        self._semaphore = asyncio.Semaphore(self._concurrency)

    def submit(self, requests: list[Request]) -> Future[list[Outcome]]:
        return asyncio.run_coroutine_threadsafe(self._unit(requests), self._loop)

    def run(self, requests: list[Request]) -> list[Outcome]:
        return self.submit(requests).result()

    async def _unit(self, requests: list[Request]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(requests)
        todo = _bad(outcomes, requests)
        if self._batch_size > 1:
            chunks = [todo[i : i + self._batch_size] for i in range(0, len(todo), self._batch_size)]
            jobs = [self._batch(chunk, requests, outcomes) for chunk in chunks]
        else:
            jobs = [self._single(i, requests, outcomes) for i in todo]
        await asyncio.gather(*jobs)
        return outcomes  # type: ignore[return-value]

    async def _retrying(self, send: Callable[[], Awaitable[Any]]) -> tuple[Any, int]:
        """``send()`` until it succeeds; TransientError after the retry limit."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await send(), attempt
            except TransientError as exc:
                if attempt > self._policy.limit:
                    raise TransientError(f"gave up after {attempt} attempts: {exc}") from None
                await asyncio.sleep(self._policy.delay(attempt, exc.retry_after))

    async def _single(
        self, i: int, requests: list[Request], outcomes: list[Outcome | None]
    ) -> None:
        request = requests[i]

        async def send() -> list[JSONObject]:
            handle = next(self._cycle)
            path = f"/infer/{self._endpoint}" if handle.style == "replica" else f"/{self._endpoint}"
            return self._responder(await self._post(handle, path, request))

        try:
            responses, attempts = await self._retrying(send)
            outcomes[i] = Outcome(responses=responses, attempts=attempts)
        except TransientError as exc:
            outcomes[i] = Outcome(error=str(exc), kind="Transient", attempts=self._policy.limit + 1)
        except BadRequest as exc:
            outcomes[i] = Outcome(error=str(exc), kind="BadRequest")

    async def _batch(
        self, chunk: list[int], requests: list[Request], outcomes: list[Outcome | None]
    ) -> None:
        body = [requests[i] for i in chunk]

        async def send() -> list[Any]:
            handle = next(self._cycle)
            replies = await self._post(handle, f"/batch/{self._endpoint}", body)
            if not isinstance(replies, list) or len(replies) != len(chunk):
                raise TransientError(f"malformed batch reply: expected {len(chunk)} replies")
            return replies

        try:
            replies, attempts = await self._retrying(send)
        except BadRequest:  # someone in the batch is refused: find out who, one by one
            await asyncio.gather(*(self._single(i, requests, outcomes) for i in chunk))
            return
        except TransientError as exc:
            for i in chunk:
                outcomes[i] = Outcome(
                    error=str(exc), kind="Transient", attempts=self._policy.limit + 1
                )
            return
        redo = []
        for i, reply in zip(chunk, replies, strict=True):
            try:
                outcomes[i] = Outcome(responses=self._responder(reply), attempts=attempts)
            except TransientError:
                redo.append(i)
        if redo:
            await asyncio.gather(*(self._single(i, requests, outcomes) for i in redo))

    async def _post(self, handle: ReplicaHandle, path: str, body: Any) -> Any:
        import aiohttp

        assert self._session is not None and self._semaphore is not None
        headers = {"Content-Type": "application/json", **handle.headers}
        payload = json.dumps(body)
        async with self._semaphore:
            try:
                async with self._session.post(
                    f"{handle.url}{path}", data=payload, headers=headers
                ) as reply:
                    status = reply.status
                    content = await reply.read()
                    retry_after = reply.headers.get("Retry-After")
            except TimeoutError:
                raise TransientError(f"no answer within {self._timeout:g} s") from None
            except aiohttp.ClientError as exc:
                raise TransientError(f"{type(exc).__name__}: {exc}") from None
        if 200 <= status < 300:
            try:
                return json.loads(content)
            except ValueError:
                raise TransientError(f"malformed reply: not JSON ({content[:80]!r})") from None
        detail = _detail(content)
        if status in (408, 429) or status >= 500:
            after = (
                float(retry_after)
                if retry_after and retry_after.replace(".", "", 1).isdigit()
                else None
            )
            raise TransientError(f"HTTP {status}: {detail}", after)
        if status in (401, 403):
            raise FatalError(f"the service refused the credentials (HTTP {status}): {detail}")
        raise BadRequest(f"HTTP {status}: {detail}")

    def close(self) -> None:
        async def shut() -> None:
            if self._session is not None:
                await self._session.close()

        try:
            self._call(shut())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()


def _detail(content: bytes) -> str:
    try:
        body = json.loads(content)
    except ValueError:
        return content[:200].decode("utf-8", "replace")
    if isinstance(body, dict):
        if "detail" in body:
            return str(body["detail"])
        error = body.get("error")
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
    return json.dumps(body)[:200]


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is installed where it exists
        return asyncio.new_event_loop()
