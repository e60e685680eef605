"""Built-in robustness method: a metric on clean and perturbed inputs, and the drop."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from assay.analysis.builtin import _metrics
from assay.analysis.builtin._inputs import Arguments, Resampling, check_inputs
from assay.analysis.builtin._registry import Builtin
from assay.analysis.builtin._results import METRICS_SCHEMA, Row, metrics_table
from assay.schema.platform import MeasurementLevel, MethodInputKind

__all__ = ["DROP", "DROP_WITH_PERTURBED_DATASET", "drop"]


def drop(args: Mapping[str, str], **inputs: Any) -> pa.Table:
    """How much a metric drops from clean to perturbed inputs, with bootstrap confidence
    intervals.

    The metric `metric` (default `accuracy`; any score of `classification.metrics` or
    `text.metrics`, computed as there) is computed on the evaluation of the clean inputs
    (input `clean`, with the Dataset `dataset`) and on the evaluation of the perturbed inputs
    (input `perturbed`, with the Dataset `perturbed_dataset` where there is one, else
    `dataset`). Scores: `<metric>` with group `clean` and group `perturbed`, and
    `<metric>_drop` = clean - perturbed (positive: the perturbation hurts).

    When the two evaluations cover the same `_index_` values (the perturbed data set keeps the
    instances' numbers), the bootstrap is paired: each resample takes the same instances on
    both sides, which gives a tighter interval for the drop. Otherwise the two sides are
    resampled independently. Output: the long metrics schema.
    """
    name = "robustness.drop"
    keywords = ["clean", "perturbed", "dataset"]
    if inputs.get("perturbed_dataset") is not None:
        keywords.append("perturbed_dataset")
    else:
        inputs = {k: v for k, v in inputs.items() if k != "perturbed_dataset"}
    check_inputs(name, inputs, keywords)
    arguments = Arguments(name, args, DROP.parameters)
    metric = _metrics.metric_argument(arguments)
    resampling = Resampling.from_arguments(arguments)
    clean = _metrics.Source(
        name, arguments, inputs["clean"], inputs["dataset"], evaluation_keyword="clean"
    )
    perturbed_keyword = "perturbed_dataset" if "perturbed_dataset" in inputs else "dataset"
    perturbed = _metrics.Source(
        name,
        arguments,
        inputs["perturbed"],
        inputs[perturbed_keyword],
        evaluation_keyword="perturbed",
        dataset_keyword=perturbed_keyword,
    )
    result = _metrics.compare(
        clean.prepare(metric), perturbed.prepare(metric), resampling, method=name, common=False
    )
    return metrics_table(
        [
            Row(metric, "clean", result.a),
            Row(metric, "perturbed", result.b),
            Row(f"{metric}_drop", None, result.difference),
        ]
    )


_INPUTS = (
    ("clean", MethodInputKind.Evaluation, "The outputs on the clean inputs."),
    ("perturbed", MethodInputKind.Evaluation, "The outputs on the perturbed inputs."),
    ("dataset", MethodInputKind.Dataset, "The clean Dataset, with the truth."),
)

#: ``robustness.drop`` with one Dataset for both evaluations.
DROP = Builtin(
    name="robustness.drop",
    function=drop,
    level=MeasurementLevel.Dataset,
    schema=METRICS_SCHEMA,
    parameters=_metrics.PARAMETERS,
    inputs=_INPUTS,
)

#: ``robustness.drop`` with the perturbed evaluation's own Dataset (input
#: ``perturbed_dataset``); the platform needs every declared input, hence two Methods.
DROP_WITH_PERTURBED_DATASET = Builtin(
    name="robustness.drop_with_perturbed_dataset",
    function=drop,
    level=MeasurementLevel.Dataset,
    schema=METRICS_SCHEMA,
    parameters=_metrics.PARAMETERS,
    inputs=(
        *_INPUTS,
        (
            "perturbed_dataset",
            MethodInputKind.Dataset,
            "The perturbed Dataset, with the truth of the perturbed instances.",
        ),
    ),
)
