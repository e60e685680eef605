"""Inline SVG charts for the UI pages: pure functions from numbers to markup, no script.

:func:`interval_chart` draws one row per system: a point at its value and a whisker over
its confidence interval, on a shared, labelled value axis with round ticks. Every text is
HTML-escaped; the ``<svg>`` is an image (``role="img"``) named by its ``<title>`` and
described by its ``<desc>`` (which says every value, for screen readers), and a long system
name is cut on screen but given whole in a ``<title>`` of its own. Only presentation
attributes are used (no ``style``), so the page's Content-Security-Policy holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

__all__ = ["ChartPoint", "interval_chart", "nice_ticks"]

WIDTH = 820
ROW = 30
LABEL_WIDTH = 280
RIGHT = 56
TOP = 34
BOTTOM = 46
MAX_LABEL = 28
INK = "#1b1f24"
MUTED = "#4a5563"
GRID = "#c9d1db"
POINT = "#0b57a4"


@dataclass(frozen=True)
class ChartPoint:
    """One row of a chart: a value and, optionally, its interval."""

    label: str
    """The system's name."""
    value: float | None
    """The value (None: no value, the row says so)."""
    low: float | None = None
    """The interval's lower end."""
    high: float | None = None
    """The interval's upper end."""


def nice_ticks(low: float, high: float, most: int = 6) -> list[float]:
    """Round tick values covering ``[low, high]`` (at most ``most`` + 1 of them)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"ticks need finite bounds, got {low} and {high}")
    if high < low:
        low, high = high, low
    if high == low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / max(1, most)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value < high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 12))
    return ticks


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "\u2026"


def _number(value: float) -> str:
    return f"{value:g}"


def interval_chart(
    points: Sequence[ChartPoint],
    *,
    title: str,
    description: str,
    axis_label: str,
    chart_id: str = "chart",
    formatter: Callable[[float], str] = _number,
) -> Markup:
    """An SVG chart of ``points`` (one row each, in order) with their intervals.

    ``title`` names the chart, ``description`` says what it shows (each row's value and
    interval is added to it), ``axis_label`` names the value axis, ``chart_id`` makes the
    ids of its title and description unique in the page, and ``formatter`` writes a value
    as people read it (in the description and the tick labels)."""
    numbers = [
        v for p in points for v in (p.value, p.low, p.high) if v is not None and math.isfinite(v)
    ]
    height = TOP + ROW * max(1, len(points)) + BOTTOM
    plot_left, plot_right = LABEL_WIDTH, WIDTH - RIGHT
    title_id, desc_id = f"{chart_id}-title", f"{chart_id}-desc"
    said = []
    for p in points:
        if p.value is None or not math.isfinite(p.value):
            said.append(f"{p.label}: no value")
        elif p.low is not None and p.high is not None:
            said.append(
                f"{p.label}: {formatter(p.value)} "
                f"(interval {formatter(p.low)} to {formatter(p.high)})"
            )
        else:
            said.append(f"{p.label}: {formatter(p.value)} (no interval)")
    full = description + (" " + "; ".join(said) + "." if said else " No values.")
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
        f'aria-labelledby="{escape(title_id)} {escape(desc_id)}" '
        f'font-family="system-ui, sans-serif" font-size="13">',
        f'<title id="{escape(title_id)}">{escape(title)}</title>',
        f'<desc id="{escape(desc_id)}">{escape(full)}</desc>',
    ]
    if not numbers:
        parts.append(
            f'<text x="{WIDTH / 2:.1f}" y="{height / 2:.1f}" text-anchor="middle" '
            f'fill="{MUTED}">No values to chart</text></svg>'
        )
        return Markup("".join(parts))
    ticks = nice_ticks(min(numbers), max(numbers))
    lo, hi = ticks[0], ticks[-1]

    def x(value: float) -> float:
        return plot_left + (value - lo) / (hi - lo) * (plot_right - plot_left)

    axis_y = TOP + ROW * len(points)
    parts.append('<g aria-hidden="true">')
    for tick in ticks:
        tx = x(tick)
        parts.append(
            f'<line x1="{tx:.1f}" y1="{TOP - 6}" x2="{tx:.1f}" y2="{axis_y}" '
            f'stroke="{GRID}" stroke-width="1"/>'
            f'<text x="{tx:.1f}" y="{axis_y + 16}" text-anchor="middle" '
            f'fill="{MUTED}">{escape(formatter(tick))}</text>'
        )
    parts.append(
        f'<line x1="{plot_left}" y1="{axis_y}" x2="{plot_right}" y2="{axis_y}" '
        f'stroke="{INK}" stroke-width="1"/>'
        f'<text x="{(plot_left + plot_right) / 2:.1f}" y="{axis_y + 36}" '
        f'text-anchor="middle" fill="{INK}">{escape(axis_label)}</text>'
    )
    for i, p in enumerate(points):
        cy = TOP + ROW * i + ROW / 2
        parts.append(
            f'<text x="{plot_left - 10}" y="{cy + 4:.1f}" text-anchor="end" fill="{INK}">'
            f"<title>{escape(p.label)}</title>{escape(_short(p.label))}</text>"
        )
        if p.value is None or not math.isfinite(p.value):
            parts.append(
                f'<text x="{plot_left + 6}" y="{cy + 4:.1f}" fill="{MUTED}">no value</text>'
            )
            continue
        if p.low is not None and p.high is not None:
            x1, x2 = x(p.low), x(p.high)
            parts.append(
                f'<line x1="{x1:.1f}" y1="{cy:.1f}" x2="{x2:.1f}" y2="{cy:.1f}" '
                f'stroke="{INK}" stroke-width="2"/>'
                f'<line x1="{x1:.1f}" y1="{cy - 7:.1f}" x2="{x1:.1f}" y2="{cy + 7:.1f}" '
                f'stroke="{INK}" stroke-width="2"/>'
                f'<line x1="{x2:.1f}" y1="{cy - 7:.1f}" x2="{x2:.1f}" y2="{cy + 7:.1f}" '
                f'stroke="{INK}" stroke-width="2"/>'
            )
        parts.append(
            f'<circle cx="{x(p.value):.1f}" cy="{cy:.1f}" r="5" fill="{POINT}" '
            f'stroke="{INK}" stroke-width="1"/>'
        )
    parts.append("</g></svg>")
    return Markup("".join(parts))
