"""Built-in explainability method: per-feature mean attributions with bootstrap intervals.

The attributions themselves (one per row of a window of traffic and per feature) are made
where the model can be called — a pipeline's explainability config does that
(:mod:`assay.pipelines.explain`) and stores them as a Dataset; this method, run as a
Measurement, summarises them. It is not among :data:`assay.analysis.builtin.BUILTINS` (its
scope is the explained InferenceService, not an Evaluation); the pipeline registers it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assay import errors
from assay.analysis import stats
from assay.analysis.builtin._inputs import (
    BOOTSTRAP_PARAMETERS,
    Arguments,
    Resampling,
    check_inputs,
    read_columns,
)
from assay.analysis.builtin._registry import Builtin
from assay.schema.dataset.arrow import field_with_docstring
from assay.schema.platform import MeasurementLevel, MethodInputKind, MethodScope
from assay.schema.requests import MethodCreateRequest

__all__ = ["ATTRIBUTIONS", "ATTRIBUTIONS_SCHEMA", "INPUT_SCHEMA", "attributions", "request"]

NAME = "explainability.attributions"

#: The columns of the input Dataset: one row per (window row, feature).
INPUT_SCHEMA = pa.schema(
    [
        pa.field("_index_", pa.int64(), False),
        pa.field("row", pa.int64(), False),
        pa.field("feature", pa.string(), False),
        pa.field("attribution", pa.float64()),
    ]
)

#: The output: one row per feature.
ATTRIBUTIONS_SCHEMA = pa.schema(
    [
        field_with_docstring("feature", pa.string(), False, docstring="The input feature."),
        field_with_docstring(
            "attribution",
            pa.float64(),
            docstring="The mean attribution of the feature over the rows; null where undefined.",
        ),
        field_with_docstring(
            "low",
            pa.float64(),
            docstring="Lower end of the bootstrap percentile interval; null where there is none.",
        ),
        field_with_docstring(
            "high",
            pa.float64(),
            docstring="Upper end of the bootstrap percentile interval; null where there is none.",
        ),
        field_with_docstring(
            "n", pa.int64(), False, docstring="Number of rows the mean was computed from."
        ),
        field_with_docstring(
            "method",
            pa.string(),
            False,
            docstring="How the attributions were computed: permutation or kernelshap.",
        ),
    ]
)

_METHODS = ("permutation", "kernelshap")


def attributions(args: Mapping[str, str], **inputs: Any) -> pa.Table:
    """Per-feature mean attribution over a window of rows, with bootstrap confidence
    intervals.

    The input `attributions` is a Dataset with one row per (row of the window, feature):
    `row`, `feature` and `attribution` (a number: for `permutation`, the mean absolute change
    of the model's score when the feature is permuted across the rows; for `kernelshap`, the
    absolute KernelSHAP value). Rows that lack a finite attribution for some feature are left
    out. For each feature, in order of first appearance: `attribution`, the mean over the
    rows, with the percentile interval of `resamples` bootstrap resamples of the rows (the
    same resampled rows for every feature, so that the intervals of two features compare),
    seeded by `seed`; `n`, the rows; `method`, the argument `method`.
    """
    check_inputs(NAME, inputs, ("attributions",))
    arguments = Arguments(NAME, args, ATTRIBUTIONS.parameters)
    method = arguments.choice("method", "permutation", _METHODS)
    resampling = Resampling.from_arguments(arguments)
    table = read_columns(
        NAME,
        "attributions",
        inputs["attributions"],
        ["_index_", "row", "feature", "attribution"],
        kind="Dataset",
        hint="bind the Dataset of per-row attributions a pipeline's explainability config wrote",
    )
    for column, check in (("row", pa.types.is_integer), ("attribution", _is_number)):
        if not check(table.schema.field(column).type):
            raise errors.ValidationError(
                f"{NAME}: the column {column!r} of 'attributions' has type "
                f"{table.schema.field(column).type}, expected numbers",
                field=column,
            )
    table = table.sort_by("_index_")
    features = list(dict.fromkeys(table.column("feature").to_pylist()))
    if not features:
        raise errors.ValidationError(
            f"{NAME}: the Dataset bound to 'attributions' has no rows", field="attributions"
        )
    rows = np.asarray(pc.fill_null(table.column("row"), -1).to_numpy(), dtype=np.int64)
    ids, position = np.unique(rows, return_inverse=True)
    slot = {f: j for j, f in enumerate(features)}
    codes = np.fromiter((slot[f] for f in table.column("feature").to_pylist()), np.int64)
    values = np.full((ids.size, len(features)), np.nan)
    found = pc.fill_null(table.column("attribution").cast(pa.float64()), np.nan).to_numpy()
    values[position, codes] = np.asarray(found, dtype=np.float64)
    values = values[np.isfinite(values).all(axis=1) & (ids >= 0)]

    def means(sums: stats.Floats) -> stats.Floats:
        out: stats.Floats = sums[:, 0, 1:] / sums[:, 0, :1]
        return out

    sample = stats.Sample(
        codes=np.zeros(values.shape[0], dtype=np.int64), categories=1, values=values
    )
    estimates = resampling.bootstrap(means, sample)
    return pa.Table.from_pydict(
        {
            "feature": features,
            "attribution": [_finite(e.value) for e in estimates],
            "low": [_finite(e.low) for e in estimates],
            "high": [_finite(e.high) for e in estimates],
            "n": [e.n for e in estimates],
            "method": [method] * len(features),
        },
        schema=ATTRIBUTIONS_SCHEMA,
    )


def _is_number(type: pa.DataType) -> bool:
    return bool(pa.types.is_integer(type) or pa.types.is_floating(type))


def _finite(x: float | None) -> float | None:
    return x if x is not None and np.isfinite(x) else None


#: ``explainability.attributions``: per-feature mean attribution with intervals.
ATTRIBUTIONS = Builtin(
    name=NAME,
    function=attributions,
    level=MeasurementLevel.Dataset,
    schema=ATTRIBUTIONS_SCHEMA,
    parameters={
        "method": "How the attributions were computed (permutation or kernelshap); written to "
        "the output's method column.",
        **BOOTSTRAP_PARAMETERS,
    },
    inputs=(
        (
            "attributions",
            MethodInputKind.Dataset,
            "One row per (row of the window, feature): row, feature, attribution.",
        ),
    ),
)


def request(*, account: str) -> MethodCreateRequest:
    """The create request of the Method in ``account``: the built-in, scoped to the
    InferenceService whose outputs it explains."""
    return ATTRIBUTIONS.request(account=account).model_copy(
        update={"scope": MethodScope.InferenceService}
    )
