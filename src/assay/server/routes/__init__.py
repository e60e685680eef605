"""The API's routes, one module per concern; :func:`api_router` puts them together under
``/v0`` in the order the paths need (``/safetycases/scores`` before ``/safetycases/{id}``)."""

from __future__ import annotations

import functools

from fastapi import APIRouter
from starlette.routing import BaseRoute

from assay.server.errors import API_ERRORS, STORAGE_ERRORS
from assay.server.resources import RESOURCE_KINDS
from assay.server.routes.artifacts import add_artifact_routes, add_storage_routes
from assay.server.routes.entities import add_entity_routes
from assay.server.routes.families import add_family_routes
from assay.server.routes.logs import add_log_routes
from assay.server.routes.pipelines import add_pipeline_routes
from assay.server.routes.provenance import add_provenance_routes
from assay.server.routes.scores import add_score_routes
from assay.server.routes.secrets import add_secret_routes
from assay.server.routes.sessions import add_session_routes

__all__ = ["API_PREFIX", "api_router", "routes", "storage_router"]

#: The root of the API's routes.
API_PREFIX = "/v0"


def api_router() -> APIRouter:
    """Every authenticated route, under :data:`API_PREFIX`."""
    router = APIRouter(prefix=API_PREFIX, responses=API_ERRORS)
    add_score_routes(router)
    add_session_routes(router)
    add_pipeline_routes(router)
    add_family_routes(router)
    add_secret_routes(router)
    for rk in RESOURCE_KINDS:
        add_entity_routes(router, rk)
        add_artifact_routes(router, rk)
        add_log_routes(router, rk)
        add_provenance_routes(router, rk)
    return router


def storage_router() -> APIRouter:
    """The endpoints of signed artifact URLs (their paths are absolute)."""
    router = APIRouter(responses=STORAGE_ERRORS)
    add_storage_routes(router)
    return router


@functools.cache
def routes() -> tuple[BaseRoute, ...]:
    """Every route of the API, built once per process: routes hold no app state (they find
    the app's through the request), so every app shares them, and making an app is cheap."""
    return (*api_router().routes, *storage_router().routes)
