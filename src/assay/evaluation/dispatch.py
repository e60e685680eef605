"""Sending requests to a session's replicas: in-process (mocks) here, over HTTP in
``lanes.py`` (:class:`HTTPDispatcher`, re-exported here).

Both take the requests of one part and give back what became of each instance: one
:class:`Outcome` per instance (``submit``), or the same column-wise as :class:`Answers`
(``submit_answers``, what the workflow writes from: no object per instance). The HTTP
dispatcher also takes a part whose requests are its rows as they are (``submit_rows``): their
bodies are then made column-wise by Arrow (``bodies.py``), with no dict per instance.

The in-process dispatcher hands a whole part to the service's ``infer_batch`` and checks the
replies column-wise (:meth:`Responder.many`); only the instances that need it go one by one,
calling ``tick`` between them so that the workflow can show progress and see a cancel. The
HTTP dispatcher (``lanes.py``) keeps, per replica, as many requests in flight as the replica
takes, from its own event-loop thread.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from assay import errors
from assay.evaluation.lanes import HTTPDispatcher, _bad, _unanswered
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
    from assay.inference.runners.base import ReplicaHandle

__all__ = ["HTTPDispatcher", "InProcessDispatcher", "Request"]

JSONObject = dict[str, Any]
#: Seconds between two calls of the in-process dispatcher's ``tick``, at most.
TICK = 0.25
#: A prepared request, or the BadRequest that stopped it being made.
Request = JSONObject | BadRequest


class InProcessDispatcher:
    """Calls in-process services (mocks) directly: no HTTP, no event loop.

    ``tick`` is called at least every :data:`TICK` seconds while instances are answered one
    by one (and during back-offs), so that a long part shows progress and stops on a cancel
    (``tick`` may raise)."""

    def __init__(
        self,
        handles: list[ReplicaHandle],
        endpoint: str,
        responder: Responder,
        policy: RetryPolicy,
        *,
        tick: Callable[[], None] | None = None,
    ) -> None:
        self._services = itertools.cycle([h.service for h in handles])
        self._endpoint = endpoint
        self._responder = responder
        self._policy = policy
        self._tick = tick or (lambda: None)
        self._ticked = time.monotonic()
        self.retries: Counter[str] = Counter()
        """Calls retried, by kind of transient error."""
        self.answered = 0
        """Instances with an outcome so far (answered or failed)."""

    def describe(self) -> str:
        return "in-process service, called directly (one part per infer_batch call)"

    def finishing(self) -> None:
        pass

    def submit(self, requests: list[Request]) -> Future[list[Outcome]]:
        future: Future[list[Outcome]] = Future()
        try:
            future.set_result(self.answer(requests).outcomes())
        except BaseException as exc:
            future.set_exception(exc)
        return future

    def submit_answers(
        self, requests: list[Request], on_answer: Callable[..., None] | None = None
    ) -> Future[Answers]:
        """Like :meth:`submit`, the outcomes column-wise (what the workflow writes from)."""
        future: Future[Answers] = Future()
        try:
            answers = self.answer(requests)
        except BaseException as exc:
            future.set_exception(exc)
            return future
        if on_answer is not None:
            done = [i for i in range(len(requests)) if i not in answers.failed]
            if done:
                on_answer(done, [answers.responses[i] for i in done])
        future.set_result(answers)
        return future

    def run(self, requests: list[Request]) -> list[Outcome]:
        return self.answer(requests).outcomes()

    def _maybe_tick(self) -> None:
        now = time.monotonic()
        if now - self._ticked >= TICK:
            self._ticked = now
            self._tick()

    def answer(self, requests: list[Request]) -> Answers:
        """The part's answers: the whole part in one ``infer_batch`` call where the service
        has one, its replies checked column-wise; the instances that need it one by one."""
        answers = _unanswered(len(requests))
        todo = _bad(answers, requests)
        self.answered += len(requests) - len(todo)
        service = next(self._services)
        batch = getattr(service, "infer_batch", None)
        retry: list[int] = todo
        if callable(batch) and todo:
            retry = []
            sent = requests if len(todo) == len(requests) else [requests[i] for i in todo]
            started = time.monotonic()
            try:
                replies = batch(self._endpoint, sent)
            except Exception:
                replies = None
            took = time.monotonic() - started
            if not isinstance(replies, list) or len(replies) != len(todo):
                retry = todo
            elif (fast := self._responder.many(replies)) is not None:
                answers.answer(todo, fast)
                answers.took(todo, took)
                self.answered += len(todo)
            else:
                for i, reply in zip(todo, replies, strict=True):
                    try:
                        answers.responses[i] = self._responder(reply)
                    except TransientError:
                        retry.append(i)
                redo = set(retry)
                ok = [i for i in todo if i not in redo]
                answers.took(ok, took)
                self.answered += len(ok)
            self._maybe_tick()
        for i in retry:
            outcome, took = self._one(service, requests[i])  # type: ignore[arg-type]
            if outcome.responses is None:
                answers.failed[i] = outcome
            else:
                answers.responses[i] = outcome.responses
                answers.took([i], took)
                if outcome.attempts > 1:
                    answers.attempts[i] = outcome.attempts
            self.answered += 1
            self._maybe_tick()
        return answers

    def _one(self, service: Any, request: JSONObject) -> tuple[Outcome, float]:
        attempt = 0
        repeats = Repeats()
        since: float | None = None
        while True:
            attempt += 1
            started = time.monotonic()
            try:
                responses = self._responder(service.infer(self._endpoint, request))
                return Outcome(responses=responses, attempts=attempt), time.monotonic() - started
            except errors.UnavailableError as exc:
                problem = TransientError(str(exc), exc.retry_after, kind="unavailable")
            except TransientError as exc:
                problem = exc
            except (errors.ValidationError, KeyError, TypeError, ValueError) as exc:
                return Outcome(error=_text(exc), kind="BadRequest", attempts=attempt), 0.0
            except errors.AssayError as exc:
                raise FatalError(str(exc)) from None
            except Exception as exc:  # a service bug: like an HTTP 500, worth another try
                problem = TransientError(_text(exc), service_error=True, kind="service error")
            now = time.monotonic()
            since = now if since is None else since
            self.retries[problem.kind] += 1
            count = repeats.see(problem)
            if count >= SERVICE_ERROR_REPEATS:
                error = Repeats.message(count, problem)
                return Outcome(error=error, kind="ServiceError", attempts=attempt), 0.0
            stop = self._policy.exhausted(attempt, since, now)
            if stop is not None:
                outcome = Outcome(
                    error=f"{stop}: {problem}",
                    kind="Transient",
                    attempts=attempt,
                    cause=problem.kind,
                )
                return outcome, 0.0
            self._sleep(self._policy.delay(attempt, problem.retry_after))

    def _sleep(self, seconds: float) -> None:
        """Wait out a back-off, ticking meanwhile."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(left, TICK))
            self._maybe_tick()

    def close(self) -> None:
        pass


def _text(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, errors.AssayError) else f"{type(exc).__name__}: {exc}"
