"""``GET /R/{id}/logs/workflow?limit=&since=``: the log of an entity's workflow.

Answers ``{workflow: {kind, id}, logs: [{timestamp, message, labels}], totalLines}``, the
reference's shape. Measurements and safety cases log what their Method printed (stdout and
stderr, so far while it runs); other kinds have no log of their own yet and answer an empty
one. ``limit`` keeps the last lines (default 1000); ``since`` (``30s``, ``15m``, ``2h``,
``1d`` or an ISO 8601 time) keeps lines written since then. Lines carry the time the log was
last written (the log file has no per-line times).
"""

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from assay import errors
from assay.schema.base import SchemaModel
from assay.schema.platform import EntityIdentifier
from assay.server.access import entity_for
from assay.server.resources import ResourceKind
from assay.server.routes.entities import ENTITY_ID
from assay.server.state import Caller, State, json_response

__all__ = ["WorkflowLogEntry", "WorkflowLogsResponse", "add_log_routes", "parse_since"]

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class WorkflowLogEntry(SchemaModel):
    """One line of a workflow's log."""

    timestamp: str
    """When the line was written (ISO 8601)."""
    message: str
    """The line."""
    labels: dict[str, str]
    """Where the line comes from (``stream``)."""


class WorkflowLogsResponse(SchemaModel):
    """The answer of ``GET /R/{id}/logs/workflow``."""

    workflow: EntityIdentifier
    """The entity whose workflow wrote the log."""
    logs: list[WorkflowLogEntry]
    """The lines (the last ``limit`` of them)."""
    totalLines: int
    """How many lines the log has in all."""


def parse_since(since: str, now: datetime) -> datetime:
    """The time ``since`` names: a duration before ``now`` (``90s``, ``15m``, ``2h``, ``1d``) or
    an ISO 8601 time."""
    match = _DURATION.match(since.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(since.strip().replace("Z", "+00:00"))
    except ValueError:
        raise errors.ValidationError(
            f"since {since!r} is neither a duration (e.g. '30m', '2h', '1d') nor an ISO 8601 time",
            field="since",
            value=since,
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _log_text(state: Any, rk: ResourceKind, id: str) -> tuple[str, datetime | None]:
    group = rk.group(state.core)
    logs = getattr(group, "logs", None)
    if not callable(logs):
        return "", None
    text = str(logs(id))
    storage = state.core.storage
    written: datetime | None = None
    for path in (".assay/logs.txt", ".assay/work/logs.txt"):
        local = storage.local_path(id, path)
        if local is not None and local.is_file():
            written = datetime.fromtimestamp(local.stat().st_mtime, UTC)
            break
    return text, written


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
        text, written = _log_text(state, rk, id)
        when = written or entity.lastTransitionTime or entity.creationTime
        lines = text.splitlines()
        if since and when < parse_since(since, datetime.now(UTC)):
            lines = []
        stamp = when.isoformat().replace("+00:00", "Z")
        entries = [
            WorkflowLogEntry(timestamp=stamp, message=line, labels={"stream": "method"})
            for line in lines[-limit:]
        ]
        response = WorkflowLogsResponse(
            workflow=EntityIdentifier(id=id, kind=kind),
            logs=entries,
            totalLines=len(text.splitlines()),
        )
        return json_response(response)

    router.add_api_route(
        f"/{R}/{{id}}/logs/workflow",
        workflow_logs,
        methods=["GET"],
        operation_id=f"{R}_workflow_logs",
        summary=f"{kind} workflow logs",
        tags=[R],
        responses={200: {"model": WorkflowLogsResponse, "description": "The log."}},
    )
