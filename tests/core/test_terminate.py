"""``terminate(id)`` of jobs (evaluations, measurements, safety cases) and sessions: running
work stops, keeping what it wrote; waiting work never starts; ended work is a conflict."""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
from tests.conftest import ACCOUNT, evaluation_request, until, write_dataset

from assay import errors
from assay.core.groups import TerminableGroup
from assay.local import LocalPlatform, mocks
from assay.schema.dataschema import DataSchema
from assay.schema.requests import InferenceSessionCreateRequest
from assay.schema.status import Reason, Status
from assay.server.routes.entities import TERMINABLE

SLOW = """
import os
import time
import pyarrow as pa

def slow(args, **inputs):
    print("pid", os.getpid(), flush=True)
    time.sleep(60)
    return pa.table({"x": pa.array([1], pa.int64())})
"""


def _slow_method(platform: LocalPlatform, tmp_path: Path) -> str:
    package = tmp_path / "slowpkg"
    (package / "slowmethod").mkdir(parents=True)
    (package / "slowmethod" / "__init__.py").write_text(SLOW)
    module = platform.modules.upload_package(
        platform.modules.create_package(package, account=ACCOUNT, name="slow"), package
    )
    schema = DataSchema.from_arrow(pa.schema([("x", pa.int64())])).model_dump(by_alias=True)
    method = platform.methods.create(
        {
            "account": ACCOUNT,
            "name": "slow",
            "scope": "InferenceService",
            "implementation": {
                "kind": "PythonFunction",
                "pythonFunction": {"fullyQualifiedName": "slowmethod.slow"},
            },
            "inputs": [],
            "output": {
                "kind": "Measurement",
                "measurement": {"name": "slow", "level": "Dataset", "schema": schema},
            },
            "modules": [module.id],
        }
    )
    return method.id


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _start_measurement(
    platform: LocalPlatform, tmp_path: Path
) -> tuple[str, int, threading.Thread]:
    """A Measurement whose Method sleeps, created (inline: blocking) in a thread of its own;
    returns its id and its process's pid once it runs."""
    method = _slow_method(platform, tmp_path)
    service = platform.inferenceservices.create_mock(mocks.TextCompletion, account=ACCOUNT)
    request = {"account": ACCOUNT, "method": method, "scope": {"inferenceService": service.id}}
    runner = threading.Thread(target=platform.measurements.create, args=(request,), daemon=True)
    runner.start()
    found = until(lambda: platform.measurements.query(method=method), 30, "it was not created")
    measurement = found[0].id
    logs = until(
        lambda: re.search(r"pid (\d+)", platform.measurements.logs(measurement)),
        30,
        "the Method did not start",
    )
    return measurement, int(logs.group(1)), runner


def test_terminating_a_running_measurement_stops_its_process(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    measurement, pid, runner = _start_measurement(platform, tmp_path)
    assert platform.measurements.get(measurement).status == Status.Admitted
    started = time.monotonic()
    terminated = platform.measurements.terminate(measurement)
    assert (terminated.status, terminated.reason) == (Status.Terminated, Reason.TerminateCommand)
    runner.join(5)
    assert not runner.is_alive(), "create() still blocks: the handler did not stop"
    until(lambda: not _pid_alive(pid), 5, "the Method's process was not killed")
    assert time.monotonic() - started < 5
    ended = platform.measurements.get(measurement)
    assert (ended.status, ended.reason) == (Status.Terminated, Reason.TerminateCommand)
    # what it wrote stays: the log of the Method's output
    assert f"pid {pid}" in platform.measurements.logs(measurement)
    # terminating it again is a conflict that names its status
    with pytest.raises(errors.ConflictError) as info:
        platform.measurements.terminate(measurement)
    assert measurement in str(info.value) and "Terminated (TerminateCommand)" in str(info.value)


def test_deleting_a_running_measurement_stops_it_as_terminate_does(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    measurement, pid, runner = _start_measurement(platform, tmp_path)
    platform.measurements.delete(measurement)
    runner.join(5)
    assert not runner.is_alive()
    until(lambda: not _pid_alive(pid), 5, "the Method's process was not killed")
    deleted = platform.measurements.get(measurement)
    assert (deleted.status, deleted.reason) == (Status.Deleted, Reason.DeleteCommand)
    with pytest.raises(errors.ConflictError, match="it is Deleted"):
        platform.measurements.terminate(measurement)


def test_terminating_waiting_work_means_it_never_runs(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    data = write_dataset(tmp_path / "data")
    dataset = platform.datasets.create_arrow_dataset(data, account=ACCOUNT, name="d")
    service = platform.inferenceservices.create_mock(mocks.TextCompletion, account=ACCOUNT)
    evaluation = platform.evaluations.create(evaluation_request(dataset.id, service.id))
    assert (evaluation.status, evaluation.reason) == (Status.Created, "UnsatisfiedDependency")
    terminated = platform.evaluations.terminate(evaluation.id)
    assert (terminated.status, terminated.reason) == (Status.Terminated, Reason.TerminateCommand)
    platform.datasets.upload_arrow_dataset(dataset, data)  # the dependency is now Ready
    assert platform.evaluations.get(evaluation.id).status == Status.Terminated
    assert platform.core.storage.list(evaluation.id) == []  # it never ran


def test_terminating_ended_work_is_a_conflict_naming_its_status(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    data = write_dataset(tmp_path / "data", rows=3)
    dataset = platform.datasets.upload_arrow_dataset(
        platform.datasets.create_arrow_dataset(data, account=ACCOUNT, name="d"), data
    )
    service = platform.inferenceservices.create_mock(mocks.TextCompletion, account=ACCOUNT)
    evaluation = platform.evaluations.create(evaluation_request(dataset.id, service.id))
    assert evaluation.status == Status.Complete, evaluation.message
    with pytest.raises(errors.ConflictError) as info:
        platform.evaluations.terminate(evaluation.id)
    message = str(info.value)
    assert evaluation.id in message and "it is Complete" in message
    assert "create a new one" in message.lower()
    assert platform.evaluations.get(evaluation.id).status == Status.Complete
    with pytest.raises(errors.NotFoundError):
        platform.evaluations.terminate("0" * 32)


def test_terminating_an_ended_session_is_a_conflict(platform: LocalPlatform) -> None:
    service = platform.inferenceservices.create_mock(mocks.TextCompletion, account=ACCOUNT)
    session = platform.inferencesessions.create(
        InferenceSessionCreateRequest(account=ACCOUNT, inferenceService=service.id)
    ).inferencesession
    assert platform.inferencesessions.terminate(session.id).status == Status.Terminated
    with pytest.raises(errors.ConflictError) as info:
        platform.inferencesessions.terminate(session.id)
    assert session.id in str(info.value) and "Terminated (TerminateCommand)" in str(info.value)


def test_the_groups_with_terminate_are_the_jobs(platform: LocalPlatform) -> None:
    """The server's terminate routes (TERMINABLE) are those of the groups that have one."""
    groups = {
        name for name in vars(platform) if isinstance(getattr(platform, name), TerminableGroup)
    }
    assert groups == set(TERMINABLE) == {"evaluations", "measurements", "safetycases"}
    assert callable(platform.inferencesessions.terminate)  # sessions: their own
