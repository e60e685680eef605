"""The one long schema of every dataset-level built-in, and how rows are written to it."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa

from assay.analysis import stats
from assay.schema.dataset.arrow import field_with_docstring

__all__ = ["METRICS_SCHEMA", "Row", "metrics_table"]

#: The schema of every dataset-level built-in: one row per score, so that notebooks read the
#: output of any of them the same way (filter on ``metric``, pivot on ``group``).
METRICS_SCHEMA = pa.schema(
    [
        field_with_docstring(
            "metric", pa.string(), False, docstring="The name of the score, e.g. accuracy."
        ),
        field_with_docstring(
            "group",
            pa.string(),
            docstring="What the score is about within the data: a class label, a group "
            "value, a side of a comparison; null for the whole data.",
        ),
        field_with_docstring(
            "value",
            pa.float64(),
            docstring="The score computed on the data; null where it is undefined.",
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
            "n", pa.int64(), False, docstring="Number of rows the score was computed from."
        ),
    ]
)


@dataclass(frozen=True)
class Row:
    """One row of a dataset-level output."""

    metric: str
    """The score's name."""
    group: str | None
    """A class label, a group value, a side; None for the whole data."""
    estimate: stats.Estimate
    """The value, its interval and its number of rows."""
    n: int | None = None
    """Rows behind the score, where not the estimate's ``n``."""


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def metrics_table(rows: Iterable[Row]) -> pa.Table:
    """The rows as a table of :data:`METRICS_SCHEMA`."""
    rows = list(rows)
    return pa.Table.from_pydict(
        {
            "metric": [r.metric for r in rows],
            "group": [r.group for r in rows],
            "value": [_finite(r.estimate.value) for r in rows],
            "low": [_finite(r.estimate.low) for r in rows],
            "high": [_finite(r.estimate.high) for r in rows],
            "n": [r.estimate.n if r.n is None else r.n for r in rows],
        },
        schema=METRICS_SCHEMA,
    )
