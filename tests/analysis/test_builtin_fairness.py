"""fairness.metrics against values worked out by hand."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from assay import errors
from assay.analysis.builtin import classification, fairness
from assay.local import LocalPlatform

#   row  group  truth  prediction
#   0    x      pos    pos     right
#   1    x      pos    neg     wrong
#   2    x      neg    neg     right
#   3    x      neg    neg     right
#   4    y      pos    pos     right
#   5    y      neg    pos     wrong
#   6    y      neg    pos     wrong
#   7    y      neg    neg     right
GROUPS = ["x"] * 4 + ["y"] * 4
TRUTH = ["pos", "pos", "neg", "neg", "pos", "neg", "neg", "neg"]
PREDICTIONS = ["pos", "neg", "neg", "neg", "pos", "pos", "pos", "neg"]


def evaluation(copies: int = 1, predictions: list[str] = PREDICTIONS) -> ds.Dataset:
    n = len(predictions) * copies
    return ds.dataset(
        pa.table(
            {
                "_index_": pa.array(range(n), pa.int64()),
                "_replication_": ["r0"] * n,
                "responses": [[{"_response_index_": 0, "label": p}] for p in predictions * copies],
            }
        )
    )


def dataset(copies: int = 1, groups: list[Any] = GROUPS) -> ds.Dataset:
    n = len(TRUTH) * copies
    return ds.dataset(
        pa.table(
            {
                "_index_": pa.array(range(n), pa.int64()),
                "label": TRUTH * copies,
                "group": groups * copies,
            }
        )
    )


def by_metric(table: pa.Table) -> dict[tuple[str, str | None], dict[str, Any]]:
    return {(r["metric"], r["group"]): r for r in table.to_pylist()}


def test_metrics_by_group_and_parity_by_hand() -> None:
    args = {"group_field": "group", "metrics": "accuracy,macro_f1", "positive_label": "pos"}
    out = fairness.metrics(args, evaluation=evaluation(), dataset=dataset())
    assert out.schema.equals(fairness.METRICS.schema, check_metadata=True)
    m = by_metric(out)
    expected = {
        ("accuracy", "x"): 3 / 4,
        ("accuracy", "y"): 2 / 4,
        ("accuracy_difference", None): 1 / 4,
        # x: pos P 1/1 R 1/2 F1 2/3; neg P 2/3 R 2/2 F1 0.8 -> (2/3 + 0.8) / 2
        ("macro_f1", "x"): (2 / 3 + 0.8) / 2,
        # y: pos P 1/3 R 1/1 F1 0.5; neg P 1/1 R 1/3 F1 0.5 -> 0.5
        ("macro_f1", "y"): 0.5,
        ("macro_f1_difference", None): (2 / 3 + 0.8) / 2 - 0.5,
        # predicted pos: x 1 of 4, y 3 of 4
        ("positive_rate", "x"): 1 / 4,
        ("positive_rate", "y"): 3 / 4,
        ("demographic_parity_difference", None): 1 / 2,
        # TPR: x 1 of 2 pos, y 1 of 1; FPR: x 0 of 2 neg, y 2 of 3 neg
        ("true_positive_rate", "x"): 1 / 2,
        ("true_positive_rate", "y"): 1.0,
        ("false_positive_rate", "x"): 0.0,
        ("false_positive_rate", "y"): 2 / 3,
        # max(|1 - 1/2|, |2/3 - 0|)
        ("equalized_odds_difference", None): 2 / 3,
    }
    for key, value in expected.items():
        assert m[key]["value"] == pytest.approx(value), key
        assert m[key]["low"] <= m[key]["value"] + 1e-12 <= m[key]["high"] + 2e-12, key
    assert m[("accuracy", "x")]["n"] == 4
    assert m[("accuracy_difference", None)]["n"] == 8
    assert [r["metric"] for r in out.to_pylist()][:6] == [
        "accuracy",
        "accuracy",
        "accuracy_difference",
        "macro_f1",
        "macro_f1",
        "macro_f1_difference",
    ]
    assert len(out) == 6 + 2 + 1 + 2 + 2 + 1  # rates, DP, TPRs, FPRs, EOD


def test_group_values_agree_with_classification_metrics_on_each_group() -> None:
    args = {"group_field": "group", "metrics": "accuracy,macro_f1", "seed": "4"}
    m = by_metric(fairness.metrics(args, evaluation=evaluation(5), dataset=dataset(5)))
    table = dataset(5).to_table()
    ev_table = evaluation(5).to_table()
    for group in ("x", "y"):
        # classification.metrics on the group's instances alone
        part = table.filter(pa.compute.equal(table.column("group"), group))
        keep = pa.compute.is_in(ev_table.column("_index_"), value_set=part.column("_index_"))
        own_rows = classification.metrics(
            {}, evaluation=ds.dataset(ev_table.filter(keep)), dataset=ds.dataset(part)
        ).to_pylist()
        own = {r["metric"]: r["value"] for r in own_rows if r["group"] is None}
        assert m[("accuracy", group)]["value"] == pytest.approx(own["accuracy"])
        assert m[("macro_f1", group)]["value"] == pytest.approx(own["macro_f1"])


def test_gaps_shrink_with_n_and_reproduce() -> None:
    def gap(copies: int, seed: str = "0") -> dict[str, Any]:
        args = {"group_field": "group", "positive_label": "pos", "seed": seed}
        out = fairness.metrics(args, evaluation=evaluation(copies), dataset=dataset(copies))
        return by_metric(out)[("demographic_parity_difference", None)]

    small, large = gap(10), gap(1000)
    assert small["value"] == pytest.approx(0.5) == large["value"]
    assert large["high"] - large["low"] < (small["high"] - small["low"]) / 5
    assert gap(10) == small


def test_null_groups_are_left_out_and_one_group_has_no_gap() -> None:
    groups = ["x"] * 4 + [None] * 4
    args = {"group_field": "group"}
    out = fairness.metrics(args, evaluation=evaluation(), dataset=dataset(groups=groups))
    m = by_metric(out)
    assert set(m) == {("accuracy", "x"), ("accuracy_difference", None)}
    assert m[("accuracy", "x")]["value"] == pytest.approx(3 / 4)
    gap = m[("accuracy_difference", None)]
    assert gap["value"] is None and gap["low"] is None and gap["high"] is None


def test_numeric_group_values_and_text_metrics() -> None:
    texts = ["I'm sorry", "Sure", "I cannot", "Yes", "No", "Ok", "I won't", "Fine"]
    ev = ds.dataset(
        pa.table(
            {
                "_index_": pa.array(range(8), pa.int64()),
                "responses": [[{"text": t}] for t in texts],
            }
        )
    )
    data = dataset(groups=[1, 1, 1, 1, 2, 2, 2, 2])
    args = {"group_field": "group", "metrics": "refusal_rate,mean_characters"}
    m = by_metric(fairness.metrics(args, evaluation=ev, dataset=data))
    assert m[("refusal_rate", "1")]["value"] == pytest.approx(2 / 4)  # "I'm sorry", "I cannot"
    assert m[("refusal_rate", "2")]["value"] == pytest.approx(1 / 4)  # "I won't"
    assert m[("refusal_rate_difference", None)]["value"] == pytest.approx(1 / 4)
    assert m[("mean_characters", "1")]["value"] == pytest.approx((9 + 4 + 8 + 3) / 4)
    assert m[("mean_characters", "2")]["value"] == pytest.approx((2 + 2 + 7 + 4) / 4)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({}, "the argument group_field is required"),
        ({"group_field": "region"}, "has no column 'region' (its columns: _index_, label, group)"),
        ({"group_field": "group", "metrics": "accuracy,speed"}, "must be a comma-separated list"),
        (
            {"group_field": "group", "positive_label": "maybe"},
            "positive_label 'maybe' is not among",
        ),
        ({"group_field": "group", "metrics": "expected_calibration_error"}, "needs confidences"),
    ],
)
def test_bad_arguments(args: dict[str, str], fragment: str) -> None:
    with pytest.raises(errors.ValidationError) as info:
        fairness.metrics(args, evaluation=evaluation(), dataset=dataset())
    assert fragment in str(info.value)
    assert str(info.value).startswith("fairness.metrics: ")


def test_registration_with_a_local_platform(platform: LocalPlatform) -> None:
    method = fairness.METRICS.register(platform, account="tester")
    assert method.output.measurement is not None
    assert {"group_field", "metrics", "positive_label", "seed"} <= {
        p.keyword for p in method.parameters
    }
    produced = fairness.metrics(
        {"group_field": "group"}, evaluation=evaluation(), dataset=dataset()
    )
    assert produced.schema.equals(
        method.output.measurement.schema_.arrow_schema(), check_metadata=True
    )
