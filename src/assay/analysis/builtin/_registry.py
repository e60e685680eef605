"""How a built-in method becomes a Method on a platform: one request builder and one
``register`` call per built-in."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa

from assay.schema.dataschema import DataSchema
from assay.schema.platform import (
    MeasurementLevel,
    MeasurementSpec,
    Method,
    MethodImplementation,
    MethodImplementationKind,
    MethodImplementationPythonFunction,
    MethodInput,
    MethodInputKind,
    MethodOutput,
    MethodOutputKind,
    MethodParameter,
    MethodScope,
)
from assay.schema.requests import MethodCreateRequest

__all__ = ["Builtin", "MethodFunction", "Platform"]

#: A built-in's function: ``f(args, **inputs) -> pyarrow.Table``.
MethodFunction = Callable[..., pa.Table]


class MethodsGroup(Protocol):
    """The ``methods`` group of a platform (``LocalPlatform`` or ``Client``)."""

    def create(self, request: Any) -> Method: ...


class Platform(Protocol):
    """Anything with a ``methods`` group and a default ``account``: ``LocalPlatform``,
    ``Client``."""

    @property
    def methods(self) -> MethodsGroup: ...

    @property
    def account(self) -> str:
        """The account that ``register`` creates in when it is given none."""
        ...


@dataclass(frozen=True)
class Builtin:
    """A built-in method: its function and what its Method declares."""

    name: str
    """The Method's name, e.g. ``classification.metrics``."""
    function: MethodFunction
    """The function that implements it; its docstring is the Method's description."""
    level: MeasurementLevel
    """Whether a row of the output describes one instance or the whole data."""
    schema: pa.Schema
    """The schema of every output of the function."""
    parameters: Mapping[str, str]
    """Parameter keyword → description."""
    inputs: Sequence[tuple[str, MethodInputKind, str]]
    """``(keyword, kind, description)`` of each input."""

    @property
    def fully_qualified_name(self) -> str:
        """The function's dotted name, which the analysis runtime imports."""
        return f"{self.function.__module__}.{self.function.__qualname__}"

    @property
    def description(self) -> str:
        """The function's docstring."""
        return inspect.cleandoc(self.function.__doc__ or "")

    def request(self, *, account: str) -> MethodCreateRequest:
        """The request that creates this built-in's Method in ``account``."""
        summary = self.description.split("\n\n", 1)[0].replace("\n", " ")
        return MethodCreateRequest(
            account=account,
            name=self.name,
            scope=MethodScope.Evaluation,
            description=self.description,
            implementation=MethodImplementation(
                kind=MethodImplementationKind.PythonFunction,
                pythonFunction=MethodImplementationPythonFunction(
                    fullyQualifiedName=self.fully_qualified_name
                ),
            ),
            parameters=[
                MethodParameter(keyword=k, description=d) for k, d in self.parameters.items()
            ],
            inputs=[
                MethodInput(kind=kind, keyword=keyword, description=description)
                for keyword, kind, description in self.inputs
            ],
            output=MethodOutput(
                kind=MethodOutputKind.Measurement,
                measurement=MeasurementSpec(
                    name=self.name,
                    description=summary,
                    level=self.level,
                    schema_=DataSchema.from_arrow(self.schema),
                ),
            ),
            modules=[],
        )

    def register(self, platform: Platform, *, account: str | None = None) -> Method:
        """Create this built-in's Method on ``platform`` (a new one at every call), in
        ``account`` (default: the platform's, ``platform.account``)."""
        return platform.methods.create(self.request(account=account or platform.account))
