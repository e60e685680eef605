"""A wrapper that makes any mock slow, flaky, hanging or malformed, for testing audits and
the evaluation engine against failing services."""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from typing import Any, cast

from assay import errors
from assay.local.mocks._base import InferenceServiceMock, check_rate, check_seed
from assay.local.mocks._text import TextCompletion
from assay.schema.dataschema import DataSchema
from assay.schema.platform import InferenceInterface

__all__ = ["Faulty", "TransientServiceError"]


class TransientServiceError(errors.UnavailableError):
    """A simulated transient failure of a :class:`Faulty` service; retrying may succeed."""


class Faulty(InferenceServiceMock):
    """Wraps another mock and injects faults into its calls.

    Endpoints: those of the wrapped ``service`` (default ``TextCompletion()``), with the same
    inputs, outputs, interface and schema.

    On every call (:meth:`infer`, or :meth:`infer_batch` for a whole batch) it first waits
    ``latency`` seconds (a number, or a ``(min, max)`` pair for uniform jitter), then, with
    the given probabilities (which are exclusive, so they may add up to at most 1):

    - ``error_rate``: raises :class:`TransientServiceError` (an
      :class:`assay.errors.UnavailableError`);
    - ``timeout_rate``: hangs for ``timeout_seconds`` (default 3600), then raises
      :class:`TransientServiceError`; :meth:`close` ends every hang at once;
    - ``malformed_rate``: returns a malformed reply — a list holding an object without the
      output fields, or a list holding a value that is not an object;
    - otherwise: returns what the wrapped service returns.

    An unknown endpoint is refused before any fault. The faults are drawn from one generator
    (seeded with ``seed``; the same seed gives the same sequence of faults). :attr:`counts`
    says how many calls and faults there have been.
    """

    def __init__(
        self,
        service: InferenceServiceMock | None = None,
        *,
        latency: float | Sequence[float] = 0.0,
        error_rate: float = 0.0,
        timeout_rate: float = 0.0,
        malformed_rate: float = 0.0,
        timeout_seconds: float = 3600.0,
        seed: int | None = None,
    ) -> None:
        self.service = TextCompletion() if service is None else service
        if not isinstance(self.service, InferenceServiceMock):
            raise errors.ValidationError(
                f"Faulty wraps a mock service (an InferenceServiceMock), got {service!r}",
                field="service",
            )
        self.latency = _check_latency(latency)
        self.error_rate = check_rate("error_rate", error_rate)
        self.timeout_rate = check_rate("timeout_rate", timeout_rate)
        self.malformed_rate = check_rate("malformed_rate", malformed_rate)
        total = self.error_rate + self.timeout_rate + self.malformed_rate
        if total > 1.0 + 1e-9:
            raise errors.ValidationError(
                f"error_rate + timeout_rate + malformed_rate must be at most 1 (each call has "
                f"at most one fault), got {total:g}",
                field="error_rate",
            )
        if (
            isinstance(timeout_seconds, bool)
            or not isinstance(timeout_seconds, int | float)
            or timeout_seconds < 0
        ):
            raise errors.ValidationError(
                f"timeout_seconds must be a number of at least 0, got {timeout_seconds!r}",
                field="timeout_seconds",
            )
        self.timeout_seconds = float(timeout_seconds)
        self._rng = random.Random(check_seed(seed))
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._counts = {"calls": 0, "errors": 0, "timeouts": 0, "malformed": 0}

    @property
    def interface(self) -> InferenceInterface:
        return self.service.interface

    @property
    def schema(self) -> DataSchema:
        return self.service.schema

    @property
    def endpoints(self) -> list[str]:
        return self.service.endpoints

    @property
    def counts(self) -> dict[str, int]:
        """How many ``calls`` there have been, and how many ended in each fault
        (``errors``, ``timeouts``, ``malformed``)."""
        with self._lock:
            return dict(self._counts)

    def infer(self, endpoint: str, request: dict[str, Any]) -> list[dict[str, Any]]:
        self.check_endpoint(endpoint)
        malformed = self._fault()
        if malformed is not None:
            return [malformed]
        return self.service.infer(endpoint, request)

    def infer_batch(
        self, endpoint: str, requests: Sequence[dict[str, Any]]
    ) -> list[list[dict[str, Any]]]:
        self.check_endpoint(endpoint)
        malformed = self._fault()
        if malformed is not None:
            return [[malformed] for _ in requests]
        return self.service.infer_batch(endpoint, requests)

    def close(self) -> None:
        """End the simulated hangs in progress (they raise :class:`TransientServiceError`),
        make later ones end at once, and close the wrapped service."""
        self._closed.set()
        self.service.close()

    def _fault(self) -> dict[str, Any] | None:
        """Wait out the latency, draw this call's fault and act on it: raise, hang, return
        the malformed element of the reply, or return ``None`` when the call goes through."""
        with self._lock:
            low, high = self.latency
            delay = low if low == high else self._rng.uniform(low, high)
            draw = self._rng.random()
            self._counts["calls"] += 1
            fault: str | None = None
            if draw < self.error_rate:
                fault = "errors"
            elif draw < self.error_rate + self.timeout_rate:
                fault = "timeouts"
            elif draw < self.error_rate + self.timeout_rate + self.malformed_rate:
                fault = "malformed"
            if fault is not None:
                self._counts[fault] += 1
            as_object = fault == "malformed" and self._rng.random() < 0.5
        if delay > 0:
            self._closed.wait(delay)
        if fault == "errors":
            raise TransientServiceError(
                f"simulated fault: the service is temporarily unavailable (Faulty "
                f"error_rate={self.error_rate:g}); retry the request",
                retry_after=0.0,
            )
        if fault == "timeouts":
            self._closed.wait(self.timeout_seconds)
            raise TransientServiceError(
                f"simulated fault: the service hung for "
                f"{'less than ' if self._closed.is_set() else ''}{self.timeout_seconds:g} s "
                f"(Faulty timeout_rate={self.timeout_rate:g}); retry the request",
                retry_after=0.0,
            )
        if fault != "malformed":
            return None
        if as_object:
            return {"simulated_fault": "malformed reply: the output fields are missing"}
        # Deliberately not an object: what a broken service might send.
        return cast(dict[str, Any], "simulated fault: malformed reply (not a JSON object)")


def _check_latency(latency: Any) -> tuple[float, float]:
    if isinstance(latency, int | float) and not isinstance(latency, bool):
        bounds: tuple[Any, ...] = (latency, latency)
    elif (
        isinstance(latency, Sequence)
        and not isinstance(latency, str)
        and len(latency) == 2
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in latency)
    ):
        bounds = tuple(latency)
    else:
        raise errors.ValidationError(
            f"latency must be a number of seconds or a (min, max) pair, got {latency!r}",
            field="latency",
        )
    low, high = float(bounds[0]), float(bounds[1])
    if not 0.0 <= low <= high:
        raise errors.ValidationError(
            f"latency must be at least 0 and min <= max, got {latency!r}", field="latency"
        )
    return low, high
