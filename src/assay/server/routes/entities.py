"""The routes every resource kind has: create, get, query, delete, labels, documentation.

=======  ==============================  =========  ==================================
Method   Path                            Function   Answer
=======  ==============================  =========  ==================================
POST     /R                              create     the entity (201)
GET      /R/{id}                         get        the entity
GET      /R?filters                      query      list of entities
PUT      /R/{id}/delete                  delete     its status ``{status, reason, ...}``
PUT      /R/{id}/terminate               terminate  its status (jobs: :data:`TERMINABLE`;
                                         or delete  sessions: ``sessions.py``)
PATCH    /R/{id}/labels                  edit       the entity
GET      /R/{id}/documentation           get        the documentation
PATCH    /R/{id}/documentation           edit       the documentation
=======  ==============================  =========  ==================================

A create request's body may leave ``account`` out: :class:`DefaultAccountRoute` fills in the
token's account before the body is validated (``docs/design/client.md``, "The default
account"); the documented schema keeps the field required, as the reference has it.

(No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations, and
the create routes' body types are chosen per kind at run time.)
"""

import inspect
import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from assay import errors
from assay.schema._request_base import lacks_account
from assay.schema.platform import Documentation, StatusInfo
from assay.schema.requests import DocumentationEditRequest, LabelsEditRequest
from assay.server.access import acting_as, entity_for
from assay.server.compat import normalize_create_request
from assay.server.queries import parse_entity_filters, query_parameters, run_entity_query
from assay.server.resources import ResourceKind
from assay.server.state import Caller, State, caller, json_response

__all__ = [
    "ENTITY_ID",
    "TERMINABLE",
    "DefaultAccountRoute",
    "Responses",
    "add_entity_routes",
    "list_of",
    "status_of",
    "with_body_type",
]

#: The ``responses`` documentation of a route.
Responses = dict[int | str, dict[str, Any]]
#: The ``{id}`` path parameter of every entity route.
ENTITY_ID = Annotated[str, Path(description="The entity's id (32 lowercase hex digits).")]
#: The resources with ``PUT /R/{id}/terminate`` here: the jobs, whose groups are
#: :class:`assay.core.groups.TerminableGroup` (sessions have theirs in ``sessions.py``).
TERMINABLE = frozenset({"evaluations", "measurements", "safetycases"})
#: Who may terminate: a grant of ``terminate``, or of ``delete`` (which stops the work too).
TERMINATE_FUNCTIONS = ("terminate", "delete")


def with_body_type(endpoint: Callable[..., Any], body_type: type) -> Callable[..., Any]:
    """``endpoint`` with its ``body`` parameter annotated as ``body_type`` (so FastAPI
    validates and documents the request body as that model)."""
    signature = inspect.signature(endpoint)
    parameters = [
        p.replace(annotation=Annotated[body_type, Body()]) if p.name == "body" else p
        for p in signature.parameters.values()
    ]
    endpoint.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return endpoint


class _BodyRequest(Request):
    """``request`` with another body (what :class:`DefaultAccountRoute` hands on)."""

    def __init__(self, request: Request, body: bytes) -> None:
        super().__init__(request.scope, request.receive)
        self._body = body


async def _with_token_account(request: Request) -> Request:
    """``request``, its JSON object body given the account of the caller's token
    (``Account/<name>``) where it names none. Anything else — a body that is not a JSON
    object, one that names an account, a token that is not an account's or not valid — is
    left as it is, for the route to answer as before (422 for the missing field, 401 for the
    token). Nothing is decided here: the route checks ``create`` for the account as for one
    the request named."""
    try:
        body = json.loads(await request.body())
    except (ValueError, RecursionError):  # not JSON (or not UTF-8): the route says so
        return request
    if not lacks_account(body):
        return request
    try:
        account = caller(request).account
    except errors.AssayError:  # no valid token: the route answers 401
        return request
    if account is None:  # a session token has no account
        return request
    return _BodyRequest(request, json.dumps({**body, "account": account}).encode())


class DefaultAccountRoute(APIRoute):
    """The route class of the create routes: a body without ``account`` (left out, or null)
    is the caller's token's account's, filled in before FastAPI validates the body, so the
    OpenAPI document keeps the request models as they are (``account`` required)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            return await handler(await _with_token_account(request))

        return route_handler


def list_of(item_type: type) -> Any:
    """``list[item_type]`` for an item type chosen at run time (for the OpenAPI document)."""
    return list[item_type]  # type: ignore[valid-type]


def status_of(entity: Any) -> StatusInfo:
    """The status fields of an entity."""
    return StatusInfo(status=entity.status, reason=entity.reason, message=entity.message)


#: The only classes the ``mock`` runner may load in the server's own process: Assay's mocks.
#: Anything else would let a token holder run arbitrary code there; users' classes are
#: served by the ``python`` runner, in processes of their own, from a Module.
SERVER_MOCKS = "assay.local.mocks."


def check_mock(body: Any) -> None:
    """Refuse a ``mock`` service whose class is not one of Assay's mocks."""
    runner = getattr(body, "runner", None)
    if runner is None or str(runner.kind) != "mock":
        return
    mock_type = str((runner.configuration or {}).get("mockType", ""))
    if not mock_type.startswith(SERVER_MOCKS):
        raise errors.ValidationError(
            f"InferenceService create request: runner.configuration.mockType {mock_type!r} is "
            f"not one of Assay's mocks ({SERVER_MOCKS}*); the server runs mocks in its own "
            "process, so it accepts only those (a runner without configuration names its mock "
            "in args[0], as the reference client sends it). Serve your own class with the "
            "'python' runner from a Module",
            field="runner.configuration.mockType",
            value=mock_type,
        )


def add_entity_routes(router: APIRouter, rk: ResourceKind) -> None:
    """Add the common routes of ``rk`` to ``router``."""
    R, kind = rk.resource, rk.kind
    tags: list[str | Any] = [R]
    entity_doc: Responses = {200: {"model": rk.entity_type, "description": f"The {kind}."}}

    def get_entity(core: Any, principal: Any, id: str, functions: Any) -> Any:
        return entity_for(principal, rk.group(core), R, functions, id)

    def create(body: Any, principal: Caller, state: State) -> Response:
        core = state.core
        if not principal.allows(R, "create", account=body.account):
            raise errors.PermissionDeniedError(
                f"this token (for {principal.subject}) does not allow creating {R} for account "
                f"{body.account!r}"
            )
        body = normalize_create_request(body)
        if kind == "InferenceService":
            check_mock(body)
        # every id the request names is resolved with the caller's rights (core/references.py)
        with acting_as(principal):
            if kind == "InferenceSession":  # its token is made with the caller's (core/tokens.py)
                made = rk.group(core).create_minted(body, principal.minter())
            else:
                made = rk.group(core).create(body)
        return json_response(made, status_code=201)

    router.add_api_route(
        f"/{R}",
        with_body_type(create, rk.create_request),
        methods=["POST"],
        operation_id=f"{R}_create",
        summary=f"{kind} create request",
        description=(
            f"Create a {kind}. Needs `create` on `{R}` for the request's account; a body "
            "without `account` is for the token's account (`Account/<name>`)."
        ),
        tags=tags,
        status_code=201,
        route_class_override=DefaultAccountRoute,
        responses={201: {"model": rk.entity_type, "description": f"The new {kind}."}},
    )

    def query(request: Request, principal: Caller, state: State) -> Response:
        filters = parse_entity_filters(rk, request.query_params, state.core)
        return json_response(run_entity_query(rk, filters, principal, state.core))

    router.add_api_route(
        f"/{R}",
        query,
        methods=["GET"],
        operation_id=f"{R}_query",
        summary=f"{kind} query",
        description=(
            f"The {kind} entities that match every filter and that the token may see. `query` "
            "and `labels` are JSON objects; a list value means any of its values."
        ),
        tags=tags,
        responses={200: {"model": list_of(rk.entity_type), "description": "The entities."}},
        openapi_extra={"parameters": query_parameters(rk.query_request)},
    )

    async def get(id: ENTITY_ID, principal: Caller, state: State) -> Response:
        # the API's hottest route: one read by id, on the event loop where that is fast
        return await state.read(lambda: json_response(get_entity(state.core, principal, id, "get")))

    router.add_api_route(
        f"/{R}/{{id}}",
        get,
        methods=["GET"],
        operation_id=f"{R}_get",
        summary=f"{kind} get",
        tags=tags,
        responses=entity_doc,
    )

    def delete(id: ENTITY_ID, principal: Caller, state: State) -> Response:
        group = rk.group(state.core)
        get_entity(state.core, principal, id, "delete")
        group.delete(id)
        return json_response(status_of(group.require(id)))

    router.add_api_route(
        f"/{R}/{{id}}/delete",
        delete,
        methods=["PUT"],
        operation_id=f"{R}_delete",
        summary=f"{kind} delete",
        description="Mark the entity Deleted (its records and data stay until purged).",
        tags=tags,
        responses={200: {"model": StatusInfo, "description": "Its status."}},
    )

    if R in TERMINABLE:

        def terminate(id: ENTITY_ID, principal: Caller, state: State) -> Response:
            get_entity(state.core, principal, id, TERMINATE_FUNCTIONS)
            return json_response(status_of(rk.group(state.core).terminate(id)))

        router.add_api_route(
            f"/{R}/{{id}}/terminate",
            terminate,
            methods=["PUT"],
            operation_id=f"{R}_terminate",
            summary=f"{kind} terminate",
            description=(
                f"Stop the {kind}'s workflow: it becomes Terminated (TerminateCommand) and its "
                "running work stops within a second, keeping what it wrote. 409 if it has "
                "ended already. Needs `terminate` (or `delete`) on the entity."
            ),
            tags=tags,
            responses={200: {"model": StatusInfo, "description": "Its status."}},
        )

    def label(
        id: ENTITY_ID, body: Annotated[LabelsEditRequest, Body()], principal: Caller, state: State
    ) -> Response:
        get_entity(state.core, principal, id, "edit")
        return json_response(rk.group(state.core).label(id, body))

    router.add_api_route(
        f"/{R}/{{id}}/labels",
        label,
        methods=["PATCH"],
        operation_id=f"{R}_label",
        summary=f"{kind} labels edit",
        description="Set labels (a value of null removes the key); other labels are kept.",
        tags=tags,
        responses=entity_doc,
    )

    def documentation(id: ENTITY_ID, principal: Caller, state: State) -> Response:
        get_entity(state.core, principal, id, "get")
        return json_response(rk.group(state.core).documentation(id))

    router.add_api_route(
        f"/{R}/{{id}}/documentation",
        documentation,
        methods=["GET"],
        operation_id=f"{R}_documentation",
        summary=f"{kind} documentation",
        tags=tags,
        responses={200: {"model": Documentation, "description": "The documentation."}},
    )

    def edit_documentation(
        id: ENTITY_ID,
        body: Annotated[DocumentationEditRequest, Body()],
        principal: Caller,
        state: State,
    ) -> Response:
        get_entity(state.core, principal, id, "edit")
        return json_response(rk.group(state.core).edit_documentation(id, body))

    router.add_api_route(
        f"/{R}/{{id}}/documentation",
        edit_documentation,
        methods=["PATCH"],
        operation_id=f"{R}_edit_documentation",
        summary=f"{kind} documentation edit",
        description="Set documentation fields (null removes one); fields left out are kept.",
        tags=tags,
        responses={200: {"model": Documentation, "description": "The documentation."}},
    )
