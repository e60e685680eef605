"""Pipelines on LocalPlatform: every step kind, splits, shadows, validations, versions and
rollback, input kinds, failing steps."""

from __future__ import annotations

import importlib
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from tests.conftest import ACCOUNT

from assay import errors
from assay.local import LocalPlatform, mocks
from assay.pipelines import Pipeline, PipelineStepError
from assay.pipelines.definition import ValidationsStep
from assay.pipelines.execution import hash_point
from assay.pipelines.validations import parse_check

pd: Any = importlib.import_module("pandas")  # no type stubs installed


@pytest.fixture
def services(platform: LocalPlatform) -> dict[str, Any]:
    create = platform.inferenceservices.create_mock
    return {
        "a": create(mocks.Classifier, account=ACCOUNT, name="clf-a", kwargs={"seed": 1}),
        "b": create(mocks.Classifier, account=ACCOUNT, name="clf-b", kwargs={"seed": 2}),
        "c": create(mocks.Classifier, account=ACCOUNT, name="clf-c", kwargs={"seed": 3}),
        "text": create(mocks.TextCompletion, account=ACCOUNT, name="text", kwargs={"seed": 1}),
        "faulty": create(
            mocks.Faulty, account=ACCOUNT, name="faulty", kwargs={"error_rate": 1.0, "seed": 1}
        ),
    }


def _pipeline(platform: LocalPlatform, name: str = "p", **kwargs: Any) -> Pipeline:
    return Pipeline(platform, name, account=ACCOUNT, **kwargs)


def _routes(result: list[dict[str, Any]]) -> Counter[str]:
    return Counter(r["metadata.answered_by"] for r in result)


def test_model_step_answers_with_in_out_and_metadata(
    platform: LocalPlatform, services: dict[str, Any]
) -> None:
    records: list[pa.Table] = []
    pipeline = _pipeline(platform, on_record=records.append).add_model_step(services["a"])
    version = pipeline.deploy()
    result = pipeline.infer({"text": "great food"}, metadata=True)
    assert result["in.text"] == "great food" and result["out.label"] == "positive"
    assert result["metadata.answered_by"] == "clf-a"
    assert result["metadata.pipeline_version"] == version.version == 1
    assert len(result["metadata.step_elapsed_ms"]) == 1
    assert "metadata.pipeline" not in pipeline.infer({"text": "x"})
    assert [t.num_rows for t in records] == [1, 1]
    assert "metadata.answered_by" in records[0].column_names  # the log always gets metadata


def test_chained_multi_model_audit_and_select(
    platform: LocalPlatform, services: dict[str, Any]
) -> None:
    pipeline = _pipeline(platform).add_multi_model_step([services["a"], services["text"]])
    pipeline.deploy()
    result = pipeline.infer({"text": "fine"}, metadata=True)
    # one output from the classifier, two from the text completion
    assert "out.label" in result and "out.1.text" in result and "out.2.text" in result
    assert result["metadata.answered_by"] == "clf-a,text"

    pipeline.add_audit("1:")
    pipeline.deploy()
    result = pipeline.infer({"text": "fine"}, metadata=True)
    assert result["out.text"].startswith("fine") and "out.1.text" in result
    assert "out.label" not in result

    pipeline.add_select(1)
    pipeline.deploy()
    result = pipeline.infer({"text": "fine"}, metadata=True)
    assert "out.1.text" not in result and result["out.text"].startswith("fine")

    # a model step reads the previous step's first output
    chained = _pipeline(platform, "chain").add_model_step(services["text"])
    chained.add_model_step(services["a"]).deploy()
    result = chained.infer({"text": "awful"}, metadata=True)
    assert result["metadata.answered_by"] == "clf-a" and "out.label" in result


def test_steps_replace_remove_clear(platform: LocalPlatform, services: dict[str, Any]) -> None:
    pipeline = _pipeline(platform).add_model_step(services["a"]).add_select(0)
    pipeline.add_key_split(services["a"], "lang", {"fr": services["b"]})
    pipeline.add_random_split([(1, services["a"]), (2, services["b"])], hash_key="user")
    pipeline.add_shadow_deploy(services["a"], [services["b"]])
    pipeline.add_audit(":3").add_multi_model_step([services["a"], services["b"]])
    pipeline.add_validations(neg="out.label == 'negative'")
    steps = pipeline.steps()
    assert steps[0] == "0: model clf-a" and "key split on 'lang'" in steps[2]
    # a shadow deploy is three steps: multi-model, audit, select
    assert "sticky on 'user'" in steps[3] and "shadow deploy" in steps[4]
    assert steps[5].startswith("5: audit services [1:]") and steps[6].startswith("6: select ")
    assert steps[7] == "7: audit [:3]" and steps[9].startswith("9: validations neg")
    pipeline.replace_with_model_step(0, services["b"])
    pipeline.replace_with_select(1, 2)
    pipeline.replace_with_audit(7, "0:2")
    pipeline.replace_with_key_split(2, services["b"], "lang", {"en": services["a"]})
    pipeline.replace_with_random_split(3, [(1, services["c"])])
    pipeline.replace_with_multi_model_step(8, [services["c"]])
    pipeline.replace_with_validations(9, neg="out.label == 'neutral'")
    # replacing a shadow deploy: its first step by the new three, then its other two removed
    pipeline.replace_with_shadow_deploy(4, services["b"], [services["c"]])
    pipeline.remove_step(7).remove_step(7)
    steps = pipeline.steps()
    assert steps[0] == "0: model clf-b" and steps[1] == "1: select 2"
    assert steps[4] == (
        "4: multi-model [clf-b, clf-c] (shadow deploy: a challenger's failure is recorded)"
    )
    assert steps[7] == "7: audit [0:2]" and "neutral" in steps[9]
    pipeline.remove_step(1)
    assert len(pipeline.steps()) == 9
    with pytest.raises(errors.ValidationError, match="no step 9"):
        pipeline.remove_step(9)
    pipeline.clear()
    assert pipeline.steps() == []


def test_bad_input_is_refused_at_once(platform: LocalPlatform, services: dict[str, Any]) -> None:
    pipeline = _pipeline(platform)
    with pytest.raises(errors.NotFoundError, match="0" * 32):
        pipeline.add_model_step("0" * 32)
    with pytest.raises(errors.ValidationError, match="not a positive"):
        pipeline.add_random_split([(0, services["a"]), (1, services["b"])])
    with pytest.raises(errors.ValidationError, match="not a positive"):
        pipeline.add_random_split([(-1, services["a"])])
    for bad in ("1", "a:b", "1:2:3", "", "::"):
        with pytest.raises(errors.ValidationError, match="does not parse"):
            pipeline.add_audit(bad)
    with pytest.raises(errors.ValidationError, match="'count'"):
        pipeline.add_validations(count="out.label == 'x'")
    pipeline.add_model_step(services["a"])
    with pytest.raises(errors.ValidationError, match=r"unknown column 'out.score'"):
        pipeline.add_validations(high="out.score > 0.9")
    with pytest.raises(errors.ValidationError, match="columns start with"):
        pipeline.add_validations(high="label == 'x'")
    with pytest.raises(errors.ValidationError, match="distinct names"):
        twin = platform.inferenceservices.create_mock(
            mocks.Classifier, account=ACCOUNT, name="clf-b"
        )
        pipeline.add_shadow_deploy(services["a"], [services["b"], twin])
    with pytest.raises(errors.ConflictError, match="not deployed"):
        pipeline.infer({"text": "x"})
    with pytest.raises(errors.ValidationError, match="no step that calls a service"):
        _pipeline(platform, "empty").add_select(0).deploy()
    with pytest.raises(errors.ValidationError, match="pipeline name"):
        _pipeline(platform, "bad name")


@pytest.mark.parametrize(
    "source",
    [
        "__import__('os')",
        "out.label.upper()",
        "out.scores[0]",
        "lambda: 1",
        "out.label in ('a', 'b')",
        "out.label is 'x'",
        "(1).real",
        "out.label ==",
        "[1, 2]",
    ],
)
def test_expressions_outside_the_language_are_refused(source: str) -> None:
    with pytest.raises(errors.ValidationError, match="'bad'"):
        parse_check("bad", source)


def test_key_split_routes_on_any_json_value(
    platform: LocalPlatform, services: dict[str, Any]
) -> None:
    pipeline = _pipeline(platform)
    pipeline.add_key_split(services["a"], "group", {"x": services["b"], 7: services["c"]})
    pipeline.deploy()
    rows = [{"text": "t", "group": g} for g in ("x", 7, "7", None, "y")]
    result = pipeline.infer(rows, metadata=True)
    assert [r["metadata.answered_by"] for r in result] == [
        "clf-b",
        "clf-c",
        "clf-a",
        "clf-a",
        "clf-a",
    ]
    assert pipeline.infer({"text": "no group"}, metadata=True)["metadata.answered_by"] == "clf-a"


def _within(count: int, n: int, p: float, sigmas: float = 5.0) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def test_random_split_ratios_and_stickiness(
    platform: LocalPlatform, services: dict[str, Any]
) -> None:
    n = 2000
    pipeline = _pipeline(platform)
    pipeline.add_random_split(
        [(1, services["a"]), (3, services["b"])], hash_key="user", hash_key_mode="hash"
    )
    pipeline.deploy()
    keys: list[Any] = [f"user-{i}" for i in range(n // 2)] + list(range(n // 4))
    keys += [{"id": i} for i in range(n // 8)] + [[i, "x"] for i in range(n // 8)]
    rows = [{"text": "t", "user": key} for key in keys]
    first = pipeline.infer(rows, metadata=True)
    routes = _routes(first)
    assert _within(routes["clf-a"], n, 0.25) and _within(routes["clf-b"], n, 0.75), routes
    again = pipeline.parallel_infer(list(reversed(rows)), concurrency=4, metadata=True)
    assert [r["metadata.answered_by"] for r in reversed(again)] == [
        r["metadata.answered_by"] for r in first
    ]
    assert hash_point({"a": 1, "b": 2}) == hash_point({"b": 2, "a": 1})
    assert hash_point(1) != hash_point("1") and 0 <= hash_point(None) < 1

    unkeyed = _pipeline(platform, "unkeyed")
    unkeyed.add_random_split([(1, services["a"]), (1, services["b"]), (2, services["c"])])
    unkeyed.deploy()
    routes = _routes(unkeyed.infer([{"text": "t"}] * n, metadata=True))
    assert _within(routes["clf-a"], n, 0.25) and _within(routes["clf-c"], n, 0.5), routes


def test_shadow_deploy_records_challengers(
    platform: LocalPlatform, services: dict[str, Any]
) -> None:
    pipeline = _pipeline(platform)
    pipeline.add_shadow_deploy(services["a"], [services["b"], services["text"], services["faulty"]])
    pipeline.add_validations(disagree="out.label != out_clf_b.label")
    pipeline.deploy()
    result = pipeline.infer({"text": "lovely but slow"}, metadata=True)
    assert result["metadata.answered_by"] == "clf-a"
    assert {"out_clf_b.label", "out_clf_b.scores", "out_text.text", "out_text.1.text"} <= set(
        result
    )
    assert "TransientServiceError" in result["out_faulty.error"]  # a challenger never breaks it
    assert result["anomaly.disagree"] == (result["out.label"] != result["out_clf_b.label"])


def test_validations_true_false_and_null(platform: LocalPlatform, services: dict[str, Any]) -> None:
    pipeline = _pipeline(platform).add_model_step(services["a"])
    pipeline.add_validations(
        positive="out.label = 'positive' AND in.text != ''",
        short="in.n * 2 + 1 < 10 / 2",
        missing="in.flag is None",
        either="not (out.label == 'negative' or in.n > 100)",
    )
    pipeline.deploy()
    rows = [
        {"text": "great great", "n": 1, "flag": True},
        {"text": "awful awful", "n": 5, "flag": None},
        {"text": "great", "n": None, "flag": False},
    ]
    table = pipeline.infer(pa.Table.from_pylist(rows))
    assert table.column("anomaly.positive").to_pylist() == [True, False, True]
    assert table.column("anomaly.short").to_pylist() == [True, False, None]
    assert table.column("anomaly.missing").to_pylist() == [False, True, False]
    assert table.column("anomaly.either").to_pylist() == [True, False, None]
    assert table.column("anomaly.count").to_pylist() == [3, 1, 1]  # nulls are not counted

    bad = _pipeline(platform, "bad").add_model_step(services["a"])
    bad.add_validations(nocol="in.nothere > 1", notbool="in.n + 1").deploy()
    # a check that cannot run fails the validations step (the rows go to the failure log)
    with pytest.raises(PipelineStepError, match=r"step 1: validations.*'nocol'.*in.nothere"):
        bad.infer({"text": "x", "n": 1})
    bad.replace_with_validations(1, notbool="in.n + 1").deploy()
    with pytest.raises(PipelineStepError, match=r"'notbool'.*not booleans"):
        bad.infer({"text": "x", "n": 1})
    bad.replace_with_validations(1, mixed="in.text > 1").deploy()
    with pytest.raises(PipelineStepError, match=r"'mixed'.*cannot be evaluated"):
        bad.infer({"text": "x"})


def test_versions_are_immutable_and_rollback_restores_everything(
    platform: LocalPlatform, services: dict[str, Any]
) -> None:
    pipeline = _pipeline(platform)
    pipeline.add_key_split(services["a"], "g", {"b": services["b"]})
    pipeline.add_validations(neg="out.label == 'negative'")
    first = pipeline.deploy()
    pipeline.clear().add_shadow_deploy(services["a"], [services["b"]])
    pipeline.add_validations(pos="out.label == 'positive'")
    second = pipeline.deploy()
    pipeline.clear().add_model_step(services["c"])
    third = pipeline.deploy(replicas=2)
    assert [v.version for v in pipeline.versions()] == [1, 2, 3]
    assert pipeline.versions()[0].definition == first.definition  # never rewritten

    restored = pipeline.deploy(version=2)
    assert restored.definition == second.definition and pipeline.deployed_version == restored
    assert pipeline.definition == second.definition
    result = pipeline.infer({"text": "good", "u": 5}, metadata=True)
    assert result["metadata.pipeline_version"] == 2
    assert "anomaly.pos" in result and "out_clf_b.label" in result
    restored = pipeline.deploy(version=1)
    result = pipeline.infer({"text": "bad", "g": "b"}, metadata=True)
    assert result["metadata.answered_by"] == "clf-b" and "anomaly.neg" in result
    assert [v.version for v in pipeline.versions()] == [1, 2, 3]
    with pytest.raises(errors.NotFoundError, match=r"no version 9.*\[1, 2, 3\]"):
        pipeline.deploy(version=9)

    # another handle on the same pipeline starts from the latest version, and finds the
    # deployed one running (the platform records it)
    reopened = _pipeline(platform)
    assert reopened.definition == third.definition and reopened.deployed_version == restored
    assert reopened.infer({"text": "bad", "g": "b"})["out.label"] == "negative"
    pipeline.undeploy()
    assert reopened.deployed_version is None
    for handle in (pipeline, reopened):
        with pytest.raises(errors.ConflictError, match="not deployed"):
            handle.infer({"text": "x"})


def test_input_kinds_round_trip(
    platform: LocalPlatform, services: dict[str, Any], tmp_path: Path
) -> None:
    pipeline = _pipeline(platform).add_model_step(services["a"])
    pipeline.deploy()
    rows = [{"text": "good"}, {"text": "bad"}]
    assert isinstance(pipeline.infer(rows[0]), dict)
    as_list = pipeline.infer(rows)
    assert [r["in.text"] for r in as_list] == ["good", "bad"]
    frame = pipeline.infer(pd.DataFrame(rows))
    assert isinstance(frame, pd.DataFrame) and list(frame["out.label"]) == [
        r["out.label"] for r in as_list
    ]
    table = pipeline.infer(pa.Table.from_pylist(rows))
    assert isinstance(table, pa.Table) and table.column_names[0] == "time"
    assert table.schema.field("time").type == pa.timestamp("us", tz="UTC")

    feather.write_feather(pa.Table.from_pylist(rows), tmp_path / "in.arrow")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    (tmp_path / "in.json").write_text(json.dumps(rows))
    (tmp_path / "in.jsonl").write_text("\n".join(map(json.dumps, rows)))
    for name in ("in.arrow", "in.parquet"):
        assert pipeline.infer_from_file(tmp_path / name).column("in.text").to_pylist() == [
            "good",
            "bad",
        ]
    for name in ("in.json", "in.jsonl"):
        assert [r["in.text"] for r in pipeline.infer_from_file(tmp_path / name)] == ["good", "bad"]
    with pytest.raises(errors.ValidationError, match="unknown file type"):
        pipeline.infer_from_file(tmp_path / "in.csv")
    with pytest.raises(errors.ValidationError, match="list of dicts"):
        pipeline.infer("text")
    parallel = pipeline.parallel_infer(rows * 10, concurrency=4)
    assert [r["in.text"] for r in parallel] == ["good", "bad"] * 10


def test_failing_step_names_the_step_and_records_the_failure(
    platform: LocalPlatform, services: dict[str, Any]
) -> None:
    records: list[pa.Table] = []
    failures: list[pa.Table] = []
    pipeline = _pipeline(platform, on_record=records.append, on_failure=failures.append)
    pipeline.add_model_step(services["a"]).add_select(0).add_model_step(services["faulty"])
    pipeline.deploy()
    with pytest.raises(PipelineStepError, match="step 2: model faulty failed") as info:
        pipeline.infer([{"text": "x"}, {"text": "y"}])
    assert info.value.step == 2
    assert len(failures) == 1 and failures[0].num_rows == 2 and records == []
    failed = failures[0].to_pylist()[0]
    assert failed["in.text"] == "x" and failed["error.step"] == 2
    assert "TransientServiceError" in failed["error.message"]

    select = _pipeline(platform, "select", on_failure=failures.append)
    select.add_model_step(services["a"]).add_select(3).deploy()
    with pytest.raises(PipelineStepError, match=r"select 3.*gave 1 output"):
        select.infer({"text": "x"})
    # a request the service cannot read fails the first step
    with pytest.raises(PipelineStepError, match="step 0: model clf-a"):
        select.infer({"prompt": "x"})
    assert [t.num_rows for t in failures] == [2, 1, 1]


def test_polars_validations_are_evaluated_stored_and_restored(
    platform: LocalPlatform, services: dict[str, Any]
) -> None:
    pl: Any = importlib.import_module("polars")
    pipeline = _pipeline(platform, "polars-checks").add_model_step(services["a"])
    with pytest.raises(errors.ValidationError, match=r"unknown column 'out\.nope'"):
        pipeline.add_validations(bad=pl.col("out.nope") > 1)
    pipeline.add_validations(
        negative=pl.col("out.label") == "negative",
        long=pl.col("in.text").str.len_chars() > 10,
        plain="out.label == 'positive'",  # the two kinds side by side
    )
    first = pipeline.deploy()
    table = pipeline.infer(
        pa.table({"text": ["awful", "a great and friendly place", "fine"]}), metadata=True
    )
    labels = table.column("out.label").to_pylist()
    assert table.column("anomaly.negative").to_pylist() == [v == "negative" for v in labels]
    assert table.column("anomaly.long").to_pylist() == [False, True, False]
    assert table.column("anomaly.count").to_pylist() == [
        (v == "negative") + (v == "positive") + long
        for v, long in zip(labels, [False, True, False], strict=True)
    ]
    stored = pipeline.versions()[-1].definition.steps[-1]
    assert isinstance(stored, ValidationsStep)
    assert "polars" in stored.checks["negative"] and "polarsVersion" in stored.checks["long"]
    assert "negative: polars expression" in pipeline.steps()[-1]

    # a rollback restores the polars checks too, read back from the store
    pipeline.replace_with_validations(1, plain="out.label == 'neutral'").deploy()
    assert "anomaly.negative" not in pipeline.infer({"text": "awful"})
    pipeline.deploy(version=first.version)
    assert pipeline.infer({"text": "awful"})["anomaly.negative"] is True
    fresh = _pipeline(platform, "polars-checks")  # another handle: the latest stored version
    assert fresh.definition == pipeline.versions()[-1].definition
