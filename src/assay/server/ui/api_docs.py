"""The API's documentation pages, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), from the
assets vendored under ``/static/vendor/`` (no CDN: they work with no network).

FastAPI writes the pages; their one inline script (Swagger UI's set-up) is allowed by its
sha256 in the page's Content-Security-Policy rather than by ``'unsafe-inline'``. Both
libraries set styles at run time, and ReDoc searches in a worker it makes from a ``blob:``
URL, so these two pages (which show nothing but the OpenAPI document) allow inline styles and
``blob:`` workers; every other page allows neither. Like ``/openapi.json``, they need no
sign-in.
"""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import APIRouter
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

from assay.server.ui.common import PageRoute

__all__ = ["VENDOR", "docs_csp", "router"]

router = APIRouter(route_class=PageRoute)

#: Where the vendored assets are served.
VENDOR = "/static/vendor"
OPENAPI_URL = "/openapi.json"
TITLE = "Assay API"
FAVICON = "/static/favicon.svg"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def docs_csp(html: str) -> str:
    """The Content-Security-Policy of a docs page: its own origin, plus its inline scripts
    by their sha256."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in _INLINE_SCRIPT.findall(html)
    )
    return (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ).replace("'self' ;", "'self';")


def _page(response: HTMLResponse) -> Response:
    html = bytes(response.body).decode()
    return HTMLResponse(html, headers={"Content-Security-Policy": docs_csp(html)})


@router.get("/docs")
def swagger_ui() -> Response:
    """Swagger UI over the OpenAPI document."""
    return _page(
        get_swagger_ui_html(
            openapi_url=OPENAPI_URL,
            title=TITLE,
            swagger_js_url=f"{VENDOR}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{VENDOR}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=FAVICON,
        )
    )


@router.get("/redoc")
def redoc() -> Response:
    """ReDoc over the OpenAPI document."""
    return _page(
        get_redoc_html(
            openapi_url=OPENAPI_URL,
            title=TITLE,
            redoc_js_url=f"{VENDOR}/redoc/redoc.standalone.js",
            redoc_favicon_url=FAVICON,
            with_google_fonts=False,
        )
    )
