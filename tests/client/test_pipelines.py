"""``Client.pipelines`` over real HTTP: the same calls as ``LocalPlatform.pipelines`` — build,
deploy, infer every input kind, a failing step, logs, exports, logs → Dataset → Measurement,
and rollback."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest
from tests.client.conftest import ALICE, BOB
from tests.conftest import text_metrics_request

from assay import errors
from assay.analysis.builtin import text
from assay.client import Client
from assay.client._pipelines import Pipelines as RemotePipelines
from assay.client._pipelines import RemotePipeline
from assay.local import mocks
from assay.pipelines import LoggedPipeline, MoreLogRecordsWarning, PipelineStepError
from assay.pipelines.group import Pipelines as LocalPipelines
from assay.schema.status import Status


def _public(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(getattr(cls, name))
        for name in dir(cls)
        if not name.startswith("_") and inspect.isfunction(getattr(cls, name))
    }


#: Methods of the embedded platform's pipelines that the server does not offer yet: an
#: explainability run calls the pipeline's services and stores a Measurement in-process
#: (docs/design/pipelines.md, "Explainability configs").
EMBEDDED_ONLY = {
    "create_explainability_config",
    "explainability_results",
    "get_explainability_config",
    "list_explainability_configs",
    "run_explainability_config",
}


def test_same_methods_and_signatures_as_local() -> None:
    for local, remote in ((LoggedPipeline, RemotePipeline), (LocalPipelines, RemotePipelines)):
        local_methods, remote_methods = _public(local), _public(remote)
        local_methods = {k: v for k, v in local_methods.items() if k not in EMBEDDED_ONLY}
        assert sorted(local_methods) == sorted(remote_methods), local
        for name, signature in local_methods.items():
            assert list(remote_methods[name].parameters) == list(signature.parameters), name
            # the same kinds (positional, keyword-only) and defaults, not only the names
            shapes = [
                [(p.name, p.kind, p.default) for p in s.parameters.values()]
                for s in (remote_methods[name], signature)
            ]
            assert shapes[0] == shapes[1], name
    for name in ("deployed_version", "inference_service", "inference_session"):
        assert isinstance(getattr(RemotePipeline, name), property)


def test_pipeline_through_the_client(alice: Client, tmp_path: Path) -> None:
    pandas = pytest.importorskip("pandas")
    create = alice.inferenceservices.create_mock
    writer = create(mocks.TextCompletion, account=ALICE, name="writer", kwargs={"seed": 1})
    broken = create(mocks.Faulty, account=ALICE, name="broken", kwargs={"error_rate": 1.0})

    pipeline = alice.pipelines.create("assistant")
    assert pipeline.deployed_version is None and pipeline.versions() == []
    with pytest.raises(errors.NotFoundError, match="was ever deployed"):
        alice.pipelines.get("assistant")
    # steps are checked here, as locally
    with pytest.raises(errors.NotFoundError, match="not an InferenceService"):
        pipeline.add_model_step("0" * 32)
    with pytest.raises(errors.ValidationError, match="is refused"):
        pipeline.add_validations(bad="len(in.text) > 3")
    polars = pytest.importorskip("polars")
    pipeline.add_model_step(writer).add_validations(
        first="in.text == 'q0'",
        q1=polars.col("in.text") == "q1",  # a polars check, served
    )
    assert len(pipeline.steps()) == 2 and "writer" in pipeline.steps()[0]
    version = pipeline.deploy()
    assert version.version == 1 and pipeline.deployed_version == version
    assert pipeline.inference_service.runner.kind == "pipeline"
    assert pipeline.inference_session is not None
    # (the parity tests share this server and account: their pipelines are named parity-*)
    assert [n for n in alice.pipelines.list() if not n.startswith("parity-")] == ["assistant"]

    # every input kind comes back as the same kind, with the log's types
    one = pipeline.infer({"text": "q0"})
    assert isinstance(one, dict) and one["anomaly.count"] == 1 and "metadata.pipeline" not in one
    rows = pipeline.infer([{"text": f"q{i}"} for i in range(1, 5)], metadata=True)
    assert [r["in.text"] for r in rows] == ["q1", "q2", "q3", "q4"]
    assert [r["anomaly.q1"] for r in rows] == [True, False, False, False]
    assert rows[0]["metadata.pipeline_version"] == 1
    table = pipeline.parallel_infer(pa.table({"text": [f"t{i}" for i in range(6)]}), 3)
    assert isinstance(table, pa.Table) and table.num_rows == 6
    assert pa.types.is_timestamp(table.schema.field("time").type)
    frame = pipeline.infer(pandas.DataFrame({"text": ["d0", "d1"]}))
    assert isinstance(frame, pandas.DataFrame) and list(frame["in.text"]) == ["d0", "d1"]
    (tmp_path / "rows.jsonl").write_text('{"text": "f0"}\n{"text": "f1"}\n')
    assert len(pipeline.infer_from_file(tmp_path / "rows.jsonl")) == 2

    # the log
    logs = pipeline.logs()
    assert isinstance(logs, pandas.DataFrame) and len(logs) == 15
    with pytest.warns(MoreLogRecordsWarning, match="10 log records returned"):
        newest = pipeline.logs(limit=10, arrow=True)
    assert newest.num_rows == 10
    assert pipeline.logs(limit=None, arrow=True).num_rows == 15
    flagged = pipeline.logs(valid=False, arrow=True).column("in.text").to_pylist()
    assert sorted(flagged) == ["q0", "q1"]
    only = pipeline.logs(dataset=["time", "in"], arrow=True)
    assert set(only.schema.names) == {"time", "in.text"}
    exported = pipeline.export_logs(tmp_path / "exported")
    lines = [
        json.loads(line)
        for path in sorted((tmp_path / "exported").iterdir())
        for line in path.read_text().splitlines()
    ]
    assert exported.complete and exported.records == len(lines) == 15
    assert exported.files[0].name.startswith("assistant-") and exported.files[0].suffix == ".jsonl"
    assert {line["in.text"] for line in lines} >= {"q0", "t5", "d1", "f1"}
    limited = pipeline.export_logs(tmp_path / "arrow", arrow=True, limit=4, file_prefix="p")
    assert limited.records == 4 and not limited.complete
    assert sum(pa.ipc.open_file(str(f)).read_all().num_rows for f in limited.files) == 4
    with pytest.raises(TypeError, match="colour"):
        pipeline.export_logs(tmp_path / "x", colour="red")
    assert pipeline.log_counters()["written"] >= 15

    # a failing step: PipelineStepError with the server's message
    pipeline.replace_with_model_step(0, broken)
    assert pipeline.deploy().version == 2
    with pytest.raises(PipelineStepError, match="step 0") as failed:
        pipeline.infer({"text": "doomed"})
    assert failed.value.step == 0
    assert pipeline.logs(failures=True, arrow=True).column("in.text").to_pylist() == ["doomed"]

    # rollback to version 1, whole; a pipeline opened again starts from the latest version
    assert pipeline.deploy(version=1).version == 1
    assert pipeline.deployed_version is not None and pipeline.deployed_version.version == 1
    assert "writer" in pipeline.steps()[0]
    assert pipeline.infer({"text": "back"})["in.text"] == "back"
    assert "broken" in alice.pipelines.get("assistant").steps()[0]

    # logged traffic → Dataset + Evaluation → a Measurement with a built-in method
    dataset, evaluation = alice.datasets.create_from_pipeline_logs(pipeline, name="traffic")
    assert dataset.status == Status.Ready and evaluation.status == Status.Complete
    method = text.METRICS.register(alice, account=ALICE)
    measurement = alice.measurements.create(
        text_metrics_request(ALICE, method.id, evaluation.id, dataset.id, "text")
    )
    measurement = alice.measurements.wait(measurement.id, timeout=120)
    assert measurement.status == Status.Complete, measurement.message

    pipeline.undeploy()
    assert pipeline.deployed_version is None and pipeline.inference_session is None
    with pytest.raises(errors.ConflictError, match="not deployed"):
        pipeline.infer({"text": "late"})


def test_another_account_sees_nothing(
    alice: Client, make_client: Callable[..., Client], live_server: object
) -> None:
    service = alice.inferenceservices.create_mock(mocks.TextCompletion, account=ALICE)
    alice.pipelines.create("private").add_model_step(service).deploy()
    bob = make_client(BOB)
    with pytest.raises(errors.NotFoundError, match="was ever deployed"):
        bob.pipelines.get("private", account=ALICE)
    assert bob.pipelines.list(account=ALICE) == []
    # bob cannot use alice's services in his own pipeline either
    with pytest.raises(errors.NotFoundError):
        bob.pipelines.create("mine").add_model_step(service)
    alice.pipelines.get("private").undeploy()
