"""``assay <kind> watch ID`` and ``assay <kind> terminate ID`` against a real server on
loopback, through ``main(argv)``: status changes and new log lines each printed once, the exit
status of ``wait``, and a terminate that names the status of what has ended."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from tests.local.test_remote import ALICE, Server, serve

from assay.cli import main
from assay.client import Client
from assay.local import mocks
from assay.schema.dataschema import DataSchema

STEPS = """
import time
import pyarrow as pa

def steps(args, **inputs):
    for i in range(int(args.get("steps", "3"))):
        print("step", i, flush=True)
        time.sleep(float(args.get("pause", "0.3")))
    return pa.table({"x": pa.array([1], pa.int64())})
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("watch") / "server") as running:
        yield running


@pytest.fixture
def client(server: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    monkeypatch.setenv("ASSAY_API_ENDPOINT", server.url)
    monkeypatch.setenv("ASSAY_API_TOKEN", server.token())
    with server.client() as made:
        yield made


@pytest.fixture(scope="module")
def method(server: Server, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A Method that prints ``step i`` every ``pause`` seconds, ``steps`` times, and a
    service to scope it to."""
    package = tmp_path_factory.mktemp("steps") / "pkg"
    (package / "stepmethod").mkdir(parents=True)
    (package / "stepmethod" / "__init__.py").write_text(STEPS)
    schema = DataSchema.from_arrow(pa.schema([("x", pa.int64())])).model_dump(by_alias=True)
    with server.client() as client:
        module = client.modules.upload_package(
            client.modules.create_package(package, account=ALICE, name="steps"), package
        )
        made = client.methods.create(
            {
                "account": ALICE,
                "name": "steps",
                "scope": "InferenceService",
                "implementation": {
                    "kind": "PythonFunction",
                    "pythonFunction": {"fullyQualifiedName": "stepmethod.steps"},
                },
                "inputs": [],
                "parameters": [{"keyword": "steps"}, {"keyword": "pause"}],
                "output": {
                    "kind": "Measurement",
                    "measurement": {"name": "steps", "level": "Dataset", "schema": schema},
                },
                "modules": [module.id],
            }
        )
        service = client.inferenceservices.create_mock(mocks.TextCompletion, account=ALICE)
    return made.id, service.id


def _measure(client: Client, method: tuple[str, str], steps: int, pause: float) -> str:
    arguments = {"steps": str(steps), "pause": str(pause)}
    return client.measurements.create(
        {
            "account": ALICE,
            "method": method[0],
            "scope": {"inferenceService": method[1]},
            "arguments": [{"keyword": k, "value": v} for k, v in arguments.items()],
        }
    ).id


def test_watch_follows_status_and_new_log_lines_until_the_end(
    client: Client, method: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    measurement = _measure(client, method, steps=4, pause=0.3)
    status = main(["measurements", "watch", measurement, "--interval", "0.1"])
    out, err = capsys.readouterr()
    assert status == 0, err
    lines = out.splitlines()
    for i in range(4):  # every line of the log, printed once, in order
        assert sum(line.endswith(f"step {i}") for line in lines) == 1, out
    positions = [
        next(n for n, line in enumerate(lines) if line.endswith(f"step {i}")) for i in range(4)
    ]
    assert positions == sorted(positions)
    assert lines[-1].startswith(f"Measurement {measurement} Complete"), out
    assert sum(" Complete" in line for line in lines) == 1  # a status printed when it changes
    assert err == "", err


def test_watch_of_work_that_is_terminated_exits_1(
    client: Client, method: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    measurement = _measure(client, method, steps=200, pause=0.3)

    def stop_once_it_runs() -> None:
        deadline = time.monotonic() + 30
        while "step 0" not in client.measurements.logs(measurement):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert main(["measurements", "terminate", measurement]) == 0

    stopper = threading.Thread(target=stop_once_it_runs)
    stopper.start()
    status = main(["measurements", "watch", measurement, "--interval", "0.1"])
    stopper.join(30)
    out, err = capsys.readouterr()
    assert status == 1
    assert f"Measurement {measurement} Terminated (TerminateCommand)" in out
    assert "step 0" in out and "step 199" not in out
    assert "ended Terminated (TerminateCommand)" in err

    # terminating it again: one error line that names its status
    assert main(["measurements", "terminate", measurement]) == 2
    err = capsys.readouterr().err
    assert err.startswith("assay: error: ") and err.count("\n") == 1, err
    assert measurement in err and "Terminated (TerminateCommand)" in err


def test_watch_of_a_kind_without_logs(
    client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    service = client.inferenceservices.create_mock(mocks.TextCompletion, account=ALICE)
    assert main(["inferenceservices", "watch", service.id]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [f"InferenceService {service.id} Ready"]


def test_terminate_is_offered_for_jobs_and_sessions_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for kind in ("evaluations", "inferencesessions", "measurements", "safetycases"):
        with pytest.raises(SystemExit) as info:
            main([kind, "terminate", "--help"])
        assert info.value.code == 0
        assert "Terminated" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["datasets", "terminate", "0" * 32])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
