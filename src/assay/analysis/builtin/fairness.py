"""Built-in fairness method: any metric by group, and the gaps between groups."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from assay import errors
from assay.analysis import stats
from assay.analysis.builtin import _metrics
from assay.analysis.builtin._inputs import Arguments, Resampling, check_inputs
from assay.analysis.builtin._registry import Builtin
from assay.analysis.builtin._results import METRICS_SCHEMA, Row, metrics_table
from assay.schema.platform import MeasurementLevel, MethodInputKind

__all__ = ["METRICS", "metrics"]

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]


def metrics(args: Mapping[str, str], **inputs: Any) -> pa.Table:
    """Metrics by group, the gap between the best and worst group, demographic parity and
    equalized odds, each with a bootstrap confidence interval.

    Each row of the evaluation (input `evaluation`) belongs to the group named by the Dataset's
    column `group_field` (input `dataset`, joined on `_index_`; rows with a null group are left
    out). Scores (column `metric`, with `group`):

    - for each name in `metrics` (comma-separated, default `accuracy`; any of the scores of
      `classification.metrics` and `text.metrics`: accuracy, top_k_accuracy, macro_precision,
      macro_recall, macro_f1, expected_calibration_error, exact_match_rate, contains_rate,
      regex_match_rate, refusal_rate, mean_characters, mean_words, computed as there): the
      score of each group (group: the group value; `n`: its rows), and `<metric>_difference`,
      the largest minus the smallest group score;
    - when `positive_label` is given (classification): `positive_rate` of each group (share
      of rows predicted `positive_label`) and `demographic_parity_difference` (largest minus
      smallest positive rate); `true_positive_rate` and `false_positive_rate` of each group and
      `equalized_odds_difference`, the larger of the TPR gap and the FPR gap.

    A gap is null with fewer than two groups where the score is defined. All the scores of
    one metric come from the same resamples of the whole data (group sizes vary between
    resamples, as they would between samples). Output: the long metrics schema.
    """
    name = "fairness.metrics"
    check_inputs(name, inputs, ("evaluation", "dataset"))
    arguments = Arguments(name, args, METRICS.parameters)
    group_field = arguments.required(
        "group_field", "the column of the Dataset that holds each instance's group"
    )
    wanted = arguments.names("metrics", "accuracy", _metrics.METRICS)
    positive = arguments.optional("positive_label")
    resampling = Resampling.from_arguments(arguments)
    source = _metrics.Source(name, arguments, inputs["evaluation"], inputs["dataset"])
    prepared = [source.prepare(metric) for metric in wanted]
    if positive is not None:
        source.classified()
    groups, names = _groups(name, source, group_field)
    rows: list[Row] = []
    for p in prepared:
        rows += _by_group(p, groups, names, resampling)
    if positive is not None:
        rows += _parity(name, source, positive, groups, names, resampling)
    return metrics_table(rows)


def _groups(name: str, source: _metrics.Source, field: str) -> tuple[Ints, list[str]]:
    """The group number of every evaluation row (-1: none), and the group values."""
    column = source.column(field, "group_field")
    try:
        values = column.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise errors.ValidationError(
            f"{name}: the Dataset's column {field!r} must hold group values (strings, numbers "
            f"or booleans), got {column.type}; set the argument group_field to the column "
            "that holds the groups",
            field="group_field",
        ) from None
    names = sorted(pc.unique(values).drop_null().to_pylist())
    if not names:
        raise errors.ValidationError(
            f"{name}: the Dataset's column {field!r} is null for every instance answered; set "
            "the argument group_field to the column that holds the groups",
            field="group_field",
        )
    found = pc.index_in(values, value_set=pa.array(names, pa.string())).fill_null(-1)
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=np.int64), names


def _by_group(
    p: _metrics.Prepared, all_groups: Ints, names: list[str], resampling: Resampling
) -> list[Row]:
    g = all_groups[p.rows]
    keep = g >= 0
    p, g = p.subset(keep), g[keep]
    count, width = len(names), p.categories

    def statistic(sums: Floats) -> Floats:
        per = p.statistic(sums.reshape(sums.shape[0], count, width, sums.shape[-1]))
        return np.column_stack([per, _metrics.spread(per)])

    units = p.positions if p.replicated else None
    sample = stats.Sample(g * width + p.codes, count * width, p.values, units)
    found = resampling.bootstrap(statistic, sample)
    sizes = np.bincount(g, minlength=count)
    rows = [Row(p.metric, n, e, int(c)) for n, e, c in zip(names, found, sizes, strict=False)]
    rows.append(Row(f"{p.metric}_difference", None, found[-1]))
    return rows


def _parity(
    name: str,
    source: _metrics.Source,
    positive: str,
    all_groups: Ints,
    names: list[str],
    resampling: Resampling,
) -> list[Row]:
    found, coded = source.classified()
    if positive not in coded.classes:
        raise errors.ValidationError(
            f"{name}: the argument positive_label {positive!r} is not among the labels seen "
            f"({', '.join(coded.classes)}); set it to one of them",
            field="positive_label",
            value=positive,
        )
    label = coded.classes.index(positive)
    g = all_groups[coded.rows]
    keep = g >= 0
    g = g[keep]
    predicted = (coded.prediction[keep] == label).astype(np.int64)
    actual = (coded.truth[keep] == label).astype(np.int64)
    count = len(names)

    def statistic(sums: Floats) -> Floats:
        table = sums[..., 0].reshape(sums.shape[0], count, 2, 2)  # (truth, prediction)
        rate = table[..., 1].sum(axis=-1) / table.sum(axis=(-2, -1))
        tpr = table[..., 1, 1] / table[..., 1, :].sum(axis=-1)
        fpr = table[..., 0, 1] / table[..., 0, :].sum(axis=-1)
        odds = np.fmax(_metrics.spread(tpr), _metrics.spread(fpr))
        return np.column_stack([rate, tpr, fpr, _metrics.spread(rate), odds])

    units = found.aligned.positions[coded.rows][keep] if found.aligned.replicated else None
    sample = stats.Sample(g * 4 + actual * 2 + predicted, count * 4, units=units)
    estimates = iter(resampling.bootstrap(statistic, sample))
    sizes = np.bincount(g, minlength=count)
    rows: list[Row] = []
    for metric in ("positive_rate", "true_positive_rate", "false_positive_rate"):
        rows += [Row(metric, n, next(estimates), int(c)) for n, c in zip(names, sizes, strict=True)]
    rows.insert(count, Row("demographic_parity_difference", None, next(estimates)))
    rows.append(Row("equalized_odds_difference", None, next(estimates)))
    return rows


#: ``fairness.metrics``: metrics by group and their gaps.
METRICS = Builtin(
    name="fairness.metrics",
    function=metrics,
    level=MeasurementLevel.Dataset,
    schema=METRICS_SCHEMA,
    parameters={
        "group_field": "Column of the Dataset that holds each instance's group (required).",
        "metrics": "Comma-separated scores to compute by group (default `accuracy`): any of "
        f"{', '.join(_metrics.METRICS)}.",
        "positive_label": "The label counted as a positive prediction, for demographic parity "
        "and equalized odds (classification; optional).",
        **{k: v for k, v in _metrics.PARAMETERS.items() if k != "metric"},
    },
    inputs=(
        ("evaluation", MethodInputKind.Evaluation, "The outputs of the system audited."),
        ("dataset", MethodInputKind.Dataset, "The Dataset evaluated, with the group column."),
    ),
)
