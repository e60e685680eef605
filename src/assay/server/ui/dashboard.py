"""The dashboard (``/``): counts by kind and status, the work running now with its progress
and a Terminate button (``/dashboard/running``, polled by htmx), and the latest failures with
their messages. Everything is what the signed-in token may ``query``; the counts are grouped
counts in the store (:func:`~assay.server.access.scoped_counts`), never a read of every
entity."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from assay.schema.status import Status
from assay.server.access import Principal, scoped_counts
from assay.server.queries import run_entity_query
from assay.server.resources import RESOURCE_KINDS, ResourceKind
from assay.server.state import server_state
from assay.server.ui.common import PagePrincipal, PageRoute, csrf_token, render, templates
from assay.server.ui.entity_pages import STOPPABLE, progress_of

__all__ = ["FAILURES_SHOWN", "RUNNING_SHOWN", "router"]

router = APIRouter(route_class=PageRoute)

#: Running entities shown per kind.
RUNNING_SHOWN = 25
#: Failures shown (the latest, over every kind).
FAILURES_SHOWN = 10
#: The kinds whose entities run work.
WORK_KINDS = tuple(rk for rk in RESOURCE_KINDS if rk.entity_type.is_workflow)
_FAILED = [Status.Failed, Status.Error]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _queryable(principal: Principal, kinds: tuple[ResourceKind, ...]) -> list[ResourceKind]:
    return [rk for rk in kinds if principal.allows(rk.resource, "query")]


def counts(core: Any, principal: Principal) -> tuple[list[str], list[dict[str, Any]]]:
    """The statuses that occur, and a row per kind the token may query: ``{rk, total,
    by_status}``."""
    visible = _queryable(principal, RESOURCE_KINDS)
    scopes = {rk.kind: principal.scope(rk.resource, "query") for rk in visible}
    found = scoped_counts(core.store, scopes, ("kind", "status"))
    statuses = sorted({str(status) for (_, status) in found})
    rows = []
    for rk in visible:
        by_status = {str(s): n for (k, s), n in found.items() if k == rk.kind}
        rows.append({"rk": rk, "total": sum(by_status.values()), "by_status": by_status})
    return statuses, rows


def running(core: Any, principal: Principal) -> list[dict[str, Any]]:
    """The work running now (``Admitted``), newest first, with its progress."""
    out = []
    for rk in _queryable(principal, WORK_KINDS):
        filters = {"status": Status.Admitted, "order": "descending", "limit": RUNNING_SHOWN}
        for entity in run_entity_query(rk, filters, principal, core):
            out.append(
                {
                    "rk": rk,
                    "entity": entity,
                    "progress": progress_of(entity.message),
                    "may_stop": rk.resource in STOPPABLE
                    and any(
                        principal.allows(
                            rk.resource, f, account=entity.account, entity_id=entity.id
                        )
                        for f in ("terminate", "delete")
                    ),
                }
            )
    out.sort(key=lambda row: row["entity"].creationTime, reverse=True)
    return out


def failures(core: Any, principal: Principal) -> list[dict[str, Any]]:
    """The latest failures (``Failed``, ``Error``) over every kind, with their messages."""
    found: list[dict[str, Any]] = []
    for rk in _queryable(principal, WORK_KINDS):
        filters = {"status": _FAILED, "order": "descending", "limit": FAILURES_SHOWN}
        found.extend(
            {"rk": rk, "entity": e} for e in run_entity_query(rk, filters, principal, core)
        )
    found.sort(
        key=lambda row: row["entity"].lastTransitionTime or row["entity"].creationTime or _EPOCH,
        reverse=True,
    )
    return found[:FAILURES_SHOWN]


@router.get("/")
def dashboard(request: Request, principal: PagePrincipal) -> Response:
    """The dashboard."""
    core = server_state(request).core
    statuses, rows = counts(core, principal)
    return render(
        request,
        "dashboard.html",
        title="Dashboard",
        statuses=statuses,
        count_rows=rows,
        running=running(core, principal),
        failures=failures(core, principal),
    )


@router.get("/dashboard/running")
def running_fragment(request: Request, principal: PagePrincipal) -> Response:
    """The running-work table alone (what the dashboard polls)."""
    core = server_state(request).core
    html = templates.get_template("running_fragment.html").render(
        running=running(core, principal), csrf_token=csrf_token(request)
    )
    return HTMLResponse(html)
