"""``Client.<jobs>.terminate(id)`` against a real server (its workflows in worker processes):
a running Measurement stops, its process killed; ended work is a ConflictError."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pyarrow as pa
import pytest
from tests.client.conftest import ALICE

from assay import errors
from assay.client import Client
from assay.local import mocks
from assay.schema.dataschema import DataSchema
from assay.schema.status import Reason, Status

SLOW = """
import os
import time
import pyarrow as pa

def slow(args, **inputs):
    print("pid", os.getpid(), flush=True)
    time.sleep(60)
    return pa.table({"x": pa.array([1], pa.int64())})
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _processes_naming(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            # a job started through bwrap names its config in its command line; one forked
            # from the sandboxed fork server has its folder as its working directory
            try:
                if text.encode() in (entry / "cmdline").read_bytes() or text in os.readlink(
                    entry / "cwd"
                ):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _slow_measurement(alice: Client, tmp_path: Path) -> str:
    package = tmp_path / "slowpkg"
    (package / "slowterminate").mkdir(parents=True)
    (package / "slowterminate" / "__init__.py").write_text(SLOW)
    module = alice.modules.upload_package(
        alice.modules.create_package(package, account=ALICE, name="slow"), package
    )
    schema = DataSchema.from_arrow(pa.schema([("x", pa.int64())])).model_dump(by_alias=True)
    method = alice.methods.create(
        {
            "account": ALICE,
            "name": "slow",
            "scope": "InferenceService",
            "implementation": {
                "kind": "PythonFunction",
                "pythonFunction": {"fullyQualifiedName": "slowterminate.slow"},
            },
            "inputs": [],
            "output": {
                "kind": "Measurement",
                "measurement": {"name": "slow", "level": "Dataset", "schema": schema},
            },
            "modules": [module.id],
        }
    )
    service = alice.inferenceservices.create_mock(mocks.TextCompletion, account=ALICE)
    measurement = alice.measurements.create(
        {"account": ALICE, "method": method.id, "scope": {"inferenceService": service.id}}
    )
    return measurement.id


def test_terminating_a_running_measurement_on_the_server(alice: Client, tmp_path: Path) -> None:
    measurement = _slow_measurement(alice, tmp_path)
    deadline = time.monotonic() + 30
    while not (found := re.search(r"pid (\d+)", alice.measurements.logs(measurement))):
        assert time.monotonic() < deadline, "the Method did not start"
        time.sleep(0.05)
    # the server's multi-user default runs the Method in the sandbox, whose process ids are
    # its own: find the host's processes by their command line (the analysis's config path)
    pids = _processes_naming(measurement) or [int(found.group(1))]
    terminated = alice.measurements.terminate(measurement)
    assert (terminated.status, terminated.reason) == (Status.Terminated, Reason.TerminateCommand)
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in pids):
        assert time.monotonic() < deadline, "the Method's process still runs 5 s later"
        time.sleep(0.05)
    assert alice.measurements.get(measurement).status == Status.Terminated
    with pytest.raises(errors.ConflictError) as info:
        alice.measurements.terminate(measurement)
    assert measurement in str(info.value) and "Terminated (TerminateCommand)" in str(info.value)
