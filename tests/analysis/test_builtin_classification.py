"""classification.correct and classification.metrics against numbers worked out by hand."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from assay import errors
from assay.analysis.builtin import classification
from assay.local import LocalPlatform

LABELS = ("a", "b", "c")

# Six instances; scores are for (a, b, c); the prediction is the best-scored label.
#   row  truth  scores          prediction  correct  truth's rank  confidence
#   0    a      (.6, .3, .1)    a           yes      0             .6
#   1    a      (.4, .5, .1)    b           no       1             .5
#   2    b      (.2, .7, .1)    b           yes      0             .7
#   3    b      (.1, .8, .1)    b           yes      0             .8
#   4    c      (.1, .1, .8)    c           yes      0             .8
#   5    c      (.5, .2, .3)    a           no       1             .5
TRUTH = ["a", "a", "b", "b", "c", "c"]
SCORES = [(0.6, 0.3, 0.1), (0.4, 0.5, 0.1), (0.2, 0.7, 0.1), (0.1, 0.8, 0.1), (0.1, 0.1, 0.8)]
SCORES = [*SCORES, (0.5, 0.2, 0.3)]
PREDICTIONS = ["a", "b", "b", "b", "c", "a"]


def _response(label: str, scores: Sequence[float]) -> dict[str, Any]:
    return {
        "_response_index_": 0,
        "label": label,
        "scores": [{"label": x, "score": s} for x, s in zip(LABELS, scores, strict=True)],
    }


def evaluation(
    indices: Sequence[int] | None = None, replication: str = "r0", *, copies: int = 1
) -> ds.Dataset:
    indices = list(range(6)) if indices is None else list(indices)
    rows = [
        (i + 6 * c, replication, [_response(PREDICTIONS[i % 6], SCORES[i % 6])])
        for c in range(copies)
        for i in indices
    ]
    return ds.dataset(
        pa.table(
            {
                "_index_": pa.array([r[0] for r in rows], pa.int64()),
                "_replication_": [r[1] for r in rows],
                "responses": [r[2] for r in rows],
            }
        )
    )


def dataset(copies: int = 1, **extra: list[Any]) -> ds.Dataset:
    n = 6 * copies
    return ds.dataset(
        pa.table({"_index_": pa.array(range(n), pa.int64()), "label": TRUTH * copies, **extra})
    )


def by_metric(table: pa.Table) -> dict[tuple[str, str | None], dict[str, Any]]:
    return {(r["metric"], r["group"]): r for r in table.to_pylist()}


def test_correct_rows() -> None:
    out = classification.correct({}, evaluation=evaluation(), dataset=dataset())
    assert out.schema.equals(classification.CORRECT_SCHEMA, check_metadata=True)
    rows = sorted(out.to_pylist(), key=lambda r: r["_index_"])
    assert [r["prediction"] for r in rows] == PREDICTIONS
    assert [r["label"] for r in rows] == TRUTH
    assert [r["correct"] for r in rows] == [True, False, True, True, True, False]
    assert [r["topk_correct"] for r in rows] == [True, False, True, True, True, False]  # k=1
    assert [r["confidence"] for r in rows] == pytest.approx([0.6, 0.5, 0.7, 0.8, 0.8, 0.5])
    assert {r["_replication_"] for r in rows} == {"r0"}


def test_topk_uses_the_rank_of_the_true_label() -> None:
    out = classification.correct({"k": "2"}, evaluation=evaluation(), dataset=dataset())
    assert out.column("topk_correct").to_pylist() == [True] * 6  # ranks 0 or 1, all < 2


def test_metrics_by_hand() -> None:
    out = classification.metrics(
        {"k": "2", "resamples": "300"}, evaluation=evaluation(), dataset=dataset()
    )
    m = by_metric(out)
    expected = {
        ("accuracy", None): 4 / 6,  # rows 0, 2, 3, 4
        ("top_k_accuracy", None): 1.0,  # every truth ranks 0 or 1
        # precision: a 1/2 (rows 0, 5 predicted a), b 2/3 (rows 1, 2, 3), c 1/1
        ("precision", "a"): 1 / 2,
        ("precision", "b"): 2 / 3,
        ("precision", "c"): 1.0,
        # recall: a 1/2, b 2/2, c 1/2
        ("recall", "a"): 1 / 2,
        ("recall", "b"): 1.0,
        ("recall", "c"): 1 / 2,
        # f1 = 2pr / (p + r): a 0.5, b (4/3) / (5/3) = 0.8, c 1 / 1.5 = 2/3
        ("f1", "a"): 0.5,
        ("f1", "b"): 0.8,
        ("f1", "c"): 2 / 3,
        ("support", "a"): 2.0,
        ("macro_precision", None): (1 / 2 + 2 / 3 + 1) / 3,  # 0.7222
        ("macro_recall", None): (1 / 2 + 1 + 1 / 2) / 3,  # 0.6667
        ("macro_f1", None): (0.5 + 0.8 + 2 / 3) / 3,  # 0.6556
        # truth a: predicted a once, b once; b: b twice; c: c once, a once
        ("confusion:a", "a"): 1.0,
        ("confusion:b", "a"): 1.0,
        ("confusion:c", "a"): 0.0,
        ("confusion:b", "b"): 2.0,
        ("confusion:a", "c"): 1.0,
        ("confusion:c", "c"): 1.0,
        # bins of 0.1: bin 5 {.5 wrong, .5 wrong}: |0 - 1.0| = 1.0; bin 6 {.6 right}: 0.4;
        # bin 7 {.7 right}: 0.3; bin 8 {.8 right, .8 right}: |2 - 1.6| = 0.4; 2.1 / 6
        ("expected_calibration_error", None): 2.1 / 6,
    }
    for key, value in expected.items():
        assert m[key]["value"] == pytest.approx(value), key
        assert m[key]["n"] == 6
        assert m[key]["low"] <= m[key]["value"] + 1e-12 <= m[key]["high"] + 2e-12, key
    assert len(out) == 5 + 4 * 3 + 9 + 1
    assert out.schema.equals(classification.METRICS.schema, check_metadata=True)


def test_calibration_bins_argument() -> None:
    # two bins: every confidence is in [0.5, 1]: |4 right - 3.9 confidence| / 6
    out = classification.metrics({"bins": "2"}, evaluation=evaluation(), dataset=dataset())
    value = by_metric(out)[("expected_calibration_error", None)]["value"]
    assert value == pytest.approx(0.1 / 6)


def test_rows_without_response_or_truth() -> None:
    table = evaluation().to_table()
    empty = pa.table(
        {"_index_": pa.array([6], pa.int64()), "_replication_": ["r0"], "responses": [[]]},
        schema=table.schema,
    )
    ev = ds.dataset(pa.concat_tables([table, empty]))
    data = ds.dataset(
        pa.table({"_index_": pa.array(range(8), pa.int64()), "label": [*TRUTH, "a", None]})
    )
    out = classification.correct({}, evaluation=ev, dataset=data)
    row = out.filter(pa.compute.equal(out.column("_index_"), 6)).to_pylist()[0]
    assert row["prediction"] is None and row["correct"] is False
    assert row["topk_correct"] is False and row["confidence"] is None
    # a row whose truth is null is left out; the unanswered one counts as wrong: 4 / 7
    ev2 = ds.dataset(
        pa.concat_tables([table, empty, empty.set_column(0, "_index_", pa.array([7]))])
    )
    m = by_metric(classification.metrics({}, evaluation=ev2, dataset=data))
    assert m[("accuracy", None)]["value"] == pytest.approx(4 / 7)
    assert m[("accuracy", None)]["n"] == 7
    out2 = classification.correct({}, evaluation=ev2, dataset=data)
    assert (
        out2.filter(pa.compute.equal(out2.column("_index_"), 7)).column("correct")[0].as_py()
        is None
    )


def test_ranked_responses_without_scores() -> None:
    # each row answers a ranked list of labels, best first, each with a score, out of order
    def ranked(labels: list[str], scores: list[float], order: list[int]) -> list[dict[str, Any]]:
        items = [
            {"_response_index_": i, "label": x, "score": s}
            for i, (x, s) in enumerate(zip(labels, scores, strict=True))
        ]
        return [items[i] for i in order]

    ev = ds.dataset(
        pa.table(
            {
                "_index_": pa.array([0, 1, 2], pa.int64()),
                "responses": [
                    ranked(["a", "b"], [0.9, 0.1], [1, 0]),  # truth a first: correct
                    ranked(["b", "a", "c"], [0.6, 0.3, 0.1], [0, 1, 2]),  # truth a second
                    ranked(["b", "c", "a"], [0.5, 0.3, 0.2], [2, 0, 1]),  # truth a third
                ],
            }
        )
    )
    data = ds.dataset(pa.table({"_index_": pa.array([0, 1, 2], pa.int64()), "label": ["a"] * 3}))
    out = classification.correct({"k": "2"}, evaluation=ev, dataset=data).sort_by("_index_")
    assert out.column("prediction").to_pylist() == ["a", "b", "b"]
    assert out.column("correct").to_pylist() == [True, False, False]
    assert out.column("topk_correct").to_pylist() == [True, True, False]
    assert out.column("confidence").to_pylist() == pytest.approx([0.9, 0.6, 0.5])
    assert out.column("_replication_").to_pylist() == [None] * 3  # the input had none


def test_integer_labels_compare_as_strings() -> None:
    ev = ds.dataset(
        pa.table(
            {
                "_index_": pa.array([0, 1], pa.int64()),
                "responses": [[{"label": 3}], [{"label": 4}]],
            }
        )
    )
    data = ds.dataset(pa.table({"_index_": pa.array([0, 1], pa.int64()), "label": [3, 5]}))
    out = classification.correct({}, evaluation=ev, dataset=data).sort_by("_index_")
    assert out.column("prediction").to_pylist() == ["3", "4"]
    assert out.column("correct").to_pylist() == [True, False]


def test_replications_are_resampled_by_instance() -> None:
    one = evaluation(copies=20)
    table = one.to_table()
    twice = pa.concat_tables(
        [table, table.set_column(1, "_replication_", pa.array(["r1"] * table.num_rows))]
    )
    data = dataset(copies=20)
    single = by_metric(classification.metrics({}, evaluation=one, dataset=data))
    double = by_metric(classification.metrics({}, evaluation=ds.dataset(twice), dataset=data))
    assert double[("accuracy", None)]["value"] == pytest.approx(4 / 6)
    assert double[("accuracy", None)]["n"] == 240
    assert len(classification.correct({}, evaluation=ds.dataset(twice), dataset=data)) == 240
    width_single = single[("accuracy", None)]["high"] - single[("accuracy", None)]["low"]
    width_double = double[("accuracy", None)]["high"] - double[("accuracy", None)]["low"]
    # identical replications add no information: the interval stays ~ as wide (not 1/sqrt(2))
    assert width_double == pytest.approx(width_single, rel=0.2)


def test_interval_shrinks_with_n_and_seed_reproduces() -> None:
    def accuracy(copies: int, seed: str) -> dict[str, Any]:
        out = classification.metrics(
            {"seed": seed}, evaluation=evaluation(copies=copies), dataset=dataset(copies)
        )
        return by_metric(out)[("accuracy", None)]

    small, large = accuracy(50, "0"), accuracy(5000, "0")
    assert small["value"] == pytest.approx(large["value"])
    assert large["high"] - large["low"] < (small["high"] - small["low"]) / 5  # ~ 1/10
    assert accuracy(50, "0") == small
    assert accuracy(50, "1") != small


def test_confidence_argument() -> None:
    args = {"confidence": "0.5"}
    narrow = by_metric(
        classification.metrics(args, evaluation=evaluation(copies=10), dataset=dataset(10))
    )
    wide = by_metric(
        classification.metrics({}, evaluation=evaluation(copies=10), dataset=dataset(10))
    )
    key = ("accuracy", None)
    assert wide[key]["low"] < narrow[key]["low"] <= narrow[key]["high"] < wide[key]["high"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            {"label_field": "truth"},
            "has no column 'truth' (its columns: _index_, label); set the argument label_field",
        ),
        (
            {"prediction_field": "answer"},
            "have no field 'answer' (their fields: _response_index_, label, scores); set the argument prediction_field",
        ),
        ({"scores_field": "probs"}, "set the argument scores_field"),
        ({"k": "abc"}, "the argument k must be an integer of at least 1, got 'abc'"),
        ({"k": "0"}, "the argument k must be an integer of at least 1, got '0'"),
        ({"bins": "-1"}, "the argument bins must be an integer of at least 1"),
        (
            {"confidence": "95"},
            "the argument confidence must be a number between 0.0 and 1.0, got '95'",
        ),
        ({"resamples": "0"}, "the argument resamples must be an integer of at least 1"),
        ({"colour": "red"}, "unknown argument 'colour'; its parameters are"),
    ],
)
def test_bad_arguments(args: dict[str, str], fragment: str) -> None:
    with pytest.raises(errors.ValidationError) as info:
        classification.metrics(args, evaluation=evaluation(), dataset=dataset())
    assert fragment in str(info.value)
    assert str(info.value).startswith("classification.metrics: ")


def test_bad_inputs() -> None:
    with pytest.raises(errors.ValidationError, match="have an _index_ that is not in the Dataset"):
        classification.correct({}, evaluation=evaluation([0, 1, 7]), dataset=dataset())
    repeated = ds.dataset(
        pa.table({"_index_": pa.array([0, 0, 1], pa.int64()), "label": ["a"] * 3})
    )
    with pytest.raises(errors.ValidationError, match="repeated _index_ values"):
        classification.correct({}, evaluation=evaluation([0, 1]), dataset=repeated)
    with pytest.raises(errors.ValidationError, match="has no column 'responses'"):
        classification.correct({}, evaluation=dataset(), dataset=dataset())
    with pytest.raises(errors.ValidationError, match="the input 'dataset' is missing"):
        classification.correct({}, evaluation=evaluation())
    with pytest.raises(errors.ValidationError, match="unknown input 'extra'"):
        classification.correct({}, evaluation=evaluation(), dataset=dataset(), extra=dataset())
    bad_scores = ds.dataset(
        pa.table(
            {"_index_": pa.array([0], pa.int64()), "responses": [[{"label": "a", "scores": ["x"]}]]}
        )
    )
    with pytest.raises(errors.ValidationError, match="must be a list of \\{label, score\\}"):
        classification.correct({}, evaluation=bad_scores, dataset=dataset())
    no_truth = ds.dataset(
        pa.table({"_index_": pa.array(range(6), pa.int64()), "label": pa.nulls(6, pa.string())})
    )
    with pytest.raises(errors.ValidationError, match="no row of the evaluation has a true label"):
        classification.metrics({}, evaluation=evaluation(), dataset=no_truth)


def test_sparse_index_uses_the_join() -> None:
    # _index_ values far apart: looked up with pyarrow.Table.join rather than a direct table
    far = [0, 10**12, 2 * 10**12, 3 * 10**12, 4 * 10**12, 5 * 10**12]
    ev = evaluation().to_table().set_column(0, "_index_", pa.array(far[::-1]))
    data = ds.dataset(pa.table({"_index_": pa.array(far[::-1]), "label": TRUTH}))
    out = classification.correct({}, evaluation=ds.dataset(ev), dataset=data)
    # row i of the evaluation now answers instance far[5 - i], whose truth is TRUTH[i]
    assert sorted(out.column("correct").to_pylist()) == sorted(
        [True, False, True, True, True, False]
    )
    rows = {r["_index_"]: r for r in out.to_pylist()}
    assert rows[far[5]]["label"] == TRUTH[0] and rows[far[5]]["prediction"] == PREDICTIONS[0]
    with pytest.raises(errors.ValidationError, match="not in the Dataset"):
        classification.correct({}, evaluation=ds.dataset(ev), dataset=data.to_table().slice(1))


def test_registration_with_a_local_platform(platform: LocalPlatform) -> None:
    for builtin in (classification.CORRECT, classification.METRICS):
        method = builtin.register(platform, account="tester")
        assert method.name == builtin.name
        assert method.output.measurement is not None
        assert method.output.measurement.level == builtin.level
        impl = method.implementation.pythonFunction
        assert impl is not None
        module, _, name = impl.fullyQualifiedName.rpartition(".")
        assert getattr(importlib.import_module(module), name) is builtin.function
        assert method.description == builtin.description
        assert {p.keyword for p in method.parameters} == set(builtin.parameters)
        assert all(p.description for p in method.parameters)
        assert [(i.keyword, i.kind) for i in method.inputs] == [
            ("evaluation", "Evaluation"),
            ("dataset", "Dataset"),
        ]
        produced = builtin.function({}, evaluation=evaluation(), dataset=dataset())
        declared = method.output.measurement.schema_.arrow_schema()
        assert produced.schema.equals(declared, check_metadata=True)
        assert platform.methods.get(method.id).id == method.id
