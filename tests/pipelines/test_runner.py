"""A deployed pipeline as an InferenceService of runner kind ``pipeline``: evaluated like any
other system (its every call logged), its step sessions started and stopped with it, a step
that ends failing the pipeline session, the input schema, and the ``processes`` executor."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from tests.conftest import ACCOUNT, evaluation_request, ready_dataset

from assay import errors
from assay.local import LocalPlatform, mocks
from assay.pipelines import Pipeline, PipelineStepError
from assay.pipelines.runner import STEP_SESSION_LABEL
from assay.schema.status import Status


class Shouting(mocks.TextCompletion):
    """A TextCompletion that counts its batch calls and cannot handle the text "bad"."""

    batches: list[int] = []  # shared on purpose: every instance counts here

    def infer_batch(self, endpoint: str, requests: list[dict[str, Any]]) -> list[Any]:
        Shouting.batches.append(len(requests))
        return [self.infer(endpoint, r) for r in requests]

    def answer(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        if request["text"] == "bad":
            raise RuntimeError("cannot shout 'bad'")
        return [{"text": request["text"].upper()}]


def _services(platform: LocalPlatform) -> dict[str, Any]:
    create = platform.inferenceservices.create_mock
    return {
        "text": create(mocks.TextCompletion, account=ACCOUNT, name="writer", kwargs={"seed": 1}),
        "other": create(mocks.TextCompletion, account=ACCOUNT, name="other", kwargs={"seed": 2}),
    }


def _step_sessions(platform: LocalPlatform, session: str) -> list[dict[str, Any]]:
    return platform.core.store.query(kind="InferenceSession", labels={STEP_SESSION_LABEL: session})


def test_a_deployed_pipeline_is_evaluated_like_any_service(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    services = _services(platform)
    pipeline = platform.pipelines.create("assistant")
    # an evaluation's requests carry _index_, which the input schema need not declare
    pipeline.set_input_schema(pa.schema([("text", pa.string())]))
    pipeline.add_random_split(
        [(1, services["text"]), (1, services["other"])], hash_key="text", hash_key_mode="hash"
    )
    pipeline.add_validations(long="in.text == 'prompt 3'")
    version = pipeline.deploy()

    service = pipeline.inference_service
    assert service.runner.kind == "pipeline"
    assert service.runner.configuration == {"pipeline": "assistant", "version": version.version}
    assert service.labels["assay.io/pipeline"] == "assistant"
    # the pipeline's replies have the schema of the services it routes to
    item = service.interface.outputSchema.arrow_schema().field("responses").type.value_type
    assert "text" in [f.name for f in item]

    dataset = ready_dataset(platform, tmp_path / "data", rows=20)
    evaluation = platform.evaluations.create(evaluation_request(dataset, service.id))
    evaluation = platform.evaluations.wait(evaluation.id)
    assert evaluation.status == Status.Complete, evaluation.message
    outputs = platform.evaluations.open(evaluation.id).to_table().to_pylist()
    assert sorted(r["_index_"] for r in outputs) == list(range(20))
    # each reply is what the routed service answered for the prompt
    for row in outputs:
        assert row["responses"] and row["responses"][0]["text"].startswith(
            f"prompt {row['_index_']}"
        )

    # every instance of the evaluation went through the pipeline and is in its log
    pipeline.log.flush()
    logged = pipeline.logs(limit=None, arrow=True, dataset=["*", "metadata"])
    assert sorted(logged.column("in.text").to_pylist()) == sorted(f"prompt {i}" for i in range(20))
    assert logged.column("anomaly.count").to_pylist().count(1) == 1
    routes = set(logged.column("metadata.answered_by").to_pylist())
    assert routes == {"writer", "other"}
    assert sorted(logged.column("in._index_").to_pylist()) == list(range(20))

    # the logged traffic becomes a Dataset again, numbered afresh (in._index_ left out)
    traffic, answers = platform.datasets.create_from_pipeline_logs(pipeline)
    assert traffic.status == Status.Ready and answers.status == Status.Complete
    assert platform.datasets.open(traffic.id).to_table().num_rows == 20


def test_rows_go_to_a_step_service_in_one_batch_and_a_failing_row_is_isolated(
    platform: LocalPlatform,
) -> None:
    shouting = platform.inferenceservices.create_mock(Shouting, account=ACCOUNT, name="loud")
    pipeline = platform.pipelines.create("batched").add_model_step(shouting)
    pipeline.add_model_step(_services(platform)["text"])  # then a service without batches
    pipeline.deploy()
    Shouting.batches.clear()
    rows = [{"text": f"t{i}"} for i in range(10)]
    result = pipeline.infer(rows, metadata=True)
    assert Shouting.batches == [10]  # one call for the ten rows
    assert [r["in.text"] for r in result] == [f"t{i}" for i in range(10)]
    assert result[3]["out.text"].startswith("T3")  # the second step read the first's output

    Shouting.batches.clear()
    with pytest.raises(PipelineStepError, match=r"failed for 1 of 4 input\(s\).*cannot shout"):
        pipeline.infer([{"text": "a"}, {"text": "bad"}, {"text": "c"}, {"text": "d"}])
    assert Shouting.batches == [4]  # the batch failed; then each row alone found the culprit
    assert pipeline.logs(failures=True, arrow=True).column("in.text").to_pylist() == ["bad"]
    logged = pipeline.logs(limit=None, arrow=True).column("in.text").to_pylist()
    assert set(logged) == {f"t{i}" for i in range(10)} | {"a", "c", "d"}


def test_step_sessions_start_and_stop_with_the_pipeline(platform: LocalPlatform) -> None:
    services = _services(platform)
    pipeline = Pipeline(platform, "p", account=ACCOUNT)
    pipeline.add_shadow_deploy(services["text"], [services["other"]])
    pipeline.deploy(replicas=2)
    session = pipeline.inference_session
    assert session is not None
    steps = _step_sessions(platform, session)
    assert len(steps) == 2 and all(s["status"] == Status.Ready for s in steps)
    assert all(s["replicas"] == 2 for s in steps)

    # deploying again starts the new version's sessions and stops the old ones
    pipeline.deploy()
    assert platform.inferencesessions.get(session).status == Status.Terminated
    assert all(platform.inferencesessions.get(s["id"]).status == Status.Terminated for s in steps)
    newer = pipeline.inference_session
    assert newer is not None and newer != session

    pipeline.undeploy()
    assert platform.inferencesessions.get(newer).status == Status.Terminated
    assert all(
        platform.inferencesessions.get(s["id"]).status == Status.Terminated
        for s in _step_sessions(platform, newer)
    )


def test_a_step_session_that_ends_fails_the_pipeline_session(platform: LocalPlatform) -> None:
    services = _services(platform)
    pipeline = Pipeline(platform, "p", account=ACCOUNT).add_model_step(services["text"])
    pipeline.deploy()
    session = pipeline.inference_session
    assert session is not None
    (step,) = _step_sessions(platform, session)
    platform.inferencesessions.terminate(step["id"])
    deadline = time.monotonic() + 10
    while platform.inferencesessions.get(session).status == Status.Ready:
        assert time.monotonic() < deadline, "the pipeline session outlived its step session"
        time.sleep(0.05)
    ended = platform.inferencesessions.get(session)
    assert ended.status == Status.Error and "step service 'writer'" in (ended.message or "")
    with pytest.raises(errors.ConflictError, match="not deployed"):
        pipeline.infer({"text": "x"})


def test_the_input_schema_refuses_rows_that_do_not_fit(platform: LocalPlatform) -> None:
    services = _services(platform)
    schema = pa.schema([pa.field("text", pa.string(), nullable=False), ("user", pa.int64())])
    pipeline = platform.pipelines.create("typed")
    pipeline.set_input_schema(schema).add_model_step(services["text"])
    with pytest.raises(errors.ValidationError, match=r"'in\.nope'.*input columns are: in\.text"):
        pipeline.add_validations(bad="in.nope > 1")
    pipeline.add_validations(vip="in.user == 7")
    pipeline.deploy()
    assert pipeline.infer({"text": "hi", "user": 7})["anomaly.vip"] is True
    assert pipeline.infer({"text": "hi"})["anomaly.count"] == 0  # nullable field left out

    cases = {
        "missing": ({"user": 1}, "field 'text' is missing or null"),
        "type": ({"text": "hi", "user": "seven"}, "field 'user' is 'seven' \\(str\\).*int64"),
        "extra": ({"text": "hi", "mood": 1}, "field 'mood' is not in the pipeline's input schema"),
    }
    for row, message in cases.values():
        with pytest.raises(errors.ValidationError, match=f"input row 0 .*{message}"):
            pipeline.infer(row)
    failures = pipeline.logs(failures=True, arrow=True, dataset=["*", "metadata"])
    assert failures.num_rows == 3
    assert set(failures.column("metadata.error_step_kind").to_pylist()) == {"input"}
    # the schema is part of the version: a rollback restores it
    assert pipeline.versions()[-1].definition.input_schema() == schema
    pipeline.set_input_schema(None).deploy()
    assert pipeline.infer({"text": "hi", "mood": 1, "user": 7})["in.mood"] == 1
    # a check that cannot run on a batch fails it, and the rows go to the failure log
    with pytest.raises(PipelineStepError, match=r"step 1: validations.*in\.user"):
        pipeline.infer({"text": "no user"})
    assert pipeline.logs(failures=True, arrow=True).num_rows == 4
    pipeline.deploy(version=1)
    assert pipeline.input_schema == schema
    with pytest.raises(errors.ValidationError, match="mood"):
        pipeline.infer({"text": "hi", "mood": 1})


def test_pipeline_services_are_checked_when_created(platform: LocalPlatform) -> None:
    def request(configuration: dict[str, Any]) -> dict[str, Any]:
        return {
            "account": ACCOUNT,
            "name": "by-hand",
            "runner": {"kind": "pipeline", "configuration": configuration},
            "interface": {
                "endpoint": "infer",
                "outputSchema": _services(platform)["text"].interface.outputSchema.model_dump(
                    by_alias=True
                ),
            },
        }

    with pytest.raises(errors.ValidationError, match=r"runner\.configuration\.pipeline"):
        platform.inferenceservices.create(request({"version": 1}))
    with pytest.raises(errors.ValidationError, match=r"runner\.configuration\.version"):
        platform.inferenceservices.create(request({"pipeline": "p", "version": 0}))
    with pytest.raises(errors.ValidationError, match="has no version 1"):
        platform.inferenceservices.create(request({"pipeline": "p", "version": 1}))


def test_with_the_processes_executor(tmp_path: Path) -> None:
    with LocalPlatform(tmp_path / "platform", account=ACCOUNT, executor="processes") as platform:
        services = _services(platform)
        pipeline = platform.pipelines.create("worked")
        pipeline.add_model_step(services["text"]).deploy()
        result = pipeline.infer([{"text": f"q{i}"} for i in range(5)])
        assert [r["in.text"] for r in result] == [f"q{i}" for i in range(5)]
        dataset = ready_dataset(platform, tmp_path / "data", rows=10)
        evaluation = platform.evaluations.create(
            evaluation_request(dataset, pipeline.inference_service.id)
        )
        evaluation = platform.evaluations.wait(evaluation.id, timeout=120)
        assert evaluation.status == Status.Complete, evaluation.message
        deadline = time.monotonic() + 10
        while len(pipeline.logs(limit=None, arrow=True)) < 15:  # the worker's log flushes
            assert time.monotonic() < deadline, "the evaluation's inferences were not logged"
            time.sleep(0.1)
        pipeline.undeploy()
        assert pipeline.deployed_version is None


@pytest.mark.slow
def test_resume_restarts_a_pipeline_whose_process_was_killed(tmp_path: Path) -> None:
    """A deployed pipeline over a ``python`` service (replica processes); its process is
    SIGKILLed; ``resume()`` in a new process restarts it, with new step sessions."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    repo = Path(__file__).resolve().parents[2]
    root = tmp_path / "platform"
    code = f"""
        import time
        from pathlib import Path
        from assay.local import LocalPlatform
        from tests.inference.test_runners import MODEL_SOURCE, _interface
        package = Path({str(tmp_path)!r}) / "pkg"
        (package / "echomodel").mkdir(parents=True)
        (package / "echomodel" / "__init__.py").write_text("")
        (package / "echomodel" / "model.py").write_text(MODEL_SOURCE)
        platform = LocalPlatform({str(root)!r}, account={ACCOUNT!r})
        module = platform.modules.create_package(package, account={ACCOUNT!r}, name="echo")
        module = platform.modules.upload_package(module, package)
        service = platform.inferenceservices.create({{
            "account": {ACCOUNT!r},
            "name": "echo",
            "runner": {{
                "kind": "python",
                "configuration": {{"module": module.id, "target": "echomodel.model:Echo"}},
            }},
            "interface": _interface(),
        }})
        pipeline = platform.pipelines.create("loud")
        pipeline.add_model_step(service).deploy()
        print(pipeline.infer({{"text": "hi"}})["out.text"], flush=True)
        time.sleep(600)
    """
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, "PYTHONPATH": str(repo)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            pytest.fail(f"the deploying process failed: {process.communicate()[1][-3000:]}")
        assert line.strip() == "HI"
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.communicate()  # closes the pipes

    with LocalPlatform(root, account=ACCOUNT) as platform:
        pipeline = platform.pipelines.get("loud")
        session = pipeline.inference_session
        assert session is not None
        (old_step,) = _step_sessions(platform, session)
        assert session in platform.resume()
        assert platform.inferencesessions.get(old_step["id"]).status == Status.Terminated
        (new_step,) = [s for s in _step_sessions(platform, session) if s["status"] == Status.Ready]
        assert new_step["id"] != old_step["id"]
        assert pipeline.infer({"text": "again"})["out.text"] == "AGAIN"
