"""How many requests one replica may have in flight: declared, set, or found out.

- Assay's own replica processes (``python``, ``huggingface``) declare how many calls they
  serve at once (``threads``) and whether they take batches (``infer_batch``). Their limit is
  fixed: ``threads`` running plus ``threads`` waiting in the replica (so that it never idles
  between two requests), and only ``threads`` near the end of a run, when a request waiting
  in one replica could have run at once in another.
- ``workersPerReplica``, where given, is the limit, fixed, whatever the replica declares.
- Services that run elsewhere (``http``, ``openai``) declare nothing: their limit is found
  out while the evaluation runs (:class:`AdaptiveLimit`): it doubles every round trip while
  answers come back as fast as the fastest seen (slow start), then grows by one per round
  trip. A 429 or 503 (or a timeout) — counted once per round trip, however many requests
  were refused together — ends slow start at half the limit (the last that went through),
  and later takes one off; refused again soon after, it cuts the limit by a fifth. The
  limit at which the service refused is tried again only every :data:`PROBE_SECONDS`, so
  that a service that admits ``N`` requests at once sees ``N + 1`` rarely. A round trip much
  slower than the fastest seen cuts the limit by a tenth. A refused request waits for its
  ``Retry-After`` in the worker that sent it (its place in the limit), then is sent again.

Design notes: ``docs/design/evaluation.md`` ("Dispatch").
"""

from __future__ import annotations

from collections import deque

__all__ = ["ADAPTIVE_MOST", "ADAPTIVE_START", "AdaptiveLimit", "FixedLimit", "Limit"]

#: Where an adaptive limit starts, and the most it may reach, per replica.
ADAPTIVE_START = 4
ADAPTIVE_MOST = 256
#: A round trip this many times slower than the fastest of the recent ones means the
#: service is queueing: the limit stops growing and shrinks a little.
LATENCY_TOLERANCE = 2.0
#: What an overload signal leaves of the limit.
DECREASE = 0.8
#: Seconds between two tries of the limit at which the service refused requests.
PROBE_SECONDS = 5.0
#: Round trips whose mean latency make the baseline (the fastest of them).
BASELINE_WINDOWS = 20


class Limit:
    """A replica's limit on requests in flight (see the module doc)."""

    adaptive = False
    value: float

    def __init__(self, value: int, threads: int | None, most: int) -> None:
        self.value = float(value)
        self.threads = threads
        """The calls the replica serves at once, where it declares it (None: unknown)."""
        self.most = most
        """The most requests it may ever have in flight (worker coroutines per replica)."""

    def allowed(self, deep: bool) -> int:
        """Requests that may be in flight now; ``deep``: the queue of work holds more than
        every replica can take at once (else only what runs at once: nothing waits in a
        replica that another could run now)."""
        value = max(1, int(self.value))
        if not deep and self.threads is not None:
            return min(value, self.threads)
        return value

    def answered(self, latency: float, now: float) -> bool:
        """A request was answered in ``latency`` seconds; whether the limit changed."""
        return False

    def overloaded(self, now: float) -> bool:
        """The service refused a request as too much (429/503) or did not answer in time;
        whether the limit changed."""
        return False

    def describe(self) -> str:
        return f"{int(self.value)}"


class FixedLimit(Limit):
    """A limit that does not move: declared by the replica or set by the evaluation."""


class AdaptiveLimit(Limit):
    """A limit found out from the answers (see the module doc)."""

    adaptive = True

    def __init__(self, start: int = ADAPTIVE_START, most: int = ADAPTIVE_MOST) -> None:
        super().__init__(start, None, most)
        self.slow_start = True
        self._count = 0
        self._latency = 0.0
        self._means: deque[float] = deque(maxlen=BASELINE_WINDOWS)
        self._cut_at = float("-inf")
        self._refused_at: float | None = None
        """The limit at which the service last refused requests (None: it never did)."""
        self._probe_at = 0.0

    def answered(self, latency: float, now: float) -> bool:
        self._count += 1
        self._latency += latency
        if self._count < max(1, int(self.value)):
            return False
        mean = self._latency / self._count
        self._count, self._latency = 0, 0.0
        self._means.append(mean)
        baseline = min(self._means)
        before = int(self.value)
        if mean > LATENCY_TOLERANCE * baseline and len(self._means) > 1:
            self.slow_start = False
            self.value = max(1.0, self.value * 0.9)
        elif self.slow_start:
            self.value = min(float(self.most), self.value * 2)
        elif self._refused_at is None or self.value + 1 < self._refused_at:
            self.value = min(float(self.most), self.value + 1)
        elif now >= self._probe_at:  # once in a while, try the limit that was refused
            self._probe_at = now + PROBE_SECONDS
            self.value = min(float(self.most), self.value + 1)
        return int(self.value) != before

    def overloaded(self, now: float) -> bool:
        # Once per round trip: the requests refused together say the same thing once.
        round_trip = self._means[-1] if self._means else 0.05
        if now - self._cut_at < max(round_trip, 0.05):
            return False
        again = now - self._cut_at < 4 * max(round_trip, 0.05) + PROBE_SECONDS
        self._cut_at = now
        before = int(self.value)
        self._refused_at = float(before)
        self._probe_at = now + PROBE_SECONDS
        if self.slow_start:
            self.slow_start = False
            self.value = max(1.0, self.value / 2)  # the last limit that went through
        elif again:  # refused again soon after a cut: the service takes less than it did
            self.value = max(1.0, min(self.value - 1, self.value * DECREASE))
        else:  # a probe one above what went through, or a service that takes a little less
            self.value = max(1.0, self.value - 1)
        self._count, self._latency = 0, 0.0
        return int(self.value) != before

    def describe(self) -> str:
        return f"{int(self.value)} (adaptive{', slow start' if self.slow_start else ''})"
