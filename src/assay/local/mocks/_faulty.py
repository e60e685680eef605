"""A wrapper that makes any mock slow, flaky, hanging, malformed, overloaded or mortal, for
testing audits and the evaluation engine against failing services."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Sequence
from typing import Any, cast

from assay import errors
from assay.local.mocks._base import InferenceServiceMock, check_count, check_rate, check_seed
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

    Two faults do not depend on chance:

    - ``max_concurrent``: an admission limit. A call made while ``max_concurrent`` calls are
      in progress raises :class:`TransientServiceError` (an
      :class:`assay.errors.UnavailableError`) with ``retry_after`` (default 1 s) at once,
      without the latency, as a server answering ``429``/``503`` does;
    - ``exit_after``: the ``exit_after``-th call ends the process with
      ``os._exit(exit_code)`` (default 3), unanswered. It is meant for a Faulty served by a
      ``python``-runner replica process, where it kills the replica: a service that dies.
      In-process (the ``mock`` runner, or a direct call) it ends the *calling* process.

    To serve a Faulty from replica processes, give the ``python`` runner a Module whose code
    imports it (``from assay.local.mocks import Faulty``, target ``yourmodule:Faulty``) or
    subclasses it.

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
        max_concurrent: int | None = None,
        retry_after: float = 1.0,
        exit_after: int | None = None,
        exit_code: int = 3,
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
        self.max_concurrent = (
            None if max_concurrent is None else check_count("max_concurrent", max_concurrent)
        )
        if (
            isinstance(retry_after, bool)
            or not isinstance(retry_after, int | float)
            or retry_after < 0
        ):
            raise errors.ValidationError(
                f"retry_after must be a number of seconds of at least 0, got {retry_after!r}",
                field="retry_after",
                value=retry_after,
            )
        self.retry_after = float(retry_after)
        self.exit_after = None if exit_after is None else check_count("exit_after", exit_after)
        if (
            isinstance(exit_code, bool)
            or not isinstance(exit_code, int)
            or not 0 <= exit_code < 256
        ):
            raise errors.ValidationError(
                f"exit_code must be an integer from 0 to 255, got {exit_code!r}",
                field="exit_code",
                value=exit_code,
            )
        self.exit_code = exit_code
        self._rng = random.Random(check_seed(seed))
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._counts = {"calls": 0, "errors": 0, "timeouts": 0, "malformed": 0, "rejected": 0}
        self._in_flight = 0

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
        (``errors``, ``timeouts``, ``malformed``, and ``rejected`` over ``max_concurrent``)."""
        with self._lock:
            return dict(self._counts)

    def infer(self, endpoint: str, request: dict[str, Any]) -> list[dict[str, Any]]:
        self.check_endpoint(endpoint)
        self._admit()
        try:
            malformed = self._fault()
            if malformed is not None:
                return [malformed]
            return self.service.infer(endpoint, request)
        finally:
            self._leave()

    def infer_batch(
        self, endpoint: str, requests: Sequence[dict[str, Any]]
    ) -> list[list[dict[str, Any]]]:
        self.check_endpoint(endpoint)
        self._admit()
        try:
            malformed = self._fault()
            if malformed is not None:
                return [[malformed] for _ in requests]
            return self.service.infer_batch(endpoint, requests)
        finally:
            self._leave()

    def close(self) -> None:
        """End the simulated hangs in progress (they raise :class:`TransientServiceError`),
        make later ones end at once, and close the wrapped service."""
        self._closed.set()
        self.service.close()

    def _admit(self) -> None:
        """Count the call; exit on the ``exit_after``-th; refuse it over ``max_concurrent``."""
        with self._lock:
            self._counts["calls"] += 1
            number = self._counts["calls"]
            if self.exit_after is not None and number >= self.exit_after:
                os.write(
                    2,
                    f"Faulty: call {number} ends process {os.getpid()} with os._exit"
                    f"({self.exit_code}) (exit_after={self.exit_after})\n".encode(),
                )
                os._exit(self.exit_code)
            if self.max_concurrent is not None and self._in_flight >= self.max_concurrent:
                self._counts["rejected"] += 1
                raise TransientServiceError(
                    f"simulated overload: {self._in_flight} calls in progress, the most this "
                    f"service takes at once (Faulty max_concurrent={self.max_concurrent}); "
                    f"retry after {self.retry_after:g} s, or make fewer calls at once",
                    retry_after=self.retry_after,
                )
            self._in_flight += 1

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _fault(self) -> dict[str, Any] | None:
        """Wait out the latency, draw this call's fault and act on it: raise, hang, return
        the malformed element of the reply, or return ``None`` when the call goes through."""
        with self._lock:
            low, high = self.latency
            delay = low if low == high else self._rng.uniform(low, high)
            draw = self._rng.random()
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
