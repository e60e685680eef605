"""The pipeline pages: ``/pipelines`` and ``/pipelines/{name}`` (issue 17, item 6).

``/pipelines?account=`` lists an account's pipelines (default: the signed-in account) with
their versions and the deployed one. ``/pipelines/{name}?account=&version=&start=&end=&
valid=&limit=`` shows a pipeline: its versions, the steps of one (``version``; default the
deployed one, else the latest), its traffic splits, its shadow deploys' results side by side,
the anomaly counts, and its inference log as a table, in the window ``[start, end)`` (UTC).

Access is the API's (``routes/pipelines.py``, the same functions): listing needs ``query``
(each pipeline shown only if ``query`` covers it), the page needs ``get`` (a pipeline the
grants do not cover is the same 404 as one never deployed), and what the log holds (splits
observed, shadow results, anomalies, the records) needs ``consume``, as ``GET
/v0/pipelines/{name}/logs`` does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import pyarrow as pa
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from assay import errors
from assay.pipelines.catalog import ServiceCatalog
from assay.server.access import Principal, require
from assay.server.routes.pipelines import (
    allow_pipeline,
    pipeline_account,
    pipeline_for,
    pipeline_summary,
)
from assay.server.state import server_state
from assay.server.ui import pipeline_views as views
from assay.server.ui.common import PagePrincipal, PageRoute, render

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "READ_FOR_COUNTS", "router"]

#: The pipeline pages' routes (``ui_routes`` includes them).
router = APIRouter(route_class=PageRoute)

#: Records the log table shows by default, and at most.
DEFAULT_LIMIT, MAX_LIMIT = 50, 1000
#: The most records read for the counts (splits, shadows, anomalies) of a window.
READ_FOR_COUNTS = 10_000
#: The records shown side by side for a shadow deploy.
SIDE_BY_SIDE = 20


def _when(value: str | None, field: str) -> datetime | None:
    """A time of the filter form (``2024-05-01T12:00``, seconds and a zone optional; none
    given: UTC)."""
    if value is None or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise errors.ValidationError(
            f"pipeline log: {field} {value!r} is not a date and time; write it as "
            "2024-05-01T12:00 (UTC) or with a zone, 2024-05-01T12:00:00+02:00",
            field=field,
            value=value,
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _valid(value: str | None) -> bool | None:
    choices = {None: None, "": None, "all": None, "valid": True, "anomalies": False}
    if value not in choices:
        raise errors.ValidationError(
            f"pipeline log: valid {value!r} is not one of all, valid, anomalies",
            field="valid",
            value=value,
        )
    return choices[value]


def _may(principal: Principal, name: str, account: str, function: str) -> bool:
    try:
        allow_pipeline(principal, name, account, function)
    except errors.AssayError:
        return False
    return True


@router.get("/pipelines")
def pipelines_page(
    request: Request,
    principal: PagePrincipal,
    account: Annotated[str | None, Query(description="The pipelines' account.")] = None,
) -> Response:
    """The pipelines of an account that the caller may query."""
    state = server_state(request)
    chosen = pipeline_account(principal, state, account or None)
    require(principal, "pipelines", "query")
    served = state.pipelines
    names = [
        n
        for n in served.group.list(account=chosen)
        if principal.allows("pipelines", "query", account=chosen, entity_id=f"{chosen}/{n}")
    ]
    return render(
        request,
        "pipelines.html",
        title="Pipelines",
        account=chosen,
        pipelines=[pipeline_summary(served.open(n, chosen)) for n in names],
    )


@router.get("/pipelines/{name}")
def pipeline_page(
    request: Request,
    principal: PagePrincipal,
    name: str,
    account: Annotated[str | None, Query(description="The pipeline's account.")] = None,
    version: Annotated[int | None, Query(ge=1, description="The version shown.")] = None,
    start: Annotated[str | None, Query(description="Window start (UTC).")] = None,
    end: Annotated[str | None, Query(description="Window end, exclusive.")] = None,
    valid: Annotated[str | None, Query(description="all, valid or anomalies.")] = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description="Records in the log table.")
    ] = DEFAULT_LIMIT,
) -> Response:
    """A pipeline: versions, steps, splits, shadow results, anomalies and its log."""
    state = server_state(request)
    pipeline = pipeline_for(state, principal, name, account or None, "get")
    since, until = _when(start, "start"), _when(end, "end")
    chosen_valid = _valid(valid)
    versions = pipeline.versions()
    deployed = pipeline.deployed_version
    number = version or (deployed.version if deployed is not None else versions[-1].version)
    shown = next((v for v in versions if v.version == number), None)
    if shown is None:
        raise errors.NotFoundError(
            f"pipeline {name!r} has no version {number}; its versions are "
            f"{', '.join(str(v.version) for v in versions)}",
            kind="PipelineVersion",
            id=str(number),
        )
    catalog = ServiceCatalog(state.core, name)
    definition = shown.definition
    context: dict[str, Any] = {
        "pipeline": pipeline_summary(pipeline),
        "versions": versions,
        "shown": shown,
        # describe() numbers its lines "i: ..."; the page's ordered list numbers them
        "steps": [line.split(": ", 1)[1] for line in definition.describe(catalog.name_of)],
        "services": [(s, catalog.name_of(s)) for s in definition.services()],
        "counters": pipeline.log_counters(),
        "filters": {
            "start": start or "",
            "end": end or "",
            "valid": valid or "all",
            "limit": limit,
        },
        "may_read_log": _may(principal, name, pipeline.account, "consume"),
    }
    splits = views.splits(definition, catalog.name_of, _empty())
    shadows = views.shadows(definition, catalog.name_of, _empty())
    if context["may_read_log"]:
        log = pipeline.log
        read, more_read = log.read(
            limit=READ_FOR_COUNTS,
            dataset=["*", "metadata"],
            start_datetime=since,
            end_datetime=until,
        )
        of_version = views.of_version(read, shown.version)
        failed, more_failed = log.read(
            limit=READ_FOR_COUNTS,
            dataset=["time"],
            failures=True,
            start_datetime=since,
            end_datetime=until,
        )
        splits = views.splits(definition, catalog.name_of, of_version)
        shadows = views.shadows(definition, catalog.name_of, of_version)
        records, more = log.read(
            limit=limit, valid=chosen_valid, start_datetime=since, end_datetime=until
        )
        columns, rows = views.log_table(records)
        context.update(
            read=read.num_rows,
            read_all=not more_read,
            of_version=of_version.num_rows,
            anomalies=views.anomalies(read, failed.num_rows),
            failures_all=not more_failed,
            side_by_side=[views.side_by_side(s, of_version, SIDE_BY_SIDE) for s in shadows],
            columns=columns,
            rows=rows,
            more=more,
        )
    return render(
        request,
        "pipeline.html",
        title=f"Pipeline {name}",
        splits=splits,
        shadows=shadows,
        windowed=since is not None or until is not None,
        **context,
    )


def _empty() -> pa.Table:
    return pa.table({})
