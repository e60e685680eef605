"""A list page and an entity page per resource kind (``docs/design/ui.md``, "Pages").

=======  ============================  ===========================================  =========
Method   Path                          Shows / does                                 Function
=======  ============================  ===========================================  =========
GET      /R?status&label&name&account  the visible entities, newest first, paged    query
         &after&limit                  (``after`` = the last id of the page)
GET      /R/{id}                       spec, status, references both ways,          get
                                       artifacts, log, labels, provenance
GET      /R/{id}/logs                  the log's last lines (an htmx fragment,      get
                                       polled while the work runs)
POST     /R/{id}/labels                set / remove labels                          edit
POST     /R/{id}/terminate             stop the work (jobs and sessions)            terminate
                                                                                    or delete
=======  ============================  ===========================================  =========

Every check is the API's (:func:`~assay.server.access.entity_for`,
:func:`~assay.server.queries.run_entity_query`): another account's entity is the same 404 as
a missing one, and lists hold only what the token may query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import FormData, QueryParams

from assay import errors, provenance
from assay.core.logs import read_entity_log
from assay.engine.logs import select_lines
from assay.schema.status import Status, is_status_terminal
from assay.server.access import Principal, entity_for
from assay.server.queries import run_entity_query
from assay.server.resources import RESOURCE_KINDS, ResourceKind
from assay.server.routes.artifacts import artifact_links
from assay.server.routes.entities import TERMINABLE, TERMINATE_FUNCTIONS
from assay.server.state import ServerState, server_state
from assay.server.ui.common import (
    PagePrincipal,
    PageRoute,
    check_csrf,
    entity_href,
    render,
    see_other,
    templates,
)

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "LOG_LINES",
    "MAX_PAGE_SIZE",
    "STOPPABLE",
    "entity_context",
    "list_filters",
    "router",
]

router = APIRouter(route_class=PageRoute)

#: Entities on a list page unless ``limit`` says otherwise.
DEFAULT_PAGE_SIZE = 50
#: The most entities on one list page.
MAX_PAGE_SIZE = 500
#: Lines of the log an entity page shows (the last ones).
LOG_LINES = 200
#: Dependents listed per entity page (per reference field).
DEPENDENTS_SHOWN = 50
#: The kinds whose work a page can stop: the jobs, and inference sessions.
STOPPABLE = TERMINABLE | {"inferencesessions"}
#: The statuses a list can be filtered by.
STATUSES = tuple(sorted(Status.ALL))
_PROGRESS = re.compile(r"^\s*([\d,]+)\s*/\s*([\d,]+)\b")


def _param(params: QueryParams, name: str) -> str:
    return (params.get(name) or "").strip()


def list_filters(rk: ResourceKind, params: QueryParams) -> tuple[dict[str, Any], int]:
    """The query filters and page size of a list page's parameters (``status``, ``label``
    as ``key=value`` or ``key``, ``name``, ``account``, ``after``, ``limit``); a bad one is a
    422 naming it."""
    filters: dict[str, Any] = {"order": "descending"}
    for name in ("status", "name", "account", "after"):
        value = _param(params, name)
        if value:
            filters[name] = value
    label = _param(params, "label")
    if label:
        key, sep, value = label.partition("=")
        if not key.strip():
            raise errors.ValidationError(
                f"{rk.kind} list: label filter {label!r} has no key; write key=value (or just "
                "key, for entities that have the label)",
                field="label",
                value=label,
            )
        filters["labels"] = {key.strip(): value.strip() if sep else None}
    raw = _param(params, "limit")
    size = DEFAULT_PAGE_SIZE
    if raw:
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise errors.ValidationError(
                f"{rk.kind} list: limit must be a whole number from 1 to {MAX_PAGE_SIZE}, got "
                f"{raw!r}",
                field="limit",
                value=raw,
            )
    return filters, size


def progress_of(message: str | None) -> tuple[int, int] | None:
    """``(done, total)`` from a running workflow's message (``41 / 60 instances, ...``)."""
    match = _PROGRESS.match(message or "")
    if match is None:
        return None
    done, total = (int(g.replace(",", "")) for g in match.groups())
    return (done, total) if total > 0 else None


@dataclass(frozen=True)
class Reference:
    """A link between two entities, as an entity page shows it."""

    relation: str
    """The reference's field (``dataset``, ``dependency``, ...)."""
    id: str
    """The other entity's id."""
    kind: str | None
    """Its kind, when the caller may see it."""
    name: str | None
    """Its name, when it has one and the caller may see it."""
    status: str | None
    """Its status, when the caller may see it."""
    href: str | None
    """Its page, when the caller may see it."""


def _resource_of(kind: str) -> str | None:
    return next((rk.resource for rk in RESOURCE_KINDS if rk.kind == kind), None)


def _visible_doc(principal: Principal, doc: dict[str, Any] | None) -> bool:
    if doc is None:
        return False
    resource = _resource_of(str(doc.get("kind")))
    return resource is not None and principal.allows(
        resource, "get", account=str(doc.get("account")), entity_id=str(doc.get("id"))
    )


def _reference(relation: str, doc: dict[str, Any]) -> Reference:
    kind = str(doc.get("kind"))
    return Reference(
        relation=relation,
        id=str(doc.get("id")),
        kind=kind,
        name=doc.get("name"),
        status=doc.get("status"),
        href=entity_href(kind, str(doc.get("id"))),
    )


def dependencies(state: ServerState, principal: Principal, entity: Any) -> list[Reference]:
    """What ``entity`` refers to: a link for each entity the caller may see, the bare id
    otherwise (it is in the entity's spec anyway; whether it exists is not said)."""
    wanted: list[tuple[str, str]] = []
    for relation, ids in entity.query_refs().items():
        wanted.extend((relation, i) for i in ids)
    named = {i for _, i in wanted}
    wanted.extend(("dependency", i) for i in entity.dependencies() if i not in named)
    out = []
    for relation, ref_id in wanted:
        record = state.core.store.get(ref_id)
        doc = None if record is None else record.doc
        if doc is not None and _visible_doc(principal, doc):
            out.append(_reference(relation, doc))
        else:
            out.append(Reference(relation, ref_id, None, None, None, None))
    return out


def _ref_fields(state: ServerState) -> list[str]:
    fields = {"dependency"}
    for rk in RESOURCE_KINDS:
        fields.update(rk.group(state.core).ref_filters)
    return sorted(fields)


def dependents(state: ServerState, principal: Principal, entity_id: str) -> list[Reference]:
    """The entities that refer to ``entity_id`` and that the caller may see (others are not
    mentioned at all)."""
    seen: dict[str, Reference] = {}
    for field in _ref_fields(state):
        docs = state.core.store.query(
            refs={field: entity_id}, order="descending", limit=DEPENDENTS_SHOWN
        )
        for doc in docs:
            if doc.get("id") in seen or not _visible_doc(principal, doc):
                continue
            seen[str(doc["id"])] = _reference(field, doc)
    return list(seen.values())


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        rows: list[tuple[str, str]] = []
        for key, item in value.items():
            rows.extend(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return rows
    if isinstance(value, list):
        if all(not isinstance(v, dict | list) for v in value):
            return [(prefix, ", ".join(str(v) for v in value))]
        rows = []
        for i, item in enumerate(value):
            rows.extend(_flatten(item, f"{prefix}[{i}]"))
        return rows
    return [(prefix, "" if value is None else str(value))]


def entity_context(
    request: Request, principal: Principal, rk: ResourceKind, entity: Any
) -> dict[str, Any]:
    """What the entity page of ``entity`` shows (the safety-case viewer adds to it)."""
    state = server_state(request)
    R, id = rk.resource, entity.id

    def may(function: str | tuple[str, ...]) -> bool:
        functions = (function,) if isinstance(function, str) else function
        return any(principal.allows(R, f, account=entity.account, entity_id=id) for f in functions)

    artifacts: list[Any] = []
    artifacts_note: str | None = None
    if may("download"):
        try:
            # links relative to the page (the UI's own origin), whatever the public URL
            artifacts = artifact_links(state, "", rk, entity, compute_digests=False)
        except errors.ConflictError as exc:
            artifacts_note = str(exc)
    else:
        artifacts_note = "This token may not download the entity's files."
    block = provenance.read(state.core, id) if entity.is_workflow else None
    spec = entity.model_dump(mode="json")
    return {
        "title": f"{rk.kind} {getattr(entity, 'name', None) or id}",
        "rk": rk,
        "entity": entity,
        "spec": spec,
        "references": dependencies(state, principal, entity),
        "dependents": dependents(state, principal, id),
        "artifacts": artifacts,
        "artifacts_note": artifacts_note,
        "log": _log_context(state, rk, entity),
        "labels": dict(entity.labels or {}),
        "may_edit": may("edit"),
        "may_stop": R in STOPPABLE
        and not is_status_terminal(entity.status)
        and may(TERMINATE_FUNCTIONS),
        "provenance": block,
        "provenance_rows": _flatten(provenance.summary(block)) if block else [],
        "progress": progress_of(entity.message) if entity.status == Status.Admitted else None,
    }


def _log_context(state: ServerState, rk: ResourceKind, entity: Any) -> dict[str, Any]:
    lines = read_entity_log(state.core, entity)
    chosen = select_lines(lines, limit=LOG_LINES, since=None, what=f"{rk.kind} {entity.id}")
    return {
        "lines": [line.to_wire() for line in chosen],
        "total": len(lines),
        "live": not is_status_terminal(entity.status),
        "url": f"/{rk.resource}/{entity.id}/logs",
    }


def _labels_edit(form: FormData, current: dict[str, str]) -> dict[str, str | None]:
    """The labels to set (and to remove: None) from the labels form: rows of ``key`` and
    ``value`` fields, and ``remove`` checkboxes naming keys; unchanged labels are left out."""
    keys = [str(k).strip() for k in form.getlist("key")]
    values = [str(v).strip() for v in form.getlist("value")]
    if len(keys) != len(values):
        raise errors.ValidationError(
            "labels form: every label row needs a key and a value; reload the page and edit "
            "the labels again",
            field="labels",
        )
    removed = {str(k) for k in form.getlist("remove")}
    edit: dict[str, str | None] = {}
    for key, value in zip(keys, values, strict=True):
        if not key and not value:
            continue
        if not key:
            raise errors.ValidationError(
                f"labels form: the value {value!r} has no key; give the label a key",
                field="labels",
                value=value,
            )
        if key in removed:
            continue
        if current.get(key) != value:
            edit[key] = value
    for key in removed:
        if key in current:
            edit[key] = None
    return edit


def _add_pages(rk: ResourceKind) -> None:
    R = rk.resource

    def list_page(request: Request, principal: PagePrincipal) -> Response:
        state = server_state(request)
        filters, size = list_filters(rk, request.query_params)
        rows = run_entity_query(rk, {**filters, "limit": size + 1}, principal, state.core)
        more = len(rows) > size
        rows = rows[:size]
        shown = {k: _param(request.query_params, k) for k in ("status", "label", "name", "account")}
        next_url = None
        if more and rows:
            params = {k: v for k, v in shown.items() if v}
            if size != DEFAULT_PAGE_SIZE:
                params["limit"] = str(size)
            params["after"] = rows[-1].id
            next_url = f"/{R}?{urlencode(params)}"
        first_url = None
        if "after" in filters:
            params = {k: v for k, v in shown.items() if v}
            first_url = f"/{R}" + (f"?{urlencode(params)}" if params else "")
        return render(
            request,
            "list.html",
            title=R,
            rk=rk,
            rows=rows,
            filters=shown,
            statuses=STATUSES,
            next_url=next_url,
            first_url=first_url,
            may_stop=R in STOPPABLE,
        )

    router.add_api_route(f"/{R}", list_page, methods=["GET"], name=f"ui_{R}_list")

    def entity_page(request: Request, id: str, principal: PagePrincipal) -> Response:
        entity = entity_for(principal, rk.group(server_state(request).core), R, "get", id)
        return render(request, "entity.html", **entity_context(request, principal, rk, entity))

    if R != "safetycases":  # the safety-case viewer serves its page (safetycase_pages.py)
        router.add_api_route(f"/{R}/{{id}}", entity_page, methods=["GET"], name=f"ui_{R}_get")

    def log_fragment(request: Request, id: str, principal: PagePrincipal) -> Response:
        state = server_state(request)
        entity = entity_for(principal, rk.group(state.core), R, "get", id)
        html = templates.get_template("log_fragment.html").render(
            log=_log_context(state, rk, entity)
        )
        return HTMLResponse(html)

    router.add_api_route(f"/{R}/{{id}}/logs", log_fragment, methods=["GET"], name=f"ui_{R}_logs")

    async def edit_labels(request: Request, id: str, principal: PagePrincipal) -> Response:
        form = await request.form()
        check_csrf(request, form)
        state = server_state(request)

        def apply() -> None:
            group = rk.group(state.core)
            entity = entity_for(principal, group, R, "edit", id)
            edit = _labels_edit(form, dict(entity.labels or {}))
            if edit:
                group.label(id, edit)

        await _in_thread(apply)
        return see_other(f"/{R}/{id}#labels")

    router.add_api_route(
        f"/{R}/{{id}}/labels", edit_labels, methods=["POST"], name=f"ui_{R}_labels"
    )

    if R in STOPPABLE:

        async def terminate(request: Request, id: str, principal: PagePrincipal) -> Response:
            form = await request.form()
            check_csrf(request, form)
            state = server_state(request)

            def stop() -> None:
                group = rk.group(state.core)
                entity_for(principal, group, R, TERMINATE_FUNCTIONS, id)
                group.terminate(id)

            await _in_thread(stop)
            back = str(form.get("next") or "")
            return see_other(back if back in ("/", f"/{R}") else f"/{R}/{id}")

        router.add_api_route(
            f"/{R}/{{id}}/terminate", terminate, methods=["POST"], name=f"ui_{R}_terminate"
        )


async def _in_thread(call: Any) -> None:
    import anyio.to_thread

    await anyio.to_thread.run_sync(call)


for _rk in RESOURCE_KINDS:
    _add_pages(_rk)
