"""The comparison pages: ``/compare`` (systems x scores, with confidence intervals and paired
differences) and ``/compare.csv`` (issue 17, item 5; the numbers: :mod:`assay.comparison`).

``/compare?method=ID[&score=NAME][&pair=CASE...]`` shows every safety case of a Method as a
row (the system it is about and its scores), an SVG chart of one score with its intervals,
and the paired differences of that score between the rows ``pair`` (the checked rows; by
default every row, at most :data:`~assay.comparison.MAX_PAIRED_ROWS`).
``/compare.csv`` takes the same parameters and ``part=scores`` (default) or
``part=differences``.

What a caller sees is what the API would show it, with the API's checks: the Method needs
``get`` (another account's Method is the same 404 as a missing one); a score is shown when
the score query would return it (``routes/scores.py``); an entity's name when the caller may
use the entity (``access.reference_viewer``); per-instance values are read for a paired
difference only from a Measurement the caller may ``download``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from assay import comparison, errors
from assay.analysis import stats
from assay.schema.platform import ScoreSpec
from assay.server.access import Principal, entity_for, reference_viewer, scoped_query
from assay.server.routes.scores import visible_scores
from assay.server.state import server_state
from assay.server.ui.charts import ChartPoint, interval_chart
from assay.server.ui.common import PagePrincipal, PageRoute, render

__all__ = ["MOST_METHODS", "router", "visibility"]

#: The comparison pages' routes (``ui_routes`` includes them).
router = APIRouter(route_class=PageRoute)

#: The most Methods offered in the picker (the newest first); any other is reached by id.
MOST_METHODS = 500

_ID = re.compile(r"^[0-9a-f]{32}$")


def visibility(principal: Principal, state: Any) -> comparison.Visibility:
    """What ``principal`` may see of a comparison, by the API's rules (module docstring)."""
    score_visible = visible_scores(state, principal)
    viewer = reference_viewer(principal)

    def name(kind: str, account: str, id: str) -> bool:
        try:
            return viewer(kind, account, id)
        except errors.PermissionDeniedError:  # covered, but not for get: no name either
            return False

    def data(kind: str, account: str, id: str) -> bool:
        return principal.allows("measurements", "download", account=account, entity_id=id)

    return comparison.Visibility(score=score_visible, name=name, data=data)


def _methods(principal: Principal, core: Any) -> list[Any]:
    """The Methods with scores the caller may query, newest first."""
    if not principal.allows("methods", "query"):
        return []
    found = scoped_query(
        core.methods,
        {"outputKind": "SafetyCase", "order": "descending", "limit": MOST_METHODS},
        principal.scope("methods", "query"),
    )
    return [m for m in found if any(isinstance(s, ScoreSpec) for s in m.scores)]


def _checked_id(value: str | None, field: str) -> str | None:
    if value is None or value == "":
        return None
    if not _ID.match(value):
        raise errors.ValidationError(
            f"comparison: {field} {value!r} is not an entity id (32 lowercase hex digits); "
            "pick a Method from the list",
            field=field,
            value=value,
        )
    return value


def _comparison(
    request: Request,
    principal: Principal,
    method: str,
    score: str | None,
    pair: list[str] | None,
) -> comparison.SystemComparison:
    state = server_state(request)
    entity_for(principal, state.core.methods, "methods", "get", method)
    if not (principal.allows("scores", "query") or principal.allows("safetycases", "get")):
        raise errors.PermissionDeniedError(
            f"this token (for {principal.subject}) does not allow 'query' on scores, so "
            "there is nothing it may compare"
        )
    return comparison.compare_method(
        state.core,
        method,
        score=score or None,
        pair=[p for p in pair if p] if pair else None,
        visibility=visibility(principal, state),
    )


def _p_value(p: float | None) -> str:
    if p is None:
        return "—"
    if p < 0.0001:
        return "< 0.0001"
    return f"{p:.3g}"


def _chart(table: comparison.SystemComparison) -> Any:
    spec = table.spec(table.score) if table.score else None
    if spec is None:
        return None
    points = []
    for row in table.rows:
        score = row.scores.get(spec.name)
        if score is None:
            continue
        low, high = score.interval or (None, None)
        points.append(ChartPoint(row.label, score.quantity, low, high))
    level = next(
        (s.confidence for r in table.rows if (s := r.scores.get(spec.name)) and s.confidence),
        None,
    )
    intervals = (
        f"whiskers: the {level:.0%} confidence intervals the safety cases published"
        if level
        else "whiskers: the confidence intervals the safety cases published, where any"
    )
    return interval_chart(
        points,
        title=f"{spec.title} by system",
        description=f"{spec.title} of each system ({intervals}).",
        axis_label=spec.title + (f" ({spec.unit})" if spec.unit else ""),
        chart_id="compare-chart",
        formatter=spec.format_quantity,
    )


def _exports(table: comparison.SystemComparison) -> dict[str, str]:
    """The CSV links of the comparison shown."""
    query: list[tuple[str, str]] = [("method", table.method or "")]
    if table.score:
        query.append(("score", table.score))
    query += [("pair", case) for case in table.paired_rows]
    return {
        part: "/compare.csv?" + urlencode([*query, ("part", part)])
        for part in ("scores", "differences")
    }


@router.get("/compare")
def compare_page(
    request: Request,
    principal: PagePrincipal,
    method: Annotated[str | None, Query(description="The Method compared.")] = None,
    score: Annotated[str | None, Query(description="The score charted and paired.")] = None,
    pair: Annotated[list[str] | None, Query(description="Safety cases compared pairwise.")] = None,
) -> Response:
    """Pick a Method; see its systems x scores, the chart and the paired differences."""
    core = server_state(request).core
    methods = _methods(principal, core)
    chosen = _checked_id(method, "method")
    table = None if chosen is None else _comparison(request, principal, chosen, score, pair)
    if chosen is not None and not any(m.id == chosen for m in methods):
        # a Method reached by id (beyond the picker's list, or by a single-entity grant)
        methods.insert(0, core.methods.require(chosen))
    spec = table.spec(table.score) if table is not None and table.score else None
    return render(
        request,
        "compare.html",
        title="Compare systems",
        methods=methods,
        table=table,
        spec=spec,
        chart=None if table is None else _chart(table),
        p_value=_p_value,
        resamples=stats.DEFAULT_RESAMPLES,
        exports=None if table is None else _exports(table),
    )


@router.get("/compare.csv")
def compare_csv(
    request: Request,
    principal: PagePrincipal,
    method: Annotated[str, Query(description="The Method compared.")],
    score: Annotated[str | None, Query(description="The score paired.")] = None,
    pair: Annotated[list[str] | None, Query(description="Safety cases compared pairwise.")] = None,
    part: Annotated[
        str, Query(description="scores (one line per system and score) or differences.")
    ] = "scores",
) -> Response:
    """The comparison as CSV (:func:`assay.comparison.scores_csv` or ``differences_csv``)."""
    if part not in ("scores", "differences"):
        raise errors.ValidationError(
            f"comparison export: part {part!r} is not one of scores, differences",
            field="part",
            value=part,
        )
    chosen = _checked_id(method, "method")
    if chosen is None:
        raise errors.ValidationError(
            "comparison export: give the Method to compare (?method=ID)", field="method"
        )
    table = _comparison(request, principal, chosen, score, pair)
    text = comparison.scores_csv(table) if part == "scores" else comparison.differences_csv(table)
    suffix = "" if part == "scores" else f"-{table.score}-differences"
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="comparison-{chosen[:8]}{suffix}.csv"'
        },
    )
