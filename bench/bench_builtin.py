"""Benchmark of the built-in methods: an instance-level built-in over millions of rows.

Run with ``.venv/bin/python bench/bench_builtin.py [--rows N] [--runs R]``. The built-in
``classification.correct`` (prediction, truth, correct, top-k correct, confidence for every
row) runs against the same computation written directly with ``pyarrow.compute`` and numpy,
without the built-in's argument parsing, checks and general cases: the figure to watch is the
ratio of their rows per second (target: at least 0.8). The two alternate in blocks, so drift on
these shared, noisy machines hits both alike; medians are printed. Data generation is outside
the timings. A last line times ``classification.metrics`` (the same plus every dataset-level
score and its bootstrap interval) on the same data.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from assay.analysis.builtin import classification

LABELS = ("negative", "neutral", "positive")


def make_data(rows: int, seed: int = 0) -> tuple[ds.Dataset, ds.Dataset]:
    """An evaluation of a 3-class classifier (one response per row with the score of every
    label, rows in shuffled order, in parts of 100,000 rows) and its Dataset."""
    rng = np.random.default_rng(seed)
    labels = pa.array(LABELS)
    truth = rng.integers(0, 3, rows)
    logits = rng.normal(size=(rows, 3))
    logits[np.arange(rows), truth] += 1.0
    scores = np.exp(logits)
    scores /= scores.sum(axis=1, keepdims=True)
    items = pa.StructArray.from_arrays(
        [labels.take(pa.array(np.tile(np.arange(3), rows))), pa.array(scores.ravel())],
        names=["label", "score"],
    )
    score_lists = pa.ListArray.from_arrays(
        pa.array(np.arange(0, 3 * rows + 1, 3, dtype=np.int32)), items
    )
    response = pa.StructArray.from_arrays(
        [
            pa.array(np.zeros(rows, dtype=np.int64)),
            labels.take(pa.array(scores.argmax(axis=1))),
            score_lists,
        ],
        names=["_response_index_", "label", "scores"],
    )
    responses = pa.ListArray.from_arrays(pa.array(np.arange(rows + 1, dtype=np.int32)), response)
    evaluation = pa.table(
        {
            "_index_": pa.array(rng.permutation(rows)),
            "_replication_": pa.array(np.full(rows, "replication-0")),
            "responses": responses,
        }
    )
    evaluation = pa.Table.from_batches(evaluation.to_batches(max_chunksize=100_000))
    dataset = pa.table(
        {"_index_": pa.array(np.arange(rows)), "label": labels.take(pa.array(truth))}
    )
    return ds.dataset(evaluation), ds.dataset(dataset)


def direct(evaluation: ds.Dataset, dataset: ds.Dataset, k: int) -> pa.Table:
    """``classification.correct`` written directly: join the truth on ``_index_``, take each
    row's first response, rank the true label among its scores."""
    table = evaluation.to_table(columns=["_index_", "_replication_", "responses"])
    truth_table = dataset.to_table(columns=["_index_", "label"])
    positions = pc.index_in(table.column("_index_"), value_set=truth_table.column("_index_"))
    truth = truth_table.column("label").take(positions)
    parts: dict[str, list[pa.Array]] = {"prediction": [], "correct": [], "topk": [], "conf": []}
    start = 0
    for chunk in table.column("responses").chunks:
        n = len(chunk)
        part_truth = truth.slice(start, n).combine_chunks()
        start += n
        first = pc.list_element(chunk, 0)
        prediction = pc.struct_field(first, "label")
        scores = pc.struct_field(first, "scores")
        items = pc.list_flatten(scores)
        parent = pc.list_parent_indices(scores)
        labels = pc.struct_field(items, "label")
        score = pc.struct_field(items, "score").to_numpy()
        at = parent.to_numpy()
        is_truth = pc.equal(labels, part_truth.take(parent)).to_numpy(zero_copy_only=False)
        truth_score = np.full(n, np.nan)
        truth_score[at[is_truth]] = score[is_truth]
        rank = np.bincount(at, weights=score > truth_score[at], minlength=n)
        is_prediction = pc.equal(labels, prediction.take(parent)).to_numpy(zero_copy_only=False)
        confidence = np.full(n, np.nan)
        confidence[at[is_prediction]] = score[is_prediction]
        parts["prediction"].append(prediction)
        parts["correct"].append(pc.equal(prediction, part_truth))
        parts["topk"].append(pa.array(np.isfinite(truth_score) & (rank < k)))
        parts["conf"].append(pa.array(confidence))
    return pa.table(
        {
            "_index_": table.column("_index_"),
            "_replication_": table.column("_replication_"),
            "prediction": pa.chunked_array(parts["prediction"]),
            "label": truth,
            "correct": pa.chunked_array(parts["correct"]),
            "topk_correct": pa.chunked_array(parts["topk"]),
            "confidence": pa.chunked_array(parts["conf"]),
        }
    )


def _time(function: Callable[[], pa.Table]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=5, help="blocks of each (alternating)")
    args = parser.parse_args()
    rows = args.rows
    start = time.perf_counter()
    evaluation, dataset = make_data(rows)
    print(f"generated {rows:,} rows in {time.perf_counter() - start:.1f} s (not timed below)")

    def builtin() -> pa.Table:
        return classification.correct({"k": "2"}, evaluation=evaluation, dataset=dataset)

    def baseline() -> pa.Table:
        return direct(evaluation, dataset, 2)

    ours, theirs = builtin(), baseline()  # warm up, and check they agree
    for name in ("correct", "topk_correct", "prediction", "label"):
        assert ours.column(name).equals(theirs.column(name).cast(ours.schema.field(name).type))
    del ours, theirs
    times: dict[str, list[float]] = {"builtin": [], "direct": []}
    for run in range(args.runs):
        order = [("builtin", builtin), ("direct", baseline)]
        for name, function in order if run % 2 == 0 else reversed(order):
            times[name].append(_time(function))
    ours_s, theirs_s = statistics.median(times["builtin"]), statistics.median(times["direct"])
    print(
        f"classification.correct  {rows / ours_s:12,.0f} rows/s   direct pyarrow.compute "
        f"{rows / theirs_s:12,.0f} rows/s   ratio {theirs_s / ours_s:5.2f}  (target >= 0.8; "
        f"medians of {args.runs}: {ours_s:.2f} s vs {theirs_s:.2f} s)"
    )
    seconds = _time(
        lambda: classification.metrics({"k": "2"}, evaluation=evaluation, dataset=dataset)
    )
    print(
        f"classification.metrics  {rows / seconds:12,.0f} rows/s   ({seconds:.2f} s, every score "
        "with a 1,000-resample interval)"
    )


if __name__ == "__main__":
    main()
