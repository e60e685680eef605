"""The one error shape of the HTTP API: ``{"detail": "<what went wrong and what to do>"}``.

Every error reaches the client through :func:`error_response`:

- :class:`assay.errors.AssayError` subclasses get the status of :data:`assay.errors.HTTP_STATUS`
  (401 carries ``WWW-Authenticate``, 503 carries ``Retry-After``);
- a body that is not JSON, or not a JSON object, is 400, and so is a path refused by the one
  path check (absolute, ``..``, a link out, a reserved ``.assay`` name:
  :class:`assay.errors.UnsafePathError`); fields of the wrong type or missing are 422, the
  detail naming each field;
- unknown routes are 404, wrong methods 405 (with ``Allow``), oversized bodies 413;
- anything unexpected is 500 with a detail that asks to look at the server's log; the
  traceback goes to the log, never to the client.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from assay import errors
from assay._logging import logger

__all__ = [
    "API_ERRORS",
    "STORAGE_ERRORS",
    "ErrorDetail",
    "error_response",
    "install_error_handlers",
    "status_for",
]

log = logger("assay.server")


class ErrorDetail(BaseModel):
    """The body of every error response."""

    detail: str = Field(description="What went wrong and what to do about it.")


def _documented(statuses: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    return {
        status: {"model": ErrorDetail, "description": description}
        for status, description in statuses.items()
    }


#: The error statuses every ``/v0`` operation documents (in its OpenAPI ``responses``).
API_ERRORS = _documented(
    {
        400: "The body or a JSON parameter is not valid JSON, or not a JSON object.",
        401: "No token, or a token that is malformed, expired, revoked or signed by another "
        "platform.",
        403: "The token does not allow this function on this resource.",
        404: "No such entity (or one the token cannot see).",
        409: "The entity is not in a state that allows this (e.g. not Ready yet).",
        413: "The body is larger than the server accepts.",
        422: "A field or parameter is missing or invalid; the detail names each one.",
        503: "The server or the session is starting; retry after `Retry-After` seconds.",
    }
)
#: The error statuses of the signed-URL storage endpoints.
STORAGE_ERRORS = _documented(
    {
        400: "The Content-Length header is not a number.",
        403: "The signature is missing, altered, expired, or for another path or method.",
        404: "No such artifact.",
        409: "The entity is not waiting for an upload.",
        411: "The upload has no Content-Length header.",
        413: "The upload is larger than the server accepts.",
        422: "The upload does not match its declared digest or length.",
        503: "The server is starting; retry after `Retry-After` seconds.",
    }
)


def error_response(
    status_code: int, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The API's error response."""
    return JSONResponse({"detail": detail}, status_code=status_code, headers=headers)


def status_for(exc: errors.AssayError) -> int:
    """The HTTP status of an Assay error (the most specific class in
    :data:`assay.errors.HTTP_STATUS` wins)."""
    for cls in type(exc).__mro__:
        if cls in errors.HTTP_STATUS:
            return errors.HTTP_STATUS[cls]
    return 500


async def _assay_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.AssayError)  # registered for AssayError only
    status = status_for(exc)
    # the exact class, so that a client raises the same exception as the local platform
    headers: dict[str, str] = {"X-Assay-Error": type(exc).__name__}
    if isinstance(exc, errors.UnavailableError):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after or 1)))
    if isinstance(exc, errors.AuthenticationError):
        headers["WWW-Authenticate"] = 'Bearer realm="assay"'
    if status >= 500 and status != 503:
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
    return error_response(status, exc.message, headers)


def _location(loc: tuple[Any, ...]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


#: pydantic's error types for a body that is not an object at all.
_NOT_AN_OBJECT = ("model_attributes_type", "model_type", "dict_type")


def describe_request_errors(errors_: list[dict[str, Any]], what: str) -> tuple[int, str]:
    """The status (400 for a body that is not a JSON object or for a refused path, 422
    otherwise) and one detail line naming every broken field."""
    lines: list[str] = []
    status = 422
    for err in errors_:
        loc = tuple(err.get("loc") or ())
        kind = err.get("type", "")
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        field = _location(loc)
        if kind == "json_invalid":
            ctx = err.get("ctx") or {}
            return 400, (
                f"the request body is not valid JSON ({ctx.get('error', message)}); send a JSON "
                "object with Content-Type: application/json"
            )
        if loc == ("body",) and kind == "missing":
            status = 400
            lines.append("the request body is missing; send a JSON object")
            continue
        if loc == ("body",) and kind in _NOT_AN_OBJECT:
            status = 400
            lines.append(f"the request body must be a JSON object ({message})")
            continue
        if isinstance((err.get("ctx") or {}).get("error"), errors.UnsafePathError):
            status = 400  # a path refused (assay.schema.paths), as the API's own checks say
        shown = repr(err.get("input"))
        if len(shown) > 80:
            shown = shown[:77] + "..."
        if message.startswith(f"{field}: "):  # a validator that named the field already
            message = message[len(field) + 2 :]
        if kind == "missing":
            lines.append(f"{field}: required field is missing")
        elif kind == "extra_forbidden":
            lines.append(f"{field}: unknown field (value {shown}); remove it or check its spelling")
        elif not field:
            lines.append(message)
        else:
            lines.append(f"{field}: {message} (got {shown})")
    return status, f"invalid {what}: " + "; ".join(lines)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    route = request.scope.get("route")
    what = getattr(route, "summary", None) or "request"
    status, detail = describe_request_errors(list(exc.errors()), what.lower())
    return error_response(status, detail)


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches({**request.scope, "method": "\x00"})
        if match is Match.PARTIAL:
            methods.update(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail
    if exc.status_code == 404 and detail == "Not Found":
        detail = (
            f"no such route: {request.method} {request.url.path} (the API is under /v0; see "
            "/openapi.json)"
        )
    elif exc.status_code == 405 and detail == "Method Not Allowed":
        allowed = _allowed_methods(request) or (exc.headers or {}).get("Allow", "")
        detail = f"{request.method} is not allowed on {request.url.path}" + (
            f"; allowed: {allowed}" if allowed else ""
        )
        return error_response(405, detail, {"Allow": allowed} if allowed else None)
    elif exc.status_code == 400 and detail == "There was an error parsing the body":
        detail = "the request body could not be read; send a JSON object"
    return error_response(exc.status_code, str(detail), dict(exc.headers or {}) or None)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s: internal error", request.method, request.url.path, exc_info=exc)
    return error_response(
        500,
        f"internal error ({type(exc).__name__}); the server's log has the details — please "
        "report it",
    )


def install_error_handlers(app: FastAPI) -> None:
    """Make every error of ``app`` an ``{"detail": ...}`` response."""
    app.add_exception_handler(errors.AssayError, _assay_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
