"""``LocalPlatform``'s remote mode against a real server on loopback: ``fetch(id)`` of each
kind with its artifacts (md5 checked, unchanged entities left alone), local analyses of what
was fetched with the server out of reach, and ``local_evaluation`` of a local Dataset by a
session running on the server."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from tests.client.test_audit import (
    ROWS,
    SCORES,
    md5,
    measurement_method,
    write_dataset,
    write_package,
)

from assay import errors
from assay.client import Client, TransferProgress
from assay.core.platform import PlatformCore
from assay.local import LocalPlatform, mocks
from assay.local.remote import REMOTE_SESSION_LABEL, proxy_secret_name

ALICE = "alice"


# -- a server on loopback ------------------------------------------------------------------


@dataclass
class Server:
    """A running ``create_app`` server: its URL, data directory and core (for tokens)."""

    url: str
    data_dir: Path
    core: PlatformCore

    def token(self, account: str = ALICE) -> str:
        from assay.server import issue_token

        return issue_token(self.core, account=account)

    def client(self, account: str = ALICE, **kwargs: Any) -> Client:
        kwargs.setdefault("progress", False)
        kwargs.setdefault("cache_dir", self.data_dir.parent / "client-cache")
        return Client(self.url, self.token(account), **kwargs)


@contextlib.contextmanager
def serve(data_dir: Path) -> Iterator[Server]:
    """``create_app`` under uvicorn on a free loopback port, in a thread (workflows run in
    the server's threads: lighter than worker processes for a test)."""
    import uvicorn

    from assay.server import ServerSettings, create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    settings = ServerSettings(  # its port: the base of its signed URLs
        data_dir=data_dir, port=port, executor="threads", shutdown_timeout=20, log_level="warning"
    )
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", ws="none"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive(), "the server thread ended before it started"
        assert time.monotonic() < deadline, "the server did not start within 60 s"
        time.sleep(0.02)
    try:
        yield Server(f"http://127.0.0.1:{port}", data_dir, app.state.assay.core)
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("remote") / "server") as running:
        yield running


@dataclass
class Audit:
    """What the server holds: one entity of each kind with artifacts."""

    dataset: str
    module: str
    service: str
    session: str
    evaluation: str
    measurement: str
    safetycase: str
    package: Path


@pytest.fixture(scope="module")
def audit(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Audit]:
    root = tmp_path_factory.mktemp("audit")
    with server.client() as client:
        directory = write_dataset(root / "data")
        dataset = client.datasets.create_arrow_dataset(directory, account=ALICE, name="prompts")
        dataset = client.datasets.upload_arrow_dataset(dataset, directory)
        package = write_package(root / "pkg")
        module = client.modules.create_package(package, account=ALICE, name="lengthaudit")
        module = client.modules.upload_package(module, package)
        service = client.inferenceservices.create_mock(
            mocks.TextCompletion, account=ALICE, kwargs={"seed": 1}
        )
        session = client.inferencesessions.create(
            {"account": ALICE, "inferenceService": service.id}
        ).inferencesession.id
        evaluation = client.evaluations.create(
            {
                "account": ALICE,
                "dataset": dataset.id,
                "inferenceSession": {"inferenceService": service.id},
            }
        )
        assert client.evaluations.wait(evaluation.id, timeout=60).status == "Complete"
        method = client.methods.create(measurement_method(module.id))
        measurement = client.measurements.create(
            {
                "account": ALICE,
                "method": method.id,
                "scope": {"evaluation": evaluation.id},
                "inputs": [{"keyword": "evaluation", "entity": evaluation.id}],
            }
        )
        notebook = client.methods.create(
            {
                "account": ALICE,
                "name": "case",
                "scope": "Evaluation",
                "implementation": {
                    "kind": "JupyterNotebook",
                    "jupyterNotebook": {"notebookModule": module.id, "notebookPath": "case.ipynb"},
                },
                "inputs": [{"kind": "Measurement", "keyword": "lengths"}],
                "output": {"kind": "SafetyCase", "safetyCase": {"name": "Length audit"}},
                "scores": SCORES,
                "modules": [module.id],
            }
        )
        done = client.measurements.wait(measurement.id, timeout=60)
        assert done.status == "Complete", done.message
        case = client.safetycases.create(
            {
                "account": ALICE,
                "method": notebook.id,
                "scope": {"evaluation": evaluation.id},
                "inputs": [{"keyword": "lengths", "entity": measurement.id}],
            }
        )
        assert client.inferencesessions.wait(session, timeout=60).status == "Ready"
        finished = client.safetycases.wait(case.id, timeout=120)
        assert finished.status == "Complete", finished.message
        yield Audit(
            dataset=dataset.id,
            module=module.id,
            service=service.id,
            session=session,
            evaluation=evaluation.id,
            measurement=measurement.id,
            safetycase=case.id,
            package=package,
        )


@pytest.fixture
def transfers() -> list[TransferProgress]:
    return []


@pytest.fixture
def client(server: Server, transfers: list[TransferProgress]) -> Iterator[Client]:
    with server.client(progress=transfers.append) as made:
        yield made


@pytest.fixture
def local(tmp_path: Path, client: Client) -> Iterator[LocalPlatform]:
    with LocalPlatform(tmp_path / "local", account=ALICE, remote_client=client) as platform:
        yield platform


def downloads(transfers: list[TransferProgress]) -> list[str]:
    return [t.path for t in transfers if t.direction == "download" and t.finished]


# -- without a server ------------------------------------------------------------------------


def test_without_a_remote_client_fetch_says_what_to_do(tmp_path: Path) -> None:
    with LocalPlatform(tmp_path / "p", account=ALICE) as platform:
        assert platform.remote is None
        for group in (platform.datasets, platform.evaluations, platform.safetycases):
            with pytest.raises(errors.ValidationError, match="remote_client=Client"):
                group.fetch("0" * 32)
    with pytest.raises(errors.ValidationError, match=r"must be an assay\.client\.Client"):
        LocalPlatform(tmp_path / "q", remote_client="http://127.0.0.1:8000")  # type: ignore[arg-type]


def test_remote_is_the_client(local: LocalPlatform, client: Client) -> None:
    assert local.remote is client


# -- fetch -----------------------------------------------------------------------------------


def test_fetch_a_dataset_then_again_leaves_it_alone(
    local: LocalPlatform,
    client: Client,
    audit: Audit,
    transfers: list[TransferProgress],
    tmp_path: Path,
) -> None:
    remote = client.datasets.get(audit.dataset)
    fetched = local.datasets.fetch(audit.dataset)
    assert fetched == remote  # the record as the server has it: id, account, status, times
    assert sorted(downloads(transfers)) == ["part-0.parquet", "part-1.parquet"]
    for artifact in remote.artifacts:
        assert artifact.digest.md5 == md5(local.entity_path(audit.dataset) / artifact.path)
    table = local.datasets.open(audit.dataset).to_table()
    assert sorted(table["_index_"].to_pylist()) == list(range(ROWS))
    assert local.datasets.query(name="prompts") == [fetched]

    transfers.clear()
    before = {p: p.stat().st_mtime_ns for p in local.entity_path(audit.dataset).rglob("*")}
    assert local.datasets.fetch(audit.dataset) == fetched
    assert downloads(transfers) == []  # nothing downloaded, nothing written
    after = {p: p.stat().st_mtime_ns for p in local.entity_path(audit.dataset).rglob("*")}
    assert after == before

    # a label added on the server since: the record is brought up to date, the files stay
    client.datasets.label(audit.dataset, {"stage": "fetched-twice"})
    try:
        assert local.datasets.fetch(audit.dataset).labels == {"stage": "fetched-twice"}
        assert downloads(transfers) == []
        assert local.datasets.query(labels={"stage": "fetched-twice"}) != []
    finally:
        client.datasets.label(audit.dataset, {"stage": None})


def test_fetch_a_module_a_service_and_a_session(
    local: LocalPlatform, client: Client, audit: Audit
) -> None:
    module = local.modules.fetch(audit.module)
    assert module.status == "Ready"
    for artifact in module.artifacts:
        here = local.entity_path(audit.module) / artifact.path
        assert md5(here) == md5(audit.package / artifact.path) == artifact.digest.md5
    assert local.inferenceservices.fetch(audit.service) == client.inferenceservices.get(
        audit.service
    )
    session = local.inferencesessions.fetch(audit.session)
    assert session.status == "Ready" and session.inferenceService.id == audit.service
    with pytest.raises(errors.ValidationError, match="not a Dataset"):
        local.datasets._import_record(session.to_wire())


def test_fetch_an_evaluation_and_measure_it_offline(
    local: LocalPlatform, client: Client, audit: Audit
) -> None:
    evaluation = local.evaluations.fetch(audit.evaluation)  # its Dataset stays on the server
    assert evaluation.status == "Complete" and evaluation.dataset == audit.dataset
    assert local.datasets.query() == []
    module = local.modules.fetch(audit.module)
    client.close()  # from here on, the server is out of reach
    outputs = local.evaluations.open(audit.evaluation).to_table()
    assert outputs.num_rows == ROWS and {"_index_", "_replication_", "responses"} <= set(
        outputs.column_names
    )
    method = local.methods.create(measurement_method(module.id))
    measurement = local.measurements.create(
        {
            "account": ALICE,
            "method": method.id,
            "scope": {"evaluation": audit.evaluation},
            "inputs": [{"keyword": "evaluation", "entity": audit.evaluation}],
        }
    )
    assert measurement.status == "Complete", measurement.message
    assert measurement.scope.inferenceService == evaluation.inferenceSession.inferenceService.id
    lengths = local.measurements.open(measurement.id).to_table()
    assert lengths.num_rows == ROWS
    assert "measured 12 rows" in local.measurements.logs(measurement.id)


def test_fetch_a_measurement_with_its_log(
    local: LocalPlatform, client: Client, audit: Audit
) -> None:
    measurement = local.measurements.fetch(audit.measurement)
    assert measurement == client.measurements.get(audit.measurement)
    assert "measured 12 rows" in local.measurements.logs(audit.measurement)
    local_table = local.measurements.open(audit.measurement).to_table()
    remote_table = client.measurements.open(audit.measurement).to_table()
    assert local_table.sort_by("_index_").equals(remote_table.sort_by("_index_"))


def test_fetch_a_safety_case_with_its_scores(
    local: LocalPlatform, client: Client, audit: Audit, transfers: list[TransferProgress]
) -> None:
    case = local.safetycases.fetch(audit.safetycase)
    assert case == client.safetycases.get(audit.safetycase)
    scores = client.safetycases.scores(audit.safetycase)
    assert [s.name for s in scores] == ["mean_length"]
    assert local.safetycases.scores(audit.safetycase) == scores
    assert local.scores.get(analysis=audit.safetycase) == scores
    assert local.scores.query(name="mean_length") == scores
    assert local.safetycases.curves(audit.safetycase) == client.safetycases.curves(audit.safetycase)
    assert local.safetycases.document(audit.safetycase) == client.safetycases.document(
        audit.safetycase
    )
    assert "Length audit through the client" in local.safetycases.document(audit.safetycase)
    transfers.clear()
    assert local.safetycases.fetch(audit.safetycase) == case  # again: nothing changes
    assert downloads(transfers) == []
    assert local.safetycases.scores(audit.safetycase) == scores


def test_fetch_refuses_what_is_unfinished_or_unknown(
    local: LocalPlatform, client: Client, tmp_path: Path
) -> None:
    directory = write_dataset(tmp_path / "waiting")
    waiting = client.datasets.create_arrow_dataset(directory, account=ALICE, name="waiting")
    with pytest.raises(errors.ConflictError, match="WaitingForUpload") as refused:
        local.datasets.fetch(waiting.id)
    assert waiting.id in str(refused.value)
    with pytest.raises(errors.NotFoundError):
        local.datasets.fetch("f" * 32)
    assert local.datasets.query() == []


def test_a_download_with_the_wrong_md5_is_refused_and_nothing_is_kept(
    local: LocalPlatform, client: Client, server: Server, tmp_path: Path
) -> None:
    directory = write_dataset(tmp_path / "data")
    dataset = client.datasets.create_arrow_dataset(directory, account=ALICE, name="corrupt")
    dataset = client.datasets.upload_arrow_dataset(dataset, directory)
    assert dataset.status == "Ready"
    stored = server.data_dir / dataset.id / "part-1.parquet"
    stored.write_bytes(stored.read_bytes()[:-1] + b"\0")  # the server's copy rots
    with pytest.raises(errors.DataIntegrityError, match="md5"):
        local.datasets.fetch(dataset.id)
    assert local.datasets.query() == []
    assert not local.entity_path(dataset.id).exists()
    assert not list((local.storage_root / ".assay").glob("fetch-*"))  # scratch removed


def test_an_import_whose_file_differs_from_the_record_is_refused(
    local: LocalPlatform, client: Client, audit: Audit, tmp_path: Path
) -> None:
    record = client.datasets.get(audit.dataset).to_wire()
    good = write_dataset(tmp_path / "good")
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"_index_": pa.array([0], pa.int64())}), other)
    files = {"part-0.parquet": (good / "part-0.parquet", None), "part-1.parquet": (other, None)}
    with pytest.raises(errors.DataIntegrityError, match="the record declares"):
        local.datasets._import_record(record, files)
    with pytest.raises(errors.DataIntegrityError, match="were not given"):
        local.datasets._import_record(record, {"part-0.parquet": files["part-0.parquet"]})
    declared = {
        "part-0.parquet": (good / "part-0.parquet", "0" * 32),
        "part-1.parquet": (good / "part-1.parquet", None),
    }
    with pytest.raises(errors.DataIntegrityError, match="its origin declares"):
        local.datasets._import_record(record, declared)
    assert local.datasets.query() == []
    assert not local.entity_path(audit.dataset).exists()


# -- local evaluations on the server's session ----------------------------------------------


def test_local_evaluation_sends_a_local_dataset_to_the_servers_session(
    local: LocalPlatform, client: Client, audit: Audit, tmp_path: Path
) -> None:
    directory = write_dataset(tmp_path / "local-data")
    dataset = local.datasets.upload_arrow_dataset(
        local.datasets.create_arrow_dataset(directory, account=ALICE, name="local prompts"),
        directory,
    )
    evaluation_id = local.evaluations.local_evaluation(
        dataset=dataset.id, inferencesession=audit.session
    )
    evaluation = local.evaluations.get(evaluation_id)
    assert evaluation.status == "Complete", evaluation.message
    assert evaluation.dataset == dataset.id
    assert evaluation.labels[REMOTE_SESSION_LABEL] == audit.session
    service = evaluation.inferenceSession.inferenceService
    assert service.interface == client.inferenceservices.get(audit.service).interface
    assert client.evaluations.get(evaluation_id) is None  # the evaluation is local only
    with pytest.raises(errors.NotFoundError):
        client.evaluations.require(evaluation_id)

    outputs = local.evaluations.open(evaluation_id).to_table()
    assert outputs.column_names[:3] == ["_index_", "_replication_", "responses"]
    assert sorted(outputs["_index_"].to_pylist()) == list(range(ROWS))  # each exactly once
    assert pc.count_distinct(outputs["_replication_"]).as_py() == 1
    first = outputs.filter(pc.equal(outputs["_index_"], 0))["responses"][0].as_py()
    remote = client.inferencesessions.infer(audit.session, "generate", {"text": "prompt 0"})
    assert [r["text"] for r in first] == [r["text"] for r in remote]  # the server answered

    again = local.evaluations.local_evaluation(dataset=dataset.id, inferencesession=audit.session)
    assert again != evaluation_id
    proxies = local.inferenceservices.query(labels={REMOTE_SESSION_LABEL: audit.session})
    assert len(proxies) == 1  # the session's stand-in is made once
    assert proxy_secret_name(audit.session) in local.secrets.names()


def test_local_evaluation_refuses_a_stopped_session_and_a_remote_dataset(
    local: LocalPlatform, client: Client, audit: Audit, tmp_path: Path
) -> None:
    with pytest.raises(errors.NotFoundError, match=r"datasets\.fetch"):
        local.evaluations.local_evaluation(dataset=audit.dataset, inferencesession=audit.session)
    local.datasets.fetch(audit.dataset)
    stopped = client.inferencesessions.create(
        {"account": ALICE, "inferenceService": audit.service}
    ).inferencesession.id
    client.inferencesessions.wait(stopped, timeout=60)
    client.inferencesessions.terminate(stopped)
    with pytest.raises(errors.ConflictError, match="Terminated"):
        local.evaluations.local_evaluation(dataset=audit.dataset, inferencesession=stopped)
    assert local.evaluations.query() == []
