"""robustness.drop: a metric on clean and perturbed evaluations, and the drop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from assay import errors
from assay.analysis.builtin import robustness
from assay.local import LocalPlatform

#   row  truth  clean  perturbed
#   0    a      a      a
#   1    b      b      a        (broken by the perturbation)
#   2    a      a      a
#   3    b      b      a        (broken)
#   4    a      b      b
#   5    b      a      a
# accuracy: clean 4/6, perturbed 2/6, drop 2/6
TRUTH = ["a", "b", "a", "b", "a", "b"]
CLEAN = ["a", "b", "a", "b", "b", "a"]
PERTURBED = ["a", "a", "a", "a", "b", "a"]


def evaluation(
    predictions: Sequence[str], copies: int = 1, start: int = 0, replications: int = 1
) -> ds.Dataset:
    n = len(predictions) * copies
    rows = [(start + i, f"r{r}") for r in range(replications) for i in range(n)]
    return ds.dataset(
        pa.table(
            {
                "_index_": pa.array([i for i, _ in rows], pa.int64()),
                "_replication_": [r for _, r in rows],
                "responses": [[{"label": p}] for p in list(predictions) * copies * replications],
            }
        )
    )


def dataset(copies: int = 1, start: int = 0) -> ds.Dataset:
    n = len(TRUTH) * copies
    return ds.dataset(
        pa.table(
            {"_index_": pa.array(range(start, start + n), pa.int64()), "label": TRUTH * copies}
        )
    )


def by_metric(table: pa.Table) -> dict[tuple[str, str | None], dict[str, Any]]:
    return {(r["metric"], r["group"]): r for r in table.to_pylist()}


def test_drop_by_hand() -> None:
    out = robustness.drop(
        {}, clean=evaluation(CLEAN), perturbed=evaluation(PERTURBED), dataset=dataset()
    )
    assert out.schema.equals(robustness.DROP.schema, check_metadata=True)
    m = by_metric(out)
    assert m[("accuracy", "clean")]["value"] == pytest.approx(4 / 6)
    assert m[("accuracy", "perturbed")]["value"] == pytest.approx(2 / 6)
    drop = m[("accuracy_drop", None)]
    assert drop["value"] == pytest.approx(2 / 6)
    # paired: no instance is right when perturbed and wrong when clean, so no resample drops
    # below 0
    assert drop["low"] >= 0.0
    assert drop["low"] <= drop["value"] <= drop["high"]
    assert [r["metric"] for r in out.to_pylist()] == ["accuracy", "accuracy", "accuracy_drop"]


def test_paired_interval_is_narrower_than_unpaired() -> None:
    paired = by_metric(
        robustness.drop(
            {},
            clean=evaluation(CLEAN, 50),
            perturbed=evaluation(PERTURBED, 50),
            dataset=dataset(50),
        )
    )[("accuracy_drop", None)]
    # the perturbed data set numbers its instances differently: the sides are independent
    unpaired = by_metric(
        robustness.drop(
            {},
            clean=evaluation(CLEAN, 50),
            perturbed=evaluation(PERTURBED, 50, start=1000),
            dataset=dataset(50),
            perturbed_dataset=dataset(50, start=1000),
        )
    )[("accuracy_drop", None)]
    assert paired["value"] == pytest.approx(unpaired["value"]) == pytest.approx(2 / 6)
    assert unpaired["low"] < paired["low"]
    assert paired["high"] - paired["low"] < 0.8 * (unpaired["high"] - unpaired["low"])
    assert unpaired["n"] == 600


def test_replications_and_other_metrics() -> None:
    out = robustness.drop(
        {"metric": "macro_recall"},
        clean=evaluation(CLEAN, replications=2),
        perturbed=evaluation(PERTURBED, replications=3),
        dataset=dataset(),
    )
    m = by_metric(out)
    # clean: recall a 2/3 (rows 0, 2), b 2/3 (rows 1, 3) -> 2/3
    # perturbed: recall a 2/3 (rows 0, 2; row 4 predicted b), b 0/3 -> 1/3
    assert m[("macro_recall", "clean")]["value"] == pytest.approx(2 / 3)
    assert m[("macro_recall", "perturbed")]["value"] == pytest.approx(1 / 3)
    assert m[("macro_recall_drop", None)]["value"] == pytest.approx(1 / 3)
    assert m[("macro_recall", "clean")]["n"] == 12


def test_seed_reproduces() -> None:
    def run(seed: str) -> pa.Table:
        return robustness.drop(
            {"seed": seed},
            clean=evaluation(CLEAN, 20),
            perturbed=evaluation(PERTURBED, 20),
            dataset=dataset(20),
        )

    assert run("5").equals(run("5"))
    assert not run("5").equals(run("6"))


def test_bad_input() -> None:
    with pytest.raises(errors.ValidationError, match="the argument metric must be one of"):
        robustness.drop(
            {"metric": "speed"},
            clean=evaluation(CLEAN),
            perturbed=evaluation(PERTURBED),
            dataset=dataset(),
        )
    with pytest.raises(errors.ValidationError, match="the input 'perturbed' is missing"):
        robustness.drop({}, clean=evaluation(CLEAN), dataset=dataset())
    with pytest.raises(
        errors.ValidationError, match="rows of 'perturbed' have an _index_ that is not in"
    ):
        robustness.drop(
            {},
            clean=evaluation(CLEAN),
            perturbed=evaluation(PERTURBED, start=1000),
            dataset=dataset(),
        )


def test_registration_with_a_local_platform(platform: LocalPlatform) -> None:
    inputs = {"clean": evaluation(CLEAN), "perturbed": evaluation(PERTURBED), "dataset": dataset()}
    for builtin, extra in (
        (robustness.DROP, {}),
        (robustness.DROP_WITH_PERTURBED_DATASET, {"perturbed_dataset": dataset()}),
    ):
        method = builtin.register(platform, account="tester")
        assert method.output.measurement is not None
        assert [i.keyword for i in method.inputs] == [*inputs, *extra]
        produced = builtin.function({}, **inputs, **extra)
        declared = method.output.measurement.schema_.arrow_schema()
        assert produced.schema.equals(declared, check_metadata=True)
