"""Progress of a workflow over counted units (instances): done / total, rate and ETA.

:class:`Meter` turns counts into the message a running workflow shows (``41 / 60 instances,
2.0/s, ETA 10 s``). The rate is measured over the last :data:`WINDOW` seconds of work, so a
service that slows down (or a back-off) shows in it, and the ETA follows the current pace.
"""

from __future__ import annotations

import time
from collections import deque

__all__ = ["WINDOW", "Meter", "duration_text"]

#: Seconds of history the rate is measured over.
WINDOW = 30.0


def duration_text(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``2 h 10 min``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        minutes, rest = divmod(int(seconds), 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours} h {rest // 60} min"


def _rate_text(rate: float) -> str:
    if rate >= 100:
        return f"{rate:,.0f}/s"
    if rate >= 1:
        return f"{rate:.1f}/s"
    if rate > 0:
        return f"{rate * 60:.1f}/min"
    return "0/s"


class Meter:
    """Counts units done out of ``total`` and says how fast, and when it will end."""

    def __init__(self, total: int, unit: str = "instances", *, done: int = 0) -> None:
        self.total = total
        self.unit = unit
        self.done = done
        self.started = time.monotonic()
        self._history: deque[tuple[float, int]] = deque([(self.started, done)])

    def set(self, done: int) -> None:
        """Record that ``done`` units are done in all."""
        now = time.monotonic()
        self.done = done
        history = self._history
        if now - history[-1][0] >= 0.25:
            history.append((now, done))
        while len(history) > 2 and now - history[1][0] > WINDOW:
            history.popleft()

    def rate(self) -> float:
        """Units per second over the last :data:`WINDOW` seconds (0 before any)."""
        now = time.monotonic()
        first_time, first_done = self._history[0]
        elapsed = now - first_time
        if elapsed <= 0 or self.done <= first_done:
            return 0.0
        return (self.done - first_done) / elapsed

    def eta(self) -> float | None:
        """Seconds left at the current rate (None while nothing is done yet)."""
        rate = self.rate()
        if rate <= 0:
            return None
        return max(self.total - self.done, 0) / rate

    def message(self, note: str = "") -> str:
        """``41 / 60 instances, 2.0/s, ETA 10 s`` (and ``note``, where given)."""
        text = f"{self.done:,} / {self.total:,} {self.unit}"
        rate = self.rate()
        if self.done < self.total:
            eta = self.eta()
            text += f", {_rate_text(rate)}" + (
                f", ETA {duration_text(eta)}" if eta is not None else ""
            )
        else:
            text += f" in {duration_text(time.monotonic() - self.started)}"
        return text + (f"; {note}" if note else "")
