"""Explainability configs on a pipeline: a model step over a window of logged traffic,
per-feature attributions (permutation; KernelSHAP where shap is installed) as a Measurement
with bootstrap intervals, reproducible, listed and kept across a restart; and what is
refused."""

from __future__ import annotations

import importlib.util
import random
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from tests.conftest import ACCOUNT

from assay import errors
from assay.local import LocalPlatform, mocks
from assay.pipelines import ExplainabilityResult, LoggedPipeline
from assay.pipelines.explain import CONFIG_LABEL
from assay.schema.status import Status

COLUMNS = ["feature", "attribution", "low", "high", "n", "method"]


def _traffic(platform: LocalPlatform, name: str = "scored", rows: int = 60) -> LoggedPipeline:
    """A deployed pipeline over a Regressor whose score depends strongly on ``strong``, a
    little on ``count`` and not at all on ``weak``, with ``rows`` logged inferences."""
    service = platform.inferenceservices.create_mock(
        mocks.Regressor,
        account=ACCOUNT,
        name="scorer",
        kwargs={"weights": {"strong": 3.0, "weak": 0.0, "count": 0.1}, "bias": 1.0},
    )
    pipeline: LoggedPipeline = platform.pipelines.create(name)
    pipeline.add_model_step(service).deploy()
    rng = random.Random(0)
    pipeline.infer(
        [
            {
                "strong": rng.uniform(-1, 1),
                "weak": rng.uniform(-1, 1),
                "count": i % 5,
                "note": f"row {i}",
            }
            for i in range(rows)
        ]
    )
    return pipeline


def _by_feature(result: ExplainabilityResult) -> dict[str, dict[str, Any]]:
    return {row["feature"]: row for row in result.table.to_pylist()}


def test_the_regressor_mock_is_a_known_linear_function() -> None:
    model = mocks.Regressor(weights={"a": 2.0, "b": 0.0}, bias=0.5)
    assert model.infer("predict", {"a": 1.5, "b": 9, "other": "x"}) == [{"score": 3.5}]
    with pytest.raises(errors.ValidationError, match="request has no feature 'a'"):
        model.infer("predict", {"b": 1.0})
    with pytest.raises(errors.ValidationError, match="'a' must be a number"):
        model.infer("predict", {"a": "1", "b": 1.0})


def test_permutation_attributions_rank_the_features_and_repeat_themselves(
    platform: LocalPlatform,
) -> None:
    pipeline = _traffic(platform)
    config = pipeline.create_explainability_config(
        "scorer", last_records=50, features=["strong", "in.weak", "count"], seed=3
    )
    assert config.output == "score" and config.features == ["strong", "weak", "count"]
    assert config.model_step_name == "scorer" and config.method == "permutation"

    result = pipeline.run_explainability_config(config.id)
    assert result.table.column_names == COLUMNS
    assert result.rows == 50 and result.left_out == 0
    found = _by_feature(result)
    assert list(found) == ["strong", "weak", "count"]
    strong, weak, count = found["strong"], found["weak"], found["count"]
    assert all(row["n"] == 50 and row["method"] == "permutation" for row in found.values())
    # the score does not depend on `weak` at all: permuting it never changes the score
    assert weak["attribution"] == weak["low"] == weak["high"] == 0.0
    assert strong["low"] > count["high"] > count["low"] > weak["high"]
    assert strong["low"] <= strong["attribution"] <= strong["high"]

    # stored like any Measurement, about the step's service, labelled with the config
    measurement = result.measurement
    assert measurement.status == Status.Complete
    assert measurement.scope.inferenceService == config.model_step
    assert platform.measurements.open(measurement.id).to_table().equals(result.table)
    labelled = platform.measurements.query(labels={CONFIG_LABEL: config.id})
    assert [m.id for m in labelled] == [measurement.id]
    assert result.attributions.status == Status.Ready

    # the same seed over the same window: the same table; the Method is made once
    again = pipeline.run_explainability_config(config)
    assert again.table.equals(result.table)
    assert again.measurement.method.id == measurement.method.id
    runs = pipeline.explainability_results(config.id)
    assert [m.id for m in runs] == [measurement.id, again.measurement.id]

    # another seed: other permutations and resamples, the same ranking
    other = pipeline.create_explainability_config(
        "scorer", last_records=50, features=["strong", "weak"], seed=4, repeats=2
    )
    moved = _by_feature(pipeline.run_explainability_config(other))
    assert moved["strong"]["low"] > moved["weak"]["high"]

    assert pipeline.list_explainability_configs() == [config, other]
    assert pipeline.get_explainability_config(other.id) == other
    with pytest.raises(errors.NotFoundError, match="has no explainability config 'nope'"):
        pipeline.get_explainability_config("nope")


def test_configs_survive_a_restart_and_run_by_id(tmp_path: Path) -> None:
    root = tmp_path / "platform"
    with LocalPlatform(storage_root=root, account=ACCOUNT) as platform:
        pipeline = _traffic(platform, rows=30)
        config = pipeline.create_explainability_config(
            pipeline.definition.services()[0],  # by service id
            start_datetime=datetime(2000, 1, 1),
            features=["strong", "weak"],
            resamples=200,
        )
        first = pipeline.run_explainability_config(config.id)

    with LocalPlatform(storage_root=root, account=ACCOUNT) as platform:
        pipeline = platform.pipelines.get("scored")
        assert pipeline.list_explainability_configs() == [config]
        assert config.start_datetime == datetime(2000, 1, 1, tzinfo=UTC)
        with pytest.raises(errors.ConflictError, match="is not deployed"):
            pipeline.run_explainability_config(config.id)
        pipeline.deploy(version=1)
        result = pipeline.run_explainability_config(config.id)
        assert result.rows == 30
        assert result.table.equals(first.table)
        assert len(pipeline.explainability_results(config)) == 2


def test_what_is_refused(platform: LocalPlatform) -> None:
    pipeline = _traffic(platform, rows=10)
    create = pipeline.create_explainability_config
    with pytest.raises(
        errors.ValidationError, match="no step of the pipeline calls a service 'nope'"
    ):
        create("nope")
    with pytest.raises(errors.ValidationError, match="is not a step index"):
        create(3)
    with pytest.raises(errors.ValidationError, match="not before end_datetime"):
        create("scorer", start_datetime=datetime(2001, 1, 1), end_datetime=datetime(2000, 1, 1))
    with pytest.raises(errors.ValidationError, match="last_records must be an integer"):
        create("scorer", last_records=0)
    with pytest.raises(errors.ValidationError, match="method must be one of"):
        create("scorer", method="lime")
    with pytest.raises(errors.ValidationError, match="has no output field 'label'"):
        create("scorer", output="label")

    # an empty window: refused when it runs, saying what the log holds
    future = create("scorer", start_datetime=datetime(2100, 1, 1), features=["strong"])
    with pytest.raises(
        errors.ValidationError, match=r"holds no logged records \(the log holds 10\)"
    ):
        pipeline.run_explainability_config(future.id)

    # non-numeric features, named or by default, are refused with their names
    named = create("scorer", features=["strong", "note"])
    with pytest.raises(errors.ValidationError, match=r"features 'note' \(string\) are not numeric"):
        pipeline.run_explainability_config(named)
    every = create("scorer")
    with pytest.raises(
        errors.ValidationError,
        match=r"'note' \(string\) are not numeric.*features=\[\.\.\.\] \(strong, weak, count\)",
    ):
        pipeline.run_explainability_config(every)
    unknown = create("scorer", features=["missing"])
    with pytest.raises(errors.ValidationError, match=r"features \['missing'\] are not input"):
        pipeline.run_explainability_config(unknown)

    # a declared input schema lets the features be checked when the config is made
    declared = platform.pipelines.create("declared")
    declared.add_model_step(pipeline.definition.services()[0])
    declared.set_input_schema(pa.schema([("strong", pa.float64()), ("note", pa.string())]))
    with pytest.raises(errors.ValidationError, match=r"'note' \(string\) are not numeric"):
        declared.create_explainability_config("scorer", features=["note"])

    # a service whose input is another step's output, not the logged input
    chained = platform.pipelines.create("chained")
    second = platform.inferenceservices.create_mock(
        mocks.Regressor, account=ACCOUNT, name="second", kwargs={"weights": {"score": 1.0}}
    )
    chained.add_model_step(pipeline.definition.services()[0])
    chained.add_model_step(second)
    with pytest.raises(errors.ValidationError, match="its input is an earlier step's output"):
        chained.create_explainability_config("second")


def test_kernelshap_without_shap_says_how_to_install_it(
    platform: LocalPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = _traffic(platform, rows=5)
    monkeypatch.setitem(sys.modules, "shap", None)  # import shap now fails
    with pytest.raises(errors.ValidationError, match=r"needs the shap package.*pip install shap"):
        pipeline.create_explainability_config("scorer", method="kernelshap")


@pytest.mark.skipif(importlib.util.find_spec("shap") is None, reason="shap is not installed")
def test_kernelshap_attributions_rank_the_features(platform: LocalPlatform) -> None:
    pipeline = _traffic(platform, rows=30)
    config = pipeline.create_explainability_config(
        "scorer",
        last_records=20,
        features=["strong", "weak", "count"],
        method="kernelshap",
        background=8,
        seed=1,
    )
    result = pipeline.run_explainability_config(config)
    found = _by_feature(result)
    assert all(row["method"] == "kernelshap" and row["n"] == 20 for row in found.values())
    assert found["weak"]["high"] == pytest.approx(0.0, abs=1e-9)
    assert found["strong"]["low"] > found["count"]["high"] > found["weak"]["high"]
    again = pipeline.run_explainability_config(config.id)
    assert again.table.equals(result.table)
