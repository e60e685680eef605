"""What every page of the web UI uses: the templates, the signed-in caller, CSRF tokens,
security headers and the HTML error pages (``docs/design/ui.md``).

A page module makes its router with ``APIRouter(route_class=PageRoute)`` and writes routes
like this::

    @router.get("/things")
    def things(request: Request, principal: PagePrincipal) -> Response:
        return render(request, "things.html", title="Things", items=...)

    @router.post("/things/{id}/poke")
    async def poke(request: Request, id: str, principal: PagePrincipal) -> Response:
        form = await request.form()
        check_csrf(request, form)
        ...
        return see_other(f"/things/{id}")

:class:`PageRoute` turns what a page raises into an HTML page (an :class:`~assay.errors.
AssayError` into its status and message, exactly as the API answers it: another account's
entity is the same 404 as a missing one), sends a browser without a session to ``/signin``,
and adds :data:`SECURITY_HEADERS` to every answer that sets no policy of its own.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import jinja2
from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from markupsafe import escape
from starlette.exceptions import HTTPException as StarletteHTTPException

from assay import errors
from assay.server.access import Principal
from assay.server.errors import status_for
from assay.server.resources import RESOURCE_KINDS
from assay.server.state import server_state
from assay.server.ui.sessions import SESSION_COOKIE, SignInSession, SignInSessions

__all__ = [
    "CSRF_COOKIE",
    "PAGE_CSP",
    "SECURITY_HEADERS",
    "STATIC_DIR",
    "TEMPLATES_DIR",
    "PagePrincipal",
    "PageRoute",
    "SignInRequired",
    "check_csrf",
    "csrf_token",
    "entity_href",
    "error_page",
    "page_principal",
    "page_session",
    "render",
    "see_other",
    "sign_in_sessions",
    "templates",
]

HERE = Path(__file__).parent
#: The Jinja2 templates of every page.
TEMPLATES_DIR = HERE / "templates"
#: The assets served under ``/static`` (CSS, vendored scripts).
STATIC_DIR = HERE / "static"

#: The Content-Security-Policy of every page: scripts, styles and frames from this origin
#: only, no inline script or style, no plugins, no <base>, forms post only here, and no other
#: site may frame the UI.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
#: Headers of every UI answer (a route that sets its own CSP keeps it).
SECURITY_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
#: The cookie of the sign-in form's CSRF token (there is no session yet to bind it to).
CSRF_COOKIE = "assay_csrf"

_KIND_RESOURCE = {rk.kind: rk.resource for rk in RESOURCE_KINDS}


def entity_href(kind: str, id: str) -> str | None:
    """The UI page of the entity ``kind``/``id`` (None for a kind that has no pages)."""
    resource = _KIND_RESOURCE.get(kind)
    return None if resource is None else f"/{resource}/{quote(id, safe='')}"


def _when(value: Any) -> str:
    """A time as ``2024-05-01 12:00:03 UTC``."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return "" if value is None else str(value)


def _pretty_json(value: Any) -> str:
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    return json.dumps(value, indent=2, sort_keys=False, ensure_ascii=False, default=str)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["pretty_json"] = _pretty_json
    env.globals["entity_href"] = entity_href
    env.globals["nav_kinds"] = [(rk.resource, kind_label(rk.kind)) for rk in RESOURCE_KINDS]
    return env


def kind_label(kind: str) -> str:
    """A kind as the navigation names its list: ``InferenceService`` → ``Inference services``."""
    words = re.findall(r"[A-Z][a-z]*", kind) or [kind]
    text = " ".join([words[0], *(w.lower() for w in words[1:])])
    return text[:-1] + "ies" if text.endswith("y") else text + "s"


#: The templates (autoescaped: every value is HTML-escaped unless marked safe).
templates = Jinja2Templates(env=_environment())


class SignInRequired(Exception):
    """The request has no live session: the browser is sent to ``/signin``."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "sign in to continue")
        self.reason = reason


def sign_in_sessions(request: Request) -> SignInSessions:
    """The sign-in sessions of the app serving ``request``."""
    sessions: SignInSessions | None = getattr(request.app.state, "ui_sessions", None)
    if sessions is None:  # an app the UI was not installed on (install_ui sets one)
        sessions = SignInSessions()
        request.app.state.ui_sessions = sessions
    return sessions


def page_session(request: Request) -> SignInSession | None:
    """The session :func:`page_principal` found for this request (None before it ran)."""
    session: SignInSession | None = getattr(request.state, "ui_session", None)
    return session


async def page_principal(request: Request) -> Principal:
    """The signed-in caller (a FastAPI dependency): the token of the request's session,
    verified again now (expiry, revocation), so a revoked token ends its sessions at once.
    Without a live session the browser is sent to ``/signin`` (:class:`SignInRequired`)."""
    sessions = sign_in_sessions(request)
    session = sessions.get(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise SignInRequired()
    try:
        principal = server_state(request).authenticator.authenticate(f"Bearer {session.token}")
    except errors.AuthenticationError as exc:
        sessions.close(session.id)
        raise SignInRequired(str(exc)) from None
    request.state.ui_session = session
    request.state.ui_principal = principal
    return principal


#: A page parameter that is the signed-in caller.
PagePrincipal = Annotated[Principal, Depends(page_principal)]


def csrf_token(request: Request) -> str:
    """The CSRF token the forms of this page carry: the session's, or — on the sign-in page,
    before there is a session — the one of the ``assay_csrf`` cookie (a new one if absent;
    :func:`render` sets the cookie)."""
    session = page_session(request)
    if session is not None:
        return session.csrf
    token: str | None = getattr(request.state, "ui_csrf", None)
    if token is None:
        token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        request.state.ui_csrf = token
    return token


def check_csrf(request: Request, form: Mapping[str, Any]) -> None:
    """Refuse (403) a POST whose form's ``csrf_token`` is missing or is not this session's
    (or, for the sign-in form, not the ``assay_csrf`` cookie's)."""
    given = form.get("csrf_token")
    session = page_session(request)
    expected = session.csrf if session is not None else request.cookies.get(CSRF_COOKIE)
    if not isinstance(given, str) or not given:
        raise errors.PermissionDeniedError(
            "the form has no CSRF token (csrf_token); reload the page and submit it again"
        )
    if not expected:
        raise errors.PermissionDeniedError(
            "this browser has no CSRF token to check the form's against (its assay_csrf "
            "cookie is missing); reload the page and submit it again"
        )
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise errors.PermissionDeniedError(
            "the form's CSRF token is not this session's; reload the page and submit it again"
        )


def render(request: Request, name: str, /, *, status_code: int = 200, **context: Any) -> Response:
    """The template ``name`` rendered with ``context``, plus what every page shows: the
    signed-in ``principal`` (or None) and the ``csrf_token`` of its forms. ``request`` and
    ``name`` are positional, so the context may hold a ``name`` of its own."""
    token = csrf_token(request)
    context.setdefault("principal", getattr(request.state, "ui_principal", None))
    context.setdefault("title", "Assay")
    response = templates.TemplateResponse(
        request, name, {**context, "csrf_token": token}, status_code=status_code
    )
    if page_session(request) is None and request.cookies.get(CSRF_COOKIE) != token:
        response.set_cookie(
            CSRF_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
    return response


def see_other(url: str) -> Response:
    """A 303 redirect to ``url`` (after a POST: the browser GETs it)."""
    return RedirectResponse(url, status_code=303)


def error_page(request: Request, status_code: int, message: str) -> Response:
    """An HTML page saying what went wrong (htmx fragment requests get just the message)."""
    if request.headers.get("hx-request"):
        return HTMLResponse(
            f'<p class="error" role="alert">{escape(message)}</p>',
            status_code=status_code,
        )
    titles = {403: "Not allowed", 404: "Not found", 409: "Conflict", 422: "Invalid request"}
    return render(
        request,
        "error.html",
        status_code=status_code,
        title=titles.get(status_code, f"Error {status_code}"),
        message=message,
        status=status_code,
    )


def _local(path: str) -> str:
    """``path`` if it is a path on this site, else ``/`` (no open redirects)."""
    if path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path
    return "/"


def _to_sign_in(request: Request, exc: SignInRequired) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        target = "/"
    location = "/signin"
    if target != "/":
        location += "?next=" + quote(_local(target), safe="")
    response: Response
    if request.headers.get("hx-request"):
        response = HTMLResponse("", status_code=401, headers={"HX-Redirect": location})
    else:
        response = RedirectResponse(location, status_code=303)
    if request.cookies.get(SESSION_COOKIE):
        response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _describe(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("query", "path"))
        parts.append(f"{where}: {error.get('msg')}")
    return "invalid request: " + "; ".join(parts)


class PageRoute(APIRoute):
    """A route of a UI page: errors become HTML pages, a missing session a redirect to
    ``/signin``, and every answer carries :data:`SECURITY_HEADERS`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            response: Response
            try:
                response = await handler(request)
            except SignInRequired as exc:
                response = _to_sign_in(request, exc)
            except errors.AssayError as exc:
                response = error_page(request, status_for(exc), str(exc))
            except RequestValidationError as exc:
                response = error_page(request, 422, _describe(exc))
            except StarletteHTTPException as exc:
                response = error_page(request, exc.status_code, str(exc.detail))
            for key, value in SECURITY_HEADERS.items():
                response.headers.setdefault(key, value)
            return response

        return page_handler
