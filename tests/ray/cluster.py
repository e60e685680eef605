"""A real Ray cluster on this machine, started and stopped by the tests (and the benchmark):
a head node and worker nodes, each ``ray start --block`` in a session of its own with its own
``--temp-dir``, so that one node can be killed whole (``SIGKILL`` to every process of its
session: its raylet, its agents and its worker processes, which Ray puts in process groups
of their own) and nothing is left when the cluster stops."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

#: Bytes of object store per node: the tests move little data through it.
OBJECT_STORE_BYTES = 100_000_000
#: What a node prints once it is up.
STARTED = "Ray runtime started"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Node:
    """One ``ray start --block`` process (the leader of its process group) and its temp dir."""

    name: str
    temp_dir: Path
    proc: subprocess.Popen[bytes]
    output: list[str] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def node_id(self) -> str:
        """This node's Ray node id (from the cluster's node table: the node whose object
        store socket lies in this node's temp dir). Needs a connected driver."""
        import ray

        for node in ray.nodes():
            if node.get("Alive") and str(self.temp_dir) in node.get("ObjectStoreSocketName", ""):
                return str(node["NodeID"])
        raise LookupError(f"node {self.name} is not in the cluster")

    def processes(self) -> list[int]:
        """The live processes of this node: those of its session (``ray start`` leads it)."""
        return [pid for pid, session in _sessions() if session == self.proc.pid]

    def kill(self) -> None:
        """Kill the whole node at once, as a machine that is lost: every process of its
        session, until none is left."""
        deadline = time.monotonic() + 30
        while (left := self.processes()) and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)


class RayCluster:
    """A head node (``address``) and the worker nodes added with :meth:`add_node`."""

    def __init__(self, root: Path, *, cpus: int = 1, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.cpus = cpus
        self.env = {**os.environ, **(env or {})}
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[Node] = []

    def _ray(self) -> str:
        return str(Path(sys.executable).with_name("ray"))

    def start(self, nodes: int = 0) -> RayCluster:
        """Start the head and ``nodes`` worker nodes (side by side: a worker node waits for
        the head by itself)."""
        head = self._launch(
            "head",
            [
                "--head",
                f"--port={self.port}",
                f"--ray-client-server-port={free_port()}",
                "--include-dashboard=false",
                "--disable-usage-stats",
            ],
        )
        others = [self._launch(f"node{k + 1}", [f"--address={self.address}"]) for k in range(nodes)]
        for node in (head, *others):
            self._wait(node)
        return self

    def add_node(self) -> Node:
        """Start one more worker node."""
        return self._wait(self._launch(f"node{len(self.nodes)}", [f"--address={self.address}"]))

    def _launch(self, name: str, args: list[str]) -> Node:
        temp_dir = self.root / name
        temp_dir.mkdir(parents=True, exist_ok=True)
        command = [
            self._ray(),
            "start",
            *args,
            f"--num-cpus={self.cpus}",
            "--num-gpus=0",
            f"--object-store-memory={OBJECT_STORE_BYTES}",
            f"--temp-dir={temp_dir}",
            "--block",
        ]
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,  # its own process group: killed whole
        )
        node = Node(name, temp_dir, proc)
        self.nodes.append(node)
        return node

    def _wait(self, node: Node) -> Node:
        """Wait until ``node`` says it is up; stop the cluster if it cannot start."""
        proc, name = node.proc, node.name
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while STARTED not in "".join(node.output):
            if proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"ray node {name} did not start:\n" + "".join(node.output))
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                node.output.append(chunk.decode(errors="replace"))
        # keep reading what it prints, so that a full pipe never blocks it
        threading.Thread(target=_drain, args=(node,), daemon=True).start()
        return node

    def stop(self) -> None:
        """Stop every node (``SIGKILL`` to each: a test cluster keeps nothing worth a graceful
        stop), and check that no process of theirs is left."""
        for node in self.nodes:
            node.kill()
            if node.proc.stdout is not None:
                node.proc.stdout.close()
        deadline = time.monotonic() + 30
        while (left := self.stray()) and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        assert not self.stray(), f"Ray processes left behind: {self.stray()}"

    def stray(self) -> list[int]:
        """Processes still alive in the nodes' sessions or naming their temp dirs."""
        sessions = {node.proc.pid for node in self.nodes}
        marks = [str(node.temp_dir).encode() for node in self.nodes]
        found = []
        for pid, session in _sessions():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if session in sessions or any(mark in cmdline for mark in marks):
                found.append(pid)
        return found


def _sessions() -> list[tuple[int, int]]:
    """``(pid, session id)`` of every live (not zombie) process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z":
            found.append((int(entry.name), int(fields[3])))
    return found


def _drain(node: Node) -> None:
    assert node.proc.stdout is not None
    with contextlib.suppress(ValueError, OSError):  # closed by stop()
        for line in node.proc.stdout:
            node.output.append(line.decode(errors="replace"))
