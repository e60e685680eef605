"""The metrics that fairness, robustness and comparison apply: any classification or text
score, reduced to per-category sums so that groups and pairs are resampled together.

A :class:`Prepared` metric is one evaluation's rows as categories (and values) with a
statistic over the per-category sums that accepts any leading dimensions; grouping a metric
is then a reshape, and pairing two evaluations is one bootstrap over two Samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from assay import errors
from assay.analysis import stats
from assay.analysis.builtin import classification, text
from assay.analysis.builtin._inputs import BOOTSTRAP_PARAMETERS, Arguments, Resampling, align

__all__ = [
    "CLASSIFICATION_METRICS",
    "METRICS",
    "PARAMETERS",
    "Comparison",
    "Prepared",
    "Source",
    "compare",
    "metric_argument",
    "spread",
]

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]
Reduce = Callable[[Floats], Floats]

#: The classification scores these methods can apply.
CLASSIFICATION_METRICS = (
    "accuracy",
    "top_k_accuracy",
    "macro_precision",
    "macro_recall",
    "macro_f1",
    "expected_calibration_error",
)
#: Every score these methods can apply.
METRICS = CLASSIFICATION_METRICS + text.TEXT_METRICS

#: The parameters of a method that applies a metric chosen by argument.
PARAMETERS = {
    "metric": f"The score to compute (default `accuracy`): one of {', '.join(METRICS)}; "
    "classification scores read the arguments of `classification.metrics`, text scores those "
    "of `text.metrics`.",
    **classification.PARAMETERS,
    **text.PARAMETERS,
    **BOOTSTRAP_PARAMETERS,
}


@dataclass(frozen=True)
class Prepared:
    """One evaluation's rows reduced for one metric."""

    metric: str
    """The metric's name."""
    rows: Ints
    """Which rows of the evaluation take part (those with a value)."""
    index: Ints
    """``_index_`` of each row."""
    positions: Ints
    """The Dataset row of each row."""
    replicated: bool
    """Whether some instance has several rows (replications)."""
    codes: Ints
    """Category of each row."""
    categories: int
    """Number of categories."""
    values: Floats | None
    """Values summed per category, or None."""
    statistic: Reduce
    """The metric from sums of shape ``(..., categories, channels)``: shape ``(...)``."""

    @property
    def n(self) -> int:
        """Number of rows."""
        return int(self.rows.size)

    def subset(self, keep: NDArray[np.bool_]) -> Prepared:
        """The rows where ``keep``."""
        return replace(
            self,
            rows=self.rows[keep],
            index=self.index[keep],
            positions=self.positions[keep],
            codes=self.codes[keep],
            values=None if self.values is None else self.values[keep],
        )

    def sample(self, units: Ints | None = None) -> stats.Sample:
        """The rows as a Sample; by default resampled by instance where replicated."""
        if units is None and self.replicated:
            units = self.positions
        return stats.Sample(self.codes, self.categories, self.values, units)


def _rate(sums: Floats) -> Floats:
    result: Floats = sums[..., 1, 0] / sums[..., 0].sum(axis=-1)
    return result


def _mean(sums: Floats) -> Floats:
    result: Floats = sums[..., 0, 1] / sums[..., 0, 0]
    return result


def _macro(which: int, k: int) -> Reduce:
    def statistic(sums: Floats) -> Floats:
        matrix = sums[..., 0].reshape(*sums.shape[:-2], k, k + 1)
        result: Floats = classification.per_class(matrix)[which].mean(axis=-1)
        return result

    return statistic


class Source:
    """An evaluation and its Dataset, from which metrics are prepared (the classification
    and text work is done once, whatever the number of metrics)."""

    def __init__(
        self,
        method: str,
        arguments: Arguments,
        evaluation: Any,
        dataset: Any,
        *,
        evaluation_keyword: str = "evaluation",
        dataset_keyword: str = "dataset",
    ) -> None:
        self.method = method
        self.arguments = arguments
        self.evaluation = evaluation
        self.dataset = dataset
        self.evaluation_keyword = evaluation_keyword
        self.dataset_keyword = dataset_keyword
        self._classified: tuple[classification.Instances, classification.Coded] | None = None
        self._texts: text.Checks | None = None

    def classified(self) -> tuple[classification.Instances, classification.Coded]:
        """The rows classified (see :func:`classification.instances`)."""
        if self._classified is None:
            options = classification.Options.from_arguments(self.arguments)
            found = classification.instances(
                self.method,
                options,
                self.evaluation,
                self.dataset,
                evaluation_keyword=self.evaluation_keyword,
                dataset_keyword=self.dataset_keyword,
            )
            self._classified = found, found.coded(self.method)
        return self._classified

    def texts(self) -> text.Checks:
        """The rows' texts (see :func:`text.checks`)."""
        if self._texts is None:
            options = text.Options.from_arguments(self.arguments)
            self._texts = text.checks(
                self.method, options, self.evaluation, keyword=self.evaluation_keyword
            )
        return self._texts

    def column(self, field: str, argument: str) -> pa.Array:
        """A Dataset column for every row of the evaluation (joined on ``_index_``)."""
        index = self._evaluation_index()
        aligned = align(
            self.method,
            self.dataset_keyword,
            self.dataset,
            index,
            {field: argument},
            evaluation=self.evaluation_keyword,
        )
        return aligned.columns[field]

    def _evaluation_index(self) -> Ints:
        if self._classified is not None:
            return self._classified[0].evaluation.index
        return self.texts().evaluation.index

    def prepare(self, metric: str) -> Prepared:
        """The rows reduced for ``metric``."""
        if metric in CLASSIFICATION_METRICS:
            return self._prepare_classification(metric)
        return self._prepare_text(metric)

    def _prepare_classification(self, metric: str) -> Prepared:
        found, coded = self.classified()
        aligned = found.aligned
        rows = coded.rows
        k = len(coded.classes)
        values = None
        statistic: Reduce
        if metric in ("accuracy", "top_k_accuracy"):
            hit = coded.correct if metric == "accuracy" else coded.topk
            codes, categories, statistic = hit.astype(np.int64), 2, _rate
        elif metric == "expected_calibration_error":
            bins = classification.Options.from_arguments(self.arguments).bins
            codes, confidence, has = classification.calibration_codes(coded, bins)
            if not has.any():
                raise errors.ValidationError(
                    f"{self.method}: expected_calibration_error needs confidences, and no "
                    f"response of {self.evaluation_keyword!r} has a score for its predicted "
                    "label; set the argument scores_field to the field that holds the scores",
                    field="metric",
                )
            rows, values = rows[has], confidence[:, None]
            categories, statistic = 2 * bins, classification.calibration_error
        else:
            which = ("macro_precision", "macro_recall", "macro_f1").index(metric)
            codes = coded.truth * (k + 1) + coded.prediction
            categories, statistic = k * (k + 1), _macro(which, k)
        return Prepared(
            metric=metric,
            rows=rows,
            index=found.evaluation.index[rows],
            positions=aligned.positions[rows],
            replicated=aligned.replicated,
            codes=codes,
            categories=categories,
            values=values,
            statistic=statistic,
        )

    def _prepare_text(self, metric: str) -> Prepared:
        found = self.texts()
        options = text.Options.from_arguments(self.arguments)
        values, _ = text.text_values(
            metric, self.method, options, found, self.dataset, dataset_keyword=self.dataset_keyword
        )
        valid, raw = text.present(values)
        rows = np.flatnonzero(valid)
        aligned = align(
            self.method,
            self.dataset_keyword,
            self.dataset,
            found.evaluation.index,
            {},
            evaluation=self.evaluation_keyword,
        )
        if metric.endswith("_rate"):
            codes, categories, statistic = raw.astype(np.int64), 2, _rate
            floats = None
        else:
            codes, categories, statistic = np.zeros(rows.size, dtype=np.int64), 1, _mean
            floats = raw.astype(np.float64)[:, None]
        return Prepared(
            metric=metric,
            rows=rows,
            index=found.evaluation.index[rows],
            positions=aligned.positions[rows],
            replicated=aligned.replicated,
            codes=codes,
            categories=categories,
            values=floats,
            statistic=statistic,
        )


def spread(values: Floats) -> Floats:
    """``max - min`` over the last axis, ignoring NaN; NaN where fewer than two are defined."""
    defined = np.isfinite(values)
    high = np.where(defined, values, -np.inf).max(axis=-1)
    low = np.where(defined, values, np.inf).min(axis=-1)
    result: Floats = np.where(defined.sum(axis=-1) >= 2, high - low, np.nan)
    return result


@dataclass(frozen=True)
class Comparison:
    """A metric on two evaluations and their difference."""

    a: stats.Estimate
    """The metric on the first evaluation (``n``: its rows)."""
    b: stats.Estimate
    """The metric on the second evaluation (``n``: its rows)."""
    difference: stats.Estimate
    """``a - b`` (``n``: the rows of both)."""
    paired: bool
    """Whether the same instances were resampled on both sides."""


def compare(
    a: Prepared, b: Prepared, resampling: Resampling, *, method: str, common: bool
) -> Comparison:
    """``a``, ``b`` and ``a - b`` with intervals.

    The two sides are paired (the same instances resampled on both) when they cover the same
    ``_index_`` values; with ``common``, each side is first cut to the instances both cover.
    Otherwise they are resampled independently.
    """
    if common:
        both = np.intersect1d(a.index, b.index)
        if not both.size:
            raise errors.ValidationError(
                f"{method}: the two evaluations have no instance (_index_) in common; compare "
                "evaluations run on the same Dataset",
                field="inputs",
            )
        a, b = a.subset(np.isin(a.index, both)), b.subset(np.isin(b.index, both))
    ia, ib = np.unique(a.index), np.unique(b.index)
    if a.n and np.array_equal(ia, ib):

        def statistic(sa: Floats, sb: Floats) -> Floats:
            fa, fb = a.statistic(sa), b.statistic(sb)
            return np.column_stack([fa, fb, fa - fb])

        if ia.size == a.n == b.n:
            oa, ob = np.argsort(a.index, kind="stable"), np.argsort(b.index, kind="stable")
            samples = (
                stats.Sample(a.codes[oa], a.categories, _rows(a.values, oa)),
                stats.Sample(b.codes[ob], b.categories, _rows(b.values, ob)),
            )
        else:
            offset = min(int(a.index.min()), int(b.index.min()))
            samples = (a.sample(a.index - offset), b.sample(b.index - offset))
        ea, eb, diff = resampling.bootstrap(statistic, *samples)
        ea, eb = replace(ea, n=a.n), replace(eb, n=b.n)
        return Comparison(ea, eb, replace(diff, n=a.n + b.n), paired=True)
    [ea] = resampling.bootstrap(a.statistic, a.sample(), stream=0)
    [eb] = resampling.bootstrap(b.statistic, b.sample(), stream=1)
    return Comparison(ea, eb, stats.difference(ea, eb), paired=False)


def _rows(values: Floats | None, order: Ints) -> Floats | None:
    return None if values is None else values[order]


def metric_argument(arguments: Arguments) -> str:
    """The ``metric`` argument."""
    return arguments.choice("metric", "accuracy", METRICS)
