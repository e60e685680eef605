"""A comparison as CSV: the scores (one line per system and score) or the paired
differences (one line per pair).

Text that a spreadsheet would read as a formula (it starts with ``=``, ``+``, ``-``, ``@``, a
tab or a carriage return: a service named ``=HYPERLINK(...)``) is written with a leading
``'``, so that opening the export runs nothing. Numbers are written as they are (``repr``
precision); a missing one is an empty field.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from assay.comparison._table import SystemComparison

__all__ = ["DIFFERENCE_COLUMNS", "SCORE_COLUMNS", "differences_csv", "scores_csv"]

#: The columns of :func:`scores_csv`.
SCORE_COLUMNS = (
    "system",
    "inferenceService",
    "model",
    "dataset",
    "evaluation",
    "safetyCase",
    "score",
    "quantity",
    "low",
    "high",
    "confidence",
    "display",
)
#: The columns of :func:`differences_csv`.
DIFFERENCE_COLUMNS = (
    "score",
    "a",
    "b",
    "safetyCaseA",
    "safetyCaseB",
    "paired",
    "instances",
    "column",
    "scoreDifference",
    "meanDifference",
    "tLow",
    "tHigh",
    "bootstrapLow",
    "bootstrapHigh",
    "shareAHigher",
    "t",
    "pValue",
    "confidence",
    "seed",
    "why",
)

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(float(value)) if isinstance(value, float) else str(value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _write(header: Sequence[str], lines: list[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for line in lines:
        writer.writerow([_cell(v) for v in line])
    return out.getvalue()


def scores_csv(comparison: SystemComparison) -> str:
    """One line per system and score (:data:`SCORE_COLUMNS`), in the table's order."""
    lines: list[list[Any]] = []
    for row in comparison.rows:
        for spec in comparison.specs:
            score = row.scores.get(spec.name)
            if score is None:
                continue
            low, high = score.interval or (None, None)
            lines.append(
                [
                    row.label,
                    row.inference_service,
                    row.model,
                    row.dataset,
                    row.evaluation,
                    row.analysis,
                    spec.name,
                    score.quantity,
                    low,
                    high,
                    score.confidence,
                    score.value_string(),
                ]
            )
    return _write(SCORE_COLUMNS, lines)


def differences_csv(comparison: SystemComparison) -> str:
    """One line per pair of systems (:data:`DIFFERENCE_COLUMNS`): ``a - b`` on the compared
    score, with the paired statistics where the pair is paired."""
    lines: list[list[Any]] = []
    for pair in comparison.pairs:
        s = pair.statistics
        lines.append(
            [
                pair.score,
                pair.a_label,
                pair.b_label,
                pair.a,
                pair.b,
                pair.paired,
                s.n if s else None,
                pair.column,
                pair.score_difference,
                s.difference if s else None,
                s.t_low if s else None,
                s.t_high if s else None,
                s.bootstrap_low if s else None,
                s.bootstrap_high if s else None,
                s.share_a_higher if s else None,
                s.t if s else None,
                s.p_value if s else None,
                s.confidence if s else None,
                s.seed if s else None,
                pair.why,
            ]
        )
    return _write(DIFFERENCE_COLUMNS, lines)
