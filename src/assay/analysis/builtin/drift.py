"""Built-in drift method: how far the distribution of a numeric column moved between two
windows of data (the population stability index)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from assay import errors
from assay.analysis import stats
from assay.analysis.builtin._inputs import Arguments, check_inputs
from assay.analysis.builtin._registry import Builtin
from assay.analysis.builtin._results import METRICS_SCHEMA, Row, metrics_table
from assay.schema.platform import MeasurementLevel, MethodInputKind

__all__ = ["PSI", "psi", "psi_value"]

#: The share given to a bin that holds no value, so that its term stays finite.
EMPTY_BIN_SHARE = 1e-4

Floats = NDArray[np.float64]


def _values(name: str, keyword: str, data: Any, column: str) -> Floats:
    """The non-null values of ``column`` of the input bound to ``keyword``: a top-level
    column, or else a field of the responses of an Evaluation's output."""
    schema = data.schema
    if schema.get_field_index(column) >= 0:
        array = data.column(column) if isinstance(data, pa.Table) else None
        if array is None:
            array = data.to_table(columns=[column]).column(column)
    elif schema.get_field_index("responses") >= 0 and (
        pa.types.is_list(schema.field("responses").type)
        and pa.types.is_struct(schema.field("responses").type.value_type)
        and schema.field("responses").type.value_type.get_field_index(column) >= 0
    ):
        responses = (
            data.column("responses")
            if isinstance(data, pa.Table)
            else data.to_table(columns=["responses"]).column("responses")
        )
        array = pc.struct_field(pc.list_flatten(responses), column)
    else:
        names = list(schema.names)
        raise errors.ValidationError(
            f"{name}: the data bound to {keyword!r} has no column {column!r} (its columns: "
            f"{', '.join(names)}); set the argument column to a numeric column of both inputs",
            field="column",
            value=column,
        )
    if not (pa.types.is_integer(array.type) or pa.types.is_floating(array.type)):
        raise errors.ValidationError(
            f"{name}: the column {column!r} of {keyword!r} is {array.type}, expected numbers",
            field="column",
            value=column,
        )
    values: Floats = np.asarray(pc.drop_null(array).to_numpy(), dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        raise errors.ValidationError(
            f"{name}: the column {column!r} of {keyword!r} has no values", field="column"
        )
    return values


def psi_value(baseline: Floats, current: Floats, bins: int) -> float:
    """The population stability index of ``current`` against ``baseline``, over ``bins``
    bins at the baseline's quantiles: sum over bins of (c - b) * ln(c / b), where b and c are
    the shares of each window in the bin (an empty bin counts as a share of
    :data:`EMPTY_BIN_SHARE`). Bins whose edges coincide (repeated values) are merged."""
    inner = np.unique(np.quantile(baseline, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    # bin i holds edges[i-1] < x <= edges[i]; the outer bins are open-ended
    b = np.bincount(np.searchsorted(inner, baseline, side="left"), minlength=inner.size + 1)
    c = np.bincount(np.searchsorted(inner, current, side="left"), minlength=inner.size + 1)
    b_share = np.maximum(b / baseline.size, EMPTY_BIN_SHARE)
    c_share = np.maximum(c / current.size, EMPTY_BIN_SHARE)
    return float(np.sum((c_share - b_share) * np.log(c_share / b_share)))


def psi(args: Mapping[str, str], **inputs: Any) -> pa.Table:
    """Population stability index: how far the distribution of a numeric column moved from
    a baseline window to a current one, with a drift alert.

    The column `column` (required) is read from the inputs `baseline` and `current` (a
    Dataset, e.g. two windows of a pipeline's inference log; where the data has no such
    column but is an Evaluation's output, its response field of that name is used); nulls
    and NaN are left out. The baseline's values
    are cut into `bins` (default 5) bins at its quantiles (the outer bins open-ended; bins
    with equal edges merged), and PSI = sum over bins of (c - b) * ln(c / b) with b and c the
    shares of each window in the bin (an empty bin counts as 0.0001). Scores (group null):
    `psi`, and `alert`: 1.0 when psi >= `alert` (default 0.25, the usual threshold of a
    significant shift), else 0.0; `n` is the number of current values. No intervals. Output:
    the long metrics schema.
    """
    name = "drift.psi"
    check_inputs(name, inputs, ("baseline", "current"))
    arguments = Arguments(name, args, PSI.parameters)
    column = arguments.required("column", "the numeric column to compare")
    bins = arguments.integer("bins", 5, minimum=2)
    threshold = arguments.number("alert", 0.25, low=0.0, high=float("inf"))
    baseline = _values(name, "baseline", inputs["baseline"], column)
    current = _values(name, "current", inputs["current"], column)
    value = psi_value(baseline, current, bins)
    n = int(current.size)
    return metrics_table(
        [
            Row("psi", None, stats.Estimate(value=value, low=None, high=None, n=n)),
            Row(
                "alert",
                None,
                stats.Estimate(value=float(value >= threshold), low=None, high=None, n=n),
            ),
        ]
    )


#: ``drift.psi``: population stability index between two windows.
PSI = Builtin(
    name="drift.psi",
    function=psi,
    level=MeasurementLevel.Dataset,
    schema=METRICS_SCHEMA,
    parameters={
        "column": "The numeric column (or response field) whose distribution is compared.",
        "bins": "Number of bins, cut at the baseline's quantiles (default 5).",
        "alert": "The PSI at or above which `alert` is 1.0 (default 0.25).",
    },
    inputs=(
        ("baseline", MethodInputKind.Dataset, "The reference window of data."),
        ("current", MethodInputKind.Dataset, "The window compared with the baseline."),
    ),
)
