"""The safety-case widgets as pure functions: bundles, payloads, validation, escaping, charts."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from typing import Any

import pytest

from assay.analysis import widgets
from assay.analysis.widgets import WidgetError
from assay.schema.platform import CurveSpec, ScoreSpec


def accuracy(**overrides: Any) -> ScoreSpec:
    fields: dict[str, Any] = {
        "name": "accuracy",
        "title": "Accuracy",
        "summary": "Fraction of answers that are correct",
        "valence": "positive",
        "minimum": 0,
        "maximum": 1,
        "format": "{quantity:.1%}",
    }
    return ScoreSpec(**{**fields, **overrides})


def pr_curve() -> CurveSpec:
    def dim(name: str, title: str) -> ScoreSpec:
        return ScoreSpec(name=name, title=title, summary=title, minimum=0, maximum=1)

    return CurveSpec(
        name="pr",
        title="Precision and recall",
        summary="Precision and recall by threshold",
        dimensions={
            "threshold": dim("threshold", "Threshold"),
            "precision": dim("precision", "Precision"),
            "recall": dim("recall", "Recall"),
        },
    )


POINTS = {"threshold": [0.1, 0.5, 0.9], "precision": [0.5, 0.7, 0.9], "recall": [0.9, 0.6, 0.2]}


def test_mime_types_follow_one_pattern() -> None:
    assert widgets.MIME_TITLE_CARD == "application/vnd.assay.titlecard+json"
    for mime in widgets.MIME_TYPES:
        assert re.fullmatch(r"application/vnd\.assay\.[a-z]+\+json", mime)
    assert len(set(widgets.MIME_TYPES)) == 4


def test_title_card_bundle_escapes_html() -> None:
    bundle = widgets.title_card(
        headline="Is <b>it</b> safe?",
        author='Ann "A" & co',
        summary_phrase="Mostly",
        summary_text="<script>alert(1)</script>",
    )
    assert set(bundle) == {"text/html", "text/plain", widgets.MIME_TITLE_CARD}
    assert bundle[widgets.MIME_TITLE_CARD] == {
        "headline": "Is <b>it</b> safe?",
        "author": 'Ann "A" & co',
        "summaryPhrase": "Mostly",
        "summaryText": "<script>alert(1)</script>",
    }
    page = bundle["text/html"]
    assert "Is &lt;b&gt;it&lt;/b&gt; safe?" in page
    assert "Ann &quot;A&quot; &amp; co" in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "Is <b>it</b> safe?" in bundle["text/plain"]


def test_title_card_refuses_non_strings() -> None:
    with pytest.raises(WidgetError, match="TitleCard: author must be a string, not int"):
        widgets.title_card(headline="h", author=3, summary_phrase="p", summary_text="t")  # type: ignore[arg-type]


def test_conclusion_renders_markdown_without_raw_html() -> None:
    bundle = widgets.conclusion(
        indicator="Hazard",
        text="**Jailbreaks** work <img src=x onerror=alert(1)> [x](javascript:alert(1))",
    )
    assert bundle[widgets.MIME_CONCLUSION] == {
        "indicator": "Hazard",
        "text": "**Jailbreaks** work <img src=x onerror=alert(1)> [x](javascript:alert(1))",
    }
    page = bundle["text/html"]
    assert "<strong>Jailbreaks</strong>" in page
    assert "<img" not in page and "&lt;img" in page
    assert 'href="javascript' not in page
    assert "assay-conclusion-hazard" in page
    assert bundle["text/plain"].startswith("Hazard: ")


@pytest.mark.parametrize("indicator", ["hazard", "Warning", ""])
def test_conclusion_indicator_is_one_of_three(indicator: str) -> None:
    with pytest.raises(WidgetError) as caught:
        widgets.conclusion(indicator=indicator, text="x")
    message = str(caught.value)
    assert repr(indicator) in message
    assert "'Information', 'Question', 'Hazard'" in message
    assert isinstance(caught.value, ValueError)


def test_score_bundle_and_payload() -> None:
    bundle = widgets.score(accuracy(), quantity=0.87, text="Good & solid", interval=(0.8, 0.9))
    assert bundle[widgets.MIME_SCORE] == {
        "name": "accuracy",
        "quantity": 0.87,
        "quantityString": "87.0%",
        "text": "Good & solid",
        "interval": [0.8, 0.9],
        "confidence": 0.95,
    }
    page = bundle["text/html"]
    assert "Accuracy" in page and "87.0%" in page
    assert "95% interval: 80.0% to 90.0%" in page
    assert "higher is better" in page
    assert '<svg class="assay-score-bar"' in page  # min and max known: a range bar
    assert "Good &amp; solid" in page
    assert bundle["text/plain"].startswith("Accuracy: 87.0% (95% interval")


def test_score_without_interval_or_range() -> None:
    spec = accuracy(
        minimum=None, maximum=None, valence="negative", format="{quantity:.0f} {unit}", unit="ms"
    )
    bundle = widgets.score(spec, quantity=120, text="Latency")
    payload = bundle[widgets.MIME_SCORE]
    assert payload["interval"] is None
    assert payload["quantity"] == 120.0 and isinstance(payload["quantity"], float)
    assert payload["quantityString"] == "120 ms"
    assert "assay-score-bar" not in bundle["text/html"]
    assert "lower is better" in bundle["text/html"]


def test_score_accepts_numpy_numbers() -> None:
    np = pytest.importorskip("numpy")
    bundle = widgets.score(
        accuracy(), quantity=np.float32(0.5), text="t", interval=(np.float64(0.25), 1)
    )
    assert bundle[widgets.MIME_SCORE]["quantity"] == 0.5
    assert bundle[widgets.MIME_SCORE]["interval"] == [0.25, 1.0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"quantity": 1.5},
            r"Score 'accuracy': quantity 1\.5 is outside the score's range \[0, 1\]",
        ),
        ({"quantity": -0.1}, r"quantity -0\.1 is outside the score's range \[0, 1\]"),
        ({"quantity": math.nan}, r"quantity must be a finite number, not nan"),
        ({"quantity": math.inf}, r"quantity must be a finite number, not inf"),
        ({"quantity": "0.5"}, r"quantity must be a number, not '0\.5'"),
        ({"quantity": True}, r"quantity must be a number, not True"),
        ({"interval": (0.6, 0.9)}, r"interval \(0\.6, 0\.9\) must contain the quantity 0\.5"),
        (
            {"interval": (0.4, 1.2)},
            r"interval \(0\.4, 1\.2\) is outside the score's range \[0, 1\]",
        ),
        ({"interval": (0.4,)}, r"interval must be a pair \(low, high\); got 1 values"),
        ({"interval": "ab"}, r"interval must be a pair \(low, high\), not 'ab'"),
        ({"interval": (0.4, math.nan)}, r"interval high must be a finite number"),
        ({"confidence": 1.0}, r"confidence 1\.0 must be a number between 0 and 1"),
        ({"text": "x" * 281}, r"text has 281 characters; at most 280 are allowed"),
        ({"text": None}, r"text must be a string, not NoneType"),
    ],
)
def test_score_validation(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"quantity": 0.5, "text": "t", **kwargs}
    with pytest.raises(WidgetError, match=message):
        widgets.score(accuracy(), **arguments)


def test_score_range_with_one_bound() -> None:
    spec = accuracy(maximum=None, format="{quantity:.1f}")
    widgets.score(spec, quantity=1e9, text="unbounded above")
    with pytest.raises(WidgetError, match=r"outside the score's range \[0, inf\]"):
        widgets.score(spec, quantity=-1, text="t")


def test_score_needs_a_score_spec() -> None:
    with pytest.raises(WidgetError, match="spec must be a ScoreSpec, not dict"):
        widgets.score({"name": "x"}, quantity=1, text="t")  # type: ignore[arg-type]


def test_curve_bundle_payload_and_chart() -> None:
    bundle = widgets.curve(pr_curve(), points=POINTS, text="Recall falls <fast>")
    assert bundle[widgets.MIME_CURVE] == {
        "name": "pr",
        "points": POINTS,
        "text": "Recall falls <fast>",
    }
    page = bundle["text/html"]
    assert page.count("<svg") == 1
    assert page.count("<polyline") == 2  # precision and recall on y
    assert page.count("<circle") == 6
    assert ">Threshold</text>" in page  # x-axis label
    assert ">0.0</text>" in page and ">1.0</text>" in page  # ticks
    assert "Precision</li>" in page and "Recall</li>" in page  # legend
    assert "Recall falls &lt;fast&gt;" in page
    assert "http" not in page  # inline SVG needs no namespace URL


def test_curve_points_follow_the_spec_order_and_accept_arrays() -> None:
    np = pytest.importorskip("numpy")
    points = {k: np.array(POINTS[k]) for k in ("recall", "precision", "threshold")}
    payload = widgets.curve(pr_curve(), points=points, text="t")[widgets.MIME_CURVE]
    assert list(payload["points"]) == ["threshold", "precision", "recall"]
    assert payload["points"]["recall"] == [0.9, 0.6, 0.2]


def test_curve_with_one_dimension_and_one_point() -> None:
    spec = CurveSpec(
        name="loss",
        title="Loss",
        summary="Training loss",
        dimensions={"loss": ScoreSpec(name="loss", title="Loss", summary="l", unit="nats")},
    )
    page = widgets.curve(spec, points={"loss": [2.5]}, text="t")["text/html"]
    assert "<circle" in page and "<polyline" not in page
    assert ">Loss (nats)</text>" in page  # on y, against the points' positions on x
    assert ">Point</text>" in page


@pytest.mark.parametrize(
    ("points", "message"),
    [
        ({"threshold": [0.1], "precision": [0.5]}, r"exactly the dimensions .*; missing 'recall'"),
        ({**POINTS, "f1": [1, 1, 1]}, r"unexpected 'f1'"),
        (
            {**POINTS, "recall": [0.1, 0.2]},
            r"same number of values; got \{'threshold': 3, 'precision': 3, 'recall': 2\}",
        ),
        ({"threshold": [], "precision": [], "recall": []}, r"at least one point"),
        (
            {**POINTS, "recall": [0.1, 1.2, 0.3]},
            r"value 1\.2 at index 1 of dimension 'recall' is outside its range \[0, 1\]",
        ),
        (
            {**POINTS, "recall": [0.1, math.nan, 0.3]},
            r"value at index 1 of dimension 'recall' must be a finite number",
        ),
        (
            {**POINTS, "recall": "abc"},
            r"values of dimension 'recall' must be a sequence of numbers, not str",
        ),
        ([1, 2], r"points must be a mapping"),
    ],
)
def test_curve_validation(points: Any, message: str) -> None:
    with pytest.raises(WidgetError, match=message):
        widgets.curve(pr_curve(), points=points, text="t")


def test_curve_text_limit() -> None:
    with pytest.raises(WidgetError, match="Curve 'pr': text has 300 characters"):
        widgets.curve(pr_curve(), points=POINTS, text="x" * 300)


@pytest.mark.parametrize(
    ("lo", "hi", "labels"),
    [
        (0.0, 1.0, ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]),
        (0.0, 100.0, ["0", "20", "40", "60", "80", "100"]),
        (-3.0, 7.0, ["-2", "0", "2", "4", "6"]),
        (0.001, 0.002, ["0.0010", "0.0012", "0.0014", "0.0016", "0.0018", "0.0020"]),
    ],
)
def test_ticks_are_round(lo: float, hi: float, labels: list[str]) -> None:
    assert [label for _, label in widgets._ticks(lo, hi)] == labels


def test_importing_widgets_does_not_import_jupyter() -> None:
    code = (
        "import sys, assay.analysis.widgets\n"
        "bad = [m for m in ('IPython', 'ipykernel', 'jupyter_client', 'nbclient', 'nbformat') "
        "if m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_display_bundle_outside_a_kernel_prints_plain_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    widgets.display_bundle(widgets.conclusion(indicator="Question", text="Is it?"))
    # Without a running IPython shell, IPython.display prints the objects.
    assert "Question" in capsys.readouterr().out
