"""What the everyday commands print: a compact aligned table, an entity's main fields, or
JSON (``--json``, the entities as the API sends them, for scripts)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

__all__ = ["cell", "entity_fields", "entity_rows", "score_rows", "table", "time_text", "to_json"]

#: The columns of ``<kind> list``.
ENTITY_COLUMNS = ("ID", "NAME", "STATUS", "REASON", "CREATED")
#: The columns of ``scores list``.
SCORE_COLUMNS = ("ANALYSIS", "NAME", "VALUE", "TEXT")
#: Longest text shown in a table cell (the rest is cut, with an ellipsis).
CELL_WIDTH = 60


def to_json(value: Any) -> str:
    """``value`` (models, or lists of them) as indented JSON, as the API sends it."""

    def plain(item: Any) -> Any:
        return item.to_wire() if hasattr(item, "to_wire") else item

    data = [plain(v) for v in value] if isinstance(value, list) else plain(value)
    return json.dumps(data, indent=2, ensure_ascii=False)


def time_text(value: datetime | None) -> str:
    """A time to the second: ``2024-05-01T12:30:05Z`` in UTC."""
    if value is None:
        return "-"
    if value.utcoffset() == timedelta(0):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return value.isoformat(timespec="seconds")


def cell(value: Any) -> str:
    text = "-" if value is None or value == "" else " ".join(str(value).split())
    return text if len(text) <= CELL_WIDTH else text[: CELL_WIDTH - 1] + "…"


def entity_rows(entities: Iterable[Any]) -> list[tuple[str, ...]]:
    """One row per entity: id, name, status, reason, creation time."""
    return [
        (
            e.id,
            cell(getattr(e, "name", None)),
            cell(e.status),
            cell(e.reason),
            time_text(e.creationTime),
        )
        for e in entities
    ]


def score_rows(scores: Iterable[Any]) -> list[tuple[str, ...]]:
    """One row per score: the safety case, the name, the value, the sentence."""
    return [(s.analysis, cell(s.name), cell(s.value_string()), cell(s.text)) for s in scores]


def table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows under a header, each column as wide as its widest cell."""
    widths = [max(len(str(c)) for c in column) for column in zip(columns, *rows, strict=True)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [columns, *rows]
    ]
    return "\n".join(lines)


def entity_fields(entity: Any) -> str:
    """The fields of one entity that say what it is and how it stands, one per line."""
    labels = ", ".join(f"{k}={v}" for k, v in sorted((entity.labels or {}).items()))
    fields = [
        ("id", entity.id),
        ("kind", entity.kind),
        ("name", getattr(entity, "name", None)),
        ("account", entity.account),
        ("status", entity.status),
        ("reason", entity.reason),
        ("message", entity.message),
        ("created", time_text(entity.creationTime)),
        ("changed", time_text(entity.lastTransitionTime)),
        ("labels", labels or None),
    ]
    shown = [(k, v) for k, v in fields if v is not None]
    width = max(len(k) for k, _ in shown)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in shown)
