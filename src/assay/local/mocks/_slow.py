"""A plain slow service: one call at a time, ``latency`` seconds each, like one LLM on one GPU."""

from __future__ import annotations

import threading
import time
from typing import Any

from assay import errors
from assay.local.mocks._base import InferenceServiceMock
from assay.local.mocks._text import TextCompletion
from assay.schema.dataschema import DataSchema
from assay.schema.platform import InferenceInterface

__all__ = ["Slow"]


class Slow:
    """Answers as the mock it wraps (default ``TextCompletion()``), after sleeping ``latency``
    seconds (default 0.1) per call, one call at a time.

    It has :meth:`infer` and no ``infer_batch``: a replica serving it answers a batch one
    request after the other, and calls made at once wait for each other (a lock), so ``N``
    calls take ``N * latency`` however they are sent — the throughput of a model that
    generates one reply at a time. Use it for tests and benches of the ``python`` runner
    (a Module whose code does ``from assay.local.mocks import Slow``) and of what waits on a
    slow service. :attr:`calls` counts the calls answered.
    """

    def __init__(
        self, service: InferenceServiceMock | None = None, *, latency: float = 0.1
    ) -> None:
        self.service = TextCompletion() if service is None else service
        if not isinstance(self.service, InferenceServiceMock):
            raise errors.ValidationError(
                f"Slow wraps a mock service (an InferenceServiceMock), got {service!r}",
                field="service",
            )
        if isinstance(latency, bool) or not isinstance(latency, int | float) or latency < 0:
            raise errors.ValidationError(
                f"latency must be a number of seconds of at least 0, got {latency!r}",
                field="latency",
                value=latency,
            )
        self.latency = float(latency)
        self.calls = 0
        self._lock = threading.Lock()

    @property
    def interface(self) -> InferenceInterface:
        return self.service.interface

    @property
    def schema(self) -> DataSchema:
        return self.service.schema

    @property
    def endpoints(self) -> list[str]:
        return self.service.endpoints

    def infer(self, endpoint: str, request: dict[str, Any]) -> list[dict[str, Any]]:
        """Wait for the calls before this one, sleep ``latency`` seconds, then answer."""
        self.service.check_endpoint(endpoint)
        with self._lock:
            time.sleep(self.latency)
            self.calls += 1
            return self.service.infer(endpoint, request)

    def close(self) -> None:
        """Close the wrapped service."""
        self.service.close()
