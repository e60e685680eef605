"""``GET /R/{id}/logs/workflow`` for every workflow kind, the Client's ``logs`` and
``log_lines`` and ``assay <kind> logs``, against a real server on loopback: an evaluation's
workflow lines (written here with ``WorkflowLog``, as its engine does), a ``python``-runner
session whose replica prints, ``limit`` and ``since``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pyarrow as pa
import pytest
from tests.client.test_audit import MEASURE, measurement_method, write_dataset
from tests.local.test_remote import ALICE, Server, serve

from assay import errors
from assay.cli import main
from assay.client import Client
from assay.engine.logs import WorkflowLog, format_log
from assay.local import mocks
from assay.schema.dataschema import DataSchema

TALKER = '''
class Talker:
    """Echoes the text; prints as it loads and as it answers."""

    endpoints = ["echo"]

    def __init__(self):
        print("talker: loading the weights", flush=True)

    def infer(self, endpoint, request):
        print(f"talker: answering {request['text']!r}", flush=True)
        return [{"text": request["text"]}]
'''


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("logs") / "server") as running:
        yield running


@pytest.fixture
def client(live: Server) -> Iterator[Client]:
    with live.client() as made:
        yield made


def _route(live: Server, resource: str, id: str, **params: Any) -> Any:
    response = httpx.get(
        f"{live.url}/v0/{resource}/{id}/logs/workflow",
        params=params,
        headers={"Authorization": f"Bearer {live.token()}"},
    )
    assert response.status_code == 200, response.text
    return response.json()


def _wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_an_evaluations_log_through_route_client_and_cli(
    live: Server,
    client: Client,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    directory = write_dataset(tmp_path / "data")
    dataset = client.datasets.create_arrow_dataset(directory, account=ALICE, name="prompts")
    dataset = client.datasets.upload_arrow_dataset(dataset, directory)
    service = client.inferenceservices.create_mock(mocks.TextCompletion, account=ALICE)
    evaluation = client.evaluations.create(
        {
            "account": ALICE,
            "dataset": dataset.id,
            "inferenceSession": {"inferenceService": service.id},
        }
    ).id
    client.evaluations.wait(evaluation, timeout=60)
    log = WorkflowLog(live.core.storage, evaluation)
    mine = ["settings: concurrency 8", "concurrency 8 -> 4 (timeouts)", "retried 3 (timeout)"]
    log.write(mine[0], setting="concurrency")
    log.write(mine[1])
    log.write(mine[2], retry="timeout")

    answer = _route(live, "evaluations", evaluation)
    assert answer["workflow"] == {"kind": "Evaluation", "id": evaluation}
    assert answer["totalLines"] == len(answer["logs"]) >= 3
    entries = [e for e in answer["logs"] if e["message"] in mine]
    assert [e["message"] for e in entries] == mine
    assert [e["labels"] for e in entries] == [
        {"stream": "workflow", "setting": "concurrency"},
        {"stream": "workflow"},
        {"stream": "workflow", "retry": "timeout"},
    ]
    stamps = [e["timestamp"] for e in entries]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3  # each line its own time
    assert all(s.endswith("Z") for s in stamps)
    last = _route(live, "evaluations", evaluation, limit=2)
    assert last["logs"] == answer["logs"][-2:]
    assert last["totalLines"] == answer["totalLines"]
    recent = _route(live, "evaluations", evaluation, since=stamps[2])["logs"]
    assert [e for e in recent if e["message"] in mine] == [entries[2]]
    assert _route(live, "evaluations", evaluation, since="2999-01-01T00:00:00Z")["logs"] == []

    lines = client.evaluations.log_lines(evaluation)
    assert [ln.to_wire() for ln in lines] == answer["logs"]
    assert client.evaluations.logs(evaluation) == format_log(lines)
    assert client.evaluations.logs(evaluation, limit=1) == lines[-1].format() + "\n"
    assert client.evaluations.log_lines(evaluation, since="1h")[-3:] == lines[-3:]
    with pytest.raises(errors.ValidationError, match=f"Evaluation {evaluation}: since 'soon'"):
        client.evaluations.logs(evaluation, since="soon")

    monkeypatch.setenv("ASSAY_API_ENDPOINT", live.url)
    monkeypatch.setenv("ASSAY_API_TOKEN", live.token())
    assert main(["evaluations", "logs", evaluation, "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [ln.format() for ln in lines[-2:]]
    assert main(["evaluations", "logs", evaluation, "--since", "soon"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "since 'soon'" in err

    # kinds without a log of their own answer an empty one, in the same shape
    assert _route(live, "datasets", dataset.id) == {
        "workflow": {"kind": "Dataset", "id": dataset.id},
        "logs": [],
        "totalLines": 0,
    }


def test_a_python_sessions_replica_output(live: Server, client: Client, tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "talker").mkdir(parents=True)
    (package / "talker" / "__init__.py").write_text(TALKER)
    module = client.modules.create_package(package, account=ALICE, name="talker")
    module = client.modules.upload_package(module, package)
    schema = DataSchema.make_output_schema(pa.schema([pa.field("text", pa.string())]))
    service = client.inferenceservices.create(
        {
            "account": ALICE,
            "name": "talker",
            "runner": {
                "kind": "python",
                "configuration": {"module": module.id, "target": "talker:Talker"},
            },
            "interface": {"endpoint": "echo", "outputSchema": schema.model_dump(by_alias=True)},
        }
    )
    session = client.inferencesessions.create(
        {"account": ALICE, "inferenceService": service.id}
    ).inferencesession.id
    try:
        assert client.inferencesessions.wait(session, timeout=60).status == "Ready"
        assert client.inferencesessions.infer(session, "echo", {"text": "hi"}) == [{"text": "hi"}]

        def replica_lines() -> list[Any]:
            return [
                e
                for e in _route(live, "inferencesessions", session)["logs"]
                if e["labels"].get("stream") == "replica"
            ]

        _wait_for(lambda: any("answering 'hi'" in e["message"] for e in replica_lines()))
        printed = [e["message"] for e in replica_lines()]
        # The service loads in a thread while the server prints its listening line: the two
        # may share a line of output (print writes the text and its newline apart).
        loading = next(i for i, m in enumerate(printed) if "talker: loading the weights" in m)
        assert printed.index("talker: answering 'hi'") > loading  # in file order
        assert {e["labels"]["replica"] for e in replica_lines()} == {"0"}
        text = client.inferencesessions.logs(session)
        assert "talker: loading the weights" in text
        assert "[replica 0] talker: answering 'hi'\n" in text
    finally:
        client.inferencesessions.terminate(session)


@pytest.mark.slow
def test_a_failed_safety_cases_log_and_partial_notebook_are_downloaded(
    client: Client, tmp_path: Path
) -> None:
    package = tmp_path / "pkg"
    (package / "lengthaudit").mkdir(parents=True)
    (package / "lengthaudit" / "__init__.py").write_text(MEASURE)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Fails"),
        nbformat.v4.new_code_cell('print("before the failure")'),
        nbformat.v4.new_code_cell("{}['missing']"),
    ]
    nbformat.write(nb, package / "fails.ipynb")
    module = client.modules.create_package(package, account=ALICE, name="lengthaudit")
    module = client.modules.upload_package(module, package)
    directory = write_dataset(tmp_path / "data")
    dataset = client.datasets.create_arrow_dataset(directory, account=ALICE, name="prompts")
    dataset = client.datasets.upload_arrow_dataset(dataset, directory)
    service = client.inferenceservices.create_mock(mocks.TextCompletion, account=ALICE)
    evaluation = client.evaluations.create(
        {
            "account": ALICE,
            "dataset": dataset.id,
            "inferenceSession": {"inferenceService": service.id},
        }
    ).id
    method = client.methods.create(measurement_method(module.id)).id
    scope = {"evaluation": evaluation}
    measurement = client.measurements.create(
        {
            "account": ALICE,
            "method": method,
            "scope": scope,
            "inputs": [{"keyword": "evaluation", "entity": evaluation}],
        }
    ).id
    notebook = client.methods.create(
        {
            "account": ALICE,
            "name": "fails",
            "scope": "Evaluation",
            "implementation": {
                "kind": "JupyterNotebook",
                "jupyterNotebook": {"notebookModule": module.id, "notebookPath": "fails.ipynb"},
            },
            "inputs": [{"kind": "Measurement", "keyword": "lengths"}],
            "output": {"kind": "SafetyCase", "safetyCase": {"name": "Fails"}},
            "modules": [module.id],
        }
    ).id
    case = client.safetycases.create(
        {
            "account": ALICE,
            "method": notebook,
            "scope": scope,
            "inputs": [{"keyword": "lengths", "entity": measurement}],
        }
    ).id
    failed = client.safetycases.wait(case, timeout=120)
    assert failed.status == "Failed"
    assert "cell 3 (code cell 2) raised KeyError: 'missing'" in (failed.message or "")
    assert f"assay safetycases logs {case}" in (failed.message or "")

    text = client.safetycases.logs(case)
    assert "[method] [cell 2] before the failure\n" in text
    assert "[method]     1 | {}['missing']\n" in text
    assert "KeyError: 'missing'" in text
    method_lines = [ln for ln in client.safetycases.log_lines(case) if ln.stream == "method"]
    assert method_lines and all(ln.labels == {"stream": "method"} for ln in method_lines)

    files = client.safetycases.download(case, tmp_path / "failed")
    assert [f.relative_to(tmp_path / "failed").as_posix() for f in files] == ["notebook.ipynb"]
    partial = nbformat.read(files[0], as_version=4)
    assert partial.cells[1].outputs[0].text == "before the failure\n"
    assert partial.cells[2].outputs[0].ename == "KeyError"
