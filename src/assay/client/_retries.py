"""``Retries``: when and how long the client waits before trying a call again.

A call is tried again after a transient failure — a connection that could not be made or was
lost, or an answer of 408, 429, 502, 503 or 504 — as long as trying again is safe for that
call (see :class:`RetryMode`) and the budget allows: at most ``attempts`` tries, all within
``total`` seconds. Between tries the client waits what the server asked for in
``Retry-After``, or else an exponential back-off with jitter (``backoff``, doubling, at most
``max_backoff``).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["RETRY_STATUSES", "Attempts", "Retries", "RetryMode", "parse_retry_after"]

#: The answers that say "try again later".
RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})
#: Of those, the ones that say the server did nothing with the request (safe to send again
#: even when the call is not idempotent).
REFUSED_STATUSES = frozenset({429, 503})


class RetryMode(StrEnum):
    """Which failures a call may be tried again after."""

    IDEMPOTENT = "idempotent"
    """Any transient failure: calls that do the same thing however often they are sent
    (GET, PUT, PATCH with merge-patch bodies, DELETE)."""
    REFUSED = "refused"
    """Only failures after which the server surely did nothing: no connection could be made,
    or the server answered 429 or 503. Used for POST (create, finalize, token, infer): a lost
    answer to a create may mean the entity exists, and sending it again would make two."""
    NEVER = "never"
    """No retries."""


@dataclass(frozen=True)
class Retries:
    """How the client retries transient failures.

    >>> Client(retries=Retries(attempts=10, total=300))     # doctest: +SKIP
    >>> Client(retries=0)                                    # no retries  # doctest: +SKIP
    """

    attempts: int = 6
    """The most tries of one call, the first included (1: no retries)."""
    total: float = 60.0
    """The most seconds one call may spend, waits included; a wait that would end later is
    not made and the last error is raised."""
    backoff: float = 0.25
    """The wait before the second try when the server gave no ``Retry-After``; it doubles
    with every try, with jitter (a random factor between 0.5 and 1)."""
    max_backoff: float = 8.0
    """The longest back-off wait (a ``Retry-After`` may ask for longer, within ``total``)."""

    def __post_init__(self) -> None:
        from assay import errors

        if self.attempts < 1:
            raise errors.ValidationError(
                f"Retries(attempts={self.attempts!r}): attempts counts the first try, so it "
                "must be at least 1 (1 means no retries)",
                field="attempts",
                value=self.attempts,
            )
        for name in ("total", "backoff", "max_backoff"):
            value = getattr(self, name)
            if not value >= 0:
                raise errors.ValidationError(
                    f"Retries({name}={value!r}) must be a number of seconds >= 0",
                    field=name,
                    value=value,
                )

    @classmethod
    def of(cls, value: Retries | int | None) -> Retries:
        """``Retries`` from what ``Client(retries=...)`` takes: an instance, a number of
        retries (0: none), or None (the defaults)."""
        if value is None:
            return cls()
        if isinstance(value, Retries):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(attempts=value + 1)
        from assay import errors

        raise errors.ValidationError(
            f"retries must be a Retries(...) or a number of retries, got {value!r}",
            field="retries",
            value=value,
        )

    def start(self) -> Attempts:
        """The bookkeeping of one call's tries."""
        return Attempts(self)


class Attempts:
    """The tries of one call: ``wait(hint)`` sleeps before the next try and says whether
    there is one."""

    def __init__(self, retries: Retries) -> None:
        self.retries = retries
        self.count = 1
        self.started = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def delay(self, retry_after: float | None) -> float:
        """How long to wait before the next try."""
        if retry_after is not None:
            return retry_after
        r = self.retries
        ceiling = min(r.max_backoff, r.backoff * 2.0 ** (self.count - 1))
        return ceiling * random.uniform(0.5, 1.0)

    def wait(self, retry_after: float | None = None) -> bool:
        """Sleep before the next try and return True, or return False at once when the
        budget (tries or seconds) does not allow another."""
        r = self.retries
        if self.count >= r.attempts:
            return False
        pause = self.delay(retry_after)
        if self.elapsed + pause > r.total:
            return False
        time.sleep(pause)
        self.count += 1
        return True

    def describe(self) -> str:
        """``tried 3 times over 1.2 s`` (for messages)."""
        return f"tried {self.count} time{'s' if self.count != 1 else ''} over {self.elapsed:.1f} s"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: a number of seconds (fractions are
    accepted) or an HTTP date. None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, float(when.timestamp()) - time.time())
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN, inf
        return None
    return max(0.0, seconds)
