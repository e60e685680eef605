"""Real replica processes: start, call over HTTP, crash, fail to start, stop, no orphans."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from assay.inference.replicas import (
    ProcessReplica,
    ReplicaStartError,
    python_replica_argv,
    stop_all,
)

SERVICES = """
import sys, time

class Echo:
    endpoints = ["echo"]

    def infer(self, endpoint, request):
        return [{"text": request["text"]}]

class Prefix:
    def __init__(self, prefix):
        self.prefix = prefix

    def infer(self, endpoint, request):
        return [{"text": self.prefix + request["text"]}]

class Slow:
    def __init__(self):
        print("loading the weights...", file=sys.stderr, flush=True)
        time.sleep(600)

class Broken:
    def __init__(self):
        raise RuntimeError("the weights file is corrupt")

class Chatty(Echo):
    def __init__(self, lines):
        for i in range(lines):
            print(f"chatter line {i} " + "x" * 100)
        sys.stdout.flush()
"""


@pytest.fixture
def modules(tmp_path: Path) -> Path:
    directory = tmp_path / "modules"
    directory.mkdir()
    (directory / "services.py").write_text(SERVICES)
    return directory


@pytest.fixture
def replicas() -> Iterator[list[ProcessReplica]]:
    """Replicas a test starts; stopped at the end whatever happens."""
    started: list[ProcessReplica] = []
    yield started
    for replica in started:
        replica.stop()


def make(
    replicas: list[ProcessReplica],
    modules: Path,
    target: str,
    name: str,
    **kwargs: object,
) -> ProcessReplica:
    argv = python_replica_argv(f"services:{target}", paths=[str(modules)], kwargs=kwargs)
    replica = ProcessReplica(argv, name=name)
    replicas.append(replica)
    replica.start()
    return replica


def client(replica: ProcessReplica) -> httpx.Client:
    return httpx.Client(
        base_url=replica.url, headers={"Authorization": f"Bearer {replica.secret}"}, timeout=10
    )


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting until {what}")
        time.sleep(0.01)


def gone(pid: int) -> bool:
    """No such process, or a zombie (dead, not yet reaped by whoever adopted it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def test_argv_uses_this_interpreter() -> None:
    argv = python_replica_argv(
        "m.sub:Model", paths=["/a", "/b"], kwargs={"size": 3, "name": "x"}, port=9000
    )
    assert argv == [
        sys.executable,
        "-m",
        "assay.inference.replica_server",
        "--target",
        "m.sub:Model",
        "--path",
        "/a",
        "--path",
        "/b",
        "--arg",
        "size=3",
        "--arg",
        'name="x"',
        "--host",
        "127.0.0.1",
        "--port",
        "9000",
        "--threads",
        "1",
    ]


def test_two_replicas_answer_and_a_killed_one_is_seen_dead(
    modules: Path, replicas: list[ProcessReplica]
) -> None:
    echo = make(replicas, modules, "Echo", "echo")
    prefix = make(replicas, modules, "Prefix", "prefix", prefix=">> ")
    for replica in (echo, prefix):
        replica.wait_ready(30)
    assert echo.url != prefix.url
    with client(echo) as a, client(prefix) as b:
        assert a.post("/infer/echo", json={"text": "hi"}).json() == [{"text": "hi"}]
        assert b.post("/infer/any", json={"text": "hi"}).json() == [{"text": ">> hi"}]
        batch = [{"text": f"t{i}"} for i in range(32)]
        assert b.post("/batch/any", json=batch).json() == [
            [{"text": f">> t{i}"}] for i in range(32)
        ]
        assert a.post("/infer/nope", json={"text": "hi"}).status_code == 404
        unauthorised = httpx.get(echo.url + "/ready")
        assert unauthorised.status_code == 401

        assert echo.pid is not None
        os.kill(echo.pid, signal.SIGKILL)
        wait_until(lambda: not echo.alive(), 10, "the killed replica is seen dead")
        assert echo.returncode == -signal.SIGKILL
        assert prefix.alive()
        assert b.post("/infer/any", json={"text": "still"}).json() == [{"text": ">> still"}]


def test_a_bad_target_fails_with_exit_code_3_and_the_output(
    modules: Path, replicas: list[ProcessReplica]
) -> None:
    replica = make(replicas, modules, "NoSuchClass", "bad")
    with pytest.raises(ReplicaStartError) as failure:
        replica.wait_ready(30)
    message = str(failure.value)
    assert "exited with code 3" in message
    assert "'services'" in message and "'NoSuchClass'" in message
    assert str(modules) in message  # the search paths
    assert "the classes it defines are ['Broken', 'Chatty', 'Echo', 'Prefix', 'Slow']" in message
    assert failure.value.returncode == 3 == replica.returncode
    assert "NoSuchClass" in failure.value.tail


def test_a_missing_module_names_the_module(tmp_path: Path) -> None:
    argv = python_replica_argv("nowhere.models:Model", paths=[str(tmp_path)], kwargs={})
    with ProcessReplica(argv, name="missing") as replica, pytest.raises(ReplicaStartError) as e:
        replica.wait_ready(30)
    assert "cannot import module 'nowhere.models' for class 'Model'" in str(e.value)
    assert e.value.returncode == 3


def test_a_load_that_never_finishes_times_out_with_the_tail(
    modules: Path, replicas: list[ProcessReplica]
) -> None:
    replica = make(replicas, modules, "Slow", "slow")
    started = time.monotonic()
    with pytest.raises(ReplicaStartError) as failure:
        replica.wait_ready(timeout=1.0)
    assert time.monotonic() - started < 5
    message = str(failure.value)
    assert "did not become ready in 1 s" in message
    assert "503" in message
    assert "loading the weights..." in message
    assert failure.value.returncode is None and replica.alive()


def test_a_load_that_fails_reports_the_error_and_exits_4(
    modules: Path, replicas: list[ProcessReplica]
) -> None:
    replica = make(replicas, modules, "Broken", "broken")
    with pytest.raises(ReplicaStartError) as failure:
        replica.wait_ready(30)
    message = str(failure.value)
    assert "RuntimeError: the weights file is corrupt" in message
    assert "Traceback" in message
    assert failure.value.returncode == 4 == replica.returncode


def test_a_chatty_replica_never_blocks_and_keeps_the_last_lines(
    modules: Path, tmp_path: Path, replicas: list[ProcessReplica]
) -> None:
    argv = python_replica_argv(
        "services:Chatty", paths=[str(modules)], kwargs={"lines": 20_000}
    )  # ~2 MB of output, far more than a pipe holds
    log = tmp_path / "replica.log"
    replica = ProcessReplica(argv, name="chatty", log_path=log, buffer_lines=100)
    replicas.append(replica)
    replica.start()
    replica.wait_ready(30)
    wait_until(lambda: "chatter line 19999 " in replica.log_tail(3), 10, "the last line is read")
    assert len(replica.log_tail(1000).splitlines()) == 100  # the ring buffer's size
    replica.stop()
    text = log.read_text()
    assert text.count("chatter line") == 20_000
    assert f"ASSAY_REPLICA_LISTENING {replica.port}" in text


def test_stop_is_a_clean_sigterm_and_start_twice_is_refused(
    modules: Path, replicas: list[ProcessReplica]
) -> None:
    replica = make(replicas, modules, "Echo", "echo")
    replica.wait_ready(30)
    with pytest.raises(Exception, match="already started"):
        replica.start()
    replica.stop()
    assert replica.returncode == 0
    assert not replica.alive()
    replica.stop()  # stopping twice is harmless


def test_stop_all_stops_every_live_replica(modules: Path, replicas: list[ProcessReplica]) -> None:
    started = [make(replicas, modules, "Echo", f"r{i}") for i in range(2)]
    for replica in started:
        replica.wait_ready(30)
    stop_all(timeout=5)
    assert [r.returncode for r in started] == [0, 0]


def test_a_collected_replica_object_kills_its_process(modules: Path) -> None:
    argv = python_replica_argv("services:Echo", paths=[str(modules)], kwargs={})
    replica = ProcessReplica(argv, name="dropped")
    replica.start()
    replica.wait_ready(30)
    pid = replica.pid
    assert pid is not None
    del replica
    gc.collect()
    wait_until(lambda: gone(pid), 10, "the dropped replica's process is gone")


def test_a_replica_started_from_a_short_lived_thread_survives_it(
    modules: Path, replicas: list[ProcessReplica]
) -> None:
    # PR_SET_PDEATHSIG fires when the *forking thread* ends; replicas are forked by a
    # long-lived thread of the module, so this one must live on.
    thread = threading.Thread(target=lambda: replicas.append(make([], modules, "Echo", "t")))
    thread.start()
    thread.join(30)
    [replica] = replicas
    replica.wait_ready(30)
    with client(replica) as c:
        assert c.post("/infer/echo", json={"text": "ok"}).status_code == 200
    assert replica.alive()


PARENT = """
import sys
from assay.inference.replicas import ProcessReplica, python_replica_argv
argv = python_replica_argv("services:Echo", paths=[sys.argv[1]], kwargs={})
replica = ProcessReplica(argv, name="child")
replica.start()
replica.wait_ready(30)
print(replica.pid, flush=True)
sys.stdin.read()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_no_orphans_when_the_parent_is_killed(modules: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(PARENT), str(modules)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line.strip().isdigit(), f"the parent printed {line!r}"
        pid = int(line)
        assert not gone(pid)
        parent.kill()
        parent.wait(10)
        wait_until(lambda: gone(pid), 10, f"replica {pid} dies with its parent")
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.wait(10)
        for stream in (parent.stdin, parent.stdout):
            if stream is not None:
                stream.close()


def test_two_thousand_requests_on_one_connection(
    modules: Path, replicas: list[ProcessReplica]
) -> None:
    replica = make(replicas, modules, "Echo", "load")
    replica.wait_ready(30)
    with client(replica) as c:
        started = time.monotonic()
        codes = [c.post("/infer/echo", json={"text": str(i)}).status_code for i in range(2000)]
        elapsed = time.monotonic() - started
        batch = c.post("/batch/echo", json=[{"text": str(i)} for i in range(32)])
    assert codes == [200] * 2000
    # ~1 s here; with Nagle's algorithm on the replica's sockets (TCP_NODELAY not set) every
    # request waits for a delayed ACK, ~40 ms, and this takes ~90 s.
    assert elapsed < 30, f"2,000 requests took {elapsed:.1f} s: is TCP_NODELAY set?"
    assert batch.status_code == 200 and len(batch.json()) == 32
    assert replica.alive()
