"""Signing in with an API token, and out (``docs/design/ui.md``, "Sessions").

``POST /signin`` verifies the token with the server's :class:`~assay.server.auth.
Authenticator` (exactly as the API verifies a bearer token), opens a server-side session and
sets the ``assay_session`` cookie (HttpOnly, SameSite=Strict, Secure over https) to its
opaque id. The sign-in form is CSRF-protected too, by a double-submit cookie, since there is
no session yet to bind a token to. ``POST /signout`` ends the session.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from assay import errors
from assay.server.state import server_state
from assay.server.ui.common import (
    CSRF_COOKIE,
    PagePrincipal,
    PageRoute,
    check_csrf,
    render,
    see_other,
    sign_in_sessions,
)
from assay.server.ui.sessions import SESSION_COOKIE

__all__ = ["router"]

router = APIRouter(route_class=PageRoute)


def _local_target(value: str | None) -> str:
    """Where to go after signing in: a path on this site, never another site."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def _form(request: Request, *, status_code: int = 200, message: str | None = None) -> Response:
    target = _local_target(request.query_params.get("next"))
    return render(
        request,
        "signin.html",
        status_code=status_code,
        title="Sign in",
        message=message,
        next=target,
    )


@router.get("/signin")
def signin_form(
    request: Request,
    next: Annotated[str | None, Query(description="Where to go after signing in.")] = None,
) -> Response:
    """The sign-in form."""
    return _form(request)


@router.post("/signin")
async def signin(request: Request) -> Response:
    """Verify the token, open a session, set its cookie and go to the page asked for."""
    form = await request.form()
    check_csrf(request, form)
    token = form.get("token")
    token = token.strip() if isinstance(token, str) else ""
    target = _local_target(str(form.get("next") or "/"))
    if not token:
        return _form(request, status_code=422, message="Enter an API token to sign in.")
    try:
        principal = server_state(request).authenticator.authenticate(f"Bearer {token}")
    except errors.AuthenticationError as exc:
        return _form(request, status_code=401, message=f"That token was refused: {exc}")
    if principal.session_id is not None:
        return _form(
            request,
            status_code=401,
            message="That is an inference session's token; sign in with an API token of an "
            "account (an operator makes one with 'assay token create').",
        )
    session = sign_in_sessions(request).open(token, principal.expires)
    response = see_other(target)
    response.set_cookie(
        SESSION_COOKIE,
        session.id,
        max_age=max(1, int(session.expires - time.time())),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response


@router.post("/signout")
async def signout(request: Request, principal: PagePrincipal) -> Response:
    """End the session and forget its cookie."""
    form = await request.form()
    check_csrf(request, form)
    sign_in_sessions(request).close(request.cookies.get(SESSION_COOKIE))
    response = see_other("/signin")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
