"""The safety-case viewer (``/safetycases/{id}``) and its document
(``/safetycases/{id}/document``): ``docs/design/ui.md``, "The safety-case document".

The document is a notebook's HTML, written by whoever wrote the Method: it is shown in an
``<iframe sandbox>`` without ``allow-same-origin`` (so it runs in an opaque origin, never the
UI's, and cannot read the session), and served with a Content-Security-Policy that sandboxes
it again even when opened on its own and lets it load nothing (:data:`DOCUMENT_CSP`). Its
Scores and Curves are listed beside it, the curves drawn as inline SVG.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from assay.schema.status import is_status_success
from assay.server.access import entity_for
from assay.server.resources import resource_kind
from assay.server.state import server_state
from assay.server.ui.common import PagePrincipal, PageRoute, render
from assay.server.ui.entity_pages import entity_context

__all__ = ["DOCUMENT_CSP", "DOCUMENT_HEADERS", "curve_svg", "router"]

router = APIRouter(route_class=PageRoute)

R = "safetycases"
#: The policy of the document: a sandbox (an opaque origin; no scripts, forms, popups or
#: top-level navigation), nothing loaded from anywhere (images only inline, styles only
#: inline), and framed only by the UI.
DOCUMENT_CSP = (
    "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"
)
DOCUMENT_HEADERS = {
    "Content-Security-Policy": DOCUMENT_CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "SAMEORIGIN",
    "Referrer-Policy": "no-referrer",
}

_WIDTH, _HEIGHT, _PAD = 320, 180, 28


def curve_svg(curve: Any) -> dict[str, Any] | None:
    """A curve's first two dimensions as a polyline in a ``_WIDTH`` x ``_HEIGHT`` box: ``{x,
    y, points, x_range, y_range}`` for the template (None when it has fewer than two
    dimensions or no finite points)."""
    names = list(curve.dimensions)
    if len(names) < 2:
        return None
    xs, ys = curve.points.get(names[0], []), curve.points.get(names[1], [])
    pairs = [
        (float(x), float(y))
        for x, y in zip(xs, ys, strict=False)
        if x == x and y == y and abs(x) != float("inf") and abs(y) != float("inf")
    ]
    if not pairs:
        return None
    x0, x1 = min(p[0] for p in pairs), max(p[0] for p in pairs)
    y0, y1 = min(p[1] for p in pairs), max(p[1] for p in pairs)
    dx, dy = (x1 - x0) or 1.0, (y1 - y0) or 1.0
    width, height = _WIDTH - 2 * _PAD, _HEIGHT - 2 * _PAD
    points = " ".join(
        f"{_PAD + (x - x0) / dx * width:.1f},{_HEIGHT - _PAD - (y - y0) / dy * height:.1f}"
        for x, y in pairs
    )
    return {
        "x": curve.dimensions[names[0]].title or names[0],
        "y": curve.dimensions[names[1]].title or names[1],
        "points": points,
        "x_range": (x0, x1),
        "y_range": (y0, y1),
        "width": _WIDTH,
        "height": _HEIGHT,
        "pad": _PAD,
    }


@router.get("/safetycases/{id}")
def safetycase_page(request: Request, id: str, principal: PagePrincipal) -> Response:
    """The safety case's page: its document beside its Scores and Curves, then what every
    entity page shows."""
    core = server_state(request).core
    entity = entity_for(principal, core.safetycases, R, "get", id)
    context = entity_context(request, principal, resource_kind(R), entity)
    complete = is_status_success(entity.status)
    may_read = principal.allows(R, "download", account=entity.account, entity_id=id)
    curves = core.safetycases.curves(id) if complete else []
    return render(
        request,
        "safetycase.html",
        **context,
        document_url=f"/safetycases/{id}/document" if complete and may_read else None,
        document_note=None
        if complete and may_read
        else (
            "The document is shown once the safety case is Complete."
            if not complete
            else "This token may not read the document (it needs 'download' on safetycases)."
        ),
        scores=core.safetycases.scores(id) if complete else [],
        curves=[(c, curve_svg(c)) for c in curves],
    )


@router.get("/safetycases/{id}/document")
def document(request: Request, id: str, principal: PagePrincipal) -> Response:
    """The safety case's HTML document, sandboxed by its CSP (what the viewer frames)."""
    core = server_state(request).core
    entity_for(principal, core.safetycases, R, "download", id)
    return HTMLResponse(core.safetycases.document(id), headers=DOCUMENT_HEADERS)
