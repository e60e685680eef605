"""Sandboxed analyses forked from their fork server confine themselves (assay/confine.py):
what a job sees and may do, and that one job cannot reach another — tried from inside real
confined jobs, forked by a fresh interpreter as the fork server forks them. Then through the
platform: an analysis runs confined on the fork path and on the bubblewrap path alike."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.postgres import in_ci
from tests.security.test_sandbox import _measure, _module

from assay.local import LocalPlatform
from assay.schema.status import Status

pytestmark = [
    pytest.mark.skipif(
        shutil.which("bwrap") is None and not in_ci(), reason="bubblewrap is not installed"
    ),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux namespaces"),
]

CANARY = "canary-of-the-forking-process-environment"

#: Forks confined jobs as the analysis fork server does (a subreaper; each job's relay ends at
#: once); each job runs one probe of PROBES and writes what it found to its writable folder.
DRIVER = r"""
import dataclasses, json, os, sys, time
from pathlib import Path
from assay import confine, sandbox
from assay.policy import SandboxLimits

work, secret, port = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
probes = sys.argv[4:]
exec(compile(Path(work / "probes.py").read_text(), "probes.py", "exec"))


confine.become_subreaper()


def start(name):
    out = work / name
    out.mkdir()
    report, told = os.pipe()
    relay = os.fork()
    if relay:
        os.close(told)
        with os.fdopen(report) as said:
            return int(said.readline())  # the job, which this process adopts
    os.close(report)
    try:
        confine.start(told)
        job = sandbox.Job(read_only=[work / "input.txt"], writable=[out], hide=[secret.parent])
        confine.enter(
            sandbox.plan(job),
            cwd=str(out),
            limits=dataclasses.asdict(SandboxLimits()),
            env={"ONLY": "this"},
        )
        result = PROBES[name](work, secret, port)
        (out / "result.json").write_text(json.dumps(result))
    finally:
        os._exit(0)


children = {start(name): name for name in probes}
codes = {}
while len(codes) < len(children):
    pid, status = os.wait()  # relays and jobs alike
    if pid in children:
        codes[children[pid]] = os.waitstatus_to_exitcode(status)
print(json.dumps(codes))
"""

PROBES = r"""
import errno, os, signal, socket, time


def _try(action):
    try:
        return "ALLOWED: " + repr(action())[:200]
    except BaseException as exc:  # noqa: BLE001
        return "denied: " + type(exc).__name__


def _status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()


def facts(work, secret, port):
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    nested = libc.unshare(0x10000000)  # CLONE_NEWUSER
    return {
        "pid": os.getpid(),
        "uid": os.getuid(),
        "hostname": socket.gethostname(),
        "processes": sorted(p for p in os.listdir("/proc") if p.isdigit()),
        "cap_effective": _status("CapEff"),
        "cap_bounding": _status("CapBnd"),
        "no_new_privs": _status("NoNewPrivs"),
        "nested_userns": nested,
        "interfaces": sorted(name for _, name in socket.if_nameindex()),
        "secret": _try(lambda: open(secret).read()),
        "secret_dir": _try(lambda: os.listdir(secret.parent)),
        "input_read": _try(lambda: open(work / "input.txt").read()),
        "input_write": _try(lambda: open(work / "input.txt", "a").write("x")),
        "host_port": _try(lambda: socket.create_connection(("127.0.0.1", port), 2)),
        "etc": sorted(os.listdir("/etc")),
        "environ": dict(os.environ),
        "initial_environ": open("/proc/self/environ", "rb").read().decode(errors="replace"),
        "loopback": _try(_loopback),
    }


def _loopback():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), 2):
            return "connected"


def killer(work, secret, port):
    time.sleep(0.5)  # the victim is running
    try:
        os.kill(-1, signal.SIGKILL)  # every process this job may signal
        killed = "kill(-1) sent"
    except OSError as exc:
        killed = "kill(-1): " + errno.errorcode[exc.errno]
    reached = []
    for pid in range(2, 4096):
        try:
            os.kill(pid, 0)
            reached.append(pid)
        except OSError:
            pass
    return {"killed": killed, "reached": reached}


def victim(work, secret, port):
    time.sleep(3)
    return {"alive": True}


PROBES = {"facts": facts, "killer": killer, "victim": victim}
"""


def _drive(tmp_path: Path, *probes: str) -> tuple[dict[str, int], dict[str, Any]]:
    work = tmp_path / "work"
    work.mkdir()
    (work / "probes.py").write_text(PROBES)
    (work / "input.txt").write_text("the job's input")
    secret = tmp_path / "data" / ".assay" / "secret.key"
    secret.parent.mkdir(parents=True)
    secret.write_text("the platform's key")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        env = {**os.environ, "ASSAY_TEST_CANARY": CANARY}
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                DRIVER,
                str(work),
                str(secret),
                str(listener.getsockname()[1]),
                *probes,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    codes = json.loads(done.stdout.strip().splitlines()[-1])
    results = {}
    for name in probes:
        path = work / name / "result.json"
        results[name] = json.loads(path.read_text()) if path.exists() else None
    return codes, results


def test_a_confined_job_sees_only_its_own_world(tmp_path: Path) -> None:
    codes, results = _drive(tmp_path, "facts")
    assert codes == {"facts": 0}
    facts = results["facts"]
    assert facts is not None
    # alone in its PID namespace, as nobody, on a host of its own
    assert facts["pid"] == 1 and facts["processes"] == ["1"], facts["processes"]
    assert facts["uid"] == 65534 and facts["hostname"] == "sandbox"
    # no capability at all, no way to gain one
    assert int(facts["cap_effective"], 16) == 0 and int(facts["cap_bounding"], 16) == 0
    assert facts["no_new_privs"] == "1"
    assert facts["nested_userns"] == -1
    # a network of its own: loopback only, nothing of the host's
    assert facts["interfaces"] == ["lo"]
    assert facts["loopback"].startswith("ALLOWED")
    assert facts["host_port"].startswith("denied"), facts["host_port"]
    # the data directory is hidden; its input is readable, not writable
    assert facts["secret"].startswith("denied") and facts["secret_dir"] == "ALLOWED: []"
    assert facts["input_read"] == 'ALLOWED: "the job\'s input"'
    assert facts["input_write"].startswith("denied"), facts["input_write"]
    assert (tmp_path / "work" / "input.txt").read_text() == "the job's input"
    # a root of its own: of the host's /etc, only the short list of harmless files
    assert "shadow" not in facts["etc"] and "hostname" not in facts["etc"], facts["etc"]
    # its environment is what it was given, and the forking process's initial one (readable
    # at /proc/self/environ whatever the job sets) is not reachable either
    assert facts["environ"] == {"ONLY": "this"}
    assert CANARY not in facts["initial_environ"]


def test_a_job_cannot_signal_its_sibling_or_the_server(tmp_path: Path) -> None:
    codes, results = _drive(tmp_path, "victim", "killer")
    killer = results["killer"]
    assert killer is not None and codes["killer"] == 0
    assert killer["reached"] == [], killer  # no process of the host is even visible
    # the sibling ran to its end, and so did the process that forked both
    assert codes["victim"] == 0 and results["victim"] == {"alive": True}


METHOD = """
import json, os, socket
import pyarrow as pa


def where(args, **inputs):
    print("WHERE " + json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "uid": os.getuid()}), flush=True)
    return pa.table({"x": [1]})
"""


@pytest.mark.parametrize("fork", ["1", "0"])
def test_analyses_run_confined_on_either_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fork: str
) -> None:
    monkeypatch.setenv("ASSAY_SANDBOX_FORK", fork)
    with LocalPlatform(tmp_path / "platform", account="a", sandbox=True) as platform:
        module = _module(platform, "a", tmp_path, "where", METHOD)  # type: ignore[arg-type]
        measurement = _measure(platform, "a", module, "where.where")  # type: ignore[arg-type]
        assert measurement.status == Status.Complete, measurement.message
        line = next(
            line
            for line in platform.measurements.logs(measurement.id).splitlines()
            if "WHERE " in line
        )
    where = json.loads(line.partition("WHERE ")[2])
    assert where["host"] == "sandbox" and where["uid"] == 65534
    # forked and confined: PID 1 of its own namespace; under bubblewrap: bwrap's child
    assert where["pid"] == (1 if fork == "1" else 2), where


def test_the_fork_server_starts_confined_jobs_back_to_back_and_at_once() -> None:
    """The first request takes the spare, the others are forked on demand meanwhile; then a
    new spare serves the next round."""
    import dataclasses
    import tempfile

    from assay import sandbox
    from assay.analysis import launcher
    from assay.policy import SandboxLimits

    server = launcher._ForkServer(env=sandbox.environment(sandbox.Job()))
    try:
        confinement = {
            "plan": sandbox.plan(sandbox.Job()),
            "limits": dataclasses.asdict(SandboxLimits()),
            "probe": True,
        }
        with tempfile.NamedTemporaryFile() as log:
            for _ in range(2):
                started = [
                    server.start(
                        Path(os.devnull),
                        log_path=Path(log.name),
                        cwd=Path(sandbox.JOB_HOME),
                        env={},
                        confinement=confinement,
                    )
                    for _ in range(4)
                ]
                pids = {job.started.result() for job in started}
                assert len(pids) == 4
                assert [job.poll(60) for job in started] == [0, 0, 0, 0], log.read()
    finally:
        server.close()
