"""Entity queries: filters, order and keyset paging, compiled to one portable SELECT.

Every filter is a condition on an indexed column or an ``IN (SELECT entity_id ...)`` over the
label and reference tables, so one query answers a whole page whatever the filters (no query
per entity). Pages are keyed on ``(creation_time, id)``, a total order: paging with ``after``
neither skips nor repeats an entity, even among entities created in the same microsecond.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from assay import errors

from ._tables import entities, entity_labels, entity_refs

__all__ = [
    "ORDERS",
    "FieldsArg",
    "Filters",
    "LabelsArg",
    "Match",
    "Order",
    "RefsFilterArg",
    "check_limit",
    "check_order",
    "page_statement",
]

#: One value (exact match) or several (any of them).
Match = str | Sequence[str]
#: Label key → value, or any of several values, or ``None`` for "the key is present".
LabelsArg = Mapping[str, str | Sequence[str] | None]
#: Reference field → an entity id, or any of several.
RefsFilterArg = Mapping[str, str | Sequence[str]]
#: A document field by its dotted path (``output.kind``) → a value, or any of several.
FieldsArg = Mapping[str, str | Sequence[str]]
Order = Literal["ascending", "descending"]
ORDERS: tuple[Order, ...] = ("ascending", "descending")

_COLUMNS = {
    "kind": entities.c.kind,
    "ids": entities.c.id,
    "account": entities.c.account,
    "status": entities.c.status,
    "reason": entities.c.reason,
    "name": entities.c.name,
}


@dataclass(frozen=True, slots=True)
class Filters:
    """Checked query filters; all of them must hold (AND). ``None`` means "no filter"."""

    columns: tuple[tuple[str, tuple[str, ...]], ...] = ()
    labels: tuple[tuple[str, tuple[str, ...] | None], ...] = ()
    refs: tuple[tuple[str, tuple[str, ...]], ...] = ()
    fields: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = ()

    @classmethod
    def of(
        cls,
        *,
        kind: Match | None = None,
        ids: Match | None = None,
        account: Match | None = None,
        status: Match | None = None,
        reason: Match | None = None,
        name: Match | None = None,
        labels: LabelsArg | None = None,
        refs: RefsFilterArg | None = None,
        fields: FieldsArg | None = None,
    ) -> Filters:
        given = {
            "kind": kind,
            "ids": ids,
            "account": account,
            "status": status,
            "reason": reason,
            "name": name,
        }
        columns = tuple(
            (field, _values(value, field)) for field, value in given.items() if value is not None
        )
        label_filters: list[tuple[str, tuple[str, ...] | None]] = []
        for key, value in _mapping(labels, "labels").items():
            label_filters.append(
                (key, None if value is None else _values(value, f"labels[{key!r}]"))
            )
        ref_filters = [
            (field, _values(value, f"refs[{field!r}]"))
            for field, value in _mapping(refs, "refs").items()
        ]
        field_filters = [
            (_path(path), _values(value, f"fields[{path!r}]"))
            for path, value in _mapping(fields, "fields").items()
        ]
        return cls(columns, tuple(label_filters), tuple(ref_filters), tuple(field_filters))

    def conditions(self) -> list[sa.ColumnElement[bool]]:
        """The WHERE conditions over the ``entities`` table."""
        where = [_match(_COLUMNS[field], values) for field, values in self.columns]
        for key, label_values in self.labels:
            labelled = sa.select(entity_labels.c.entity_id).where(entity_labels.c.key == key)
            if label_values is not None:
                labelled = labelled.where(_match(entity_labels.c.value, label_values))
            where.append(entities.c.id.in_(labelled))
        for field, ref_values in self.refs:
            referring = sa.select(entity_refs.c.entity_id).where(
                entity_refs.c.field == field, _match(entity_refs.c.ref, ref_values)
            )
            where.append(entities.c.id.in_(referring))
        for path, field_values in self.fields:
            # not indexed: a scan of the rows the other conditions leave (one kind's, at most)
            where.append(_match(entities.c.doc[path].as_string(), field_values))
        return where


def page_statement(
    filters: Filters,
    *,
    order: Order,
    limit: int | None,
    cursor: tuple[str, str] | None,
) -> sa.Select[Any]:
    """SELECT ``doc, creation_time, id`` of the entities that pass ``filters``, in ``order``
    of ``(creation_time, id)``, strictly after ``cursor`` (a ``(creation_time, id)`` pair)."""
    time, ident = entities.c.creation_time, entities.c.id
    statement = sa.select(entities.c.doc, time, ident).where(*filters.conditions())
    if cursor is not None:
        after_time, after_id = cursor
        if order == "ascending":
            statement = statement.where(
                time >= after_time, sa.or_(time > after_time, ident > after_id)
            )
        else:
            statement = statement.where(
                time <= after_time, sa.or_(time < after_time, ident < after_id)
            )
    if order == "ascending":
        statement = statement.order_by(time.asc(), ident.asc())
    else:
        statement = statement.order_by(time.desc(), ident.desc())
    if limit is not None:
        statement = statement.limit(limit)
    return statement


def check_order(order: str) -> Order:
    if order not in ORDERS:
        raise errors.ValidationError(
            f"order must be one of {', '.join(map(repr, ORDERS))}, not {order!r}",
            field="order",
            value=order,
        )
    return "ascending" if order == "ascending" else "descending"


def check_limit(limit: int | None, field: str = "limit") -> int | None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise errors.ValidationError(
            f"{field} must be a non-negative integer or None, not {limit!r}",
            field=field,
            value=limit,
        )
    return limit


def _match(column: sa.ColumnElement[Any], values: tuple[str, ...]) -> sa.ColumnElement[bool]:
    # An empty list matches nothing: ``in_(())`` renders SQLAlchemy's portable "empty IN".
    return column == values[0] if len(values) == 1 else column.in_(values)


def _values(value: object, field: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple | set | frozenset) and all(isinstance(v, str) for v in value):
        return tuple(sorted(value)) if isinstance(value, set | frozenset) else tuple(value)
    raise errors.ValidationError(
        f"query filter {field} must be a string or a list of strings, not {value!r}",
        field=field,
        value=value,
    )


def _path(path: str) -> tuple[str, ...]:
    parts = tuple(path.split(".")) if isinstance(path, str) else ()
    if not parts or not all(parts):
        raise errors.ValidationError(
            f"query filter fields: {path!r} is not a dotted document path, e.g. 'output.kind'",
            field="fields",
            value=path,
        )
    return parts


def _mapping(value: object, field: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return value
    raise errors.ValidationError(
        f"query filter {field} must be a dict with string keys, not {value!r}",
        field=field,
        value=value,
    )
