"""What a multi-user server allows of its mocks' options (:func:`server_problems`).

The ``mock`` runner serves a mock in the server's own process (only Assay's mocks:
``assay.server.routes.entities.check_mock``). There, an option that makes a call sleep, hang,
allocate or end the process acts on the server itself, for every account, so a multi-user
server refuses options over these bounds when the service is created (and again when a
session starts, for services created before). The embedded platform and replica processes
(the ``python`` runner) take any value. See ``docs/design/server.md``, "Fairness".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["MOST_DIM", "MOST_LABELS", "MOST_RESPONSES", "MOST_SECONDS", "Bound", "server_problems"]

#: The longest one call of a mock may wait (``latency``, ``timeout_seconds``): enough to test
#: what waits on a slow service, short enough that a call ends soon.
MOST_SECONDS = 5.0
#: The largest ``Embedder`` dimension (each reply, and the cache of word vectors, grows with it).
MOST_DIM = 4096
#: The most outputs per request of ``TextCompletion`` (each one holds the request's text).
MOST_RESPONSES = 16
#: The most labels of a ``Classifier`` (each reply scores every label).
MOST_LABELS = 1000


def _seconds(value: Any) -> float | None:
    """A number of seconds, or the largest of a ``(min, max)`` pair; None for anything else
    (the mock's own checks refuse it)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, Sequence) and not isinstance(value, str) and value:
        numbers = [_seconds(v) for v in value]
        return None if None in numbers else max(n for n in numbers if n is not None)
    return None


def _count(value: Any) -> float | None:
    """A count given as an integer."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return float(value)


def _length(value: Any) -> float | None:
    """The number of items of a list."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        return float(len(value))
    return None


def _positive_rate(option: str) -> Callable[[Mapping[str, Any]], bool]:
    def applies(kwargs: Mapping[str, Any]) -> bool:
        rate = kwargs.get(option)
        return isinstance(rate, int | float) and not isinstance(rate, bool) and rate > 0

    return applies


def _always(kwargs: Mapping[str, Any]) -> bool:
    return True


@dataclass(frozen=True)
class Bound:
    """The most one option of a mock may be on a multi-user server."""

    option: str
    """The keyword argument."""
    most: float | None
    """Its largest value; None: the option may not be given at all."""
    why: str
    """Why the server bounds it."""
    measure: Callable[[Any], float | None] = _count
    """The option's value as a number (None: not a value this bound reads)."""
    unit: str = ""
    """The unit of ``most`` in messages (``" s"``)."""
    default: Any = None
    """The mock's default, checked when the option is not given and ``applies``."""
    applies: Callable[[Mapping[str, Any]], bool] = _always
    """Whether the bound applies, given every option."""

    def problem(self, kwargs: Mapping[str, Any]) -> str | None:
        """What is wrong with ``kwargs`` for this bound (None: nothing)."""
        if not self.applies(kwargs):
            return None
        given = self.option in kwargs
        value = kwargs.get(self.option, self.default)
        if self.most is None:
            if value is None:
                return None
            return f"is {value!r}; a multi-user server does not take it: {self.why}"
        amount = self.measure(value)
        if amount is None or amount <= self.most:
            return None
        shown = _number(amount) + self.unit + ("" if given else " (its default)")
        most = _number(self.most)
        return (
            f"is {shown}, more than the {most}{self.unit} a multi-user server allows "
            f"({self.why}); give at most {most}"
        )


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _bounds() -> dict[type, tuple[Bound, ...]]:
    from assay.local.mocks import Classifier, Embedder, Faulty, Slow, TextCompletion

    waits = "every call waits this long in the server's process"
    return {
        Slow: (
            Bound(
                "latency",
                MOST_SECONDS,
                f"{waits}, one call at a time",
                measure=_seconds,
                unit=" s",
            ),
        ),
        Faulty: (
            Bound("latency", MOST_SECONDS, waits, measure=_seconds, unit=" s"),
            Bound(
                "timeout_seconds",
                MOST_SECONDS,
                "with timeout_rate above 0, a simulated hang holds a call this long",
                measure=_seconds,
                unit=" s",
                default=3600.0,
                applies=_positive_rate("timeout_rate"),
            ),
            Bound(
                "exit_after",
                None,
                "the call it names would end the server's own process, for every account "
                "(to test a replica that dies, serve a Faulty with the 'python' runner from a "
                "Module)",
            ),
        ),
        Embedder: (
            Bound("dim", MOST_DIM, "every reply, and the cache of word vectors, grows with it"),
        ),
        TextCompletion: (
            Bound(
                "responses_per_request",
                MOST_RESPONSES,
                "every output holds a copy of the request's text",
            ),
        ),
        Classifier: (
            Bound(
                "labels",
                MOST_LABELS,
                "every reply scores every label",
                measure=_length,
                unit=" labels",
            ),
        ),
    }


def server_problems(cls: type, kwargs: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(option, problem)`` for each option of mock class ``cls`` (or a subclass of one of
    Assay's mocks) that a multi-user server refuses; empty when every option is within its
    bounds."""
    table = _bounds()
    bounds = next((table[klass] for klass in cls.__mro__ if klass in table), ())
    found = []
    for bound in bounds:
        problem = bound.problem(kwargs)
        if problem is not None:
            found.append((bound.option, problem))
    return found
