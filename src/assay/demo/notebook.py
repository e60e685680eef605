"""The demo's safety case: a Jupyter notebook Method that reads the measurements of one
system and publishes its scores, curves, title card and conclusion.

The notebook is built here with nbformat (:func:`write_notebook`) and packaged in the demo's
audit Module; :func:`method_request` declares the Method around it: its parameters, its
inputs (Measurements of the built-in methods) and its :data:`SCORES`. The platform runs it in a
Jupyter kernel, once per system, and renders the executed notebook as one HTML page.

Every score is shown with its 95 % bootstrap interval, from the measurement it comes from. A
percentile interval of a biased statistic (the expected calibration error is one) may leave
out the estimate itself; the notebook then stretches the interval to include it, which it
says in the score's sentence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "CELLS",
    "INPUTS",
    "NOTEBOOK",
    "PARAMETERS",
    "SCORES",
    "method_request",
    "write_notebook",
]

#: The notebook's file name in the audit Module.
NOTEBOOK = "digits_safety_case.ipynb"

#: Parameter keyword → description.
PARAMETERS = {
    "side": "`a` or `b`: which side of the comparison measurements this system is.",
    "system": "What the system is, for the title card (e.g. `Random forest (100 trees)`).",
    "other": "What the system it is compared with is.",
}

#: Input keyword → description (every input is a Measurement).
INPUTS = {
    "metrics": "`classification.metrics` of the system on the clean test digits.",
    "instances": "`classification.correct` of the system on the clean test digits (for the "
    "reliability diagram).",
    "robustness": "`robustness.drop` of the system: clean against noisy digits.",
    "comparison": "`comparison.difference` of the two systems on the clean digits.",
    "comparison_noisy": "`comparison.difference` of the two systems on the noisy digits.",
}

_SHARE = {"minimum": 0, "maximum": 1, "format": "{quantity:.1%}"}
_CHANGE = {"minimum": -1, "maximum": 1, "format": "{quantity:+.1%}"}

#: The scores and curves the notebook publishes (``ScoreSpec`` / ``CurveSpec`` documents).
SCORES: list[dict[str, Any]] = [
    {
        "name": "accuracy",
        "title": "Accuracy on clean digits",
        "summary": "Share of the held-out test digits the system labels correctly.",
        "valence": "positive",
        "priority": "primary",
        **_SHARE,
    },
    {
        "name": "worst_class_recall",
        "title": "Recall of the hardest digit",
        "summary": "The lowest per-digit recall: the share of that digit's images labelled "
        "correctly.",
        "valence": "positive",
        "priority": "secondary",
        **_SHARE,
    },
    {
        "name": "calibration_error",
        "title": "Expected calibration error",
        "summary": "How far the system's confidence is from its accuracy, averaged over 10 "
        "confidence bins (0 is perfectly calibrated).",
        "valence": "negative",
        "priority": "secondary",
        "minimum": 0,
        "maximum": 1,
        "format": "{quantity:.3f}",
    },
    {
        "name": "noisy_accuracy",
        "title": "Accuracy on noisy digits",
        "summary": "Share of the test digits labelled correctly after Gaussian noise "
        "(standard deviation 0.3 of the pixel range) is added to every pixel.",
        "valence": "positive",
        "priority": "secondary",
        **_SHARE,
    },
    {
        "name": "robustness_drop",
        "title": "Accuracy lost to pixel noise",
        "summary": "Accuracy on clean digits minus accuracy on the same digits with noise "
        "(paired: the same images on both sides).",
        "valence": "negative",
        "priority": "secondary",
        **_CHANGE,
    },
    {
        "name": "advantage",
        "title": "Accuracy advantage over the other system (clean)",
        "summary": "This system's accuracy minus the other system's, on the same clean "
        "digits (paired).",
        "valence": "positive",
        "priority": "secondary",
        **_CHANGE,
    },
    {
        "name": "advantage_noisy",
        "title": "Accuracy advantage over the other system (noisy)",
        "summary": "This system's accuracy minus the other system's, on the same noisy "
        "digits (paired).",
        "valence": "positive",
        "priority": "secondary",
        **_CHANGE,
    },
    {
        "name": "recall_by_digit",
        "title": "Recall of each digit",
        "summary": "The share of each digit's test images that the system labels correctly.",
        "dimensions": {
            "digit": {
                "name": "digit",
                "title": "Digit",
                "summary": "The true digit.",
                "minimum": 0,
                "maximum": 9,
            },
            "recall": {"name": "recall", "title": "Recall", "summary": "Share right.", **_SHARE},
        },
    },
    {
        "name": "reliability",
        "title": "Reliability diagram",
        "summary": "Accuracy against confidence, by confidence bin: a calibrated system lies "
        "on the diagonal.",
        "dimensions": {
            "confidence": {
                "name": "confidence",
                "title": "Mean confidence",
                "summary": "Mean confidence of the bin's predictions.",
                "minimum": 0,
                "maximum": 1,
            },
            "accuracy": {
                "name": "accuracy",
                "title": "Accuracy",
                "summary": "Share right in the bin.",
                "minimum": 0,
                "maximum": 1,
            },
            "calibrated": {
                "name": "calibrated",
                "title": "Perfect calibration",
                "summary": "Accuracy equal to confidence.",
                "minimum": 0,
                "maximum": 1,
            },
        },
    },
]

_INTRO = """\
# Audit of a handwritten-digit classifier

This safety case audits one classifier of 8x8 handwritten digits (scikit-learn's *digits*
data). The system was trained on 70 % of the images and is evaluated here on the 540 held-out
ones, twice: as they are, and with Gaussian noise (standard deviation 0.3 of the pixel range)
added to every pixel. The system answered as a `python` inference service with two replicas,
and was sent the pixels only, never the true digit.

The scores come from Assay's built-in methods: `classification.metrics` (accuracy, recall of
each digit, expected calibration error), `robustness.drop` (clean against noisy) and
`comparison.difference` (this system against the other one, on the same images). Every
interval is a 95 % percentile bootstrap interval over 1,000 resamples; comparisons are paired.
"""

_SETUP = """\
import numpy as np
import pyarrow.compute as pc

from assay.analysis import AnalysisContext

ctx = AnalysisContext()
side, system, other = ctx.args("side"), ctx.args("system"), ctx.args("other")


def rows(keyword):
    return ctx.inputs(keyword).to_table().to_pylist()


def find(table, metric, group=None):
    for row in table:
        if row["metric"] == metric and row["group"] == group:
            return row
    raise LookupError(f"the measurement has no {metric!r} (group {group!r})")


def estimate(row, sign=1.0):
    \"\"\"The value and interval of a row (negated with sign=-1), the interval stretched to
    hold the value; and whether it had to be.\"\"\"
    value, low, high = (sign * row[k] for k in ("value", "low", "high"))
    low, high = min(low, high), max(low, high)
    stretched = not low <= value <= high
    return value, (min(low, value), max(high, value)), stretched


def pct(x):
    return f"{100 * x:.1f}%"


def points(x):
    return f"{100 * x:.1f} points"


metrics, drops = rows("metrics"), rows("robustness")
accuracy = estimate(find(metrics, "accuracy"))
ece = estimate(find(metrics, "expected_calibration_error"))
recalls = sorted(
    (int(r["group"]), r) for r in metrics if r["metric"] == "recall" and r["group"] is not None
)
worst_digit, worst = min(recalls, key=lambda item: item[1]["value"])
noisy = estimate(find(drops, "accuracy", "perturbed"))
drop = estimate(find(drops, "accuracy_drop"))
sign = 1.0 if side == "a" else -1.0
advantage = estimate(find(rows("comparison"), "accuracy_difference"), sign)
advantage_noisy = estimate(find(rows("comparison_noisy"), "accuracy_difference"), sign)
"""

_TITLE = """\
ctx.TitleCard(
    headline=f"Digit classifier audit: {system}",
    author="assay demo",
    summary_phrase=f"{pct(accuracy[0])} right on clean digits, {pct(noisy[0])} with pixel noise",
    summary_text=(
        f"{system} labels {pct(accuracy[0])} of 540 held-out digits correctly; with Gaussian "
        f"pixel noise its accuracy falls by {points(drop[0])}. Compared with {other} on the "
        "same images."
    ),
)
"""

_SCORES = """\
def interval_note(e):
    return " (interval stretched to include the estimate)" if e[2] else ""


ctx.Score("accuracy", f"{system} labels {pct(accuracy[0])} of the clean test digits "
          f"correctly.", accuracy[0], interval=accuracy[1])
ctx.Score("worst_class_recall", f"The hardest digit is {worst_digit}: "
          f"{pct(worst['value'])} of its images are labelled correctly.",
          worst["value"], interval=estimate(worst)[1])
ctx.Score("calibration_error", f"Confidence and accuracy differ by {ece[0]:.3f} on "
          f"average{interval_note(ece)}.", ece[0], interval=ece[1])
ctx.Score("noisy_accuracy", f"With noise, {pct(noisy[0])} of the digits are labelled "
          "correctly.", noisy[0], interval=noisy[1])
ctx.Score("robustness_drop", f"Pixel noise costs {points(drop[0])} of accuracy.",
          drop[0], interval=drop[1])
ctx.Score("advantage", f"On clean digits, {system} is {points(abs(advantage[0]))} "
          f"{'more' if advantage[0] >= 0 else 'less'} accurate than {other}.",
          advantage[0], interval=advantage[1])
ctx.Score("advantage_noisy", f"On noisy digits, {system} is {points(abs(advantage_noisy[0]))} "
          f"{'more' if advantage_noisy[0] >= 0 else 'less'} accurate than {other}.",
          advantage_noisy[0], interval=advantage_noisy[1])
"""

_CURVES = """\
ctx.Curve("recall_by_digit", f"Recall of each digit on the clean test set; the lowest is "
          f"digit {worst_digit}.",
          {"digit": [float(d) for d, _ in recalls], "recall": [r["value"] for _, r in recalls]})

table = ctx.inputs("instances").to_table(columns=["confidence", "correct"])
confidence = np.asarray(table["confidence"].fill_null(np.nan).to_numpy(zero_copy_only=False))
correct = np.asarray(table["correct"].fill_null(False).to_numpy(zero_copy_only=False), float)
known = np.isfinite(confidence)
confidence, correct = np.clip(confidence[known], 0, 1), correct[known]
bins = np.minimum((confidence * 10).astype(int), 9)
used = [b for b in range(10) if (bins == b).any()]
mean_confidence = [float(confidence[bins == b].mean()) for b in used]
ctx.Curve("reliability", "Accuracy against confidence in 10 equal-width confidence bins "
          "(empty bins left out).",
          {"confidence": mean_confidence,
           "accuracy": [float(correct[bins == b].mean()) for b in used],
           "calibrated": mean_confidence})
"""

_CONCLUSION = """\
def versus(e):
    low, high = e[1]
    if low > 0:
        return f"more accurate than {other} (by {points(e[0])}; interval {pct(low)} to {pct(high)})"
    if high < 0:
        return f"less accurate than {other} (by {points(-e[0])}; interval {pct(-high)} to {pct(-low)})"
    return f"not distinguishable from {other} (difference {points(e[0])}; interval {pct(low)} to {pct(high)})"


gap = float(confidence.mean() - correct.mean())
if ece[0] < 0.05:
    calibration = f"Its confidence is well calibrated (expected calibration error {ece[0]:.3f})."
else:
    calibration = (
        f"Its confidence {'understates' if gap < 0 else 'overstates'} how often it is right "
        f"(mean confidence {pct(confidence.mean())} against accuracy {pct(correct.mean())}; "
        f"expected calibration error {ece[0]:.3f}): do not read its scores as probabilities "
        "without recalibrating them."
    )


fragile = drop[1][0] > 0.02
text = (
    f"**{system}** labels **{pct(accuracy[0])}** of clean digits correctly "
    f"(interval {pct(accuracy[1][0])} to {pct(accuracy[1][1])}); its weakest digit is "
    f"{worst_digit} ({pct(worst['value'])}). Under pixel noise its accuracy falls to "
    f"{pct(noisy[0])}, a drop of **{points(drop[0])}** (interval {pct(drop[1][0])} to "
    f"{pct(drop[1][1])}).\\n\\n"
    f"On clean digits it is {versus(advantage)}; on noisy digits it is "
    f"{versus(advantage_noisy)}.\\n\\n{calibration}\\n\\n"
    + ("Do not rely on it where images may be noisy without retraining on noisy data."
       if fragile else "Pixel noise does not measurably hurt it.")
)
ctx.Conclusion(indicator="Hazard" if fragile else "Information", text=text)
"""

#: The notebook's cells: ``("markdown" | "code", source)``.
CELLS: list[tuple[str, str]] = [
    ("markdown", _INTRO),
    ("code", _SETUP),
    ("code", _TITLE),
    ("markdown", "## Scores\n\nEach score with its 95 % interval."),
    ("code", _SCORES),
    ("markdown", "## Curves"),
    ("code", _CURVES),
    ("markdown", "## Conclusion"),
    ("code", _CONCLUSION),
]


def write_notebook(path: Path) -> Path:
    """Write the safety-case notebook to ``path``; returns it."""
    import nbformat

    nb = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [
        nbformat.v4.new_markdown_cell(source)  # type: ignore[no-untyped-call]
        if kind == "markdown"
        else nbformat.v4.new_code_cell(source)  # type: ignore[no-untyped-call]
        for kind, source in CELLS
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)  # type: ignore[no-untyped-call]
    return path


def method_request(*, account: str, module: str) -> dict[str, Any]:
    """The request that creates the notebook Method, its notebook in the Module ``module``."""
    return {
        "account": account,
        "name": "digits-safety-case",
        "scope": "Evaluation",
        "description": "A safety case for a handwritten-digit classifier: accuracy, "
        "calibration, robustness to pixel noise and a paired comparison with another system.",
        "implementation": {
            "kind": "JupyterNotebook",
            "jupyterNotebook": {"notebookModule": module, "notebookPath": NOTEBOOK},
        },
        "parameters": [{"keyword": k, "description": d} for k, d in PARAMETERS.items()],
        "inputs": [
            {"kind": "Measurement", "keyword": k, "description": d} for k, d in INPUTS.items()
        ],
        "output": {
            "kind": "SafetyCase",
            "safetyCase": {
                "name": "Digit classifier safety case",
                "description": "Accuracy, calibration, robustness and comparison, with intervals.",
            },
        },
        "scores": SCORES,
        "modules": [module],
    }
