"""Turning instances into requests and replies into responses, and what can go wrong.

Errors are sorted into three kinds, which decide what the engine does:

- :class:`TransientError` — a timeout, a refused connection, 408/429/5xx, or a reply that does
  not fit the interface (a malformed reply): retried with exponential back-off and jitter,
  honouring ``Retry-After``, up to ``transientErrorRetryLimit`` times;
- :class:`BadRequest` — the service refused the instance (400/404/422), or the instance does not
  fit the input pipeline: ``badRequestPolicy`` decides (``Abort`` the evaluation, or ``Skip``
  the instance and record the error);
- :class:`FatalError` — something no retry or skip can fix (401/403: the credentials): the
  evaluation fails.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from assay import errors
from assay.inference.client import check_reply

if TYPE_CHECKING:
    import numpy
    import pyarrow

    from assay.schema.adapters import Adapter

__all__ = [
    "OVERLOAD_KINDS",
    "SERVICE_ERROR_REPEATS",
    "Answers",
    "BadRequest",
    "Columns",
    "FailureTally",
    "FatalError",
    "Outcome",
    "Repeats",
    "Requester",
    "Responder",
    "RetryPolicy",
    "TransientError",
    "summarize_failures",
]

JSONObject = dict[str, Any]


#: Attempts of one instance that fail the same way (an HTTP 500, or an exception of an
#: in-process service, with the same message) before it counts as failed ("ServiceError")
#: rather than transient: a service bug, or an input the service cannot handle, does not go
#: away by waiting — retrying it up to ``transientErrorRetryLimit`` times would take an hour.
SERVICE_ERROR_REPEATS = 3


class TransientError(Exception):
    def __init__(
        self,
        message: str,
        retry_after: float | None = None,
        *,
        service_error: bool = False,
        kind: str = "other",
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.service_error = service_error
        """The service itself failed (HTTP 500, or an exception in-process), as opposed to
        being busy, unreachable or slow: the same failure repeated is not transient."""
        self.kind = kind
        """What went wrong, for the counts of retries by kind: ``HTTP 429``, ``HTTP 503``,
        ``timeout``, ``connection``, ``malformed reply``, ``unavailable`` ..."""

    @property
    def overload(self) -> bool:
        """The service says it has more than it can take (429/503, or it did not answer in
        time): send it less at once."""
        return self.kind in OVERLOAD_KINDS


#: Kinds of transient errors that mean "too much at once" (see :attr:`TransientError.overload`).
OVERLOAD_KINDS = frozenset({"HTTP 429", "HTTP 503", "timeout", "unavailable"})


class Repeats:
    """Counts consecutive identical service errors of one request."""

    __slots__ = ("count", "last")

    def __init__(self) -> None:
        self.last: str | None = None
        self.count = 0

    def see(self, exc: TransientError) -> int:
        """Record ``exc``; the number of consecutive identical service errors so far."""
        text = str(exc) if exc.service_error else None
        self.count = self.count + 1 if text is not None and text == self.last else int(bool(text))
        self.last = text
        return self.count

    @staticmethod
    def message(count: int, exc: TransientError) -> str:
        return (
            f"the service failed {count} times in a row the same way ({exc}); that is a bug "
            "in the service or an input it cannot handle, not a transient failure"
        )


class BadRequest(Exception):
    pass


class FatalError(Exception):
    def __init__(self, message: str, reason: str = "Incomplete") -> None:
        super().__init__(message)
        self.reason = reason
        """The evaluation's reason when it fails with this error."""


#: What each kind of failure means, and what to do about it.
_ADVICE = {
    "BadRequest": (
        "refused by the service as bad requests",
        "check that the data set's fields are what the service's input expects",
    ),
    "ServiceError": (
        "failed by the service the same way every time",
        "the service fails on these inputs (a bug, or inputs it cannot handle): see the "
        "replica's output in the session's log",
    ),
    "timeout": (
        "not answered in time",
        "raise client.requestTimeoutSeconds, or send less at once (workersPerReplica, "
        "requestBatchSize)",
    ),
    "overload": (
        "refused as too much (rate-limited or overloaded) until the retries ran out",
        "lower workersPerReplica, or raise client.transientErrorRetryBudgetSeconds",
    ),
    "connection": (
        "not answered: the service could not be reached",
        "check that the service runs and that its URL is right",
    ),
    "malformed reply": (
        "answered with replies that do not fit the interface",
        "fix the service's replies or the interface's outputSchema / outputPipeline",
    ),
}


class FailureTally:
    """The failed instances of a run, counted by what went wrong (bounded memory)."""

    def __init__(self) -> None:
        self.total = 0
        self._groups: dict[str, list[Any]] = {}  # group -> [count, first index, first error]

    @staticmethod
    def group(outcome: Outcome) -> str:
        if outcome.kind != "Transient":
            return outcome.kind or "other"
        cause = outcome.cause or "other"
        if cause in ("HTTP 429", "HTTP 503", "unavailable"):
            return "overload"
        return cause if cause in _ADVICE else "other"

    def add(self, index: int, outcome: Outcome) -> None:
        self.total += 1
        entry = self._groups.setdefault(self.group(outcome), [0, index, outcome.error])
        entry[0] += 1

    def merge(self, other: FailureTally) -> None:
        """Count ``other``'s failures too (a shard's: :mod:`assay.evaluation.shards`)."""
        self.total += other.total
        for group, (count, index, error) in other._groups.items():
            entry = self._groups.setdefault(group, [0, index, error])
            entry[0] += count

    def summary(self) -> str:
        """``3 instances failed: 2 not answered in time (first: instance 7: ...); ... Fix: ...``"""
        parts, fixes = [], []
        for group, (count, index, error) in sorted(self._groups.items(), key=lambda g: -g[1][0]):
            meaning, fix = _ADVICE.get(group, ("failed", "see the errors in the evaluation's log"))
            parts.append(f"{count:,} {meaning} (first: instance {index}: {error})")
            fixes.append(fix)
        noun = "instance" if self.total == 1 else "instances"
        return f"{self.total:,} {noun} failed: " + "; ".join(parts) + ". Fix: " + "; ".join(fixes)


def summarize_failures(failures: Iterable[tuple[int, Outcome]]) -> str:
    """:meth:`FailureTally.summary` of ``(index, outcome)`` pairs."""
    tally = FailureTally()
    for index, outcome in failures:
        tally.add(index, outcome)
    return tally.summary()


@dataclass
class Outcome:
    """What became of one instance: its responses, or the error that stopped it."""

    responses: list[JSONObject] | None = None
    error: str | None = None
    kind: str | None = None
    attempts: int = 1
    cause: str | None = None
    """For a transient failure given up on: the kind of the last error (``timeout``,
    ``HTTP 429`` ...; see :attr:`TransientError.kind`)."""


@dataclass(frozen=True)
class Columns:
    """The responses to consecutive instances, also taken apart column-wise (by
    :meth:`Responder.many`, while it checks them): what the output's columns are built from
    without another pass over every item."""

    replies: list[list[JSONObject]]
    """Each instance's responses (the replies' own items, not numbered)."""
    lengths: list[int]
    """How many responses each instance has."""
    values: dict[str, list[Any]]
    """Each field of the output schema: its value in every response, in order (None where
    an item lacks it)."""


@dataclass
class Answers:
    """What became of a part's instances, column-wise (the fast form of ``list[Outcome]``):
    ``responses[i]`` holds instance ``i``'s responses (``[]`` when it failed; their
    ``_response_index_`` is their position, whether or not the items carry it), ``failed``
    the outcomes of the instances that failed, by position."""

    responses: list[list[JSONObject]]
    failed: dict[int, Outcome]
    attempts: dict[int, int] = field(default_factory=dict)
    """The attempts of the answered instances that took more than one."""
    columns: dict[int, Columns] = field(default_factory=dict)
    """Runs of instances whose responses are also held column-wise, by the position of the
    run's first instance (the responses in ``responses`` are the same)."""
    latency: numpy.ndarray[Any, Any] | None = None
    """Seconds the answering request of each instance took (NaN where there was none: a
    failed instance, an answer from the cache); None: not measured."""
    usage: dict[int, dict[str, int]] = field(default_factory=dict)
    """The token usage the service reported for an instance's request, by position."""

    def took(self, positions: list[int], seconds: float) -> None:
        """Record that the request answering ``positions`` took ``seconds``."""
        latency = self.latency
        if latency is None:
            import numpy as np

            latency = self.latency = np.full(len(self.responses), np.nan)
        if len(positions) == 1:
            latency[positions[0]] = seconds
        elif positions and positions[-1] - positions[0] == len(positions) - 1:
            latency[positions[0] : positions[-1] + 1] = seconds  # consecutive: the usual case
        else:
            latency[positions] = seconds

    @classmethod
    def from_outcomes(cls, outcomes: Sequence[Outcome]) -> Answers:
        return cls(
            [o.responses or [] for o in outcomes],
            {i: o for i, o in enumerate(outcomes) if o.responses is None},
            {i: o.attempts for i, o in enumerate(outcomes) if o.attempts != 1},
        )

    def answer(self, positions: list[int], columns: Columns) -> None:
        """Record ``columns`` as the responses of the instances at ``positions``."""
        first, n = positions[0], len(positions)
        if positions[-1] - first == n - 1:  # consecutive (sorted, distinct): the usual case
            self.responses[first : first + n] = columns.replies
            self.columns[first] = columns
        else:
            for i, items in zip(positions, columns.replies, strict=True):
                self.responses[i] = items

    def all_columns(self) -> list[Columns] | None:
        """The runs of :attr:`columns` in order, where they hold every instance's responses
        and none failed; None otherwise (the output is then built from :attr:`responses`)."""
        if self.failed or not self.columns:
            return None
        runs, at = [], 0
        for first in sorted(self.columns):
            if first != at:
                return None
            run = self.columns[first]
            runs.append(run)
            at += len(run.lengths)
        return runs if at == len(self.responses) else None

    def outcomes(self) -> list[Outcome]:
        """One :class:`Outcome` per instance, its responses numbered."""
        failed, attempts = self.failed, self.attempts
        return [
            failed[i]
            if i in failed
            else Outcome(
                responses=[{**item, "_response_index_": k} for k, item in enumerate(items)],
                attempts=attempts.get(i, 1),
            )
            for i, items in enumerate(self.responses)
        ]


@dataclass(frozen=True)
class RetryPolicy:
    limit: int
    """Retries of one request after transient errors, at most."""
    max_delay: float
    """The longest back-off between two attempts (seconds)."""
    base_delay: float = 0.05
    budget: float = 0.0
    """Seconds one request may spend being retried, from its first transient error (0: no
    limit but ``limit``)."""

    def exhausted(self, attempt: int, since: float, now: float) -> str | None:
        """Why a request that failed its ``attempt``-th time, first at ``since``, is not
        tried again (None: it is)."""
        if attempt > self.limit:
            return f"gave up after {attempt} attempts"
        if self.budget and now - since >= self.budget:
            return (
                f"gave up after {now - since:.0f} s of retries ({attempt} attempts; "
                f"client.transientErrorRetryBudgetSeconds is {self.budget:g})"
            )
        return None

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry ``attempt`` (1-based): a back-off that doubles with
        each attempt (jittered), and at least what the service asked for (``Retry-After``:
        a service that says 0 while it keeps refusing is not asked again at once)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        backoff = random.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            return min(max(retry_after, backoff), self.max_delay)
        return backoff


class Requester:
    """Makes the request for one instance: the evaluation's input pipeline, then the
    service's."""

    def __init__(self, adapters: Sequence[Adapter]) -> None:
        self._adapters = adapters

    @property
    def passthrough(self) -> bool:
        """True when there is no pipeline: the request of an instance is the instance."""
        return not self._adapters

    def __call__(self, row: JSONObject) -> JSONObject:
        items: Iterable[Any] = iter([row])
        for adapter in self._adapters:
            items = adapter(iter(items))
        try:
            made = list(itertools.islice(items, 2))
        except (errors.ValidationError, KeyError, TypeError, ValueError) as exc:
            raise BadRequest(
                f"the input pipeline failed on this instance: {_describe(exc)}"
            ) from None
        if len(made) != 1 or not isinstance(made[0], dict):
            raise BadRequest(
                f"the input pipeline made {len(made)} requests from one instance, expected one"
            )
        request: JSONObject = made[0]
        return request


class Responder:
    """Makes the responses of one instance from the service's reply: the output pipeline, the
    output-schema check, and ``_response_index_``."""

    def __init__(
        self, adapter: Adapter | None, item_schema: pyarrow.Schema | None, what: str
    ) -> None:
        self._adapter = adapter
        self._schema = item_schema
        self._what = what
        self._fields = _field_checks(item_schema)

    def __call__(self, reply: Any) -> list[JSONObject]:
        items: Iterable[Any] = reply if isinstance(reply, list) else [reply]
        try:
            items = list(self._adapter(iter(items))) if self._adapter is not None else list(items)
            check_reply(items, self._schema, self._what)
        except (errors.ValidationError, KeyError, TypeError, ValueError) as exc:
            raise TransientError(
                f"malformed reply: {_describe(exc)}", kind="malformed reply"
            ) from None
        return [{**item, "_response_index_": i} for i, item in enumerate(items)]

    def many(self, replies: list[Any]) -> Columns | None:
        """The responses of every reply at once, taken apart column-wise, or None where any
        reply needs the one-by-one path (an output pipeline, a reply that is not a list of
        plain objects, a value whose type is not exactly one the schema allows): that path
        then accepts or refuses each, naming the problem. Accepts only what :meth:`__call__`
        accepts; the items are the replies' own (not numbered: ``_response_index_`` is their
        position). Each field's values are read once, for the check and for the output."""
        if self._adapter is not None or self._fields is None:
            return None
        if replies and set(map(type, replies)) != {list}:
            return None
        items = list(itertools.chain.from_iterable(replies))
        if items and set(map(type, items)) != {dict}:
            return None
        values: dict[str, list[Any]] = {}
        for name, allowed, nullable in self._fields:
            column = list(map(dict.get, items, itertools.repeat(name)))
            seen = set(map(type, column))
            if not (seen <= allowed if allowed is not None else nullable or _NONE not in seen):
                return None
            values[name] = column
        return Columns(replies, list(map(len, replies)), values)


_NONE = type(None)


def _field_checks(
    schema: pyarrow.Schema | None,
) -> list[tuple[str, set[type] | None, bool]] | None:
    """For each field of ``schema``: its name, the exact Python types its values may have on
    the fast path (see :meth:`Responder.many`; None: any type, as :func:`check_reply` does not
    check it) and whether it may be missing. None without a schema."""
    if schema is None:
        return None
    from assay.inference.client import _python_types

    checks: list[tuple[str, set[type] | None, bool]] = []
    for spec in schema:
        types = _python_types(spec.type)
        allowed = None if types is None else {*types, *((_NONE,) if spec.nullable else ())}
        checks.append((spec.name, allowed, spec.nullable))
    return checks


def _describe(exc: BaseException) -> str:
    if isinstance(exc, errors.AssayError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
