"""The ``mock`` runner: a Python class instantiated in the platform's process.

Configuration: ``{"mockType": "package.module.ClassName", "kwargs": {...}}``. Each replica is
its own instance; a process that did not start the session makes its own instances (mocks
hold no state worth sharing). On a multi-user platform (``Policy.multi_user``) the options
that would make a call sleep, hang, allocate or exit in the platform's own process are bounded
(``assay.local.mocks._bounds``), at create and again when a session starts.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from assay import errors
from assay.inference.runners.base import (
    ReplicaHandle,
    Runner,
    RunnerEnv,
    config_error,
    configuration,
)

if TYPE_CHECKING:
    from assay.schema.platform import InferenceService, InferenceSession

__all__ = ["RUNNER", "MockRunner", "import_class", "qualified_name"]


def qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def import_class(name: str) -> type:
    """The class at ``package.module.ClassName`` (or ``package.module:ClassName``)."""
    module_name, sep, attr = name.partition(":")
    if not sep:
        module_name, _, attr = name.rpartition(".")
    if not module_name or not attr:
        raise errors.ValidationError(
            f"{name!r} is not a fully qualified class name (expected 'package.module.ClassName')",
            value=name,
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise errors.ValidationError(
            f"cannot import module {module_name!r} for {name!r}: {exc}", value=name
        ) from None
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)  # type: ignore[assignment]
        if obj is None:
            raise errors.ValidationError(
                f"module {module_name!r} has no class {attr!r}", value=name
            )
    if not isinstance(obj, type):
        raise errors.ValidationError(f"{name!r} is not a class", value=name)
    return obj


class MockRunner(Runner):
    kind = "mock"

    def _type(self, service: InferenceService) -> tuple[type, dict[str, Any]]:
        config = configuration(service)
        name = config.get("mockType")
        if not isinstance(name, str) or not name:
            raise config_error(
                service,
                "mockType",
                "must name the mock class, e.g. 'assay.local.mocks.TextCompletion'",
            )
        kwargs = config.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise config_error(service, "kwargs", "must be an object of keyword arguments")
        try:
            cls = import_class(name)
        except errors.ValidationError as exc:
            raise config_error(service, "mockType", str(exc)) from None
        if not callable(getattr(cls, "infer", None)):
            raise config_error(
                service, "mockType", f"names {name!r}, which has no infer(endpoint, request) method"
            )
        return cls, kwargs

    def _checked(
        self, service: InferenceService, env: RunnerEnv | None
    ) -> tuple[type, dict[str, Any]]:
        cls, kwargs = self._type(service)
        policy = getattr(getattr(env, "platform", None), "policy", None)
        if policy is not None and policy.multi_user:
            from assay.local.mocks._bounds import server_problems

            problems = server_problems(cls, kwargs)
            if problems:
                option, problem = problems[0]
                raise config_error(service, f"kwargs.{option}", problem)
        return cls, kwargs

    def check(self, service: InferenceService, env: RunnerEnv | None = None) -> None:
        self._checked(service, env)

    def start(self, session: InferenceSession, index: int, env: RunnerEnv) -> ReplicaHandle:
        cls, kwargs = self._checked(session.inferenceService, env)  # type: ignore[arg-type]
        return ReplicaHandle(index=index, style="inprocess", service=cls(**kwargs))

    def attach(self, session: InferenceSession, env: RunnerEnv) -> list[ReplicaHandle]:
        return [self.start(session, i, env) for i in range(session.replicas)]


RUNNER = MockRunner()
