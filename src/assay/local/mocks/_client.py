"""A session client that calls a mock service directly, with no platform and no session."""

from __future__ import annotations

from typing import TYPE_CHECKING

from assay import errors
from assay.inference.client import InferenceSessionClient, ReplicaCaller
from assay.inference.runners.base import ReplicaHandle
from assay.local.mocks._base import InferenceServiceMock

if TYPE_CHECKING:
    from assay.schema.adapters import Adapter

__all__ = ["InferenceSessionClientMock"]


class InferenceSessionClientMock(InferenceSessionClient):
    """Makes inference calls to a mock service in this process: the client of a session
    backed by an :class:`InferenceServiceMock`, without the session.

    >>> client = InferenceSessionClientMock(TextCompletion(), inference_endpoint="generate")
    >>> client.infer({"text": "Open the pod bay doors, Hal!"})  # doctest: +SKIP
    [{'text': 'Open the pod bay doors, Hal! ...'}, {'text': 'Open the pod bay doors, Hal! ...'}]

    It has the methods of :class:`~assay.inference.client.InferenceSessionClient` (what
    ``platform.inferencesessions.client(session_id, token, ...)`` returns for any session):
    ``infer(body)``, ``infer_many(bodies)`` and ``run_evaluation(input_dataset, id=...,
    replications=...)``. ``input_adapter`` and ``output_adapter`` are applied to each request
    and to each reply; the replies are checked against the mock's output :attr:`schema
    <InferenceServiceMock.schema>` unless an ``output_adapter`` (or the interface's own
    ``outputPipeline``) reshapes them.
    """

    def __init__(
        self,
        service: InferenceServiceMock,
        *,
        inference_endpoint: str,
        input_adapter: Adapter | None = None,
        output_adapter: Adapter | None = None,
    ) -> None:
        if not isinstance(service, InferenceServiceMock):
            raise errors.ValidationError(
                f"InferenceSessionClientMock needs an instance of an InferenceServiceMock "
                f"(e.g. mocks.TextCompletion()), got {type(service).__name__}",
                field="service",
            )
        endpoint = inference_endpoint.strip("/")
        service.check_endpoint(endpoint)
        what = type(service).__name__
        reshaped = output_adapter is not None or bool(service.interface.outputPipeline)
        super().__init__(
            ReplicaCaller([ReplicaHandle(index=0, style="inprocess", service=service)], what=what),
            endpoint=endpoint,
            input_adapter=input_adapter,
            output_adapter=output_adapter,
            output_schema=None if reshaped else service.schema.arrow_schema(),
            what=what,
        )
        self._service = service

    @property
    def service(self) -> InferenceServiceMock:
        """The mock service the client calls."""
        return self._service
