"""Built-in comparison method: two systems on the same data set, paired."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from assay.analysis import stats
from assay.analysis.builtin import _metrics
from assay.analysis.builtin._inputs import Arguments, Resampling, check_inputs
from assay.analysis.builtin._registry import Builtin
from assay.analysis.builtin._results import METRICS_SCHEMA, Row, metrics_table
from assay.schema.platform import MeasurementLevel, MethodInputKind

__all__ = ["DIFFERENCE", "difference"]


def difference(args: Mapping[str, str], **inputs: Any) -> pa.Table:
    """Which of two systems scores higher on the same data set: the paired bootstrap
    difference of a metric, with its confidence interval.

    The metric `metric` (default `accuracy`; any score of `classification.metrics` or
    `text.metrics`, computed as there) is computed on the evaluations `a` and `b` of the same
    Dataset (input `dataset`), on the instances (`_index_`) both answered. Each resample takes
    the same instances on both sides (with replications, all of an instance's rows). Scores:
    `<metric>` with group `a` and group `b`; `<metric>_difference` = a - b with its interval;
    `<metric>_share_a_greater`, the share of resamples where a scores higher than b (no
    interval: it is itself a bootstrap quantity). Output: the long metrics schema.
    """
    name = "comparison.difference"
    check_inputs(name, inputs, ("a", "b", "dataset"))
    arguments = Arguments(name, args, DIFFERENCE.parameters)
    metric = _metrics.metric_argument(arguments)
    resampling = Resampling.from_arguments(arguments)
    sides = [
        _metrics.Source(name, arguments, inputs[k], inputs["dataset"], evaluation_keyword=k)
        for k in ("a", "b")
    ]
    result = _metrics.compare(
        sides[0].prepare(metric), sides[1].prepare(metric), resampling, method=name, common=True
    )
    diff = result.difference
    share = stats.Estimate(value=diff.share_above(0.0), low=None, high=None, n=diff.n)
    return metrics_table(
        [
            Row(metric, "a", result.a),
            Row(metric, "b", result.b),
            Row(f"{metric}_difference", None, diff),
            Row(f"{metric}_share_a_greater", None, share),
        ]
    )


#: ``comparison.difference``: two systems, paired.
DIFFERENCE = Builtin(
    name="comparison.difference",
    function=difference,
    level=MeasurementLevel.Dataset,
    schema=METRICS_SCHEMA,
    parameters=_metrics.PARAMETERS,
    inputs=(
        ("a", MethodInputKind.Evaluation, "The outputs of the first system."),
        ("b", MethodInputKind.Evaluation, "The outputs of the second system."),
        ("dataset", MethodInputKind.Dataset, "The Dataset both systems were evaluated on."),
    ),
)
