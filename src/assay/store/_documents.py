"""Entity documents: the checks the store makes on a document, and the indexed columns, label
rows and reference rows it derives from one.

The store does not know the entity models; it reads a few well-known keys of the JSON document
(``id``, ``kind``, ``account``, ``status``, ``reason``, ``name``, ``creationTime``,
``lastTransitionTime``, ``labels``) and keeps the rest as it is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from assay import errors
from assay.schema.ids import is_entity_id

__all__ = [
    "Prepared",
    "Record",
    "RefsArg",
    "canonical_time",
    "label_rows",
    "prepare",
    "ref_rows",
]

#: Named references of an entity: field name → one id or a list of ids.
RefsArg = Mapping[str, str | Sequence[str]]


@dataclass(frozen=True, slots=True)
class Record:
    """A stored entity document with its version.

    ``version`` starts at 1 and grows by one with every write; pass it back to
    :meth:`EntityStore.replace` as ``expected_version`` to detect concurrent changes.
    """

    doc: dict[str, Any]
    version: int


@dataclass(frozen=True, slots=True)
class Prepared:
    """A checked document and what the store writes for it (everything but the version)."""

    id: str
    kind: str
    columns: dict[str, Any]
    labels: dict[str, str]
    refs: list[tuple[str, str]] | None


def canonical_time(value: Any, *, field: str, entity: str | None = None) -> str:
    """``value`` (an ISO-8601 string or a datetime) as a fixed-width UTC string,
    ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, whose string order is time order.

    Naive times are taken as UTC, like the entity models do.
    """
    moment: datetime
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise _invalid(
                field, value, entity, "an ISO-8601 time such as '2024-05-01T12:00:00Z'"
            ) from None
    else:
        raise _invalid(field, value, entity, "an ISO-8601 time string")
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds") + "Z"


def prepare(doc: Mapping[str, Any], refs: RefsArg | None, *, default_time: str | None) -> Prepared:
    """Check ``doc`` and derive its columns. ``default_time`` is used for the creation time
    when the document has none; ``None`` leaves the column out (it keeps its stored value)."""
    if not isinstance(doc, Mapping):
        raise errors.ValidationError(
            f"an entity document must be a JSON object (a dict), not {type(doc).__name__}",
            value=doc,
        )
    entity_id = _required(doc, "id", None)
    if not is_entity_id(entity_id):
        raise _invalid("id", entity_id, None, "32 lowercase hex digits (uuid4().hex)")
    kind = _required(doc, "kind", entity_id)
    where = f"{kind} {entity_id}"
    columns: dict[str, Any] = {
        "id": entity_id,
        "kind": kind,
        "account": _required(doc, "account", where),
        "status": _optional(doc, "status", where),
        "reason": _optional(doc, "reason", where),
        "name": _optional(doc, "name", where),
        "doc": doc,
    }
    created = doc.get("creationTime")
    if created is not None:
        columns["creation_time"] = canonical_time(created, field="creationTime", entity=where)
    elif default_time is not None:
        columns["creation_time"] = default_time
    _check_json(doc, where)
    transition = doc.get("lastTransitionTime")
    columns["last_transition_time"] = (
        None
        if transition is None
        else canonical_time(transition, field="lastTransitionTime", entity=where)
    )
    return Prepared(
        id=entity_id,
        kind=kind,
        columns=columns,
        labels=_labels(doc.get("labels"), where),
        refs=None if refs is None else _refs(refs, where),
    )


def label_rows(entity_id: str, labels: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"entity_id": entity_id, "key": k, "value": v} for k, v in labels.items()]


def ref_rows(entity_id: str, refs: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"entity_id": entity_id, "field": f, "ref": r} for f, r in refs]


def _required(doc: Mapping[str, Any], key: str, where: str | None) -> str:
    value = doc.get(key)
    if value is None or value == "":
        owner = f"{where}: " if where else ""
        raise errors.ValidationError(
            f"{owner}the entity document has no {key!r}; every document needs 'id', "
            "'kind' and 'account'",
            field=key,
            entity=where,
        )
    if not isinstance(value, str):
        raise _invalid(key, value, where, "a string")
    return value


def _optional(doc: Mapping[str, Any], key: str, where: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise _invalid(key, value, where, "a string or null")
    return value


def _labels(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _invalid("labels", value, where, "an object mapping label keys to string values")
    return dict(value)


def _refs(refs: RefsArg, where: str) -> list[tuple[str, str]]:
    if not isinstance(refs, Mapping):
        raise _invalid("refs", refs, where, "a dict of field name -> entity id(s)")
    rows: dict[tuple[str, str], None] = {}
    for field, ids in refs.items():
        values = [ids] if isinstance(ids, str) else ids
        if not isinstance(field, str) or not isinstance(values, Sequence):
            raise _invalid("refs", refs, where, "a dict of field name -> entity id(s)")
        for ref in values:
            if not is_entity_id(ref):
                raise _invalid(f"refs[{field!r}]", ref, where, "entity ids (32 hex digits)")
            rows[(field, ref)] = None
    return list(rows)


def _check_json(doc: Mapping[str, Any], where: str) -> None:
    # Checked here rather than left to the driver: SQLite's and PostgreSQL's drivers fail
    # differently, and JSON has no NaN or infinity that PostgreSQL would accept.
    try:
        json.dumps(doc, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise errors.ValidationError(
            f"{where}: the entity document is not JSON: {exc}; convert the value to a string, "
            "number, boolean, null, list or object first",
            entity=where,
        ) from None


def _invalid(field: str, value: Any, where: str | None, expected: str) -> errors.ValidationError:
    owner = f"{where}: " if where else ""
    return errors.ValidationError(
        f"{owner}{field} must be {expected}, not {value!r}",
        field=field,
        value=value,
        entity=where,
    )
