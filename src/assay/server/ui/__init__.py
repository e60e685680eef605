"""The web UI: server-rendered pages at the site root, next to the API under ``/v0``
(``docs/design/ui.md``).

``create_app`` calls :func:`install_ui`, which adds :func:`ui_routes` (sign-in, dashboard, a
list and an entity page per kind, the safety-case viewer, comparison, pipelines, the API
docs), the assets under ``/static`` and the app's sign-in sessions. The pages use the API's
access checks (:mod:`assay.server.access`), so a page shows exactly what the signed-in
token could read through the API. None of these routes is in the OpenAPI document.
"""

from __future__ import annotations

import functools

from fastapi import APIRouter, FastAPI
from starlette.staticfiles import StaticFiles

from assay.server.ui import (
    api_docs,
    compare,
    dashboard,
    entity_pages,
    pipeline_pages,
    safetycase_pages,
    signin,
)
from assay.server.ui.common import STATIC_DIR, PageRoute
from assay.server.ui.sessions import SignInSessions

__all__ = ["install_ui", "ui_routes"]


@functools.cache
def ui_routes() -> APIRouter:
    """Every page of the UI, in the order their paths need (the safety-case viewer and the
    fixed paths before the per-kind ``/{resource}/{id}`` pages); built once per process (the
    routes hold no app state)."""
    router = APIRouter(route_class=PageRoute, include_in_schema=False)
    for module in (
        signin,
        api_docs,
        dashboard,
        compare,
        pipeline_pages,
        safetycase_pages,
        entity_pages,
    ):
        router.include_router(module.router, include_in_schema=False)
    return router


def install_ui(app: FastAPI) -> None:
    """Serve the UI from ``app``: its pages, ``/static`` and its sign-in sessions."""
    app.state.ui_sessions = SignInSessions()
    app.include_router(ui_routes(), include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
