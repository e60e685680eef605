"""comparison.difference: two systems on the same data set, paired."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from assay import errors
from assay.analysis.builtin import comparison
from assay.local import LocalPlatform

#   row  truth  a   b
#   0    a      a   a
#   1    b      b   a    (only a is right)
#   2    a      a   a
#   3    b      a   a
#   4    a      b   b
#   5    b      b   a    (only a is right)
# accuracy: a 4/6, b 2/6; a is right wherever b is: a - b = 2/6 on every instance pair
TRUTH = ["a", "b", "a", "b", "a", "b"]
A = ["a", "b", "a", "a", "b", "b"]
B = ["a", "a", "a", "a", "b", "a"]


def evaluation(
    predictions: Sequence[str | None], indices: Sequence[int] | None = None
) -> ds.Dataset:
    indices = list(range(len(predictions))) if indices is None else list(indices)
    return ds.dataset(
        pa.table(
            {
                "_index_": pa.array(indices, pa.int64()),
                "_replication_": ["r0"] * len(indices),
                "responses": [[{"label": p, "text": p}] for p in predictions],
            }
        )
    )


def dataset(n: int = 6) -> ds.Dataset:
    return ds.dataset(
        pa.table(
            {
                "_index_": pa.array(range(n), pa.int64()),
                "label": (TRUTH * (n // 6 + 1))[:n],
                "reference": (TRUTH * (n // 6 + 1))[:n],
            }
        )
    )


def by_metric(table: pa.Table) -> dict[tuple[str, str | None], dict[str, Any]]:
    return {(r["metric"], r["group"]): r for r in table.to_pylist()}


def test_difference_by_hand() -> None:
    out = comparison.difference(
        {"resamples": "2000"}, a=evaluation(A), b=evaluation(B), dataset=dataset()
    )
    assert out.schema.equals(comparison.DIFFERENCE.schema, check_metadata=True)
    m = by_metric(out)
    assert m[("accuracy", "a")]["value"] == pytest.approx(4 / 6)
    assert m[("accuracy", "b")]["value"] == pytest.approx(2 / 6)
    diff = m[("accuracy_difference", None)]
    assert diff["value"] == pytest.approx(2 / 6)
    assert diff["low"] >= 0.0  # paired: b is never right where a is wrong
    assert diff["n"] == 12  # the rows of both sides
    # a > b unless a resample misses both rows 1 and 5: 1 - (4/6)^6 = 0.912
    share = m[("accuracy_share_a_greater", None)]
    assert share["value"] == pytest.approx(1 - (4 / 6) ** 6, abs=0.03)
    assert share["low"] is None and share["high"] is None
    assert [r["metric"] for r in out.to_pylist()] == [
        "accuracy",
        "accuracy",
        "accuracy_difference",
        "accuracy_share_a_greater",
    ]


def test_rows_in_any_order_are_paired_by_index() -> None:
    order = [5, 3, 1, 0, 2, 4]
    shuffled = evaluation([B[i] for i in order], order)
    plain = comparison.difference({}, a=evaluation(A), b=evaluation(B), dataset=dataset())
    mixed = comparison.difference({}, a=evaluation(A), b=shuffled, dataset=dataset())
    assert plain.equals(mixed)


def test_only_common_instances_are_compared() -> None:
    # b answered instances 0-3 only, so both are scored on those
    out = comparison.difference(
        {}, a=evaluation(A), b=evaluation(B[:4], range(4)), dataset=dataset()
    )
    m = by_metric(out)
    assert m[("accuracy", "a")]["value"] == pytest.approx(3 / 4)  # rows 0, 1, 2
    assert m[("accuracy", "b")]["value"] == pytest.approx(2 / 4)  # rows 0, 2
    assert m[("accuracy", "a")]["n"] == 4
    with pytest.raises(errors.ValidationError, match="no instance \\(_index_\\) in common"):
        comparison.difference(
            {}, a=evaluation(A[:3], range(3)), b=evaluation(B[3:], range(3, 6)), dataset=dataset()
        )


def test_macro_f1_and_text_metrics() -> None:
    out = comparison.difference(
        {"metric": "macro_f1"}, a=evaluation(A), b=evaluation(B), dataset=dataset()
    )
    m = by_metric(out)
    # a: class a P 2/3 (rows 0, 2, 3 predicted a) R 2/3 (rows 0, 2, 4 are a) F1 2/3;
    #    class b P 2/3 R 2/3 F1 2/3 -> 2/3
    # b: class a P 2/5 (rows 0, 1, 2, 3, 5 predicted a) R 2/3, F1 2 (4/15) / (16/15) = 1/2;
    #    class b P 0 (row 4) R 0 F1 0 -> 1/4
    assert m[("macro_f1", "a")]["value"] == pytest.approx(2 / 3)
    assert m[("macro_f1", "b")]["value"] == pytest.approx(1 / 4)
    assert m[("macro_f1_difference", None)]["value"] == pytest.approx(2 / 3 - 1 / 4)
    # the same answers as text against the reference column: exact match = accuracy
    out = comparison.difference(
        {"metric": "exact_match_rate"}, a=evaluation(A), b=evaluation(B), dataset=dataset()
    )
    assert by_metric(out)[("exact_match_rate_difference", None)]["value"] == pytest.approx(2 / 6)


def test_replications_on_both_sides() -> None:
    def replicated(predictions: Sequence[str], copies: int) -> ds.Dataset:
        table = evaluation(predictions).to_table()
        return ds.dataset(
            pa.concat_tables(
                [
                    table.set_column(1, "_replication_", pa.array([f"r{c}"] * 6))
                    for c in range(copies)
                ]
            )
        )

    out = comparison.difference({}, a=replicated(A, 2), b=replicated(B, 3), dataset=dataset())
    m = by_metric(out)
    assert m[("accuracy_difference", None)]["value"] == pytest.approx(2 / 6)
    assert m[("accuracy_difference", None)]["low"] >= 0.0  # still paired, by instance
    assert m[("accuracy", "b")]["n"] == 18


def test_interval_shrinks_with_n() -> None:
    def width(copies: int) -> float:
        n = 6 * copies
        out = comparison.difference(
            {}, a=evaluation(A * copies), b=evaluation(B * copies), dataset=dataset(n)
        )
        diff = by_metric(out)[("accuracy_difference", None)]
        return float(diff["high"] - diff["low"])

    assert width(1000) < width(10) / 5


def test_bad_input() -> None:
    with pytest.raises(errors.ValidationError, match="the input 'b' is missing"):
        comparison.difference({}, a=evaluation(A), dataset=dataset())
    with pytest.raises(errors.ValidationError, match="has no column 'label'"):
        comparison.difference(
            {"label_field": "label"},
            a=evaluation(A),
            b=evaluation(B),
            dataset=ds.dataset(pa.table({"_index_": pa.array(range(6), pa.int64())})),
        )


def test_registration_with_a_local_platform(platform: LocalPlatform) -> None:
    method = comparison.DIFFERENCE.register(platform, account="tester")
    assert method.output.measurement is not None
    assert [(i.keyword, i.kind) for i in method.inputs] == [
        ("a", "Evaluation"),
        ("b", "Evaluation"),
        ("dataset", "Dataset"),
    ]
    produced = comparison.difference({}, a=evaluation(A), b=evaluation(B), dataset=dataset())
    declared = method.output.measurement.schema_.arrow_schema()
    assert produced.schema.equals(declared, check_metadata=True)
