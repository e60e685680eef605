"""HTML tables for display in Jupyter (``_repr_html_``): every value escaped."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

__all__ = ["html_table"]


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A table of ``rows`` under ``headers``; a list value is one escaped line each."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td style="text-align: left">{_cell(v)}</td>' for v in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "<br/>".join(html.escape(str(v)) for v in value)
    return "" if value is None else html.escape(str(value))
