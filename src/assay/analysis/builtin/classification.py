"""Built-in methods for classifiers: per-instance correctness, and dataset-level metrics.

The evaluation's responses carry the predicted label (``prediction_field``, default ``label``)
and optionally the score of every label (``scores_field``, default ``scores``: a list of
``{label, score}``, as the ``Classifier`` mock writes). Without scores, the responses of a row
are read as a ranked list of labels, best first. The truth is a column of the Dataset
(``label_field``, default ``label``), joined on ``_index_``. Labels are compared as strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from assay import errors
from assay.analysis import stats
from assay.analysis.builtin._inputs import (
    BOOTSTRAP_PARAMETERS,
    Aligned,
    Arguments,
    Evaluation,
    Resampling,
    align,
    check_inputs,
    read_evaluation,
)
from assay.analysis.builtin._registry import Builtin
from assay.analysis.builtin._responses import Flat
from assay.analysis.builtin._results import METRICS_SCHEMA, Row, metrics_table
from assay.schema.dataset.arrow import field_with_docstring
from assay.schema.platform import MeasurementLevel, MethodInputKind

__all__ = [
    "CORRECT",
    "CORRECT_SCHEMA",
    "METRICS",
    "PARAMETERS",
    "Instances",
    "correct",
    "instances",
    "metrics",
]

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]

#: The parameters that say where the labels are, shared by every classification metric.
PARAMETERS = {
    "label_field": "Column of the Dataset that holds the true label (default `label`).",
    "prediction_field": "Field of a response that holds the predicted label (default `label`).",
    "scores_field": "Field of a response that holds the score of every label, a list of "
    "`{label, score}` (default `scores`). Optional: without it, a row's responses are read as "
    "a ranked list of labels (best first), and the confidence is a response's `score` field "
    "where it has one.",
    "k": "A row is top-k correct when its true label is among the k best-scored labels (or "
    "its first k responses) (default 1).",
    "bins": "Number of equal-width confidence bins of the expected calibration error (default 10).",
}

CORRECT_SCHEMA = pa.schema(
    [
        field_with_docstring("_index_", pa.int64(), False, docstring="The instance."),
        field_with_docstring("_replication_", pa.string(), docstring="The replication."),
        field_with_docstring(
            "prediction", pa.string(), docstring="The predicted label; null: no response."
        ),
        field_with_docstring("label", pa.string(), docstring="The true label."),
        field_with_docstring(
            "correct",
            pa.bool_(),
            docstring="Whether the prediction is the true label (false without a prediction, "
            "null without a true label).",
        ),
        field_with_docstring(
            "topk_correct",
            pa.bool_(),
            docstring="Whether the true label is among the k best-scored labels (or the "
            "first k responses).",
        ),
        field_with_docstring(
            "confidence",
            pa.float64(),
            docstring="The score of the predicted label; null where there is none.",
        ),
    ]
)


@dataclass(frozen=True)
class Options:
    """Where the labels are, and the metric settings."""

    label_field: str
    prediction_field: str
    scores_field: str
    scores_required: bool
    k: int
    bins: int

    @staticmethod
    def from_arguments(arguments: Arguments) -> Options:
        """The classification arguments."""
        return Options(
            label_field=arguments.text("label_field", "label"),
            prediction_field=arguments.text("prediction_field", "label"),
            scores_field=arguments.text("scores_field", "scores"),
            scores_required=arguments.given("scores_field"),
            k=arguments.integer("k", 1, minimum=1),
            bins=arguments.integer("bins", 10, minimum=1),
        )


@dataclass(frozen=True)
class Instances:
    """One evaluation's rows, classified: the output of :func:`correct` as arrays."""

    evaluation: Evaluation
    """The evaluation read."""
    aligned: Aligned
    """The Dataset rows answered."""
    truth: pa.ChunkedArray
    """True label of each row (string)."""
    prediction: pa.ChunkedArray
    """Predicted label of each row (string; null without a response)."""
    correct: pa.ChunkedArray
    """Whether the prediction is right (null without a true label)."""
    topk: pa.ChunkedArray
    """Whether the true label is in the top k (null without a true label)."""
    confidence: pa.ChunkedArray
    """Score of the predicted label (null where unknown)."""

    def table(self) -> pa.Table:
        """The table of :data:`CORRECT_SCHEMA`."""
        ev = self.evaluation
        return pa.Table.from_arrays(
            [
                ev.table.column("_index_").cast(pa.int64()),
                ev.replication,
                self.prediction,
                self.truth,
                self.correct,
                self.topk,
                self.confidence,
            ],
            schema=CORRECT_SCHEMA,
        )

    def coded(self, method: str) -> Coded:
        """The rows with a true label, with labels as class numbers."""
        keep = _numpy_bool(self.truth.is_valid())
        if not keep.any():
            raise errors.ValidationError(
                f"{method}: no row of the evaluation has a true label (the Dataset's label "
                "column is null for every instance answered); set the argument label_field "
                "to the column that holds the truth",
                field="label_field",
            )
        names = set(pc.unique(self.truth).drop_null().to_pylist())
        names |= set(pc.unique(self.prediction).drop_null().to_pylist())
        classes = sorted(names)
        value_set = pa.array(classes, pa.string())
        k = len(classes)
        truth = _codes(self.truth, value_set, k)[keep]
        prediction = _codes(self.prediction, value_set, k)[keep]
        confidence = _numpy_float(self.confidence)[keep]
        units = self.aligned.positions[keep] if self.aligned.replicated else None
        return Coded(
            rows=np.flatnonzero(keep),
            classes=classes,
            truth=truth,
            prediction=prediction,
            correct=truth == prediction,
            topk=_numpy_bool(self.topk.fill_null(False))[keep],
            confidence=confidence,
            units=units,
        )


@dataclass(frozen=True)
class Coded:
    """The rows with a true label, as numpy arrays; class ``len(classes)`` means none."""

    rows: Ints
    """Which rows of the evaluation these are."""
    classes: list[str]
    truth: Ints
    prediction: Ints
    correct: NDArray[np.bool_]
    topk: NDArray[np.bool_]
    confidence: Floats
    units: Ints | None


def _numpy_bool(values: pa.ChunkedArray | pa.Array) -> NDArray[np.bool_]:
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.bool_)


def _numpy_float(values: pa.ChunkedArray | pa.Array) -> Floats:
    return np.asarray(values.fill_null(np.nan).to_numpy(zero_copy_only=False), dtype=np.float64)


def _codes(labels: pa.ChunkedArray, value_set: pa.Array, missing: int) -> Ints:
    found = pc.index_in(labels, value_set=value_set).fill_null(missing)
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=np.int64)


def _as_labels(
    method: str, values: pa.Array | pa.ChunkedArray, what: str, argument: str
) -> pa.Array:
    if values.type == pa.string():
        return values
    try:
        return values.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise errors.ValidationError(
            f"{method}: {what} must hold labels (strings or integers), got {values.type}; set "
            f"the argument {argument} to the one that holds the labels",
            field=argument,
        ) from None


def instances(
    method: str,
    options: Options,
    evaluation: Any,
    dataset: Any,
    *,
    evaluation_keyword: str = "evaluation",
    dataset_keyword: str = "dataset",
) -> Instances:
    """Classify the rows of ``evaluation`` against the truth in ``dataset``."""
    ev = read_evaluation(method, evaluation_keyword, evaluation)
    aligned = align(
        method,
        dataset_keyword,
        dataset,
        ev.index,
        {options.label_field: "label_field"},
        evaluation=evaluation_keyword,
    )
    truth = _as_labels(
        method,
        aligned.columns[options.label_field],
        f"the Dataset's column {options.label_field!r}",
        "label_field",
    )
    ev.require_field(options.prediction_field, "prediction_field", "the predicted label")
    fields = ev.response_fields()
    scores = fields.get(options.scores_field)
    if scores is None and options.scores_required:
        ev.require_field(options.scores_field, "scores_field", "the scores")
    if scores is not None:
        _check_scores(method, options.scores_field, scores)
    own_score = ("score" in fields and pa.types.is_floating(fields["score"])) or (
        "score" in fields and pa.types.is_integer(fields["score"])
    )
    parts: list[tuple[pa.Array, pa.Array, pa.Array, pa.Array, pa.Array]] = []
    for start, chunk in ev.batches():
        flat = Flat.of(chunk)
        part_truth = truth.slice(start, len(chunk))
        prediction = _as_labels(
            method,
            flat.first_field(options.prediction_field),
            f"the response field {options.prediction_field!r}",
            "prediction_field",
        )
        if scores is not None:
            topk, confidence = _by_scores(flat, options, part_truth, prediction)
        else:
            topk, confidence = _by_rank(method, flat, options, part_truth, own_score)
        missing = _numpy_bool(part_truth.is_null())
        right = _numpy_bool(pc.equal(prediction, part_truth).fill_null(False))
        parts.append(
            (
                part_truth,
                prediction,
                pa.array(right, mask=missing),
                pa.array(topk, mask=missing),
                pa.array(confidence, mask=np.isnan(confidence)),
            )
        )
    columns = [pa.chunked_array([p[i] for p in parts], t) for i, t in enumerate(_TYPES)]
    return Instances(ev, aligned, *columns)


_TYPES = (pa.string(), pa.string(), pa.bool_(), pa.bool_(), pa.float64())


def _check_scores(method: str, name: str, kind: pa.DataType) -> None:
    ok = (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and pa.types.is_struct(
        kind.value_type
    )
    if ok:
        item = kind.value_type
        ok = item.get_field_index("label") >= 0 and item.get_field_index("score") >= 0
        ok = ok and pa.types.is_floating(item.field("score").type)
    if not ok:
        raise errors.ValidationError(
            f"{method}: the response field {name!r} must be a list of {{label, score}} with a "
            f"floating-point score, got {kind}; set the argument scores_field to the field "
            "that holds the scores",
            field="scores_field",
        )


def _by_scores(
    flat: Flat, options: Options, truth: pa.Array, prediction: pa.Array
) -> tuple[NDArray[np.bool_], Floats]:
    """Top-k and confidence from the scores of each row's first response."""
    rows = flat.rows
    per_row = flat.first_field(options.scores_field)
    items = per_row.flatten()
    parent = np.asarray(pc.list_parent_indices(per_row).to_numpy(), dtype=np.int64)
    labels = pc.struct_field(items, "label").cast(pa.string())
    score = _numpy_float(pc.struct_field(items, "score"))
    is_truth, is_prediction = _matches(labels, parent, truth, prediction)
    truth_score = np.full(rows, np.nan)
    truth_score[parent[is_truth]] = score[is_truth]
    above = score > truth_score[parent]
    rank = np.bincount(parent, weights=above, minlength=rows)
    topk = np.isfinite(truth_score) & (rank < options.k)
    confidence = np.full(rows, np.nan)
    confidence[parent[is_prediction]] = score[is_prediction]
    return topk, confidence


def _matches(labels: pa.Array, parent: Ints, *per_row: pa.Array) -> list[NDArray[np.bool_]]:
    """For each of ``per_row`` (one label per row): whether ``labels[i]`` equals the label of
    row ``parent[i]``. Compared as dictionary codes, so each string is hashed once."""
    encoded = pc.dictionary_encode(labels)
    codes = np.asarray(encoded.indices.fill_null(-1).to_numpy(), dtype=np.int64)
    result = []
    for wanted in per_row:
        found = pc.index_in(wanted, value_set=encoded.dictionary).fill_null(-2)
        row_codes = np.asarray(found.to_numpy(zero_copy_only=False), dtype=np.int64)
        result.append(codes == row_codes[parent])
    return result


def _by_rank(
    method: str, flat: Flat, options: Options, truth: pa.Array, own_score: bool
) -> tuple[NDArray[np.bool_], Floats]:
    """Top-k from the order of each row's responses; confidence from their ``score``."""
    labels = _as_labels(
        method,
        flat.field(options.prediction_field),
        f"the response field {options.prediction_field!r}",
        "prediction_field",
    )
    [hit] = _matches(labels, flat.parent, truth)
    hit &= flat.rank() < options.k
    topk = np.bincount(flat.parent[hit], minlength=flat.rows) > 0
    if own_score:
        confidence = _numpy_float(flat.first_field("score").cast(pa.float64()))
    else:
        confidence = np.full(flat.rows, np.nan)
    return topk, confidence


# -- statistics over per-category sums (any leading dimensions) ---------------------------------


def table_codes(coded: Coded) -> tuple[Ints, int]:
    """Each row's cell of the (top-k, truth, prediction) table, and the number of cells."""
    k = len(coded.classes)
    codes = (coded.topk.astype(np.int64) * k + coded.truth) * (k + 1) + coded.prediction
    return codes, 2 * k * (k + 1)


def confusion(sums: Floats, k: int) -> Floats:
    """The confusion matrix ``(..., truth, prediction)`` (prediction ``k``: none) from the
    sums over :func:`table_codes` cells."""
    cube = sums[..., 0].reshape(*sums.shape[:-2], 2, k, k + 1)
    result: Floats = cube.sum(axis=-3)
    return result


def per_class(matrix: Floats) -> tuple[Floats, Floats, Floats, Floats]:
    """Precision, recall, F1 and support of each class from confusion matrices (0 where a
    ratio has no denominator, as scikit-learn's ``zero_division=0``)."""
    k = matrix.shape[-2]
    tp = np.diagonal(matrix[..., :k], axis1=-2, axis2=-1)
    predicted = matrix[..., :k].sum(axis=-2)
    support = matrix.sum(axis=-1)
    precision = np.where(predicted > 0, tp / predicted, 0.0)
    recall = np.where(support > 0, tp / support, 0.0)
    total = precision + recall
    f1 = np.where(total > 0, 2 * precision * recall / total, 0.0)
    return precision, recall, f1, support


def accuracy(matrix: Floats) -> Floats:
    """Share of rows on the diagonal of confusion matrices."""
    k = matrix.shape[-2]
    result: Floats = np.trace(matrix[..., :k], axis1=-2, axis2=-1) / matrix.sum(axis=(-2, -1))
    return result


def calibration_codes(coded: Coded, bins: int) -> tuple[Ints, Floats, NDArray[np.bool_]]:
    """For the rows with a confidence: the cell ``bin * 2 + correct``, the confidence, and
    which rows they are. Confidences are clipped to [0, 1]; bin ``b`` holds
    ``[b / bins, (b + 1) / bins)`` (the last one includes 1)."""
    has = np.isfinite(coded.confidence)
    confidence = np.clip(coded.confidence[has], 0.0, 1.0)
    b = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    return b * 2 + coded.correct[has], confidence, has


def calibration_error(sums: Floats) -> Floats:
    """Expected calibration error ``sum_b |correct_b - confidence_b| / n`` from the sums over
    :func:`calibration_codes` cells (channel 1: confidence)."""
    cells = sums.reshape(*sums.shape[:-2], -1, 2, 2)
    right = cells[..., 1, 0]
    confident = cells[..., 1].sum(axis=-1)
    n = cells[..., 0].sum(axis=(-2, -1))
    result: Floats = np.abs(right - confident).sum(axis=-1) / n
    return result


# -- the methods -------------------------------------------------------------------------------


def correct(args: Mapping[str, str], **inputs: Any) -> pa.Table:
    """Whether a classifier got each instance right.

    For each row of the evaluation (input `evaluation`), joined on `_index_` with the Dataset
    (input `dataset`) that holds the true labels: the predicted label (the field
    `prediction_field` of the row's first response), the true label (the Dataset's column
    `label_field`), `correct` (prediction equals truth; a row without a response is wrong),
    `topk_correct` (the true label is among the `k` best-scored labels of `scores_field`, or
    among the first `k` responses when there are no scores) and `confidence` (the score of the
    predicted label). Labels are compared as strings.

    Output: one row per evaluation row, `_index_`, `_replication_`, `prediction`, `label`,
    `correct`, `topk_correct`, `confidence`.
    """
    name = "classification.correct"
    check_inputs(name, inputs, ("evaluation", "dataset"))
    options = Options.from_arguments(Arguments(name, args, CORRECT.parameters))
    return instances(name, options, inputs["evaluation"], inputs["dataset"]).table()


def metrics(args: Mapping[str, str], **inputs: Any) -> pa.Table:
    """Accuracy, top-k accuracy, per-class precision/recall/F1, calibration and the confusion
    matrix of a classifier, each with a bootstrap confidence interval.

    The rows of the evaluation (input `evaluation`) are classified as by
    `classification.correct` against the Dataset (input `dataset`); rows without a true label
    are left out. Scores (column `metric`, with `group`):

    - `accuracy`, `top_k_accuracy` (for `k`): share of rows right;
    - `precision`, `recall`, `f1`, `support` (group: the class label; 0 where a ratio has no
      denominator) and their unweighted means over the classes `macro_precision`,
      `macro_recall`, `macro_f1`; the classes are every label seen as truth or prediction;
    - `confusion:<predicted label>` (group: the true label): the number of rows with that
      truth and prediction;
    - `expected_calibration_error` (when confidences are known): the sum over `bins`
      equal-width confidence bins of |accuracy - mean confidence| weighted by the bin's share
      of rows.

    Intervals: percentile bootstrap (`resamples`, `confidence`, `seed`); with replications,
    the replications of an instance are resampled together. Output: the long metrics schema
    (`metric`, `group`, `value`, `low`, `high`, `n`).
    """
    name = "classification.metrics"
    check_inputs(name, inputs, ("evaluation", "dataset"))
    arguments = Arguments(name, args, METRICS.parameters)
    options = Options.from_arguments(arguments)
    resampling = Resampling.from_arguments(arguments)
    coded = instances(name, options, inputs["evaluation"], inputs["dataset"]).coded(name)
    return metrics_table(summarise(coded, options, resampling))


def summarise(coded: Coded, options: Options, resampling: Resampling) -> list[Row]:
    """The rows of :func:`metrics` for classified rows."""
    k = len(coded.classes)
    codes, cells = table_codes(coded)

    def statistic(sums: Floats) -> Floats:
        matrix = confusion(sums, k)
        r = matrix.shape[0]
        topk = sums[..., 0].reshape(r, 2, -1)[:, 1].sum(axis=-1) / matrix.sum(axis=(-2, -1))
        precision, recall, f1, support = per_class(matrix)
        return np.column_stack(
            [
                accuracy(matrix),
                topk,
                precision.mean(axis=-1),
                recall.mean(axis=-1),
                f1.mean(axis=-1),
                precision,
                recall,
                f1,
                support,
                matrix[..., :k].reshape(r, -1),
            ]
        )

    sample = stats.Sample(codes, cells, units=coded.units)
    found = iter(resampling.bootstrap(statistic, sample))
    rows = [Row(m, None, next(found)) for m in _SUMMARY]
    for metric in ("precision", "recall", "f1", "support"):
        rows += [Row(metric, label, next(found)) for label in coded.classes]
    for truth in coded.classes:
        rows += [Row(f"confusion:{p}", truth, next(found)) for p in coded.classes]
    ece_codes, confidence, has = calibration_codes(coded, options.bins)
    if has.any():
        units = None if coded.units is None else coded.units[has]
        sample = stats.Sample(ece_codes, 2 * options.bins, confidence[:, None], units)
        [ece] = resampling.bootstrap(calibration_error, sample)
        rows.append(Row("expected_calibration_error", None, ece))
    return rows


_SUMMARY = ("accuracy", "top_k_accuracy", "macro_precision", "macro_recall", "macro_f1")

_INPUTS = (
    ("evaluation", MethodInputKind.Evaluation, "The classifier's outputs."),
    ("dataset", MethodInputKind.Dataset, "The Dataset evaluated, with the true labels."),
)

#: ``classification.correct``: instance-level correctness.
CORRECT = Builtin(
    name="classification.correct",
    function=correct,
    level=MeasurementLevel.Instance,
    schema=CORRECT_SCHEMA,
    parameters={k: v for k, v in PARAMETERS.items() if k != "bins"},
    inputs=_INPUTS,
)

#: ``classification.metrics``: dataset-level metrics with intervals.
METRICS = Builtin(
    name="classification.metrics",
    function=metrics,
    level=MeasurementLevel.Dataset,
    schema=METRICS_SCHEMA,
    parameters={**PARAMETERS, **BOOTSTRAP_PARAMETERS},
    inputs=_INPUTS,
)
