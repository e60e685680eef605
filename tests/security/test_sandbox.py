"""User code of one account against the server: a Method, a notebook and a ``python`` replica
of bob's try to read the signing key, the database, alice's files and the server's
environment, to write into alice's entity, to reach the network, and to smuggle a file out
through a link — on a real multi-user ``assay serve``, whose sandbox must stop each of them.
Then the limits: a fork bomb, a memory hog and a huge file fail the job, with the cause, and
leave the server answering."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from tests.postgres import in_ci
from tests.server.loopback import Served, assay_command, free_port, serve

from assay.client import Client
from assay.local import mocks
from assay.schema.dataschema import DataSchema
from assay.schema.status import Status

pytestmark = [
    # under CI a missing bwrap fails these tests (make test installs it)
    pytest.mark.skipif(
        shutil.which("bwrap") is None and not in_ci(), reason="bubblewrap is not installed"
    ),
    pytest.mark.slow,
]

ALICE, BOB = "alice", "bob"
CANARY = "canary-value-the-server-environment-holds"

ATTACK = """
import json, os, socket, hashlib, pathlib

DATA = pathlib.Path({data!r})
VICTIM_FILE = {victim_file!r}
VICTIM_DIR = pathlib.Path({victim_dir!r})
PORT = {port!r}


def _try(results, name, action):
    try:
        value = action()
    except BaseException as exc:  # noqa: BLE001
        results[name] = "denied: " + type(exc).__name__
    else:
        results[name] = "ALLOWED: " + repr(value)[:200]


def probe():
    results = {{}}
    _try(results, "key", lambda: (DATA / ".assay" / "secret.key").read_bytes().hex())
    _try(results, "database", lambda: (DATA / "assay.db").read_bytes()[:16])
    _try(results, "data_dir", lambda: sorted(os.listdir(DATA)))
    _try(results, "victim_read", lambda: open(VICTIM_FILE, "rb").read(16))
    _try(results, "victim_write", lambda: (VICTIM_DIR / "pwned").write_text("x"))
    _try(results, "server_port", lambda: socket.create_connection(("127.0.0.1", PORT), 2))
    _try(results, "outside", lambda: socket.create_connection(("10.255.255.1", 80), 2))
    _try(results, "proc_1", lambda: open("/proc/1/environ", "rb").read().split(b"\\0"))
    _try(results, "root_home", lambda: os.listdir("/root") and os.listdir(os.path.expanduser("~root/.ssh")))
    results["environment"] = sorted(os.environ)
    results["canary"] = any({canary!r} in v for v in os.environ.values())
    return results


def attack(args, **inputs):
    import pyarrow as pa

    config = json.load(open(os.environ["ASSAY_ANALYSIS_CONFIG"]))
    output = pathlib.Path(config["output"])
    # try to smuggle the key out as an output file, through links
    os.symlink(DATA / ".assay" / "secret.key", output / "leak.txt")
    os.symlink(DATA, output / "everything")
    results = probe()
    print("ATTACK " + json.dumps(results), flush=True)
    return pa.table({{"x": [1]}})


class Replica:
    def infer(self, endpoint, body):
        return [{{"text": json.dumps(probe())}}]
"""

NOTEBOOK_CELL = """
import hashlib, pathlib
try:
    key = (pathlib.Path({data!r}) / ".assay" / "secret.key").read_bytes()
    print("KEYHASH", hashlib.sha256(key).hexdigest())
except OSError as exc:
    print("denied", type(exc).__name__)
"""

LIMITS = """
import os, time


def fork_bomb(args, **inputs):
    children = []
    for _ in range(10_000):
        pid = os.fork()
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        children.append(pid)
    raise SystemExit("forked 10000 processes")


def memory_hog(args, **inputs):
    blocks = [bytearray(64 << 20) for _ in range(64)]  # 4 GiB
    raise SystemExit(f"allocated {{len(blocks)}} blocks")


def cpu_burn(args, **inputs):
    while True:
        pass


def huge_file(args, **inputs):
    with open("/tmp/home/big", "wb") as file:
        for _ in range(64):
            file.write(b"x" * (1 << 20))
    raise SystemExit("wrote 64 MiB")
"""


@pytest.fixture(scope="module")
def attack_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    env = {
        "ASSAY_TEST_CANARY": CANARY,
        "ASSAY_SANDBOX_MEMORY_MB": "1536",
        "ASSAY_SANDBOX_PROCESSES": "64",
        "ASSAY_SANDBOX_FILE_MB": "16",
        "ASSAY_SANDBOX_CPU_SECONDS": "5",
    }
    with serve(tmp_path_factory.mktemp("sandbox"), env=env) as served:
        yield served


def _schema() -> dict[str, Any]:
    return DataSchema.from_arrow(pa.schema([("x", pa.int64())])).model_dump(by_alias=True)


def _module(client: Client, account: str, directory: Path, name: str, source: str) -> str:
    package = directory / name
    (package / name).mkdir(parents=True)
    (package / name / "__init__.py").write_text(source)
    module = client.modules.create_package(package, account=account, name=name)
    client.modules.upload_package(module, package)
    return module.id


def _measure(client: Client, account: str, module: str, function: str) -> Any:
    method = client.methods.create(
        {
            "account": account,
            "name": function.rpartition(".")[2],
            "scope": "InferenceService",
            "implementation": {
                "kind": "PythonFunction",
                "pythonFunction": {"fullyQualifiedName": function},
            },
            "inputs": [],
            "output": {
                "kind": "Measurement",
                "measurement": {"name": "probe", "level": "Dataset", "schema": _schema()},
            },
            "modules": [module],
        }
    )
    service = client.inferenceservices.create_mock(mocks.TextCompletion, account=account)
    measurement = client.measurements.create(
        {"account": account, "method": method.id, "scope": {"inferenceService": service.id}}
    )
    return client.measurements.wait(measurement.id, timeout=120)


@pytest.fixture(scope="module")
def victim(alice: Client, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Alice's Module, with a file bob would like to read."""
    directory = tmp_path_factory.mktemp("victim")
    module = _module(alice, ALICE, directory, "private", "HELD_OUT = 'alice-held-out-answers'\n")
    return {"module": module}


def _attack_source(served: Served, victim: dict[str, str]) -> str:
    victim_dir = served.data / victim["module"]
    victim_file = next(p for p in victim_dir.rglob("*.py"))
    return ATTACK.format(
        data=str(served.data),
        victim_file=str(victim_file),
        victim_dir=str(victim_dir),
        port=int(served.url.rpartition(":")[2]),
        canary=CANARY,
    )


def _denied(results: dict[str, Any], victim: dict[str, str]) -> None:
    # of the data directory, a job sees only its own entities' folders (its Modules, itself)
    assert victim["module"] not in results["data_dir"] and ".assay" not in results["data_dir"]
    assert "assay.db" not in results["data_dir"], results["data_dir"]
    for name in ("key", "database", "victim_read", "victim_write"):
        assert results[name].startswith("denied"), (name, results[name])
    for name in ("server_port", "outside", "root_home"):
        assert results[name].startswith("denied"), (name, results[name])
    assert not results["canary"], "the server's environment reached user code"
    leaked = [n for n in results["environment"] if n.startswith("ASSAY_") and n not in _OWN]
    assert not leaked, leaked
    assert "PATH" in results["environment"] and "HOME" in results["environment"]


_OWN = {"ASSAY_ANALYSIS_CONFIG", "ASSAY_REPLICA_SECRET"}


def test_a_method_reaches_nothing_of_the_server_or_of_another_account(
    attack_server: Served, alice: Client, bob: Client, victim: dict[str, str], tmp_path: Path
) -> None:
    module = _module(bob, BOB, tmp_path, "probe", _attack_source(attack_server, victim))
    measurement = _measure(bob, BOB, module, "probe.attack")
    assert measurement.status == Status.Complete, measurement.message
    line = next(
        line for line in bob.measurements.logs(measurement.id).splitlines() if "ATTACK " in line
    )
    results = json.loads(line.partition("ATTACK ")[2])
    _denied(results, victim)
    assert not (attack_server.data / victim["module"] / "pwned").exists()
    # the links made in the output folder did not bring the key (or anything) back
    files = bob.measurements.download(measurement.id, tmp_path / "out")
    names = {p.name for p in files}
    assert "leak.txt" not in names and "everything" not in names, names
    key = (attack_server.data / ".assay" / "secret.key").read_bytes()
    for path in files:
        assert key not in path.read_bytes()


def test_a_notebook_cannot_print_the_key_into_its_document(
    attack_server: Served, bob: Client, tmp_path: Path
) -> None:
    import nbformat

    package = tmp_path / "nb"
    package.mkdir()
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(NOTEBOOK_CELL.format(data=str(attack_server.data)))]
    nbformat.write(notebook, package / "case.ipynb")
    module = bob.modules.create_package(package, account=BOB, name="nb")
    bob.modules.upload_package(module, package)
    method = bob.methods.create(
        {
            "account": BOB,
            "name": "case",
            "scope": "InferenceService",
            "implementation": {
                "kind": "JupyterNotebook",
                "jupyterNotebook": {"notebookModule": module.id, "notebookPath": "case.ipynb"},
            },
            "inputs": [],
            "output": {"kind": "SafetyCase", "safetyCase": {"name": "case"}},
            "modules": [module.id],
        }
    )
    service = bob.inferenceservices.create_mock(mocks.TextCompletion, account=BOB)
    case = bob.safetycases.create(
        {"account": BOB, "method": method.id, "scope": {"inferenceService": service.id}}
    )
    case = bob.safetycases.wait(case.id, timeout=180)
    assert case.status == Status.Complete, case.message
    key = (attack_server.data / ".assay" / "secret.key").read_bytes()
    logs = bob.safetycases.logs(case.id)
    assert hashlib.sha256(key).hexdigest() not in logs
    assert "denied" in logs, logs


def test_a_replica_cannot_answer_with_the_key(
    attack_server: Served, bob: Client, victim: dict[str, str], tmp_path: Path
) -> None:
    module = _module(bob, BOB, tmp_path, "replica", _attack_source(attack_server, victim))
    schema = DataSchema.make_output_schema(pa.schema([pa.field("text", pa.string())]))
    service = bob.inferenceservices.create(
        {
            "account": BOB,
            "name": "prober",
            "runner": {
                "kind": "python",
                "configuration": {"module": module, "target": "replica:Replica"},
            },
            "interface": {
                "endpoint": "generate",
                "outputSchema": schema.model_dump(by_alias=True),
            },
        }
    )
    created = bob.inferencesessions.create({"account": BOB, "inferenceService": service.id})
    session = bob.inferencesessions.wait(created.inferencesession.id, timeout=120)
    assert session.status == Status.Ready, session.message
    client = bob.inferencesessions.client(session.id, created.token)
    reply = client.infer({"text": "anything"})
    results = json.loads(reply[0]["text"])
    _denied(results, victim)
    bob.inferencesessions.terminate(session.id)


@pytest.mark.parametrize(
    ("function", "cause"),
    [
        (
            "limits.fork_bomb",
            re.compile(r"more than 64 processes|Resource temporarily unavailable"),
        ),
        ("limits.memory_hog", re.compile(r"MemoryError|memory", re.I)),
        ("limits.cpu_burn", re.compile(r"more than 5 s of CPU time")),
        ("limits.huge_file", re.compile(r"File too large|file size|SIGXFSZ|signal 25", re.I)),
    ],
)
def test_limits_fail_the_job_with_the_cause_and_the_server_goes_on(
    attack_server: Served, alice: Client, bob: Client, tmp_path: Path, function: str, cause: Any
) -> None:
    module = _module(bob, BOB, tmp_path, "limits", LIMITS.format())
    measurement = _measure(bob, BOB, module, function)
    assert measurement.status == Status.Failed
    text = f"{measurement.message}\n{bob.measurements.logs(measurement.id)}"
    assert cause.search(text), text
    alice.datasets.query()  # the server answers


def test_a_multi_user_server_refuses_to_start_without_the_sandbox(tmp_path: Path) -> None:
    venv_bin = str(Path(assay_command()[0]).parent)
    done = subprocess.run(
        [*assay_command(), "serve", "--port", str(free_port()), "--data", str(tmp_path / "d")],
        env={"PATH": venv_bin, "HOME": str(tmp_path)},  # no bwrap on this PATH
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "bubblewrap" in done.stderr and "--single-user" in done.stderr, done.stderr
