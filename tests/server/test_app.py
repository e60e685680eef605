"""The app's life: work interrupted by a stopped server resumes at the next start, an injected
core is served but not closed, and the workflow executor runs work in the background."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from starlette.testclient import TestClient
from tests.server.conftest import ALICE
from tests.server.helpers import Caller, Server, dataset_request, parquet_bytes, service_request

from assay.core.platform import PlatformCore
from assay.engine import Executor, WorkflowJob
from assay.server import ServerSettings, WorkflowThreadExecutor, build_core, create_app
from assay.storage import LocalStorage
from assay.store import EntityStore


class _Dropped(Executor):
    """Takes jobs and never runs them: a server killed right after admitting work."""

    def submit(self, job: WorkflowJob) -> None:
        pass


def test_work_left_admitted_by_a_stopped_server_resumes(tmp_path: Path) -> None:
    settings = ServerSettings(data_dir=tmp_path / "data")
    root = settings.root
    root.mkdir(parents=True)
    core = PlatformCore(
        EntityStore.sqlite(root / "assay.db"),
        LocalStorage(root),
        executor=_Dropped(),
        claim_ttl=0.2,
        signing_secret=settings.secret(),
    )
    data, schema = parquet_bytes()
    dataset = core.datasets.create(dataset_request(ALICE, data, schema))
    core.datasets.put_artifact(dataset.id, "part-0.parquet", data)
    assert core.datasets.finalize(dataset.id).status == "Admitted"
    claim = core.store.claim_owner(dataset.id)
    assert claim is not None
    core.close()  # nobody renews its claim: wait until the lease has run out
    while time.time() <= claim[1]:
        time.sleep(0.05)

    with TestClient(create_app(settings)) as client:
        server = Server(client, settings)
        finished = server.wait(dataset.id, timeout=20)
        assert finished["status"] == "Ready"
        entity = server.as_account(ALICE).ok("GET", f"/datasets/{dataset.id}")
        assert entity["status"] == "Ready"


def test_an_injected_core_is_served_and_left_open(tmp_path: Path) -> None:
    settings = ServerSettings(data_dir=tmp_path / "data")
    core = build_core(settings)
    try:
        with TestClient(create_app(settings, core=core)) as client:
            server = Server(client, settings)
            assert server.core is core
            alice = Caller(client, server.token(ALICE))
            model = alice.create(
                "models",
                {
                    "account": ALICE,
                    "name": "m",
                    "artifact": {"kind": "Mock"},
                    "source": {"kind": "Mock"},
                    "resources": {"storage": "1Gi"},
                },
            )
        assert core.models.get(model["id"]).status == "Ready"  # still open after shutdown
    finally:
        core.close()


def test_thread_executor_runs_jobs_in_the_background_and_stops() -> None:
    started, release, done = threading.Event(), threading.Event(), threading.Event()
    ran: list[str] = []

    def run(job: WorkflowJob) -> None:
        started.set()
        release.wait(10)
        ran.append(job.entity_id)
        done.set()

    class Engine:  # what an executor uses of its engine
        def __init__(self) -> None:
            self.run, self.owner, self.store = run, "me", self
            self.released: list[str] = []

        def release(self, entity_id: str, owner: str) -> None:
            self.released.append(entity_id)

    engine = Engine()
    executor = WorkflowThreadExecutor(shutdown_timeout=10)
    executor.bind(engine)  # type: ignore[arg-type]
    executor.submit(WorkflowJob("a" * 32, "Evaluation"))
    assert started.wait(10) and executor.running == 1  # submit returned while it runs
    assert executor.holds("a" * 32) and not executor.holds("b" * 32)
    release.set()
    executor.shutdown(wait=True)
    assert done.is_set() and ran == ["a" * 32] and executor.running == 0
    executor.submit(WorkflowJob("b" * 32, "Evaluation"))  # after shutdown: left for resume()
    assert ran == ["a" * 32] and engine.released == ["b" * 32]


def test_the_processes_executor_serves_the_audit(tmp_path: Path) -> None:
    settings = ServerSettings(data_dir=tmp_path / "data", executor="processes", workers=1)
    with TestClient(create_app(settings)) as client:
        server = Server(client, settings)
        assert server.core.engine.executor.name == "processes"
        alice = server.as_account(ALICE)
        data, schema = parquet_bytes()
        dataset = alice.create("datasets", dataset_request(ALICE, data, schema))["id"]
        alice.upload("datasets", dataset, {"part-0.parquet": data})
        service = alice.create("inferenceservices", service_request(ALICE))["id"]
        evaluation = alice.create(
            "evaluations",
            {
                "account": ALICE,
                "dataset": dataset,
                "inferenceSession": {"inferenceService": service},
            },
        )["id"]
        finished = server.wait(evaluation)
        assert finished["status"] == "Complete", finished.get("message")
        assert server.core.engine.executor.worker_pids()  # type: ignore[attr-defined]
        links = alice.ok("GET", f"/evaluations/{evaluation}/downlinks")
        assert links and all(link["artifact"]["path"].endswith(".parquet") for link in links)
