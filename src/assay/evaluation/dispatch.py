"""Sending requests to a session's replicas: in-process (mocks) and over HTTP.

Both take the requests of one part and give back what became of each instance: one
:class:`Outcome` per instance (``submit``), or the same column-wise as :class:`Answers`
(``submit_answers``, what the workflow writes from: no object per instance). The HTTP
dispatcher also takes a part whose requests are its rows as they are (``submit_rows``): their
bodies are then made column-wise by Arrow (``bodies.py``), with no dict per instance.

The in-process dispatcher hands a whole part to the service's ``infer_batch`` and checks the
replies column-wise (:meth:`Responder.many`); only the instances that need it go one by one.
The HTTP dispatcher keeps ``concurrency`` requests in flight over one aiohttp session (uvloop
where installed) from its own event-loop thread: as many worker coroutines take jobs (one
request each) from one queue, parts in the order submitted — no task per instance, and no gap
at part boundaries. It sends ``requestBatchSize`` instances per request where the replica
accepts batches and spreads requests over the replicas in turn. A batch that fails as a whole
is retried as a whole (after its back-off, its worker free meanwhile); a batch the service
refuses (400) is retried instance by instance, so one bad instance does not sink its
neighbours.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Awaitable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from assay import errors
from assay.evaluation.bodies import RowBodies
from assay.evaluation.outcomes import (
    SERVICE_ERROR_REPEATS,
    Answers,
    BadRequest,
    FatalError,
    Outcome,
    Repeats,
    Responder,
    RetryPolicy,
    TransientError,
)

if TYPE_CHECKING:
    import aiohttp
    import pyarrow

    from assay.inference.runners.base import ReplicaHandle

__all__ = ["HTTPDispatcher", "InProcessDispatcher", "Request"]

JSONObject = dict[str, Any]
#: A prepared request, or the BadRequest that stopped it being made.
Request = JSONObject | BadRequest


def _bad(answers: Answers, requests: list[Request]) -> list[int]:
    """Record the instances whose request could not be made; return the others' positions."""
    if set(map(type, requests)) <= {dict}:  # the usual case, without a loop in Python
        return list(range(len(requests)))
    ready = []
    for i, request in enumerate(requests):
        if isinstance(request, BadRequest):
            answers.failed[i] = Outcome(error=str(request), kind="BadRequest", attempts=0)
        else:
            ready.append(i)
    return ready


def _unanswered(n: int) -> Answers:
    # One shared empty list: responses are replaced, never appended to.
    return Answers([[]] * n, {})


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
            future.set_result(self.answer(requests).outcomes())
        except BaseException as exc:
            future.set_exception(exc)
        return future

    def submit_answers(self, requests: list[Request]) -> Future[Answers]:
        """Like :meth:`submit`, the outcomes column-wise (what the workflow writes from)."""
        future: Future[Answers] = Future()
        try:
            future.set_result(self.answer(requests))
        except BaseException as exc:
            future.set_exception(exc)
        return future

    def run(self, requests: list[Request]) -> list[Outcome]:
        return self.answer(requests).outcomes()

    def answer(self, requests: list[Request]) -> Answers:
        """The part's answers: the whole part in one ``infer_batch`` call where the service
        has one, its replies checked column-wise; the instances that need it one by one."""
        answers = _unanswered(len(requests))
        todo = _bad(answers, requests)
        service = next(self._services)
        batch = getattr(service, "infer_batch", None)
        retry: list[int] = todo
        if callable(batch) and todo:
            retry = []
            sent = requests if len(todo) == len(requests) else [requests[i] for i in todo]
            try:
                replies = batch(self._endpoint, sent)
            except Exception:
                replies = None
            if not isinstance(replies, list) or len(replies) != len(todo):
                retry = todo
            elif (fast := self._responder.many(replies)) is not None:
                answers.answer(todo, fast)
            else:
                for i, reply in zip(todo, replies, strict=True):
                    try:
                        answers.responses[i] = self._responder(reply)
                    except TransientError:
                        retry.append(i)
        for i in retry:
            outcome = self._one(service, requests[i])  # type: ignore[arg-type]
            if outcome.responses is None:
                answers.failed[i] = outcome
            else:
                answers.responses[i] = outcome.responses
        return answers

    def _one(self, service: Any, request: JSONObject) -> Outcome:
        attempt = 0
        repeats = Repeats()
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
                problem = TransientError(_text(exc), service_error=True)
            count = repeats.see(problem)
            if count >= SERVICE_ERROR_REPEATS:
                return Outcome(
                    error=Repeats.message(count, problem), kind="ServiceError", attempts=attempt
                )
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


class _Part:
    """One part in flight over HTTP: its requests (or, for rows sent as they are, their
    bodies made column-wise), its answers so far, and how many of its jobs are not
    finished."""

    __slots__ = ("answers", "bodies", "future", "left", "requests")

    def __init__(
        self, requests: list[Request], bodies: RowBodies | None, future: Future[Answers]
    ) -> None:
        self.requests = requests
        self.bodies = bodies
        self.answers = _unanswered(len(bodies) if bodies is not None else len(requests))
        self.future = future
        self.left = 0

    def body(self, positions: list[int], batch: bool) -> bytes:
        """The body of a request for the instances at ``positions`` (``batch``: one
        ``/batch`` request for all of them)."""
        if self.bodies is not None:
            return self.bodies.one(positions[0]) if not batch else _join(self.bodies, positions)
        if batch:
            return _encode([self.requests[i] for i in positions])
        return _encode(self.requests[positions[0]])

    def finish_job(self) -> None:
        self.left -= 1
        if self.left == 0 and not self.future.done():
            self.future.set_result(self.answers)

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


class _Job:
    """Some instances of a part to send: one request (``batch``: one ``/batch`` request for
    all of them), the ``attempt`` about to be made, the body once encoded."""

    __slots__ = ("attempt", "batch", "body", "part", "positions", "repeats")

    def __init__(self, part: _Part, positions: list[int], batch: bool) -> None:
        self.part = part
        self.positions = positions
        self.batch = batch
        self.attempt = 1
        self.body: bytes | None = None
        self.repeats = Repeats()


class HTTPDispatcher:
    """Sends requests over HTTP with bounded concurrency, from an event-loop thread.

    ``concurrency`` worker coroutines take jobs (one request each) from one queue, parts in
    the order they were submitted, so the replicas stay busy across part boundaries; no task
    per instance. A job that fails transiently goes back to the queue after its back-off,
    leaving its worker free meanwhile.
    """

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
        self._cycle = itertools.cycle(range(len(handles)))  # positions in handles
        self._endpoint = endpoint.strip("/")
        self._responder = responder
        self._policy = policy
        self._concurrency = max(1, concurrency)
        self._timeout = request_timeout
        self._batch_size = batch_size if all(h.batching for h in handles) else 1
        self._headers = [{"Content-Type": "application/json", **h.headers} for h in handles]
        self._loop = _new_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="assay-evaluation-http", daemon=True
        )
        self._thread.start()
        self._session: aiohttp.ClientSession | None = None
        self._queue: asyncio.Queue[_Job] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._call(self._open())

    @property
    def capacity(self) -> int:
        """Instances in flight when every worker is busy."""
        return self._concurrency * self._batch_size

    def _call(self, coroutine: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()  # type: ignore[arg-type]

    async def _open(self) -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self._concurrency, limit_per_host=self._concurrency)
        timeout = aiohttp.ClientTimeout(total=self._timeout or None)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        self._queue = asyncio.Queue()
        self._workers = [asyncio.create_task(self._work()) for _ in range(self._concurrency)]

    def submit(self, requests: list[Request]) -> Future[list[Outcome]]:
        result: Future[list[Outcome]] = Future()

        def convert(done: Future[Answers]) -> None:
            try:
                result.set_result(done.result().outcomes())
            except BaseException as exc:
                result.set_exception(exc)

        self.submit_answers(requests).add_done_callback(convert)
        return result

    def submit_answers(self, requests: list[Request]) -> Future[Answers]:
        """Like :meth:`submit`, the outcomes column-wise (what the workflow writes from)."""
        future: Future[Answers] = Future()
        self._loop.call_soon_threadsafe(self._enqueue, _Part(requests, None, future))
        return future

    def submit_rows(self, batch: pyarrow.RecordBatch) -> Future[Answers] | None:
        """Like :meth:`submit_answers` for a part whose requests are its rows as they are
        (no input pipeline): the bodies are made column-wise in the caller's thread
        (:class:`RowBodies`), not one dict at a time. None, with nothing sent, where the rows
        have a column type that is not made so: send ``batch.to_pylist()`` then."""
        bodies = RowBodies.of(batch, self._batch_size)
        if bodies is None:
            return None
        future: Future[Answers] = Future()
        self._loop.call_soon_threadsafe(self._enqueue, _Part([], bodies, future))
        return future

    def run(self, requests: list[Request]) -> list[Outcome]:
        return self.submit(requests).result()

    def _enqueue(self, part: _Part) -> None:
        assert self._queue is not None
        size = self._batch_size
        jobs: list[_Job]
        if part.bodies is not None:  # the bodies of the usual cut are made already
            n = len(part.bodies)
            jobs = []
            for k, body in enumerate(part.bodies.batches):
                job = _Job(part, list(range(k * size, min(n, (k + 1) * size))), size > 1)
                job.body = body
                jobs.append(job)
            self._queue_jobs(part, jobs)
            return
        todo = _bad(part.answers, part.requests)
        if size > 1:
            jobs = [_Job(part, todo[i : i + size], True) for i in range(0, len(todo), size)]
        else:
            jobs = [_Job(part, [i], False) for i in todo]
        self._queue_jobs(part, jobs)

    def _queue_jobs(self, part: _Part, jobs: list[_Job]) -> None:
        assert self._queue is not None
        part.left = len(jobs) + 1
        for job in jobs:
            self._queue.put_nowait(job)
        part.finish_job()  # the +1 above: a part with no jobs is finished here

    async def _work(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            job = await queue.get()
            if job.part.future.done():  # the part failed already
                continue
            try:
                if job.batch:
                    await self._send_batch(job)
                else:
                    await self._send_one(job)
            except Exception as exc:  # FatalError, or a bug: the part fails with it
                job.part.fail(exc)

    def _later(self, job: _Job, exc: TransientError) -> None:
        """Retry ``job`` after its back-off, or record that it gave up. A request that the
        service fails the same way again is not retried as it is: a batch is sent one
        instance at a time (to find the one it cannot handle), and one instance counts as
        failed after ``SERVICE_ERROR_REPEATS`` identical failures."""
        attempt = job.attempt
        count = job.repeats.see(exc)
        if count >= 2 and len(job.positions) > 1:
            self._singles(job, job.positions)
            return
        if count >= SERVICE_ERROR_REPEATS:
            outcome = Outcome(
                error=Repeats.message(count, exc), kind="ServiceError", attempts=attempt
            )
            for i in job.positions:
                job.part.answers.failed[i] = outcome
            job.part.finish_job()
            return
        if attempt > self._policy.limit:
            outcome = Outcome(
                error=f"gave up after {attempt} attempts: {exc}",
                kind="Transient",
                attempts=self._policy.limit + 1,
            )
            for i in job.positions:
                job.part.answers.failed[i] = outcome
            job.part.finish_job()
            return
        job.attempt += 1
        assert self._queue is not None
        delay = self._policy.delay(attempt, exc.retry_after)
        self._loop.call_later(delay, self._queue.put_nowait, job)

    def _singles(self, job: _Job, positions: list[int]) -> None:
        """Send each of ``positions`` on its own (in place of ``job``, which is finished)."""
        assert self._queue is not None
        part = job.part
        part.left += len(positions)
        for i in positions:
            self._queue.put_nowait(_Job(part, [i], False))
        part.finish_job()

    async def _send_one(self, job: _Job) -> None:
        (i,) = job.positions
        part = job.part
        if job.body is None:
            job.body = part.body(job.positions, False)
        index = next(self._cycle)
        handle = self._handles[index]
        path = f"/infer/{self._endpoint}" if handle.style == "replica" else f"/{self._endpoint}"
        try:
            responses = self._responder(await self._post(handle, index, path, job.body))
        except TransientError as exc:
            self._later(job, exc)
            return
        except BadRequest as exc:
            part.answers.failed[i] = Outcome(
                error=str(exc), kind="BadRequest", attempts=job.attempt
            )
            part.finish_job()
            return
        part.answers.responses[i] = responses
        if job.attempt > 1:
            part.answers.attempts[i] = job.attempt
        part.finish_job()

    async def _send_batch(self, job: _Job) -> None:
        part, positions = job.part, job.positions
        if job.body is None:
            job.body = part.body(positions, True)
        index = next(self._cycle)
        handle = self._handles[index]
        try:
            replies = await self._post(handle, index, f"/batch/{self._endpoint}", job.body)
            if not isinstance(replies, list) or len(replies) != len(positions):
                raise TransientError(f"malformed batch reply: expected {len(positions)} replies")
        except TransientError as exc:
            self._later(job, exc)
            return
        except BadRequest:  # someone in the batch is refused: find out who, one by one
            self._singles(job, positions)
            return
        responses = part.answers.responses
        fast = self._responder.many(replies)
        redo = []
        if fast is not None:
            part.answers.answer(positions, fast)
        else:
            for i, reply in zip(positions, replies, strict=True):
                try:
                    responses[i] = self._responder(reply)
                except TransientError:
                    redo.append(i)
        if job.attempt > 1:
            for i in positions:
                if i not in redo:
                    part.answers.attempts[i] = job.attempt
        if redo:
            self._singles(job, redo)
        else:
            part.finish_job()

    async def _post(self, handle: ReplicaHandle, index: int, path: str, payload: bytes) -> Any:
        import aiohttp

        assert self._session is not None
        try:
            async with self._session.post(
                f"{handle.url}{path}", data=payload, headers=self._headers[index]
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
            # 500: the service failed (502-504: a proxy, overload or a timeout in between)
            raise TransientError(f"HTTP {status}: {detail}", after, service_error=status == 500)
        if status in (401, 403):
            raise FatalError(f"the service refused the credentials (HTTP {status}): {detail}")
        raise BadRequest(f"HTTP {status}: {detail}")

    def close(self) -> None:
        async def shut() -> None:
            for worker in self._workers:
                worker.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
            if self._session is not None:
                await self._session.close()

        try:
            self._call(shut())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()


def _encode(body: Any) -> bytes:
    """A request body: compact JSON (what the replica reads fastest; encoded once per job)."""
    return _ENCODER.encode(body).encode()


def _join(bodies: RowBodies, positions: list[int]) -> bytes:
    """The body of one ``/batch`` request for the rows at ``positions``, for a cut other than
    the usual one (whose bodies :class:`RowBodies` made already)."""
    return b"[" + b",".join(bodies.one(i) for i in positions) + b"]"


_ENCODER = json.JSONEncoder(separators=(",", ":"))


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
