"""InferenceSessions on the server: create (with a token), token, ready, terminate, infer, and
``client(...)`` — the same :class:`~assay.inference.client.InferenceSessionClient` that
``LocalPlatform`` gives, its calls sent to the server's infer route with the session token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from assay import errors
from assay.client._groups import RemoteGroup, WorkflowLogs, parse_answer
from assay.client._transport import Transport

if TYPE_CHECKING:
    from datetime import datetime

    from assay.inference.client import InferenceSessionClient
    from assay.schema.platform import InferenceSession, InferenceSessionAndToken

__all__ = ["InferenceSessions", "RemoteSessionService"]


class RemoteSessionService:
    """Stands in for a session's service inside :class:`InferenceSessionClient`: each call is
    ``POST /inferencesessions/{id}/infer/{endpoint}`` with the session token (retried only when
    the server surely did nothing, e.g. 503 while the session starts)."""

    def __init__(self, transport: Transport, session_id: str, token: str, timeout: float) -> None:
        self._transport = transport
        self._session = session_id
        self._token = token
        self._timeout = timeout

    def infer(self, endpoint: str, request: dict[str, Any]) -> Any:
        """The service's reply to one request, as it is."""
        return self._transport.json(
            "POST",
            f"/inferencesessions/{self._session}/infer/{quote(endpoint.strip('/'), safe='/')}",
            json=request,
            token=self._token,
            timeout=self._timeout,
            kind="InferenceSession",
            id=self._session,
        )


class InferenceSessions(WorkflowLogs, RemoteGroup["InferenceSession"]):
    kind = "InferenceSession"
    resource = "inferencesessions"
    request_name = "InferenceSessionCreateRequest"

    def create(self, request: Any) -> InferenceSessionAndToken:  # type: ignore[override]  # the reference's shape
        """Start a session (the server starts its replicas; ``ready(id)`` says when they
        answer) and return it with a token for inference calls."""
        from assay.schema.platform import InferenceSessionAndToken

        data = self._post_create(request)
        return parse_answer(InferenceSessionAndToken, data, "InferenceSessionAndToken")

    def token(self, id: str, expires: datetime | None = None) -> str:
        """A token that allows inference on this session only, until ``expires`` (a
        timezone-aware datetime; default: one day, never past the session's own expiry)."""
        from assay.schema.base import validate_model
        from assay.schema.requests import InferenceSessionTokenCreateRequest

        body: dict[str, Any] = {}
        if expires is not None:
            req = validate_model(
                InferenceSessionTokenCreateRequest,
                {"expires": expires},
                what=f"InferenceSession {id} token request",
            )
            body = req.model_dump(mode="json", exclude={"schemaVersion"})
        token = self._call("POST", id, "token", json=body)
        if not isinstance(token, str):
            raise errors.PlatformError(
                f"the server answered a token request with {type(token).__name__}, not a token"
            )
        return token

    def ready(self, id: str) -> bool:
        """True when the session is ``Ready`` and its replicas answer."""
        response = self._transport.send("GET", self._path(id, "ready"), kind=self.kind, id=id)
        return response.status_code == 200

    def terminate(self, id: str) -> InferenceSession:
        """Stop the session's replicas; it becomes ``Terminated``."""
        self._call("PUT", id, "terminate")
        return self.require(id)

    def infer(self, id: str, endpoint: str, request: dict[str, Any]) -> list[dict[str, Any]]:
        """One raw inference call (no adapters), with the API token: the service's reply as a
        list of objects."""
        answer = self._call("POST", id, "infer", quote(endpoint.strip("/"), safe="/"), json=request)
        return list(answer) if isinstance(answer, list) else [answer]

    def client(
        self,
        session_id: str,
        token: str,
        *,
        interface: Any = None,
        endpoint: str | None = None,
        input_adapter: Any = None,
        output_adapter: Any = None,
        timeout: float = 30.0,
    ) -> InferenceSessionClient:
        """A client for inference calls to the session, through the server. Without
        ``interface`` the service's own interface is used; ``endpoint`` and the adapters
        override its parts. The token is checked at once.

        Replies are checked against ``interface.outputSchema`` — unless ``output_adapter``
        overrides the output pipeline: the schema does not describe the items the override
        yields, so then each is only checked to be a JSON object (see
        :meth:`~assay.inference.client.InferenceSessionClient.for_interface`)."""
        from assay.inference.client import InferenceSessionClient, ReplicaCaller
        from assay.inference.runners.base import ReplicaHandle
        from assay.schema.base import validate_model
        from assay.schema.platform import InferenceInterface

        session = self.require(session_id)
        self._check_token(session_id, token)
        if interface is None:
            interface = session.inferenceService.interface
        elif not isinstance(interface, InferenceInterface):
            interface = validate_model(InferenceInterface, interface, what="interface")
        what = f"InferenceSession {session_id}"
        service = RemoteSessionService(self._transport, session_id, token, timeout)
        handle = ReplicaHandle(index=0, style="inprocess", service=service)
        return InferenceSessionClient.for_interface(
            ReplicaCaller([handle], timeout=timeout, what=what),
            interface,
            endpoint=endpoint,
            input_adapter=input_adapter,
            output_adapter=output_adapter,
            what=what,
        )

    def _check_token(self, id: str, token: str) -> None:
        """Refuse a token that does not allow inference on session ``id`` (the server answers
        its ``ready`` route to such a token as if the session did not exist)."""
        try:
            self._transport.send("GET", self._path(id, "ready"), token=token, kind=self.kind, id=id)
        except errors.NotFoundError:
            raise errors.PermissionDeniedError(
                f"the token does not allow inference on InferenceSession {id}; get one with "
                f"inferencesessions.token({id!r})"
            ) from None
