"""Sending an evaluation's requests over HTTP: one lane per replica, each with its limit.

The HTTP dispatcher keeps one *lane* per replica. A lane has worker coroutines numbered from
0; worker ``k`` sends requests only while ``k`` is below the lane's limit
(:mod:`assay.evaluation.limits`: declared by Assay's replica processes, set by
``workersPerReplica``, or found out for services that run elsewhere). Every worker takes its
next request from one queue, so a faster replica takes more of the work and a dead one none.
Near the end of a run (no more parts to come, and less work queued than the replicas take at
once) batches are cut so that every replica gets a share, and nothing waits in one replica
that another could run at once: the last requests do not queue behind each other.

A request's timeout counts from when the replica can take it: a request sent to a replica
that is busy with others waits its turn there, and its timeout grows by one
``requestTimeoutSeconds`` per call it waits behind.

A connection to a replica process that fails because the process exited marks its lane dead
(the request goes back to the queue, not counted as an attempt); when every lane is dead the
evaluation fails with the exit code and the replica's last output. A service that refuses
every connection for :data:`DOWN_AFTER` seconds with no answer in between fails it too.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from assay.evaluation.bodies import RowBodies
from assay.evaluation.limits import ADAPTIVE_MOST, AdaptiveLimit, FixedLimit, Limit
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

__all__ = ["DEFAULT_BATCH", "DOWN_AFTER", "VERSION_HEADERS", "HTTPDispatcher"]

JSONObject = dict[str, Any]
Request = JSONObject | BadRequest
#: Called with the positions of a part answered by one request and their responses.
AnswerHook = Callable[[list[int], list[list[JSONObject]]], None]

#: Instances per request where every replica takes batches and nothing else is asked.
DEFAULT_BATCH = 32
#: Reply headers in which a service says which version of itself answered (recorded in the
#: evaluation's provenance, :mod:`assay.provenance`).
VERSION_HEADERS = ("X-Model-Version", "X-Service-Version", "Model-Version", "OpenAI-Version")
#: The most distinct values of one version header remembered.
MAX_VERSIONS = 8
#: Seconds with no answer at all, every connection refused, after which the service is down.
DOWN_AFTER = 60.0
#: Calls of a replica's declared threads that may wait in it (besides those running).
PIPELINE = 2
#: A batch is cut when its instances take longer than this share of the request timeout.
BATCH_TIME_SHARE = 0.25


class _Part:
    """One part in flight: its requests (or, for rows sent as they are, their bodies made
    column-wise), its answers so far, and how many of its jobs are not finished."""

    __slots__ = ("answers", "bodies", "future", "hook", "left", "requests")

    def __init__(
        self,
        requests: list[Request],
        bodies: RowBodies | None,
        future: Future[Answers],
        hook: AnswerHook | None,
    ) -> None:
        self.requests = requests
        self.bodies = bodies
        self.answers = _unanswered(len(bodies) if bodies is not None else len(requests))
        self.future = future
        self.hook = hook
        self.left = 0

    def body(self, positions: list[int], batch: bool) -> bytes:
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
    """Some instances of a part to send in one request (``batch``: a ``/batch`` request)."""

    __slots__ = ("attempt", "batch", "body", "part", "positions", "repeats", "since")

    def __init__(self, part: _Part, positions: list[int], batch: bool) -> None:
        self.part = part
        self.positions = positions
        self.batch = batch
        self.attempt = 1
        self.body: bytes | None = None
        self.repeats = Repeats()
        self.since: float | None = None
        """When it first failed transiently (the retry budget counts from there)."""


class _Queue:
    """The jobs waiting for a worker, oldest first; retried jobs go to the front.

    A job put while workers wait is handed to one of them at once, to a worker of a
    replica's running calls first (``primary``: one of its first ``threads``), so that no
    request waits in one replica behind another while a second replica idles."""

    def __init__(self, changed: Callable[[], None]) -> None:
        self.jobs: deque[_Job] = deque()
        self.instances = 0
        self._waiting: tuple[deque[asyncio.Future[_Job]], ...] = (deque(), deque())
        self._changed = changed

    def put(self, job: _Job, front: bool = False) -> None:
        for waiters in self._waiting:
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():  # (a worker cancelled while it waited)
                    waiter.set_result(job)
                    return
        if front:
            self.jobs.appendleft(job)
        else:
            self.jobs.append(job)
        self.instances += len(job.positions)
        self._changed()

    async def get(self, primary: bool) -> _Job:
        if self.jobs:
            job = self.jobs.popleft()
            self.instances -= len(job.positions)
            self._changed()
            return job
        waiter: asyncio.Future[_Job] = asyncio.get_running_loop().create_future()
        self._waiting[0 if primary else 1].append(waiter)
        return await waiter


class _Lane:
    """One replica: its limit, the requests it has in flight, whether it died."""

    def __init__(self, index: int, handle: ReplicaHandle, limit: Limit, endpoint: str) -> None:
        self.index = index
        self.handle = handle
        self.limit = limit
        self.inflight = 0
        self.dead: str | None = None
        self.headers = {"Content-Type": "application/json", **handle.headers}
        if handle.style == "replica":
            self.one = f"{handle.url}/infer/{endpoint}"
            self.many = f"{handle.url}/batch/{endpoint}"
        else:
            self.one = self.many = f"{handle.url}/{endpoint}"

    def waits(self) -> int:
        """Calls a request sent now waits behind in the replica (0 where unknown)."""
        threads = self.limit.threads
        if not threads:
            return 0
        queued = self.inflight - threads  # ``inflight`` counts the request itself
        return 0 if queued <= 0 else -(-queued // threads)


class HTTPDispatcher:
    """Sends a part's requests over HTTP from an event-loop thread (see the module doc).

    ``concurrency``: requests in flight in all, spread over the replicas (fixed); None: each
    replica's own limit (declared by Assay's replica processes, else adaptive).
    ``batch_size``: instances per request where every replica takes batches; None: the
    platform's choice (:data:`DEFAULT_BATCH`, fewer where a batch would take too long).
    ``log`` receives the lines worth keeping in the evaluation's log.
    """

    def __init__(
        self,
        handles: list[ReplicaHandle],
        endpoint: str,
        responder: Responder,
        policy: RetryPolicy,
        *,
        concurrency: int | None = None,
        request_timeout: float,
        batch_size: int | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self._responder = responder
        #: header → the distinct versions the service said it is (VERSION_HEADERS)
        self.versions: dict[str, list[str]] = {}
        self._policy = policy
        self._timeout = request_timeout
        self._log = log or (lambda line: None)
        batching = all(h.batching for h in handles)
        self._batch = (batch_size or DEFAULT_BATCH) if batching else 1
        self._batch_set = batch_size is not None
        endpoint = endpoint.strip("/")
        per_replica = None if concurrency is None else -(-max(1, concurrency) // len(handles))
        self._lanes = [_Lane(i, h, _limit(h, per_replica), endpoint) for i, h in enumerate(handles)]
        self.retries: Counter[str] = Counter()
        """Requests retried, by kind of transient error."""
        self.answered = 0
        """Instances with an outcome so far (answered or failed)."""
        self._finishing = False
        self._deep = True
        self._fatal: BaseException | None = None
        self._deaths: list[str] = []
        """How each dead replica ended, first death first."""
        self._parts: set[_Part] = set()
        self._loop = _new_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="assay-evaluation-http", daemon=True
        )
        self._thread.start()
        self._session: aiohttp.ClientSession | None = None
        self._queue: _Queue | None = None
        self._wake: asyncio.Event | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._timeouts: dict[int, Any] = {}
        self._last_answer = 0.0
        self._call(self._open())

    def describe(self) -> str:
        """The settings chosen, for the log."""
        limits = ", ".join(f"replica {lane.index}: {lane.limit.describe()}" for lane in self._lanes)
        return (
            f"{len(self._lanes)} replica(s); requests in flight per replica: {limits}; "
            f"{self._batch} instance(s) per request; request timeout "
            f"{self._timeout:g} s from when a replica takes the request"
        )

    @property
    def capacity(self) -> int:
        """Instances in flight when every worker is busy (now)."""
        return self._batch * sum(
            lane.limit.allowed(True) for lane in self._lanes if lane.dead is None
        )

    def _call(self, coroutine: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()  # type: ignore[arg-type]

    async def _open(self) -> None:
        import aiohttp

        most = sum(lane.limit.most for lane in self._lanes)
        connector = aiohttp.TCPConnector(limit=most, limit_per_host=most)
        self._session = aiohttp.ClientSession(connector=connector)
        self._wake = asyncio.Event()
        self._queue = _Queue(self._check_deep)
        self._last_answer = self._loop.time()
        self._workers = [
            asyncio.create_task(self._work(lane, slot))
            for lane in self._lanes
            for slot in range(lane.limit.most)
        ]

    # -- submitting --------------------------------------------------------------------------

    def submit(self, requests: list[Request]) -> Future[list[Outcome]]:
        result: Future[list[Outcome]] = Future()

        def convert(done: Future[Answers]) -> None:
            try:
                result.set_result(done.result().outcomes())
            except BaseException as exc:
                result.set_exception(exc)

        self.submit_answers(requests).add_done_callback(convert)
        return result

    def submit_answers(
        self, requests: list[Request], on_answer: AnswerHook | None = None
    ) -> Future[Answers]:
        """Like :meth:`submit`, the outcomes column-wise (what the workflow writes from);
        ``on_answer`` is called (in the event loop) as each request is answered."""
        future: Future[Answers] = Future()
        self._loop.call_soon_threadsafe(self._enqueue, _Part(requests, None, future, on_answer))
        return future

    def submit_rows(self, batch: pyarrow.RecordBatch) -> Future[Answers] | None:
        """Like :meth:`submit_answers` for a part whose requests are its rows as they are
        (no input pipeline): the bodies are made column-wise in the caller's thread
        (:class:`RowBodies`). None, with nothing sent, where the rows have a column type
        that is not made so: send ``batch.to_pylist()`` then."""
        bodies = RowBodies.of(batch, self._batch)
        if bodies is None:
            return None
        future: Future[Answers] = Future()
        self._loop.call_soon_threadsafe(self._enqueue, _Part([], bodies, future, None))
        return future

    def run(self, requests: list[Request]) -> list[Outcome]:
        return self.submit(requests).result()

    def finishing(self) -> None:
        """No more parts will be submitted: share the last of the work out evenly."""
        self._loop.call_soon_threadsafe(self._finish)

    def _finish(self) -> None:
        self._finishing = True
        self._check_deep()

    def _enqueue(self, part: _Part) -> None:
        assert self._queue is not None
        if self._fatal is not None:
            part.fail(self._fatal)
            return
        self._parts.add(part)
        part.future.add_done_callback(lambda _: self._parts.discard(part))
        jobs: list[_Job]
        if part.bodies is not None:  # the bodies of the usual cut are made already
            n, size = len(part.bodies), part.bodies.size
            jobs = []
            for k, body in enumerate(part.bodies.batches):
                job = _Job(part, list(range(k * size, min(n, (k + 1) * size))), size > 1)
                job.body = body
                jobs.append(job)
        else:
            todo = _bad(part.answers, part.requests)
            self.answered += len(part.requests) - len(todo)
            size = self._batch
            if size > 1:
                jobs = [_Job(part, todo[i : i + size], True) for i in range(0, len(todo), size)]
            else:
                jobs = [_Job(part, [i], False) for i in todo]
        part.left = len(jobs) + 1
        for job in jobs:
            self._queue.put(job)
        part.finish_job()  # the +1 above: a part with no jobs is finished here

    # -- the workers -------------------------------------------------------------------------

    def _check_deep(self) -> None:
        """Whether the queue holds more than the replicas take at once (see the module doc);
        wakes the workers when that changes."""
        if not self._finishing:
            return  # deep until the last part is in
        assert self._queue is not None
        deep = self._queue.instances > self._batch * sum(
            lane.limit.threads or lane.limit.allowed(True)
            for lane in self._lanes
            if lane.dead is None
        )
        if deep != self._deep:
            self._deep = deep
            self._notify()

    async def _changed(self) -> None:
        """Wait until the limits, the queue's depth or the lanes change."""
        assert self._wake is not None
        await self._wake.wait()

    def _notify(self) -> None:
        wake = self._wake
        assert wake is not None
        self._wake = asyncio.Event()
        wake.set()

    async def _work(self, lane: _Lane, slot: int) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            while True:
                wake = self._wake
                assert wake is not None
                if lane.dead is not None:
                    return
                if slot < lane.limit.allowed(self._deep):
                    break
                await wake.wait()
            waited = not queue.jobs
            threads = lane.limit.threads
            job = await queue.get(primary=threads is None or slot < threads)
            if job.part.future.done():  # the part failed already
                continue
            # Taking a job may end a deep queue; that is not a reason to put it back (it
            # would deepen the queue again: a loop). A limit cut, or a death, while this
            # worker waited for work is.
            if lane.dead is not None or (waited and slot >= lane.limit.allowed(True)):
                queue.put(job, front=True)  # no longer ours to send
                if lane.dead is None:
                    await self._changed()
                continue
            job = self._share(job)
            while True:
                lane.inflight += 1
                try:
                    hold = await self._send(lane, job)
                except Exception as exc:  # FatalError, or a bug: the part fails with it
                    job.part.fail(exc)
                    hold = None
                finally:
                    lane.inflight -= 1
                if hold is None:
                    break
                # Refused as too much: the request waits out its back-off in this worker,
                # so that the refused requests do not make room for more to be refused.
                await asyncio.sleep(hold)
                if job.part.future.done():
                    break
                if lane.dead is not None or slot >= lane.limit.allowed(self._deep):
                    self._queue_front(job)  # another worker sends it
                    break

    def _share(self, job: _Job) -> _Job:
        """Near the end, a batch larger than its share of what is left is cut (the rest goes
        back to the front of the queue), so that every replica gets some of the last work."""
        if not self._finishing or len(job.positions) < 2:
            return job
        assert self._queue is not None
        slots = sum(
            lane.limit.threads or lane.limit.allowed(True)
            for lane in self._lanes
            if lane.dead is None
        )
        share = -(-(self._queue.instances + len(job.positions)) // max(1, slots))
        if share >= len(job.positions):
            return job
        rest = _Job(job.part, job.positions[share:], True)
        job.part.left += 1
        self._queue.put(rest, front=True)
        job.positions = job.positions[:share]
        job.body = None
        job.batch = share > 1
        return job

    async def _send(self, lane: _Lane, job: _Job) -> float | None:
        """Send ``job`` and record what became of it. Returns the seconds to wait before
        sending it again where the service refused it as too much (else None: it is done,
        failed, or queued again)."""
        part, positions = job.part, job.positions
        if job.body is None:
            job.body = part.body(positions, job.batch)
        waits = lane.waits()
        started = self._loop.time()
        try:
            reply = await self._post(lane, lane.many if job.batch else lane.one, job.body, waits)
            if job.batch and (not isinstance(reply, list) or len(reply) != len(positions)):
                raise TransientError(
                    f"malformed batch reply: expected {len(positions)} replies",
                    kind="malformed reply",
                )
        except TransientError as exc:
            if exc.kind == "connection" and await self._died(lane):
                self._queue_front(job)  # not the request's fault: not an attempt
                return None
            now = self._loop.time()
            if exc.overload and lane.limit.overloaded(now):
                self._log(
                    f"replica {lane.index} is overloaded ({exc.kind}): at most "
                    f"{lane.limit.describe()} requests in flight now"
                )
                self._notify()
            return self._later(job, exc, hold=exc.overload)
        except BadRequest as exc:
            if job.batch:  # someone in the batch is refused: find out who, one by one
                self._singles(job, positions)
                return None
            part.answers.failed[positions[0]] = Outcome(
                error=str(exc), kind="BadRequest", attempts=job.attempt
            )
            self.answered += 1
            part.finish_job()
            return None
        now = self._loop.time()
        latency = now - started
        self._last_answer = now
        if lane.limit.answered(latency, now):
            self._notify()
        if job.batch and waits == 0:
            self._fit_batch(latency, len(positions))
        answers = part.answers
        if job.batch:
            redo = self._take_batch(job, reply)
        else:
            redo = []
            try:
                answers.responses[positions[0]] = self._responder(reply)
            except TransientError as exc:
                return self._later(job, exc)
            if isinstance(reply, dict) and isinstance(reply.get("usage"), dict):
                answers.usage[positions[0]] = reply["usage"]
        done = [i for i in positions if i not in redo] if redo else positions
        answers.took(done, latency)
        if job.attempt > 1:
            for i in done:
                answers.attempts[i] = job.attempt
        self.answered += len(done)
        if part.hook is not None and done:
            part.hook(done, [answers.responses[i] for i in done])
        if redo:
            self._singles(job, redo)
        else:
            part.finish_job()
        return None

    def _take_batch(self, job: _Job, replies: list[Any]) -> list[int]:
        """Record a batch's replies; the positions whose reply needs another try."""
        answers, positions = job.part.answers, job.positions
        fast = self._responder.many(replies)
        if fast is not None:
            answers.answer(positions, fast)
            return []
        redo = []
        for i, reply in zip(positions, replies, strict=True):
            try:
                answers.responses[i] = self._responder(reply)
            except TransientError:
                redo.append(i)
        return redo

    def _fit_batch(self, latency: float, n: int) -> None:
        """Fewer instances per request where a batch takes too large a share of the request
        timeout (a service that answers a batch one instance at a time)."""
        if not self._timeout or self._batch <= 1:
            return
        most = int(BATCH_TIME_SHARE * self._timeout / max(latency / n, 1e-9))
        if most < self._batch:
            before, self._batch = self._batch, max(1, most)
            self._log(
                f"a batch of {n} took {latency:.1f} s: {self._batch} instance(s) per request "
                f"from now on (was {before}), so that one request takes at most "
                f"{BATCH_TIME_SHARE:.0%} of the {self._timeout:g} s request timeout"
            )

    async def _died(self, lane: _Lane) -> bool:
        """Whether the replica behind ``lane`` exited (a failed connection is the first
        sign; its process is reaped a moment later). Marks the lane dead, and fails the
        evaluation when no lane is left."""
        if lane.dead is not None:
            return True
        process = lane.handle.process
        if process is None:
            return False
        for _ in range(20):
            if not process.alive():
                break
            await asyncio.sleep(0.05)
        else:
            return False
        lane.dead = lane.handle.describe_exit()
        self._deaths.append(lane.dead)
        left = sum(1 for other in self._lanes if other.dead is None)
        if left:
            self._log(
                f"{lane.dead}\nSending its requests to the {left} other replica(s) meanwhile."
            )
        else:
            first, others = self._deaths[0], len(self._lanes) - 1
            self._fail_all(
                FatalError(
                    f"{first}\nNo replica of the session is left"
                    + (f" (the other {others} ended after it)" if others else "")
                    + ": fix what made it exit (its output above), then run the evaluation "
                    "again",
                    reason="FailedDependency",
                )
            )
        self._check_deep()
        self._notify()
        return True

    def _fail_all(self, exc: BaseException) -> None:
        self._fatal = exc
        for part in list(self._parts):
            part.fail(exc)

    def _queue_front(self, job: _Job) -> None:
        assert self._queue is not None
        self._queue.put(job, front=True)

    def _later(self, job: _Job, exc: TransientError, hold: bool = False) -> float | None:
        """Retry ``job`` after its back-off, or record that it gave up. A request that the
        service fails the same way again is not retried as it is: a batch is sent one
        instance at a time (so is a batch that timed out), and one instance counts as failed
        after ``SERVICE_ERROR_REPEATS`` identical failures. ``hold``: return the back-off
        (the caller waits it out and sends the job again) rather than queue it after it."""
        now = self._loop.time()
        self.retries[exc.kind] += 1
        if job.since is None:
            job.since = now
        attempt = job.attempt
        count = job.repeats.see(exc)
        if len(job.positions) > 1 and (count >= 2 or exc.kind == "timeout"):
            if exc.kind == "timeout" and self._batch > 1:
                before, self._batch = self._batch, max(1, len(job.positions) // 4)
                self._log(
                    f"a batch of {len(job.positions)} timed out: sending its instances one "
                    f"by one, and {self._batch} per request from now on (was {before})"
                )
            self._singles(job, job.positions)
            return None
        why = None
        kind = "Transient"
        if count >= SERVICE_ERROR_REPEATS:
            why, kind = Repeats.message(count, exc), "ServiceError"
        elif (stop := self._policy.exhausted(attempt, job.since, now)) is not None:
            why = f"{stop}: {exc}"
        if why is not None:
            outcome = Outcome(error=why, kind=kind, attempts=attempt, cause=exc.kind)
            for i in job.positions:
                job.part.answers.failed[i] = outcome
            self.answered += len(job.positions)
            job.part.finish_job()
            return None
        if exc.kind == "connection" and now - self._last_answer > DOWN_AFTER:
            self._fail_all(
                FatalError(
                    f"the service has answered nothing for {now - self._last_answer:.0f} s and "
                    f"refuses connections ({exc}): it is down or its address changed; start it "
                    "(or fix the InferenceService's URL) and run the evaluation again"
                )
            )
            return None
        job.attempt += 1
        delay = self._policy.delay(attempt, exc.retry_after)
        if hold:
            return delay
        self._loop.call_later(delay, self._retry, job)
        return None

    def _retry(self, job: _Job) -> None:
        if not job.part.future.done():
            self._queue_front(job)

    def _singles(self, job: _Job, positions: list[int]) -> None:
        """Send each of ``positions`` on its own (in place of ``job``, which is finished)."""
        part = job.part
        part.left += len(positions)
        for i in reversed(positions):
            single = _Job(part, [i], False)
            single.since = job.since
            self._queue_front(single)
        part.finish_job()

    def _note_versions(self, found: list[tuple[str, str]]) -> None:
        """Remember the versions the service said it is (a few distinct values per header,
        for provenance: a service redeployed during the run shows as two)."""
        for header, value in found:
            seen = self.versions.setdefault(header, [])
            if value not in seen and len(seen) < MAX_VERSIONS:
                seen.append(value)

    async def _post(self, lane: _Lane, url: str, payload: bytes, waits: int) -> Any:
        import aiohttp

        assert self._session is not None
        timeout = self._timeouts.get(waits)
        if timeout is None:
            total = self._timeout * (1 + waits) if self._timeout else None
            timeout = self._timeouts[waits] = aiohttp.ClientTimeout(total=total)
        try:
            async with self._session.post(
                url, data=payload, headers=lane.headers, timeout=timeout
            ) as reply:
                status = reply.status
                content = await reply.read()
                retry_after = reply.headers.get("Retry-After")
        except TimeoutError:
            raise TransientError(
                f"no answer within {self._timeout * (1 + waits):g} s", kind="timeout"
            ) from None
        except aiohttp.ClientError as exc:
            raise TransientError(f"{type(exc).__name__}: {exc}", kind="connection") from None
        if 200 <= status < 300:
            if reply_versions := [
                (h, reply.headers[h]) for h in VERSION_HEADERS if h in reply.headers
            ]:
                self._note_versions(reply_versions)
            try:
                return json.loads(content)
            except ValueError:
                raise TransientError(
                    f"malformed reply: not JSON ({content[:80]!r})", kind="malformed reply"
                ) from None
        detail = _detail(content)
        if status in (408, 429) or status >= 500:
            after = _seconds(retry_after)
            # 500: the service failed (502-504: a proxy, overload or a timeout in between)
            raise TransientError(
                f"HTTP {status}: {detail}",
                after,
                service_error=status == 500,
                kind="timeout" if status == 408 else f"HTTP {status}",
            )
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


def _limit(handle: ReplicaHandle, per_replica: int | None) -> Limit:
    """The limit of one replica (see :mod:`assay.evaluation.limits`)."""
    threads = handle.capacity
    if per_replica is not None:
        return FixedLimit(per_replica, threads, per_replica)
    if threads is not None:
        n = threads * PIPELINE
        return FixedLimit(n, threads, n)
    return AdaptiveLimit(most=ADAPTIVE_MOST)


def _seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        import time

        return max(0.0, when.timestamp() - time.time())
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


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
