"""The display widgets of safety-case notebooks: title card, conclusion, score and curve.

Each widget function validates its arguments and returns a Jupyter *mime bundle*: a dict
from MIME type to representation, with

- ``text/html``: what a reader sees (in Jupyter, and in the report that
  :func:`assay.analysis.notebook.render_html` writes; :data:`WIDGET_CSS` styles it there);
- ``text/plain``: a one-line fallback;
- one of our own JSON types (:data:`MIME_TITLE_CARD`, :data:`MIME_CONCLUSION`,
  :data:`MIME_SCORE`, :data:`MIME_CURVE`): the machine-readable payload that the platform
  collects from the executed notebook (:func:`assay.analysis.notebook.collect`) to publish
  scores and curves.

:func:`display_bundle` shows a bundle in the running kernel. ``AnalysisContext`` wraps these
functions as ``ctx.TitleCard``, ``ctx.Conclusion``, ``ctx.Score`` and ``ctx.Curve``.

Invalid arguments raise :class:`WidgetError` (a ``ValueError``) naming the widget, the value
and the rule. This module does not import IPython until :func:`display_bundle` is called.
"""

from __future__ import annotations

import functools
import html
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from markdown_it import MarkdownIt

from assay.schema.base import SUMMARY_MAX_LENGTH
from assay.schema.platform import CurveSpec, ScoreSpec

__all__ = [
    "INDICATORS",
    "MIME_CONCLUSION",
    "MIME_CURVE",
    "MIME_SCORE",
    "MIME_TITLE_CARD",
    "MIME_TYPES",
    "WIDGET_CSS",
    "Indicator",
    "WidgetError",
    "conclusion",
    "curve",
    "display_bundle",
    "score",
    "title_card",
]

MIME_TITLE_CARD = "application/vnd.assay.titlecard+json"
MIME_CONCLUSION = "application/vnd.assay.conclusion+json"
MIME_SCORE = "application/vnd.assay.score+json"
MIME_CURVE = "application/vnd.assay.curve+json"
MIME_TYPES = (MIME_TITLE_CARD, MIME_CONCLUSION, MIME_SCORE, MIME_CURVE)
"""Our four payload MIME types, in the order the widgets are documented."""

Indicator = Literal["Information", "Question", "Hazard"]
INDICATORS: tuple[Indicator, ...] = ("Information", "Question", "Hazard")
"""The valid ``indicator`` values of :func:`conclusion` (case-sensitive)."""

_INDICATOR_ICONS = {"Information": "&#8505;", "Question": "?", "Hazard": "&#9888;"}
_TEXT_LIMIT = SUMMARY_MAX_LENGTH


class WidgetError(ValueError):
    """A widget was given an invalid argument; the message names the widget, the value, the
    rule and how to fix it."""


# -- title card and conclusion --------------------------------------------------------------------


def title_card(
    *, headline: str, author: str, summary_phrase: str, summary_text: str
) -> dict[str, Any]:
    """The card that opens a safety case: a headline, who wrote it, and a summary (a short
    phrase and a longer text), all plain text."""
    for field, value in (
        ("headline", headline),
        ("author", author),
        ("summary_phrase", summary_phrase),
        ("summary_text", summary_text),
    ):
        _require_str("TitleCard", field, value)
    payload = {
        "headline": headline,
        "author": author,
        "summaryPhrase": summary_phrase,
        "summaryText": summary_text,
    }
    body = (
        '<section class="assay-widget assay-titlecard">'
        f'<h1 class="assay-titlecard-headline">{_esc(headline)}</h1>'
        f'<p class="assay-titlecard-author">By {_esc(author)}</p>'
        f'<p class="assay-titlecard-phrase"><strong>{_esc(summary_phrase)}</strong></p>'
        f'<p class="assay-titlecard-text">{_esc(summary_text)}</p>'
        "</section>"
    )
    plain = f"{headline}\nBy {author}\n{summary_phrase}\n{summary_text}"
    return {"text/html": body, "text/plain": plain, MIME_TITLE_CARD: payload}


def conclusion(*, indicator: str, text: str) -> dict[str, Any]:
    """A conclusion of the safety case. ``indicator`` is ``"Information"``, ``"Question"`` or
    ``"Hazard"``; ``text`` may use Markdown (raw HTML in it is shown as text)."""
    if indicator not in INDICATORS:
        raise WidgetError(
            f"Conclusion: indicator {indicator!r} is not one of "
            f"{', '.join(map(repr, INDICATORS))} (case-sensitive)"
        )
    _require_str("Conclusion", "text", text)
    kind = indicator.lower()
    body = (
        f'<aside class="assay-widget assay-conclusion assay-conclusion-{kind}" role="note">'
        f'<div class="assay-conclusion-indicator">'
        f'<span aria-hidden="true">{_INDICATOR_ICONS[indicator]}</span> {indicator}</div>'
        f'<div class="assay-conclusion-text">{_markdown().render(text)}</div>'
        "</aside>"
    )
    return {
        "text/html": body,
        "text/plain": f"{indicator}: {text}",
        MIME_CONCLUSION: {"indicator": indicator, "text": text},
    }


# -- score ----------------------------------------------------------------------------------------


def score(
    spec: ScoreSpec,
    *,
    quantity: float,
    text: str,
    interval: tuple[float, float] | None = None,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """A score described by ``spec``: its ``quantity``, a sentence ``text`` (at most 280
    characters) that puts it in context and, optionally, a confidence ``interval``
    ``(low, high)`` around it at level ``confidence``.

    The quantity (and the interval) must be finite and within the spec's minimum and maximum.
    """
    if not isinstance(spec, ScoreSpec):
        raise WidgetError(f"Score: spec must be a ScoreSpec, not {type(spec).__name__}")
    who = f"Score {spec.name!r}"
    value = _finite(who, "quantity", quantity)
    bounds = (spec.minimum, spec.maximum)
    if not _within(value, *bounds):
        raise WidgetError(
            f"{who}: quantity {_num(value)} is outside the score's range {_range(*bounds)}; "
            "check the computation, or the minimum and maximum of the ScoreSpec"
        )
    _check_text(who, text)
    low_high: list[float] | None = None
    if interval is not None:
        low_high = _interval(who, interval, value, bounds)
    if not isinstance(confidence, numbers.Real) or not 0 < float(confidence) < 1:
        raise WidgetError(f"{who}: confidence {confidence!r} must be a number between 0 and 1")
    formatted = spec.format_quantity(value)
    payload = {
        "name": spec.name,
        "quantity": value,
        "quantityString": formatted,
        "text": text,
        "interval": low_high,
        "confidence": float(confidence),
    }
    interval_text = ""
    if low_high is not None:
        interval_text = (
            f"{_percent(confidence)} interval: {spec.format_quantity(low_high[0])} to "
            f"{spec.format_quantity(low_high[1])}"
        )
    parts = [
        '<section class="assay-widget assay-score">',
        '<div class="assay-score-header">',
        f'<h3 class="assay-score-title">{_esc(spec.title)}</h3>',
        _valence_html(spec.valence),
        "</div>",
        f'<div class="assay-score-value">{_esc(formatted)}</div>',
    ]
    if interval_text:
        parts.append(f'<div class="assay-score-interval">{_esc(interval_text)}</div>')
    if spec.minimum is not None and spec.maximum is not None:
        parts.append(_range_bar(spec, spec.minimum, spec.maximum, value, low_high))
    parts += [
        f'<p class="assay-score-text">{_esc(text)}</p>',
        f'<p class="assay-score-summary">{_esc(spec.summary)}</p>',
        "</section>",
    ]
    plain = f"{spec.title}: {formatted}"
    if interval_text:
        plain += f" ({interval_text})"
    plain += f"\n{text}"
    return {"text/html": "".join(parts), "text/plain": plain, MIME_SCORE: payload}


def _interval(
    who: str, interval: Any, value: float, bounds: tuple[float | None, float | None]
) -> list[float]:
    if isinstance(interval, str | bytes | Mapping) or not isinstance(interval, Sequence):
        raise WidgetError(f"{who}: interval must be a pair (low, high), not {interval!r}")
    if len(interval) != 2:
        raise WidgetError(f"{who}: interval must be a pair (low, high); got {len(interval)} values")
    low = _finite(who, "interval low", interval[0])
    high = _finite(who, "interval high", interval[1])
    if not low <= value <= high:
        raise WidgetError(
            f"{who}: interval ({_num(low)}, {_num(high)}) must contain the quantity "
            f"{_num(value)} (low <= quantity <= high)"
        )
    if not (_within(low, *bounds) and _within(high, *bounds)):
        raise WidgetError(
            f"{who}: interval ({_num(low)}, {_num(high)}) is outside the score's range "
            f"{_range(*bounds)}; clip it to the range"
        )
    return [low, high]


def _valence_html(valence: str) -> str:
    if valence == "positive":
        return '<span class="assay-score-valence" title="higher is better">&#8593; higher is better</span>'
    if valence == "negative":
        return '<span class="assay-score-valence" title="lower is better">&#8595; lower is better</span>'
    return ""


def _range_bar(
    spec: ScoreSpec, lo: float, hi: float, value: float, low_high: list[float] | None
) -> str:
    """A horizontal bar from the spec's minimum ``lo`` to its maximum ``hi``, the interval as
    a band and the quantity as a mark (an SVG, so that it renders without our CSS, e.g. in
    Jupyter)."""
    span = hi - lo

    def x(v: float) -> float:
        return 50.0 if span == 0 else 100.0 * (v - lo) / span

    band = ""
    if low_high is not None:
        left, right = x(low_high[0]), x(low_high[1])
        band = f'<rect x="{left:.2f}" y="2" width="{max(right - left, 0.3):.2f}" height="6" fill="#9ab8e6"/>'
    mark = min(max(x(value) - 0.5, 0.0), 99.0)
    first, last = spec.format_quantity(lo), spec.format_quantity(hi)
    label = f"{spec.format_quantity(value)} on a scale from {first} to {last}"
    return (
        f'<svg class="assay-score-bar" role="img" aria-label="{_esc(label)}" viewBox="0 0 100 10" '
        'preserveAspectRatio="none" width="100%" height="10">'
        '<rect x="0" y="3" width="100" height="4" fill="#e3e6ea"/>'
        f'{band}<rect x="{mark:.2f}" y="0" width="1" height="10" fill="#1f4e99"/></svg>'
        f'<div class="assay-score-range"><span>{_esc(first)}</span>'
        f"<span>{_esc(last)}</span></div>"
    )


# -- curve ----------------------------------------------------------------------------------------

_COLOURS = ("#1f4e99", "#d1495b", "#2e8b57", "#e69f00", "#6a4c93", "#00798c")
_W, _H = 600, 340
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 16, 48


def curve(spec: CurveSpec, *, points: Mapping[str, Sequence[float]], text: str) -> dict[str, Any]:
    """A curve described by ``spec``: ``points`` maps each of the spec's dimensions to its
    values (all of the same length, at least one), and ``text`` (at most 280 characters) puts
    it in context. The chart plots the first dimension on x and the others on y."""
    if not isinstance(spec, CurveSpec):
        raise WidgetError(f"Curve: spec must be a CurveSpec, not {type(spec).__name__}")
    who = f"Curve {spec.name!r}"
    if not isinstance(points, Mapping):
        raise WidgetError(
            f"{who}: points must be a mapping from dimension name to values, not "
            f"{type(points).__name__}"
        )
    missing = [k for k in spec.dimensions if k not in points]
    extra = [str(k) for k in points if k not in spec.dimensions]
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"missing {', '.join(map(repr, missing))}")
        if extra:
            problems.append(f"unexpected {', '.join(map(repr, extra))}")
        raise WidgetError(
            f"{who}: points must have exactly the dimensions {', '.join(map(repr, spec.dimensions))}; "
            f"{' and '.join(problems)}"
        )
    columns: dict[str, list[float]] = {}
    for name, dimension in spec.dimensions.items():
        values = _values(who, name, points[name])
        for i, v in enumerate(values):
            if not _within(v, dimension.minimum, dimension.maximum):
                raise WidgetError(
                    f"{who}: value {_num(v)} at index {i} of dimension {name!r} is outside its "
                    f"range {_range(dimension.minimum, dimension.maximum)}"
                )
        columns[name] = values
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise WidgetError(
            f"{who}: all dimensions must have the same number of values; got {lengths}"
        )
    if not next(iter(lengths.values())):
        raise WidgetError(f"{who}: a curve needs at least one point; got empty lists")
    _check_text(who, text)
    body = (
        '<section class="assay-widget assay-curve">'
        f'<h3 class="assay-curve-title">{_esc(spec.title)}</h3>'
        f"{_chart(spec, columns)}"
        f'<p class="assay-curve-text">{_esc(text)}</p>'
        f'<p class="assay-curve-summary">{_esc(spec.summary)}</p>'
        "</section>"
    )
    plain = f"{spec.title}: {lengths[next(iter(lengths))]} points of {', '.join(columns)}\n{text}"
    payload = {"name": spec.name, "points": columns, "text": text}
    return {"text/html": body, "text/plain": plain, MIME_CURVE: payload}


def _values(who: str, name: str, values: Any) -> list[float]:
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise WidgetError(
            f"{who}: the values of dimension {name!r} must be a sequence of numbers, not "
            f"{type(values).__name__}"
        )
    return [
        _finite(who, f"value at index {i} of dimension {name!r}", v) for i, v in enumerate(values)
    ]


def _chart(spec: CurveSpec, columns: dict[str, list[float]]) -> str:
    """An inline SVG line chart: the first dimension on x, the others on y (a curve of one
    dimension is plotted against the points' positions)."""
    names = list(columns)
    if len(names) > 1:
        x_spec = spec.dimensions[names[0]]
        x_title, y_names = _axis_title(x_spec), names[1:]
        xs = columns[names[0]]
        x_lo, x_hi = _axis_range(xs, x_spec.minimum, x_spec.maximum)
    else:
        x_title, y_names = "Point", names
        xs = [float(i) for i in range(1, len(columns[names[0]]) + 1)]
        x_lo, x_hi = _axis_range(xs, None, None)
    y_values = [v for n in y_names for v in columns[n]]
    y_mins = [spec.dimensions[n].minimum for n in y_names]
    y_maxs = [spec.dimensions[n].maximum for n in y_names]
    y_lo, y_hi = _axis_range(
        y_values,
        None if None in y_mins else min(m for m in y_mins if m is not None),
        None if None in y_maxs else max(m for m in y_maxs if m is not None),
    )
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def px(v: float) -> float:
        return _LEFT + plot_w * (v - x_lo) / (x_hi - x_lo)

    def py(v: float) -> float:
        return _TOP + plot_h * (1 - (v - y_lo) / (y_hi - y_lo))

    out = [
        f'<svg class="assay-curve-chart" role="img" aria-label="{_esc(spec.title)}" '
        f'viewBox="0 0 {_W} {_H}" width="100%" style="max-width:{_W}px" '
        'font-family="inherit" font-size="12">',
    ]
    bottom = _TOP + plot_h
    for t, label in _ticks(x_lo, x_hi):
        out.append(
            f'<line x1="{px(t):.1f}" y1="{bottom}" x2="{px(t):.1f}" y2="{bottom + 5}" stroke="#555"/>'
            f'<text x="{px(t):.1f}" y="{bottom + 18}" text-anchor="middle" fill="#333">{label}</text>'
        )
    for t, label in _ticks(y_lo, y_hi):
        out.append(
            f'<line x1="{_LEFT - 5}" y1="{py(t):.1f}" x2="{_LEFT + plot_w}" y2="{py(t):.1f}" stroke="#eceef1"/>'
            f'<text x="{_LEFT - 8}" y="{py(t) + 4:.1f}" text-anchor="end" fill="#333">{label}</text>'
        )
    out.append(  # the frame, over the grid lines
        f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#c8cdd3"/>'
    )
    out.append(
        f'<text x="{_LEFT + plot_w / 2:.1f}" y="{_H - 8}" text-anchor="middle" fill="#111">'
        f"{_esc(x_title)}</text>"
    )
    if len(y_names) == 1:
        cy = _TOP + plot_h / 2
        out.append(
            f'<text x="14" y="{cy:.1f}" text-anchor="middle" fill="#111" '
            f'transform="rotate(-90 14 {cy:.1f})">{_esc(_axis_title(spec.dimensions[y_names[0]]))}</text>'
        )
    for i, name in enumerate(y_names):
        colour = _COLOURS[i % len(_COLOURS)]
        coords = " ".join(
            f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, columns[name], strict=True)
        )
        if len(xs) > 1:
            out.append(
                f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
        if len(xs) <= 50:
            out.extend(
                f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>'
                for x, y in zip(xs, columns[name], strict=True)
            )
    out.append("</svg>")
    if len(y_names) > 1:  # a legend under the chart, where it cannot hide a line
        out.append('<ul class="assay-curve-legend">')
        out.extend(
            f'<li><span style="color:{_COLOURS[i % len(_COLOURS)]}">&#9632;</span> '
            f"{_esc(_axis_title(spec.dimensions[name]))}</li>"
            for i, name in enumerate(y_names)
        )
        out.append("</ul>")
    return "".join(out)


def _axis_range(
    values: list[float], minimum: float | None, maximum: float | None
) -> tuple[float, float]:
    lo = minimum if minimum is not None else min(values)
    hi = maximum if maximum is not None else max(values)
    if hi <= lo:  # a single value: centre it
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    return lo, hi


def _ticks(lo: float, hi: float, target: int = 5) -> list[tuple[float, str]]:
    """Round tick positions (1, 2 or 5 times a power of ten) between ``lo`` and ``hi``, each
    with its label."""
    raw = (hi - lo) / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    first = math.ceil(lo / step - 1e-9)
    last = math.floor(hi / step + 1e-9)
    ticks = []
    for k in range(first, last + 1):
        value = k * step
        big_or_tiny = abs(value) >= 1e6 or decimals > 6
        ticks.append((value, f"{value:.3g}" if big_or_tiny else f"{value:.{decimals}f}"))
    return ticks


def _axis_title(dimension: ScoreSpec) -> str:
    return f"{dimension.title} ({dimension.unit})" if dimension.unit else dimension.title


# -- showing a bundle -----------------------------------------------------------------------------


def display_bundle(bundle: Mapping[str, Any]) -> None:
    """Show a widget's mime bundle in the running Jupyter kernel (``IPython.display``)."""
    from IPython.display import display

    display(dict(bundle), raw=True)  # type: ignore[no-untyped-call]


# -- helpers --------------------------------------------------------------------------------------


@functools.cache
def _markdown() -> MarkdownIt:
    """CommonMark with tables; raw HTML is escaped, not passed through."""
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _require_str(widget: str, field: str, value: Any) -> None:
    if not isinstance(value, str):
        raise WidgetError(f"{widget}: {field} must be a string, not {type(value).__name__}")


def _check_text(who: str, text: Any) -> None:
    _require_str(who, "text", text)
    if len(text) > _TEXT_LIMIT:
        raise WidgetError(
            f"{who}: text has {len(text)} characters; at most {_TEXT_LIMIT} are allowed, "
            "shorten it to a sentence or two"
        )


def _finite(who: str, what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise WidgetError(f"{who}: {what} must be a number, not {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise WidgetError(f"{who}: {what} must be a finite number, not {number!r}")
    return number


def _within(value: float, minimum: float | None, maximum: float | None) -> bool:
    return (minimum is None or value >= minimum) and (maximum is None or value <= maximum)


def _range(minimum: float | None, maximum: float | None) -> str:
    low = "-inf" if minimum is None else _num(minimum)
    high = "inf" if maximum is None else _num(maximum)
    return f"[{low}, {high}]"


def _num(value: float) -> str:
    return f"{value:g}"


def _percent(confidence: float) -> str:
    return f"{100 * float(confidence):g}%"


WIDGET_CSS = """
.assay-widget { margin: 1.25rem 0; }
.assay-titlecard { border-bottom: 1px solid #d8dce1; padding-bottom: 1rem; }
.assay-titlecard-headline { font-size: 2rem; line-height: 1.2; margin: 0 0 .25rem; }
.assay-titlecard-author { color: #5b6470; margin: 0 0 .75rem; }
.assay-titlecard-phrase { font-size: 1.15rem; margin: 0 0 .25rem; }
.assay-titlecard-text { margin: 0; }
.assay-conclusion { border-left: 4px solid #1f4e99; background: #f1f5fb; padding: .75rem 1rem;
  border-radius: 0 6px 6px 0; }
.assay-conclusion-question { border-color: #b7791f; background: #fdf7ec; }
.assay-conclusion-hazard { border-color: #c53030; background: #fdf0f0; }
.assay-conclusion-indicator { font-weight: 600; margin-bottom: .25rem; }
.assay-conclusion-text > :first-child { margin-top: 0; }
.assay-conclusion-text > :last-child { margin-bottom: 0; }
.assay-score, .assay-curve { border: 1px solid #d8dce1; border-radius: 6px; padding: .75rem 1rem; }
.assay-score-header { display: flex; justify-content: space-between; align-items: baseline;
  gap: 1rem; }
.assay-score-title, .assay-curve-title { font-size: 1rem; margin: 0; }
.assay-score-valence { color: #5b6470; font-size: .85rem; white-space: nowrap; }
.assay-score-value { font-size: 1.75rem; font-weight: 600; margin: .25rem 0; }
.assay-score-interval { color: #5b6470; font-size: .9rem; margin-bottom: .5rem; }
.assay-score-bar { display: block; max-width: 24rem; height: 10px; }
.assay-score-range { display: flex; justify-content: space-between; max-width: 24rem;
  color: #5b6470; font-size: .75rem; }
.assay-score-text, .assay-curve-text { margin: .5rem 0 0; }
.assay-score-summary, .assay-curve-summary { color: #5b6470; font-size: .85rem; margin: .25rem 0 0; }
.assay-curve-chart { display: block; margin-top: .5rem; height: auto; }
.assay-curve-legend { list-style: none; display: flex; flex-wrap: wrap; gap: .25rem 1.25rem;
  padding: 0; margin: .25rem 0 0; font-size: .85rem; }
"""
"""The style sheet of the widgets' HTML, included by ``render_html``."""
