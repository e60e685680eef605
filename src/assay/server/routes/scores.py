"""Scores, curves and safety-case documents.

=======  ===============================  ======================  ===========================
Method   Path                             Function                Answer
=======  ===============================  ======================  ===========================
GET      /safetycases/{id}/scores         get (safetycases)       its scores
GET      /safetycases/{id}/curves         get (safetycases)       its curves
GET      /safetycases/{id}/document       download (safetycases)  the HTML document
GET      /safetycases/scores?filters      see below               matching scores
GET      /safetycases/curves?filters      see below               matching curves
GET      /scores?filters                  see below               matching scores
=======  ===============================  ======================  ===========================

A score or curve is visible to a caller who may ``get`` the SafetyCase that published it, or
``query`` scores of the account that owns that SafetyCase; the cross-system queries return only
visible ones.
"""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from assay import errors
from assay.schema.platform import Curve, Score
from assay.schema.requests import ScoreQueryRequest
from assay.server.access import Principal, entity_for
from assay.server.queries import (
    collect_parameters,
    parse_json_object,
    parse_limit,
    query_parameters,
)
from assay.server.routes.entities import ENTITY_ID, Responses, list_of
from assay.server.state import Caller, State, json_response

__all__ = ["add_score_routes", "visible_scores"]

R, KIND = "safetycases", "SafetyCase"

#: Score query parameters and the platform's filter each becomes.
_FILTERS = (
    "id",
    "name",
    "analysis",
    "method",
    "dataset",
    "evaluation",
    "inferenceService",
    "model",
)
#: HTML documents may run their own scripts, but in an opaque origin (not the API's).
DOCUMENT_HEADERS = {
    "Content-Security-Policy": "sandbox allow-scripts allow-popups",
    "X-Content-Type-Options": "nosniff",
}


def _case(state: Any, principal: Principal, id: str, function: str) -> Any:
    return entity_for(principal, state.core.safetycases, R, function, id)


def visible_scores(state: Any, principal: Principal) -> Any:
    """The filter of the Scores (and Curves) ``principal`` may see, as the score routes
    apply it: a function of one item, True to keep it."""
    accounts: dict[str, str | None] = {}

    def visible(item: Any) -> bool:
        analysis = item.analysis
        if analysis not in accounts:
            record = state.core.store.get(analysis)
            accounts[analysis] = None if record is None else str(record.doc.get("account"))
        account = accounts[analysis]
        if account is None:
            return False
        return principal.allows(
            "scores", "query", account=account, entity_id=item.id
        ) or principal.allows(R, "get", account=account, entity_id=analysis)

    return visible


def _query(request: Request, principal: Principal, state: Any, curves: bool) -> list[Any]:
    what = "Curve query" if curves else "Score query"
    if not (principal.allows("scores", "query") or principal.allows(R, "get")):
        raise errors.PermissionDeniedError(
            f"this token (for {principal.subject}) does not allow 'query' on scores"
        )
    valid = list(ScoreQueryRequest.model_fields)
    given: dict[str, Any] = dict(collect_parameters(request.query_params, valid, what))
    if "query" in given:
        for key, value in parse_json_object(given.pop("query"), "query").items():
            if key not in _FILTERS and key != "methodName":
                raise errors.ValidationError(
                    f"{what}: {key!r} cannot be used in query; its keys are "
                    f"{', '.join(_FILTERS)}, methodName",
                    field="query",
                )
            if key in given:
                raise errors.ValidationError(
                    f"{what}: {key!r} is given both as a parameter and in query", field=key
                )
            given[key] = value
    filters = {k: v for k, v in given.items() if k in _FILTERS}
    if "methodName" in given:
        methods = [m.id for m in state.core.methods.query(name=given["methodName"])]
        wanted = filters.get("method")
        if wanted is not None:
            wanted_ids = [wanted] if isinstance(wanted, str) else list(wanted)
            methods = [m for m in methods if m in wanted_ids]
        if not methods:
            return []
        filters["method"] = methods
    if given.get("orderBy") not in (None, "creationTime"):
        raise errors.ValidationError(
            f"{what}: orderBy {given['orderBy']!r} is not supported", field="orderBy"
        )
    scores = state.core.scores
    found = scores.curves(**filters) if curves else scores.query(**filters)
    visible = visible_scores(state, principal)
    items = [item for item in found if visible(item)]
    if given.get("order") == "descending":
        items.reverse()
    elif given.get("order") not in (None, "ascending"):
        raise errors.ValidationError(
            f"{what}: order must be 'ascending' or 'descending', got {given['order']!r}",
            field="order",
        )
    if "after" in given:
        position = next((i for i, item in enumerate(items) if item.id == given["after"]), None)
        if position is None:
            raise errors.ValidationError(
                f"{what}: after {given['after']!r} is not the id of a result of this query",
                field="after",
            )
        items = items[position + 1 :]
    if "limit" in given:
        items = items[: parse_limit(given["limit"], what)]
    return items


def add_score_routes(router: APIRouter) -> None:
    """Add the score, curve and document routes to ``router`` (before the safety cases'
    ``/{id}`` routes, which would take ``scores`` for an id)."""
    parameters = {"parameters": query_parameters(ScoreQueryRequest)}
    scores_doc: Responses = {200: {"model": list_of(Score), "description": "The scores."}}
    curves_doc: Responses = {200: {"model": list_of(Curve), "description": "The curves."}}

    def query_scores(request: Request, principal: Caller, state: State) -> Response:
        return json_response(_query(request, principal, state, curves=False))

    def query_curves(request: Request, principal: Caller, state: State) -> Response:
        return json_response(_query(request, principal, state, curves=True))

    for path, name in (("/scores", "scores_query"), (f"/{R}/scores", f"{R}_query_scores")):
        router.add_api_route(
            path,
            query_scores,
            methods=["GET"],
            operation_id=name,
            summary="Score query",
            description="Scores of every visible safety case matching the filters.",
            tags=["scores"],
            responses=scores_doc,
            openapi_extra=parameters,
        )
    router.add_api_route(
        f"/{R}/curves",
        query_curves,
        methods=["GET"],
        operation_id=f"{R}_query_curves",
        summary="Curve query",
        description="Curves of every visible safety case matching the filters.",
        tags=["scores"],
        responses=curves_doc,
        openapi_extra=parameters,
    )

    def case_scores(id: ENTITY_ID, principal: Caller, state: State) -> Response:
        _case(state, principal, id, "get")
        return json_response(state.core.safetycases.scores(id))

    def case_curves(id: ENTITY_ID, principal: Caller, state: State) -> Response:
        _case(state, principal, id, "get")
        return json_response(state.core.safetycases.curves(id))

    def document(id: ENTITY_ID, principal: Caller, state: State) -> Response:
        _case(state, principal, id, "download")
        html = state.core.safetycases.document(id)
        return HTMLResponse(html, headers=DOCUMENT_HEADERS)

    router.add_api_route(
        f"/{R}/{{id}}/scores",
        case_scores,
        methods=["GET"],
        operation_id=f"{R}_scores",
        summary="SafetyCase scores",
        tags=[R],
        responses=scores_doc,
    )
    router.add_api_route(
        f"/{R}/{{id}}/curves",
        case_curves,
        methods=["GET"],
        operation_id=f"{R}_curves",
        summary="SafetyCase curves",
        tags=[R],
        responses=curves_doc,
    )
    router.add_api_route(
        f"/{R}/{{id}}/document",
        document,
        methods=["GET"],
        operation_id=f"{R}_document",
        summary="SafetyCase document",
        description="The rendered document of a Complete safety case (one HTML page).",
        tags=[R],
        # a plain Response: errors are still documented as JSON (HTMLResponse would make
        # FastAPI document every response of the route as text/html)
        response_class=Response,
        responses={
            200: {
                "description": "The HTML document.",
                "content": {"text/html": {"schema": {"type": "string"}}},
            }
        },
    )
