"""``GET /R/{id}/logs/workflow?limit=&since=``: the log of an entity's workflow.

Answers ``{workflow: {kind, id}, logs: [{timestamp, message, labels}], totalLines}``, the
reference's shape, for every kind: the entity's whole log as
:func:`assay.core.logs.read_entity_log` reads it — what its workflow wrote (every kind; a
dataset's or a model's may be empty), what its Method printed (measurements, safety cases:
``stream=method``), what its replicas printed (sessions, an evaluation's own session:
``stream=replica``, ``replica=i``), in time order. Workflow lines carry the time they were
written; lines of plain-text files carry their file's last write. ``limit`` keeps the last
lines (default 1000); ``since`` (``30s``, ``15m``, ``2h``, ``1d`` or an ISO 8601 time) keeps
lines written since then; ``totalLines`` counts every line of the log.
"""

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from assay.core.logs import read_entity_log
from assay.engine.logs import parse_since, select_lines
from assay.schema.base import SchemaModel
from assay.schema.platform import EntityIdentifier
from assay.server.access import entity_for
from assay.server.resources import ResourceKind
from assay.server.routes.entities import ENTITY_ID
from assay.server.state import Caller, State, json_response

__all__ = ["WorkflowLogEntry", "WorkflowLogsResponse", "add_log_routes", "parse_since"]


class WorkflowLogEntry(SchemaModel):
    """One line of a workflow's log."""

    timestamp: str
    """When the line was written (ISO 8601, UTC); for a line of a plain-text log (a Method's
    or a replica's output), when its file was last written."""
    message: str
    """The line."""
    labels: dict[str, str]
    """Where the line comes from: ``stream`` (``workflow``, ``method`` or ``replica``),
    ``replica`` (its number), ``session`` (an evaluation's own session)."""


class WorkflowLogsResponse(SchemaModel):
    """The answer of ``GET /R/{id}/logs/workflow``."""

    workflow: EntityIdentifier
    """The entity whose workflow wrote the log."""
    logs: list[WorkflowLogEntry]
    """The lines (the last ``limit`` of them)."""
    totalLines: int
    """How many lines the log has in all."""


def add_log_routes(router: APIRouter, rk: ResourceKind) -> None:
    """Add ``GET /R/{id}/logs/workflow`` for ``rk``."""
    R, kind = rk.resource, rk.kind

    def workflow_logs(
        id: ENTITY_ID,
        principal: Caller,
        state: State,
        limit: Annotated[int, Query(ge=1, description="The most lines to return.")] = 1000,
        since: Annotated[
            str | None, Query(description="Only lines since then: '30m', '2h', '1d' or ISO 8601.")
        ] = None,
    ) -> Response:
        entity = entity_for(principal, rk.group(state.core), R, "get", id)
        lines = read_entity_log(state.core, entity)
        chosen = select_lines(lines, limit=limit, since=since, what=f"{kind} {id}")
        response = WorkflowLogsResponse(
            workflow=EntityIdentifier(id=id, kind=kind),
            logs=[WorkflowLogEntry.model_validate(line.to_wire()) for line in chosen],
            totalLines=len(lines),
        )
        return json_response(response)

    router.add_api_route(
        f"/{R}/{{id}}/logs/workflow",
        workflow_logs,
        methods=["GET"],
        operation_id=f"{R}_workflow_logs",
        summary=f"{kind} workflow logs",
        description="The entity's log: its workflow's lines, its Method's output (analyses) "
        "and its replicas' output (sessions, an evaluation's own session), in time order.",
        tags=[R],
        responses={200: {"model": WorkflowLogsResponse, "description": "The log."}},
    )
