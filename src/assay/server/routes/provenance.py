"""``GET /R/{id}/provenance``, ``/lineage`` and ``/verify``: what a result was made from,
and whether it still is (:mod:`assay.provenance`).

``provenance`` answers the entity's whole provenance block (404 naming the entity where it
recorded none); ``verify`` re-hashes the chain from the entity back to its data and answers
``{id, ok, links: [{kind, id, what, ok, artifact?, expected?, found?, detail?}]}`` — 200 either
way: a mismatch is the answer, not an error; ``lineage`` answers the digests of every
Dataset, Method and system of the entity's chain (:func:`assay.provenance.lineage`). All need
the right to ``get`` the entity.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from assay import errors, provenance
from assay.server.access import entity_for
from assay.server.resources import ResourceKind
from assay.server.routes.entities import ENTITY_ID
from assay.server.state import Caller, State

__all__ = ["add_provenance_routes"]


def _not_recorded(kind: str, id: str) -> errors.NotFoundError:
    return errors.NotFoundError(
        f"{kind} {id} recorded no provenance (it was made before this version of Assay, or "
        "its work has not ended)",
        kind=kind,
        id=id,
    )


def add_provenance_routes(router: APIRouter, rk: ResourceKind) -> None:
    """Add ``GET /R/{id}/provenance`` and ``GET /R/{id}/verify`` for ``rk``."""
    R, kind = rk.resource, rk.kind

    def read_provenance(id: ENTITY_ID, principal: Caller, state: State) -> Response:
        entity_for(principal, rk.group(state.core), R, "get", id)
        block = provenance.read(state.core, id)
        if block is None:
            raise _not_recorded(kind, id)
        return JSONResponse(block)

    def lineage(id: ENTITY_ID, principal: Caller, state: State) -> Response:
        entity_for(principal, rk.group(state.core), R, "get", id)
        found = provenance.lineage(state.core, id)
        if found is None:
            raise _not_recorded(kind, id)
        return JSONResponse(found)

    def verify(id: ENTITY_ID, principal: Caller, state: State) -> Response:
        entity_for(principal, rk.group(state.core), R, "get", id)
        return JSONResponse(provenance.verify(state.core, id).to_dict())

    router.add_api_route(
        f"/{R}/{{id}}/provenance",
        read_provenance,
        methods=["GET"],
        operation_id=f"{R}_provenance",
        summary=f"{kind} provenance",
        description="The digests of what the entity was made from: its output files, its "
        "inputs, the system, the method and the settings.",
        tags=[R],
    )
    router.add_api_route(
        f"/{R}/{{id}}/lineage",
        lineage,
        methods=["GET"],
        operation_id=f"{R}_lineage",
        summary=f"{kind} lineage",
        description="What the entity's result stands on: the digests of every Dataset, "
        "Method and system of its chain (what a Score's provenance holds).",
        tags=[R],
    )
    router.add_api_route(
        f"/{R}/{{id}}/verify",
        verify,
        methods=["GET"],
        operation_id=f"{R}_verify",
        summary=f"verify {kind}",
        description="Re-hash the chain from the entity back to its data; each link ok or "
        "not, a mismatch naming the artifact and both digests.",
        tags=[R],
    )
