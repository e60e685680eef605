"""The base of every mock service, and what the mocks share: request checks, option checks,
cached output schemas and the per-request random source."""

from __future__ import annotations

import abc
import functools
import random
import re
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import BaseModel

from assay import errors
from assay.schema.dataschema import DataSchema
from assay.schema.dataset import make_output_schema
from assay.schema.platform import InferenceInterface

__all__ = ["InferenceServiceMock"]


class InferenceServiceMock(abc.ABC):
    """An inference service simulated in-process (it implements
    :class:`assay.inference.protocol.ServiceProtocol`).

    Subclasses give the :attr:`interface`, the :attr:`schema` of the outputs and
    :meth:`infer`. A service with more than one endpoint also overrides :attr:`endpoints`; a
    service that can answer many requests at once faster than one by one overrides
    :meth:`infer_batch`. Call :meth:`check_endpoint` first thing in :meth:`infer`, so that an
    unknown endpoint is refused with a message that lists the valid ones.
    """

    nonblocking: ClassVar[bool] = False
    """True when every call answers at once, computing its reply without waiting (no sleep,
    I/O or lock another call may hold): a pipeline then calls it on the caller's thread
    instead of a step thread, as a call that cannot outlive its timeout. Assay's own mocks
    that never wait set it. It is not inherited: a subclass that does not set it itself is
    taken to wait (it may override ``answer`` with one that sleeps)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.nonblocking = bool(cls.__dict__.get("nonblocking", False))

    @property
    @abc.abstractmethod
    def interface(self) -> InferenceInterface:
        """The inference interface spec: the endpoint and the output schema."""

    @property
    @abc.abstractmethod
    def schema(self) -> DataSchema:
        """The schema of the inference outputs (the same as ``interface.outputSchema``)."""

    @abc.abstractmethod
    def infer(self, endpoint: str, request: dict[str, Any]) -> list[dict[str, Any]]:
        """Answer ``request`` on ``endpoint`` with a list of JSON objects.

        Raises :class:`assay.errors.ValidationError` for an unknown endpoint or a request
        the service cannot read.
        """

    @property
    def endpoints(self) -> list[str]:
        """The endpoints the service answers on (by default, the interface's one)."""
        return [self.interface.endpoint]

    def infer_batch(
        self, endpoint: str, requests: Sequence[dict[str, Any]]
    ) -> list[list[dict[str, Any]]]:
        """Answer each of ``requests`` on ``endpoint``: one list of JSON objects per request,
        in order. The default calls :meth:`infer` once per request."""
        self.check_endpoint(endpoint)
        return [self.infer(endpoint, request) for request in requests]

    def check_endpoint(self, endpoint: str) -> None:
        """Raise :class:`assay.errors.ValidationError` unless ``endpoint`` is one of
        :attr:`endpoints`."""
        endpoints = self.endpoints
        if endpoint not in endpoints:
            raise errors.ValidationError(
                f"{type(self).__name__} has no endpoint {endpoint!r}; its endpoints are "
                f"{endpoints} (use one of them, e.g. the interface's endpoint)",
                field="endpoint",
                value=endpoint,
            )

    def close(self) -> None:  # noqa: B027 - a no-op that subclasses may extend
        """Release what the service holds. Most mocks hold nothing; :class:`Faulty` ends
        the simulated hangs in progress."""


class SingleEndpointMock(InferenceServiceMock):
    """A mock with one endpoint whose outputs are shaped like a pydantic model."""

    def __init__(self, endpoint: str, output: type[BaseModel]) -> None:
        self._endpoint = endpoint
        self._interface = InferenceInterface(
            endpoint=endpoint, outputSchema=_output_schema(output).model_copy(deep=True)
        )

    @property
    def interface(self) -> InferenceInterface:
        return self._interface

    @property
    def schema(self) -> DataSchema:
        return self._interface.outputSchema

    @property
    def endpoints(self) -> list[str]:
        return [self._endpoint]

    def infer(self, endpoint: str, request: dict[str, Any]) -> list[dict[str, Any]]:
        if endpoint != self._endpoint:
            self.check_endpoint(endpoint)
        return self.answer(request)

    @abc.abstractmethod
    def answer(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        """The reply to ``request`` (the endpoint is already checked)."""


@functools.cache
def _output_schema(output: type[BaseModel]) -> DataSchema:
    return make_output_schema(output)


class RandomSource:
    """Where a mock's randomness comes from.

    With a ``seed``, each request gets its own ``random.Random`` seeded from the seed and a
    key taken from the request, so a reply depends on the seed and the request alone: the same
    whatever the order of the calls, their concurrency or the number of replicas. Without one,
    every call draws from one generator seeded by the operating system, so replies vary.
    """

    def __init__(self, seed: int | None) -> None:
        self.seed = check_seed(seed)
        self._shared = random.Random() if seed is None else None

    def for_request(self, key: str) -> random.Random:
        """The generator to answer the request identified by ``key`` with."""
        if self._shared is not None:
            return self._shared
        return random.Random(f"{self.seed}\x00{key}")


# ----------------------------------------------------------------------------------------------
# Checks


def request_field(request: Any, name: str, expected: type = str) -> Any:
    """``request[name]``, checked to be present and an instance of ``expected``."""
    if not isinstance(request, dict):
        raise errors.ValidationError(
            f"a request must be a JSON object with a {name!r} field, got {type(request).__name__}",
            field=name,
        )
    try:
        value = request[name]
    except KeyError:
        raise errors.ValidationError(
            f"request has no {name!r} field (got keys {sorted(request)}); "
            f"send {{{name!r}: <{expected.__name__}>}}, or map your data to it with the "
            "interface's inputPipeline",
            field=name,
        ) from None
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise errors.ValidationError(
            f"request field {name!r} must be a {expected.__name__}, got "
            f"{type(value).__name__} {_short(value)}",
            field=name,
            value=value,
        )
    return value


def check_seed(seed: Any) -> int | None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise errors.ValidationError(
            f"seed must be an integer or None, got {seed!r}", field="seed", value=seed
        )
    return None if seed is None else int(seed)


def check_rate(name: str, value: Any) -> float:
    """``value`` as a probability, or a ValidationError naming the option."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise errors.ValidationError(
            f"{name} must be a number from 0 to 1, got {value!r}", field=name, value=value
        )
    return float(value)


def check_count(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an integer of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise errors.ValidationError(
            f"{name} must be an integer of at least {minimum}, got {value!r}",
            field=name,
            value=value,
        )
    return value


_WORD = re.compile(r"[\w']+")


def words(text: str) -> list[str]:
    """The lower-cased words of ``text``."""
    return _WORD.findall(text.lower())


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
