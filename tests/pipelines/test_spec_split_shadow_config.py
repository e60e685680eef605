"""The pipeline API's documented behaviour (``/work/shared/reference/wallaroo-pipeline.txt``):
a random split's ``hash_key`` as the draw itself, a shadow deploy as three steps (multi
model, audit, select), ``add_validation`` / ``replace_with_alert``,
``get_pipeline_configuration``, ``model_configs`` and the HTML tables of Jupyter."""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa
import pytest
from tests.conftest import ACCOUNT

from assay import errors
from assay.local import LocalPlatform, mocks
from assay.pipelines import Pipeline, PipelineDefinition, PipelineStepError
from assay.pipelines.definition import AuditStep, MultiModelStep, RandomSplitStep, SelectStep
from assay.pipelines.group import PipelineList
from assay.pipelines.versions import KIND, VersionStore


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


def _answered(pipeline: Pipeline, rows: list[dict[str, Any]]) -> list[str]:
    return [r["metadata.answered_by"] for r in pipeline.infer(rows, metadata=True)]


# -- random split: hash_key ----------------------------------------------------------------


def test_hash_key_value_is_the_draw_with_the_documented_boundaries(
    platform: LocalPlatform, services: dict[str, Any]
) -> None:
    pipeline = _pipeline(platform)
    pipeline.add_random_split([(1, services["a"]), (1, services["b"])], hash_key="k").deploy()
    draws: list[Any] = [0.0, 0.4, 0.49999, 0.5, 0.6, 1.0, 0, 1]
    # two equal weights: [0.0, 0.5) the first, [0.5, 1.0] the second (0.4 → first, as documented)
    expected = ["clf-a", "clf-a", "clf-a", "clf-b", "clf-b", "clf-b", "clf-a", "clf-b"]
    for _ in range(3):  # the value decides, every time
        assert _answered(pipeline, [{"text": "t", "k": d} for d in draws]) == expected

    weighted = _pipeline(platform, "weighted")
    weighted.add_random_split(
        [(1, services["a"]), (1, services["b"]), (2, services["c"])], hash_key="k"
    ).deploy()
    rows = [{"text": "t", "k": d} for d in (0.0, 0.2499, 0.25, 0.4999, 0.5, 0.75, 1.0)]
    assert _answered(weighted, rows) == [
        "clf-a",
        "clf-a",
        "clf-b",
        "clf-b",
        "clf-c",
        "clf-c",
        "clf-c",
    ]


def test_a_missing_or_null_hash_key_gets_a_random_draw(
    platform: LocalPlatform, services: dict[str, Any]
) -> None:
    pipeline = _pipeline(platform)
    pipeline.add_random_split([(1, services["a"]), (1, services["b"])], hash_key="k").deploy()
    routes = _answered(pipeline, [{"text": "t"}] * 200 + [{"text": "t", "k": None}] * 200)
    missing, null = routes[:200], routes[200:]
    for drawn in (missing, null):  # both routes taken: a random draw, not a fixed one
        assert 40 < drawn.count("clf-a") < 160, drawn.count("clf-a")
    # a table holds a missing field as null: the same random draw
    table = pa.Table.from_pylist([{"text": "t", "k": 0.9}, {"text": "t"}])
    assert pipeline.infer(table, metadata=True).column("metadata.answered_by")[0].as_py() == "clf-b"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (-0.1, "-0.1 (a number)"),
        (1.5, "1.5 (a number)"),
        ("0.4", "'0.4' (a str)"),
        (True, "True (a bool)"),
        (math.nan, "nan (a number)"),
        ({"p": 0.4}, "{'p': 0.4} (a dict)"),
        ([0.4], "[0.4] (a list)"),
    ],
)
def test_a_bad_hash_key_value_fails_the_row_naming_key_value_and_range(
    platform: LocalPlatform, services: dict[str, Any], value: Any, shown: str
) -> None:
    failures: list[pa.Table] = []
    records: list[pa.Table] = []
    pipeline = _pipeline(platform, on_failure=failures.append, on_record=records.append)
    pipeline.add_random_split([(1, services["a"]), (1, services["b"])], hash_key="k").deploy()
    with pytest.raises(PipelineStepError, match=r"step 0: random split.*1 of 2") as raised:
        pipeline.infer([{"text": "good", "k": 0.4}, {"text": "bad", "k": value}])
    assert "hash_key 'k'" in str(raised.value) and "[0.0, 1.0]" in str(raised.value)
    assert records[0].column("in.text").to_pylist() == ["good"]  # the other row passed
    failed = failures[0].to_pylist()
    assert len(failed) == 1 and failed[0]["in.text"] == "bad"
    assert failed[0]["error.step"] == 0 and failed[0]["error.step_kind"] == "random_split"
    message = failed[0]["error.message"]
    assert message.startswith("ValidationError: random split: hash_key 'k' is ")
    assert shown in message and "not a number in [0.0, 1.0]" in message
    assert "hash_key_mode='hash'" in message  # how to route on any value


def test_a_bad_hash_key_value_is_in_the_failure_log(
    platform: LocalPlatform, services: dict[str, Any]
) -> None:
    pipeline = platform.pipelines.create("sticky")
    pipeline.add_random_split([(1, services["a"]), (1, services["b"])], hash_key="k").deploy()
    with pytest.raises(PipelineStepError):
        pipeline.infer({"text": "bad", "k": 1.5})
    pipeline.log.flush()
    logged = pipeline.logs(failures=True, arrow=True).to_pylist()
    assert [r["in.k"] for r in logged] == [1.5]
    assert "hash_key 'k' is 1.5" in logged[0]["error"] and "[0.0, 1.0]" in logged[0]["error"]


def test_hash_key_mode_hash_keeps_hashing_any_value(
    platform: LocalPlatform, services: dict[str, Any]
) -> None:
    pipeline = _pipeline(platform)
    pipeline.add_random_split(
        [(1, services["a"]), (1, services["b"])], hash_key="user", hash_key_mode="hash"
    )
    assert pipeline.steps()[0].endswith("(sticky on the hash of 'user')")
    pipeline.deploy()
    users: list[Any] = ["u1", "0.4", 1.5, -0.1, None, {"id": 3}, True]
    rows = [{"text": "t", "user": u} for u in users]
    first = _answered(pipeline, rows)
    assert _answered(pipeline, rows) == first and set(first) == {"clf-a", "clf-b"}
    with pytest.raises(errors.ValidationError, match="hash_key_mode must be 'value'"):
        pipeline.add_random_split([(1, services["a"])], hash_key="user", hash_key_mode="md5")
    value = _pipeline(platform, "value").add_random_split([(1, services["a"])], hash_key="u")
    assert value.steps()[0].endswith("(sticky on 'u', a number in [0.0, 1.0])")
    assert value.definition.steps[0] == RandomSplitStep(
        weighted=[(1.0, services["a"].id)], hash_key="u", hash_key_mode="value"
    )


def test_a_version_1_hash_key_is_read_as_the_hash_it_was() -> None:
    old = {
        "definitionVersion": 1,
        "steps": [{"kind": "random_split", "weighted": [[1, "x"], [1, "y"]], "hash_key": "user"}],
    }
    definition = PipelineDefinition.model_validate(old)
    assert definition.definitionVersion == 2
    step = definition.steps[0]
    assert isinstance(step, RandomSplitStep) and step.hash_key_mode == "hash"
    # in the current format, a split without hash_key_mode draws on the value
    new = {**old, "definitionVersion": 2}
    step = PipelineDefinition.model_validate(new).steps[0]
    assert isinstance(step, RandomSplitStep) and step.hash_key_mode == "value"


# -- shadow deploy: three steps --------------------------------------------------------------


def test_shadow_deploy_is_three_steps_with_the_same_record(
    platform: LocalPlatform, services: dict[str, Any]
) -> None:
    pipeline = _pipeline(platform)
    pipeline.add_shadow_deploy(services["a"], [services["b"], services["text"], services["faulty"]])
    assert [s.kind for s in pipeline.definition.steps] == ["multi_model", "audit", "select"]
    assert pipeline.steps() == [
        "0: multi-model [clf-a, clf-b, text, faulty] (shadow deploy: a challenger's failure is "
        "recorded)",
        "1: audit services [1:] (shadow deploy: recorded as out_<name>.*)",
        "2: select service 0 (shadow deploy: its outputs answer)",
    ]
    pipeline.add_validation("disagree", "out.label != out_clf_b.label")
    pipeline.deploy()
    result = pipeline.infer({"text": "lovely but slow"}, metadata=True)
    assert result["metadata.answered_by"] == "clf-a"
    assert {"out.label", "out.scores", "out_clf_b.label", "out_clf_b.scores"} <= set(result)
    assert {"out_text.text", "out_text.1.text"} <= set(result)
    assert "TransientServiceError" in result["out_faulty.error"]
    assert not any(c.startswith("out.1") for c in result)  # only the champion answers
    assert result["anomaly.disagree"] == (result["out.label"] != result["out_clf_b.label"])
    assert len(result["metadata.step_elapsed_ms"]) == 3

    # a champion with several outputs keeps them all
    text = _pipeline(platform, "text").add_shadow_deploy(services["text"], [services["a"]])
    text.deploy()
    result = text.infer({"text": "hi"}, metadata=True)
    assert {"out.text", "out.1.text", "out_clf_a.label"} <= set(result)
    assert result["metadata.answered_by"] == "text"


@pytest.fixture
def shadowed(platform: LocalPlatform, services: dict[str, Any]) -> Pipeline:
    pipeline = _pipeline(platform, "shadowed")
    return pipeline.add_shadow_deploy(services["a"], [services["b"], services["text"]])


def _columns(result: dict[str, Any]) -> set[str]:
    return {c for c in result if c.startswith("out")}


def test_removing_each_shadow_step(shadowed: Pipeline, services: dict[str, Any]) -> None:
    # without the audit: the champion answers, the challengers are not recorded
    shadowed.remove_step(1).deploy()
    result = shadowed.infer({"text": "x"}, metadata=True)
    assert result["metadata.answered_by"] == "clf-a"
    assert _columns(result) == {"out.label", "out.scores"}

    # without the select: every output remains, the challengers are recorded too
    shadowed.clear().add_shadow_deploy(services["a"], [services["b"], services["text"]])
    shadowed.remove_step(2).deploy()
    result = shadowed.infer({"text": "x"}, metadata=True)
    assert result["metadata.answered_by"] == "clf-a,clf-b,text"
    assert {"out.label", "out.1.label", "out.2.text", "out.3.text", "out_clf_b.label"} <= _columns(
        result
    )

    # without the multi-model step nothing calls a service
    shadowed.clear().add_shadow_deploy(services["a"], [services["b"], services["text"]])
    shadowed.remove_step(0)
    assert [s.kind for s in shadowed.definition.steps] == ["audit", "select"]
    with pytest.raises(errors.ValidationError, match="no step that calls a service"):
        shadowed.deploy()
    shadowed.remove_step(0).remove_step(0)
    assert shadowed.steps() == []


def test_replacing_each_shadow_step(
    shadowed: Pipeline, platform: LocalPlatform, services: dict[str, Any]
) -> None:
    # the multi-model step by a model step: its outputs answer, nothing to record
    shadowed.replace_with_model_step(0, services["c"]).deploy()
    result = shadowed.infer({"text": "x"}, metadata=True)
    assert result["metadata.answered_by"] == "clf-c" and _columns(result) == {
        "out.label",
        "out.scores",
    }

    # by a plain multi-model step: a failing service fails the row
    shadowed.replace_with_multi_model_step(0, [services["a"], services["faulty"]]).deploy()
    with pytest.raises(PipelineStepError, match="step 0: multi-model"):
        shadowed.infer({"text": "x"})
    shadowed.replace_with_multi_model_step(0, [services["a"], services["b"]]).deploy()
    result = shadowed.infer({"text": "x"}, metadata=True)
    assert result["metadata.answered_by"] == "clf-a" and "out_clf_b.label" in result

    # the audit by an audit of outputs: it keeps outputs[1:], so service 0 is now clf-b
    shadowed.replace_with_audit(1, "1:").deploy()
    assert shadowed.steps()[1] == "1: audit [1:]"
    result = shadowed.infer({"text": "x"}, metadata=True)
    assert result["metadata.answered_by"] == "clf-b" and "out_clf_b.label" not in result

    # the select by a select of one output
    shadowed.clear().add_shadow_deploy(services["a"], [services["b"], services["text"]])
    shadowed.replace_with_select(2, 2).deploy()
    assert shadowed.steps()[2] == "2: select 2"
    result = shadowed.infer({"text": "x"}, metadata=True)
    assert result["metadata.answered_by"] == "text" and "out_clf_b.label" in result
    assert _columns(result) >= {"out.text", "out_text.text", "out_text.1.text"}

    # a shadow deploy replacing one step inserts all three
    shadowed.clear().add_model_step(services["c"]).add_validation("neg", "out.label == 'x'")
    shadowed.replace_with_shadow_deploy(0, services["a"], [services["b"]])
    kinds = [s.kind for s in shadowed.definition.steps]
    assert kinds == ["multi_model", "audit", "select", "validations"]


def test_an_old_stored_shadow_step_is_read_as_three_steps(
    platform: LocalPlatform, services: dict[str, Any]
) -> None:
    a, b = services["a"].id, services["b"].id
    store = VersionStore(platform.core.store, pipeline="legacy", account=ACCOUNT)
    platform.core.store.create(  # as version 1 of the format stored it
        {
            "id": store._id(1),
            "kind": KIND,
            "account": ACCOUNT,
            "name": "legacy",
            "status": "Ready",
            "version": 1,
            "created": "2024-01-01T00:00:00+00:00",
            "definition": {
                "definitionVersion": 1,
                "steps": [
                    {"kind": "shadow", "champion": a, "challengers": [b]},
                    {"kind": "validations", "checks": {"differ": "out.label != out_clf_b.label"}},
                ],
                "inputSchema": None,
            },
        }
    )
    pipeline = _pipeline(platform, "legacy")
    assert pipeline.steps()[:3] == [
        "0: multi-model [clf-a, clf-b] (shadow deploy: a challenger's failure is recorded)",
        "1: audit services [1:] (shadow deploy: recorded as out_<name>.*)",
        "2: select service 0 (shadow deploy: its outputs answer)",
    ]
    old = pipeline.versions()[0].definition
    assert old.definitionVersion == 2
    assert old.steps[:3] == [
        MultiModelStep(services=[a, b], shadow=True),
        AuditStep(start=1, unit="service"),
        SelectStep(index=0, unit="service"),
    ]
    pipeline.deploy(version=1)
    result = pipeline.infer({"text": "fine"}, metadata=True)
    assert result["metadata.answered_by"] == "clf-a" and "out_clf_b.label" in result
    assert "anomaly.differ" in result
    config = pipeline.get_pipeline_configuration(1)
    assert [s["kind"] for s in config["definition"]["steps"]] == [
        "multi_model",
        "audit",
        "select",
        "validations",
    ]
    # the next deploy stores the three steps
    stored = pipeline.deploy()
    record = platform.core.store.get(stored.id, kind=KIND)
    assert record is not None
    kinds = [s["kind"] for s in record.doc["definition"]["steps"]]
    assert kinds[:3] == ["multi_model", "audit", "select"]


# -- add_validation, replace_with_alert -----------------------------------------------------


def test_add_validation_and_replace_with_alert(
    platform: LocalPlatform, services: dict[str, Any]
) -> None:
    pipeline = _pipeline(platform).add_model_step(services["a"])
    pipeline.add_validation("neg", "out.label == 'negative'")
    assert pipeline.steps()[1] == "1: validations neg: out.label == 'negative'"
    with pytest.raises(errors.ValidationError, match="'neg' exists already"):
        pipeline.add_validation("neg", "out.label == 'x'")
    with pytest.raises(errors.ValidationError, match="not an identifier"):
        pipeline.add_validation("not a name", "out.label == 'x'")
    pipeline.replace_with_alert(1, "pos", "out.label == 'positive'")
    assert pipeline.steps()[1] == "1: validations pos: out.label == 'positive'"
    pipeline.replace_with_alert(1, "pos", "out.label == 'neutral'")  # its own name, replaced
    with pytest.raises(errors.ValidationError, match=r"unknown column 'out\.nope'"):
        pipeline.replace_with_alert(1, "bad", "out.nope > 1")
    with pytest.raises(errors.ValidationError, match="no step 5"):
        pipeline.replace_with_alert(5, "x", "out.label == 'x'")
    pipeline.replace_with_alert(0, "first", "in.text == 'x'")  # any step may become an alert
    assert pipeline.steps()[0] == "0: validations first: in.text == 'x'"
    pipeline.replace_with_model_step(0, services["a"]).add_validation("first", "in.text == 'x'")
    pipeline.deploy()
    result = pipeline.infer([{"text": "x"}, {"text": "great"}])
    assert [r["anomaly.first"] for r in result] == [True, False]
    assert all(r["anomaly.pos"] == (r["out.label"] == "neutral") for r in result)


# -- get_pipeline_configuration, model_configs ------------------------------------------------


def test_get_pipeline_configuration_by_int_str_or_id(
    platform: LocalPlatform, services: dict[str, Any]
) -> None:
    pipeline = _pipeline(platform).add_model_step(services["a"])
    first = pipeline.deploy()
    pipeline.add_validation("neg", "out.label == 'negative'").deploy()
    config = pipeline.get_pipeline_configuration(1)
    assert config == pipeline.get_pipeline_configuration("1")
    assert config == pipeline.get_pipeline_configuration(first.id)
    assert config["version"] == 1 and config["pipeline"] == "p" and config["account"] == ACCOUNT
    assert config["definition"]["steps"] == [{"kind": "model", "service": services["a"].id}]
    assert config["definition"]["definitionVersion"] == 2
    assert len(pipeline.get_pipeline_configuration(" 2 ")["definition"]["steps"]) == 2
    with pytest.raises(errors.NotFoundError, match=r"no version 3.*\[1, 2\]"):
        pipeline.get_pipeline_configuration(3)
    with pytest.raises(errors.NotFoundError, match="no version 'v1'"):
        pipeline.get_pipeline_configuration("v1")
    with pytest.raises(errors.ValidationError, match="version must be"):
        pipeline.get_pipeline_configuration(True)


def test_model_configs_are_the_services_the_steps_call(
    platform: LocalPlatform, services: dict[str, Any]
) -> None:
    pipeline = _pipeline(platform)
    assert pipeline.model_configs() == []
    pipeline.add_shadow_deploy(services["b"], [services["a"]]).add_model_step(services["b"])
    pipeline.add_key_split(services["c"], "g", {"x": services["a"]})
    configs = pipeline.model_configs()
    assert [c.name for c in configs] == ["clf-b", "clf-a", "clf-c"]
    assert [c.id for c in configs] == [services[k].id for k in ("b", "a", "c")]
    assert all(c.runner.kind == "mock" for c in configs)


# -- HTML tables -------------------------------------------------------------------------------


def test_a_pipeline_displays_as_an_escaped_html_table(
    platform: LocalPlatform, services: dict[str, Any]
) -> None:
    pipeline = _pipeline(platform).add_model_step(services["a"])
    pipeline.add_validation("q", "in.text == '<i>&'")
    page = pipeline._repr_html_()
    assert page.startswith("<table>") and page.endswith("</table>")
    assert "<td" in page and ">p<" in page and "not deployed" in page
    assert "in.text == &#x27;&lt;i&gt;&amp;&#x27;" in page and "<i>" not in page
    pipeline.deploy()
    assert '<td style="text-align: left">1</td>' in pipeline._repr_html_()

    pipeline.name = "<b>&x</b>"  # a name no pipeline can have, shown escaped all the same
    page = pipeline._repr_html_()
    assert "&lt;b&gt;&amp;x&lt;/b&gt;" in page and "<b>" not in page and "&x" not in page


def test_the_list_of_pipelines_displays_as_an_escaped_html_table(
    platform: LocalPlatform, services: dict[str, Any]
) -> None:
    platform.pipelines.create("served").add_model_step(services["a"]).deploy()
    # a stored name that a pipeline could not be given is escaped too
    VersionStore(platform.core.store, pipeline="<b>&x</b>", account=ACCOUNT).add(
        PipelineDefinition()
    )
    listed = platform.pipelines.list()
    assert isinstance(listed, PipelineList) and listed == ["<b>&x</b>", "served"]
    page = listed._repr_html_()
    assert page.startswith("<table>") and "<th>deployed version</th>" in page
    assert "&lt;b&gt;&amp;x&lt;/b&gt;" in page and "<b>" not in page
    rows = {row["name"]: row for row in listed.rows}
    assert rows["served"]["deployed"] == 1 and rows["served"]["versions"] == [1]
    assert rows["<b>&x</b>"]["deployed"] is None and "not deployed" in page
