"""Several OS processes on one storage_root: concurrent writers, and resuming after SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tests.conftest import evaluation_request, model_request, ready_dataset, service_request

from assay.engine import WorkflowContext, WorkflowResult, WorkflowSpec
from assay.local import LocalPlatform
from assay.schema.status import Reason, Status

REPO = Path(__file__).resolve().parents[2]


def _python(code: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    root = tmp_path / "state"
    with LocalPlatform(storage_root=root, account="tester") as platform:
        shared = platform.models.create(model_request("shared")).id
    code = """
        import sys
        from assay.local import LocalPlatform
        from tests.conftest import model_request
        worker, root, shared = sys.argv[1], sys.argv[2], sys.argv[3]
        with LocalPlatform(storage_root=root, account="tester") as p:
            for i in range(100):
                p.models.create(model_request(f"{worker}-{i}"))
                if i % 2 == 0:
                    p.models.label(shared, {f"{worker}-{i}": "x"})
    """
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), w, str(root), shared],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in ("a", "b")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with LocalPlatform(storage_root=root) as platform:
        names = {m.name for m in platform.models.query()}
        assert len(names) == 201
        assert len(platform.models.get(shared).labels) == 100


def _wait_for(condition, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    delay = 0.01
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


@pytest.mark.slow
def test_resume_continues_a_workflow_whose_process_was_killed(tmp_path: Path) -> None:
    root = tmp_path / "state"
    with LocalPlatform(storage_root=root, account="tester") as platform:
        dataset = ready_dataset(platform, tmp_path / "data")
        service = platform.inferenceservices.create(service_request()).id
    child = _python(
        f"""
        import threading
        from assay.engine import WorkflowSpec
        from assay.local import LocalPlatform
        from tests.conftest import evaluation_request

        def handler(ctx):
            ctx.storage.put_bytes(ctx.entity.id, "parts/0.txt", b"first half")
            ctx.progress("1 / 2 parts", force=True)
            threading.Event().wait()  # hangs until killed

        p = LocalPlatform(storage_root={str(root)!r}, account="tester")
        p.core.register_workflow(WorkflowSpec("Evaluation", handler))
        p.evaluations.create(evaluation_request({dataset!r}, {service!r}))
        """
    )
    try:
        with LocalPlatform(storage_root=root) as watcher:
            _wait_for(
                lambda: (
                    child.poll() is None
                    and any(
                        e.message == "1 / 2 parts"
                        for e in watcher.evaluations.query(status="Admitted")
                    )
                )
            )
    finally:
        child.send_signal(signal.SIGKILL)
        _, err = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL, err

    seen: dict[str, object] = {}

    def finish(ctx: WorkflowContext) -> WorkflowResult:
        seen["restarted"] = ctx.restarted
        seen["first"] = ctx.storage.read_bytes(ctx.entity.id, "parts/0.txt")
        ctx.storage.put_bytes(ctx.entity.id, "parts/1.txt", b"second half")
        return WorkflowResult(message="2 / 2 parts")

    with LocalPlatform(storage_root=root) as platform:
        (evaluation,) = platform.evaluations.query()
        assert evaluation.status == Status.Admitted
        platform.core.register_workflow(WorkflowSpec("Evaluation", finish))
        assert platform.resume() == [evaluation.id]
        done = platform.evaluations.get(evaluation.id)
        assert (done.status, done.message) == (Status.Complete, "2 / 2 parts")
        assert seen == {"restarted": True, "first": b"first half"}
        assert platform.resume() == []


def test_resume_rechecks_entities_waiting_on_dependencies(tmp_path: Path) -> None:
    """A process that died between a dependency's success and notifying its dependents leaves
    them waiting; resume() moves them on."""
    from tests.conftest import write_dataset

    root = tmp_path / "state"
    with LocalPlatform(storage_root=root, account="tester") as platform:
        platform.core.register_workflow(WorkflowSpec("Evaluation", lambda ctx: None))
        directory = write_dataset(tmp_path / "data")
        dataset = platform.datasets.create_arrow_dataset(directory, account="tester", name="d")
        service = platform.inferenceservices.create(service_request()).id
        evaluation = platform.evaluations.create(evaluation_request(dataset.id, service))
        assert evaluation.reason == Reason.UnsatisfiedDependency

        def ready(doc: dict[str, object]) -> dict[str, object]:  # no notification: a crash
            doc["status"] = "Ready"
            doc.pop("reason", None)
            return doc

        platform.core.store.update(dataset.id, ready)
        assert platform.evaluations.get(evaluation.id).status == Status.Created
        assert platform.resume() == []
        assert platform.evaluations.get(evaluation.id).status == Status.Complete
