"""Inference session routes, besides the common ones (``POST /inferencesessions`` answers
``{"inferencesession": {...}, "token": "..."}``).

=======  =========================================  =============  =========================
Method   Path                                       Function       Answer
=======  =========================================  =============  =========================
POST     /inferencesessions/{id}/token              consume        a token (JSON string)
GET      /inferencesessions/{id}/ready              get / consume  200 ``{"ready": true}``,
                                                                   202 ``{"ready": false}``
PUT      /inferencesessions/{id}/terminate          terminate /    its status (409 if it
                                                   delete         has ended already)
POST     /inferencesessions/{id}/infer/{endpoint}   consume        the service's reply
=======  =========================================  =============  =========================

A session token (subject ``InferenceSession/<id>``) allows ``infer`` and ``ready`` on its own
session and nothing else; it cannot make more tokens. It never outlives the token that made it
(an ``expires`` after that token's expiry is a 422 naming both) and is revoked with it.
``infer`` sends the JSON body to one of the session's replicas (in turn) and answers with the
service's reply as it is; a session that is not ``Ready`` answers 503 with ``Retry-After``
while it is starting.

``infer`` and ``ready`` reach the service: they run in the inference pool, in one of the
account's slots (:mod:`assay.server.fairness`); an account over its limit gets 429.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path
from fastapi.responses import JSONResponse, Response

from assay import errors
from assay.schema.platform import StatusInfo
from assay.schema.requests import InferenceSessionTokenCreateRequest
from assay.schema.status import Status, is_status_terminal
from assay.server.access import entity_for
from assay.server.fairness import TOO_MANY_CALLS, accountable
from assay.server.routes.entities import ENTITY_ID, TERMINATE_FUNCTIONS, status_of
from assay.server.state import Caller, State, json_response

__all__ = ["add_session_routes"]

R, KIND = "inferencesessions", "InferenceSession"
TAGS: list[Any] = [R]


def _session(state: Any, principal: Any, id: str, functions: Any) -> Any:
    return entity_for(principal, state.core.inferencesessions, R, functions, id)


def token(
    id: ENTITY_ID,
    principal: Caller,
    state: State,
    body: Annotated[InferenceSessionTokenCreateRequest | None, Body()] = None,
) -> Response:
    if principal.session_id is not None:
        raise errors.PermissionDeniedError(
            "a session token cannot make tokens; use an account's API token"
        )
    _session(state, principal, id, "consume")
    expires = body.expires if body is not None else None
    minter = principal.minter()
    return JSONResponse(state.core.inferencesessions.token_minted(id, expires, minter))


async def ready(id: ENTITY_ID, principal: Caller, state: State) -> Response:
    session = await state.read(lambda: _session(state, principal, id, ("get", "consume")))
    is_ready = await state.inference.call(
        accountable(principal, session.account), lambda: state.core.inferencesessions.ready(id)
    )
    return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 202)


def terminate(id: ENTITY_ID, principal: Caller, state: State) -> Response:
    _session(state, principal, id, TERMINATE_FUNCTIONS)
    return json_response(status_of(state.core.inferencesessions.terminate(id)))


async def infer(
    id: ENTITY_ID,
    endpoint: Annotated[str, Path(description="The service's endpoint, e.g. 'generate'.")],
    body: Annotated[dict[str, Any], Body()],
    principal: Caller,
    state: State,
) -> Response:
    session = await state.read(lambda: _session(state, principal, id, "consume"))
    if is_status_terminal(session.status) and session.status != Status.Ready:
        shown = session.status + (f" ({session.reason})" if session.reason else "")
        raise errors.ConflictError(
            f"InferenceSession {id} is {shown}; inference needs a Ready session: create a new one"
        )

    def call() -> Any:
        caller = state.core.sessions.caller(id)
        try:
            return caller.call(endpoint.strip("/"), body)
        finally:
            caller.close()

    reply = await state.inference.call(accountable(principal, session.account), call)
    return JSONResponse(reply)


def add_session_routes(router: APIRouter) -> None:
    """Add the session routes to ``router``."""
    router.add_api_route(
        f"/{R}/{{id}}/token",
        token,
        methods=["POST"],
        operation_id=f"{R}_token",
        summary="InferenceSession token request",
        description='A new token for inference on this session (body `{}` or `{"expires": '
        "iso}`; never past the session's expiry, cut to it; never past the expiry of the token "
        "asking, refused with 422; revoked with the token asking).",
        tags=TAGS,
        responses={200: {"model": str, "description": "The token."}},
    )
    router.add_api_route(
        f"/{R}/{{id}}/ready",
        ready,
        methods=["GET"],
        operation_id=f"{R}_ready",
        summary="InferenceSession ready",
        description="200 once the session is Ready and its replicas answer, 202 before.",
        tags=TAGS,
        responses=TOO_MANY_CALLS,
    )
    router.add_api_route(
        f"/{R}/{{id}}/terminate",
        terminate,
        methods=["PUT"],
        operation_id=f"{R}_terminate",
        summary="InferenceSession terminate",
        description="Stop the session's replicas: it becomes Terminated (TerminateCommand), and "
        "inference on it is refused from then on. 409 if it has ended already. Needs "
        "`terminate` (or `delete`) on the session.",
        tags=TAGS,
        responses={200: {"model": StatusInfo, "description": "Its status."}},
    )
    router.add_api_route(
        f"/{R}/{{id}}/infer/{{endpoint:path}}",
        infer,
        methods=["POST"],
        operation_id=f"{R}_infer",
        summary="inference request",
        description="Send the JSON body to the session's service; answers the service's reply. "
        "429 when the account has `inference_per_account` calls running already.",
        tags=TAGS,
        responses=TOO_MANY_CALLS,
    )
