"""Query parameters of ``GET /<resource>``: reading them, and running the query within what the
caller may see.

The reference client sends every filter as a query parameter, leaving the ones it does not use
empty (``?id=&account=&name=digits``): an empty parameter is no filter. ``query`` and
``labels`` are JSON objects given as strings; in ``query`` (and for a parameter given more
than once) a list value means "any of". A filter given both as a parameter and in ``query`` is
refused rather than silently combined.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException

from assay import errors
from assay.core.groups import COMMON_FILTERS
from assay.server.access import Principal, require, scoped_query
from assay.server.resources import ResourceKind, resource_kind

__all__ = [
    "MAX_LIMIT",
    "collect_parameters",
    "parse_entity_filters",
    "parse_json_object",
    "parse_limit",
    "query_parameters",
    "run_entity_query",
]

#: Parameters that take one value and are not filters.
SINGLE = ("query", "labels", "order", "orderBy", "limit", "after")
#: The largest ``limit``: more than any page needs; far larger numbers overflowed the store's
#: integers (SQLite's are 64-bit), which was a 500.
MAX_LIMIT = 2**31 - 1


def query_parameters(model: type[Any]) -> list[dict[str, Any]]:
    """The OpenAPI description of the query parameters of a query request model."""
    out: list[dict[str, Any]] = []
    for name, field in model.model_fields.items():
        schema: dict[str, Any] = {"type": "string"}
        if name == "limit":
            schema = {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}
        elif name == "order":
            schema = {"type": "string", "enum": ["ascending", "descending"]}
        out.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": field.description or "",
                "schema": schema,
            }
        )
    return out


def parse_json_object(text: str, name: str) -> dict[str, Any]:
    """The JSON object in the parameter ``name``: 400 when it is not JSON, 422 when it is not
    an object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HTTPException(
            400,
            f"the {name} parameter is not valid JSON ({exc.msg}); give a JSON object, e.g. "
            '{"key": "value"}',
        ) from None
    if not isinstance(value, dict):
        raise errors.ValidationError(
            f"the {name} parameter must be a JSON object, got {text[:80]!r}", field=name
        )
    return value


def collect_parameters(
    params: QueryParams, valid: list[str], what: str
) -> dict[str, str | list[str]]:
    """The non-empty parameters (a list for one given more than once); 422 for one not in
    ``valid``."""
    values: dict[str, list[str]] = {}
    for key, value in params.multi_items():
        if value == "":
            continue
        if key not in valid:
            raise errors.ValidationError(
                f"{what}: unknown parameter {key!r}; the parameters are {', '.join(valid)}",
                field=key,
                value=value,
            )
        values.setdefault(key, []).append(value)
    out: dict[str, str | list[str]] = {}
    for key, given in values.items():
        if len(given) > 1 and key in SINGLE:
            raise errors.ValidationError(f"{what}: {key!r} is given more than once", field=key)
        out[key] = given[0] if len(given) == 1 else given
    return out


def parse_limit(value: Any, what: str) -> int:
    """The ``limit`` parameter as a number from 1 to :data:`MAX_LIMIT` (422 otherwise)."""
    try:
        limit = 0 if isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise errors.ValidationError(
            f"{what}: limit must be an integer from 1 to {MAX_LIMIT}, got {value!r}",
            field="limit",
            value=value,
        )
    return limit


def _filter_value(key: str, value: Any, what: str) -> str | list[str]:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise errors.ValidationError(
        f"{what}: filter {key!r} must be a string or a non-empty list of strings, got {value!r}",
        field=key,
        value=value,
    )


def parse_entity_filters(rk: ResourceKind, params: QueryParams, core: Any) -> dict[str, Any] | None:
    """The filters for ``group.query`` from the request's parameters; None when a filter by
    name matches no entity (so nothing can match)."""
    what = f"{rk.kind} query"
    group = rk.group(core)
    valid = list(rk.query_request.model_fields)
    given: dict[str, Any] = dict(collect_parameters(params, valid, what))
    if "query" in given:
        extra = parse_json_object(given.pop("query"), "query")
        for key, value in extra.items():
            if (key in SINGLE and key != "labels") or key not in valid:
                filterable = [k for k in valid if k not in SINGLE or k == "labels"]
                raise errors.ValidationError(
                    f"{what}: {key!r} cannot be used in query; its keys are "
                    f"{', '.join(filterable)}",
                    field="query",
                    value=key,
                )
            if key in given:
                raise errors.ValidationError(
                    f"{what}: {key!r} is given both as a parameter and in query; give it once",
                    field=key,
                )
            given[key] = value
    filters: dict[str, Any] = {}
    names = {name: (resource, ref) for name, resource, ref in rk.name_filters}
    supported = set(COMMON_FILTERS) | set(group.ref_filters) | set(group.field_filters)
    for key, value in given.items():
        if key == "labels":
            labels = value if isinstance(value, dict) else parse_json_object(value, "labels")
            filters["labels"] = labels
        elif key == "limit":
            filters["limit"] = parse_limit(value, what)
        elif key == "orderBy":
            if value != "creationTime":
                raise errors.ValidationError(
                    f"{what}: orderBy {value!r} is not supported; results are ordered by "
                    "creationTime (set order to ascending or descending)",
                    field="orderBy",
                    value=value,
                )
        elif key == "report" and rk.resource == "reports":
            filters["id"] = _filter_value(key, value, what)
        elif key in names:
            resource, ref = names[key]
            wanted = _filter_value(key, value, what)
            matching = [e.id for e in resource_kind(resource).group(core).query(name=wanted)]
            if not matching:
                return None
            filters[ref] = matching
        elif key in supported:
            filters[key] = _filter_value(key, value, what)
        else:
            raise errors.ValidationError(
                f"{what}: the filter {key!r} is not supported by this server; filter the "
                "results yourself",
                field=key,
                value=value,
            )
    for name, (_, ref) in names.items():  # a name filter and an id filter both hold
        if name in given and ref in given:
            ids = [given[ref]] if isinstance(given[ref], str) else given[ref]
            filters[ref] = [i for i in filters[ref] if i in ids]
            if not filters[ref]:
                return None
    return filters


def _check_after(core: Any, principal: Principal, rk: ResourceKind, after: Any) -> None:
    record = core.store.get(after) if isinstance(after, str) else None
    if record is None or not principal.covers(
        rk.resource, str(record.doc.get("account")), str(after)
    ):
        raise errors.ValidationError(
            f"after {after!r} is not the id of an entity you can see; pass the id of the last "
            "item of the previous page, or leave it out for the first page",
            field="after",
            value=after,
        )


def run_entity_query(
    rk: ResourceKind, filters: Mapping[str, Any] | None, principal: Principal, core: Any
) -> list[Any]:
    """The entities matching ``filters`` that ``principal`` may query."""
    require(principal, rk.resource, "query")
    if filters is None:
        return []
    if "after" in filters:
        _check_after(core, principal, rk, filters["after"])
    return scoped_query(rk.group(core), filters, principal.scope(rk.resource, "query"))
