"""The engine's dependency rules and workflow runs, on a real store and storage."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pytest
from tests.conftest import evaluation_request, model_request, ready_dataset, service_request

from assay import errors
from assay.engine import Engine, WorkflowContext, WorkflowResult, WorkflowSpec
from assay.local import LocalPlatform
from assay.schema.dataschema import DataSchema
from assay.schema.status import Reason, Status


def _evaluation(platform: LocalPlatform, tmp_path: Path) -> dict[str, object]:
    dataset = ready_dataset(platform, tmp_path / "data")
    service = platform.inferenceservices.create(service_request())
    return evaluation_request(dataset, service.id)


def test_handler_success_sets_complete_with_message(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    seen: list[str] = []

    def handler(ctx: WorkflowContext) -> WorkflowResult:
        seen.append(ctx.entity.id)
        ctx.storage.put_bytes(ctx.entity.id, "out/result.txt", b"done")
        return WorkflowResult(message="1 file written")

    platform.core.register_workflow(WorkflowSpec("Evaluation", handler))
    evaluation = platform.evaluations.create(_evaluation(platform, tmp_path))
    assert evaluation.status == Status.Complete
    assert evaluation.message == "1 file written"
    assert seen == [evaluation.id]
    assert evaluation.lastTransitionTime is not None


def test_handler_exception_fails_with_reason_and_message(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    def handler(ctx: WorkflowContext) -> WorkflowResult:
        raise KeyError("responses")

    platform.core.register_workflow(WorkflowSpec("Evaluation", handler))
    evaluation = platform.evaluations.create(_evaluation(platform, tmp_path))
    assert evaluation.status == Status.Failed
    assert evaluation.reason == Reason.WorkflowError
    assert evaluation.message == "KeyError: 'responses'"


def test_kind_without_a_runner_fails_clearly(platform: LocalPlatform, tmp_path: Path) -> None:
    from assay.core.workflows import unavailable

    platform.core.register_workflow(unavailable("Evaluation"))
    evaluation = platform.evaluations.create(_evaluation(platform, tmp_path))
    assert evaluation.status == Status.Failed
    assert "no runner for Evaluation" in (evaluation.message or "")


def test_waits_for_dependency_then_runs(platform: LocalPlatform, tmp_path: Path) -> None:
    from tests.conftest import write_dataset

    runs: list[str] = []
    platform.core.register_workflow(
        WorkflowSpec("Evaluation", lambda ctx: runs.append(ctx.entity.id) and None)
    )
    directory = write_dataset(tmp_path / "data")
    dataset = platform.datasets.create_arrow_dataset(directory, account="tester", name="data")
    service = platform.inferenceservices.create(service_request())
    evaluation = platform.evaluations.create(evaluation_request(dataset.id, service.id))
    assert (evaluation.status, evaluation.reason) == (Status.Created, Reason.UnsatisfiedDependency)
    assert dataset.id in (evaluation.message or "") and "WaitingForUpload" in (
        evaluation.message or ""
    )
    assert runs == []

    platform.datasets.upload_arrow_dataset(dataset, directory)
    assert platform.evaluations.get(evaluation.id).status == Status.Complete
    assert runs == [evaluation.id]


def test_failed_dependency_fails_dependent(platform: LocalPlatform, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    platform.core.register_workflow(WorkflowSpec("Evaluation", lambda ctx: None))
    directory = tmp_path / "dup"
    directory.mkdir()
    table = pa.table({"_index_": pa.array([0, 1, 1], pa.int64()), "text": ["a", "b", "c"]})
    pq.write_table(table, directory / "part-0.parquet")
    dataset = platform.datasets.create_arrow_dataset(directory, account="tester", name="dup")
    service = platform.inferenceservices.create(service_request())
    evaluation = platform.evaluations.create(evaluation_request(dataset.id, service.id))
    assert evaluation.reason == Reason.UnsatisfiedDependency

    dataset = platform.datasets.upload_arrow_dataset(dataset, directory)
    assert (dataset.status, dataset.reason) == (Status.Error, Reason.IngestFailed)
    assert "not unique" in (dataset.message or "")
    evaluation = platform.evaluations.get(evaluation.id)
    assert (evaluation.status, evaluation.reason) == (Status.Failed, Reason.FailedDependency)
    assert dataset.id in (evaluation.message or "")


def test_resource_kind_waits_for_model_then_ready(platform: LocalPlatform, tmp_path: Path) -> None:
    from tests.conftest import write_package

    package = write_package(tmp_path / "pkg")
    module = platform.modules.create_package(package, account="tester", name="pkg")
    method = platform.methods.create(
        {
            "account": "tester",
            "name": "m",
            "scope": "Evaluation",
            "implementation": {
                "kind": "PythonFunction",
                "pythonFunction": {"fullyQualifiedName": "mypkg.metrics.score"},
            },
            "output": {
                "kind": "Measurement",
                "measurement": {
                    "name": "score",
                    "level": "Dataset",
                    "schema": DataSchema.from_arrow(pa.schema([("x", pa.int64())])).model_dump(
                        by_alias=True
                    ),
                },
            },
            "modules": [module.id],
        }
    )
    assert (method.status, method.reason) == (Status.Created, Reason.UnsatisfiedDependency)
    platform.modules.upload_package(module, package)
    assert platform.methods.get(method.id).status == Status.Ready
    model = platform.models.create(model_request())
    assert model.status == Status.Ready


def test_cancelled_workflow_keeps_deleted_status(platform: LocalPlatform, tmp_path: Path) -> None:
    def handler(ctx: WorkflowContext) -> WorkflowResult:
        platform.evaluations.delete(ctx.entity.id)
        ctx.check()
        raise AssertionError("check() should have raised")

    platform.core.register_workflow(WorkflowSpec("Evaluation", handler))
    evaluation = platform.evaluations.create(_evaluation(platform, tmp_path))
    assert (evaluation.status, evaluation.reason) == (Status.Deleted, Reason.DeleteCommand)


def test_claim_keeps_a_second_engine_out(platform: LocalPlatform, tmp_path: Path) -> None:
    started = threading.Event()
    release = threading.Event()

    def slow(ctx: WorkflowContext) -> None:
        started.set()
        assert release.wait(10)

    platform.core.register_workflow(WorkflowSpec("Evaluation", slow))
    request = _evaluation(platform, tmp_path)
    created: list[str] = []
    worker = threading.Thread(
        target=lambda: created.append(platform.evaluations.create(request).id)
    )
    worker.start()
    assert started.wait(10)
    (evaluation,) = platform.evaluations.query(status="Admitted")

    other_runs: list[str] = []
    other = Engine(
        platform.core.store,
        platform.core.storage,
        specs=[
            *platform.core.engine.specs.values(),
            WorkflowSpec("Evaluation", lambda c: other_runs.append("x") and None),
        ],
    )
    assert other.resume() == []  # the claim holder is alive
    assert other_runs == []
    release.set()
    worker.join(10)
    assert platform.evaluations.get(evaluation.id).status == Status.Complete
    assert created == [evaluation.id]


def test_wait_times_out_with_state_in_message(platform: LocalPlatform, tmp_path: Path) -> None:
    from tests.conftest import write_dataset

    directory = write_dataset(tmp_path / "data")
    dataset = platform.datasets.create_arrow_dataset(directory, account="tester", name="data")
    with pytest.raises(errors.WaitTimeoutError) as info:
        platform.datasets.wait(dataset.id, timeout=0.05)
    assert dataset.id in str(info.value) and "WaitingForUpload" in str(info.value)


def test_wait_returns_terminal_entity(platform: LocalPlatform, tmp_path: Path) -> None:
    dataset_id = ready_dataset(platform, tmp_path / "data")
    assert platform.datasets.wait(dataset_id, timeout=5).status == Status.Ready


def test_wait_on_work_no_process_runs_says_to_resume_it(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    platform.core.register_workflow(WorkflowSpec("Evaluation", lambda ctx: None))
    evaluation = platform.evaluations.create(_evaluation(platform, tmp_path))
    # as a process killed while running it leaves it: Admitted, with no live claim
    platform.core.store.update(evaluation.id, lambda doc: {**doc, "status": Status.Admitted})
    assert [doc["id"] for doc in platform.core.engine.orphans()] == [evaluation.id]
    with pytest.raises(errors.WaitTimeoutError) as waited:
        platform.evaluations.wait(evaluation.id, timeout=0.01)
    assert str(waited.value).endswith("no live process runs it: call resume() to continue it")
    assert platform.resume() == [evaluation.id]
    assert platform.evaluations.get(evaluation.id).status == Status.Complete
    assert platform.core.engine.orphans() == []
