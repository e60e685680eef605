"""Supervising replica processes from the parent (design notes: ``docs/design/replicas.md``).

A :class:`ProcessReplica` starts one replica process (usually
``python -m assay.inference.replica_server``, see :func:`python_replica_argv`), learns its port
from the ``ASSAY_REPLICA_LISTENING <port>`` line, waits until ``GET /ready`` answers, keeps the
last lines of its output, and stops it. It only reports: what to do when a replica dies is the
session layer's decision.

No orphans, by two mechanisms:

1. On Linux every replica is started with ``PR_SET_PDEATHSIG = SIGKILL``, so the kernel kills
   it when the parent dies, even by ``SIGKILL``. The kernel sends that signal when the *thread*
   that forked the child ends, so replicas are always forked from one long-lived daemon thread
   of this module, never from the caller's (possibly short-lived) thread.
2. Every started replica is in a module-level weak set; an :mod:`atexit` hook stops those still
   running (``SIGTERM``, then ``SIGKILL``) when the interpreter exits normally, and a replica
   object that is garbage-collected while its process runs kills the process.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import contextlib
import ctypes
import dataclasses
import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

from assay.errors import AssayError, ConflictError, ValidationError
from assay.inference.protocol import READY_PATH, REPLICA_SECRET_ENV
from assay.sandbox import Job, Watchdog, listening_socket
from assay.sandbox import command as sandbox_command

__all__ = [
    "ProcessReplica",
    "ReplicaStartError",
    "die_with_parent_hook",
    "python_replica_argv",
    "stop_all",
]

LISTENING_PREFIX = b"ASSAY_REPLICA_LISTENING "  # = replica_server.LISTENING_PREFIX + " "
_MAX_LINE = 8192  # longer output lines are split; bounds the memory of the ring buffer
_PR_SET_PDEATHSIG = 1


class ReplicaStartError(AssayError):
    """A replica process exited, or did not become ready in time. The message carries the
    last lines of its output; ``returncode`` is its exit code if it exited."""

    def __init__(self, message: str, *, name: str, returncode: int | None, tail: str) -> None:
        super().__init__(message)
        self.name = name
        self.returncode = returncode
        self.tail = tail


def python_replica_argv(
    target: str,
    *,
    paths: list[str],
    kwargs: dict[str, Any],
    host: str = "127.0.0.1",
    port: int = 0,
    threads: int = 1,
) -> list[str]:
    """The command line that serves ``target`` (``module.path:ClassName``) as a replica with
    this very interpreter (``sys.executable``, never ``python3`` from ``PATH``)."""
    argv = [sys.executable, "-m", "assay.inference.replica_server", "--target", target]
    for path in paths:
        argv += ["--path", str(path)]
    for key, value in kwargs.items():
        if not key.isidentifier():
            raise ValidationError(
                f"keyword argument {key!r} for {target} is not a Python identifier",
                field="kwargs",
                value=key,
            )
        try:
            encoded = json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise ValidationError(
                f"keyword argument {key!r} for {target} cannot be passed to a replica: it "
                f"must be JSON ({exc})",
                field=f"kwargs.{key}",
            ) from exc
        argv += ["--arg", f"{key}={encoded}"]
    return [*argv, "--host", host, "--port", str(port), "--threads", str(threads)]


class _Output:
    """The replica's stdout+stderr: read continuously by a daemon thread into a bounded ring
    buffer of lines (so a chatty replica never blocks on a full pipe), optionally appended to
    a log file. Holds no reference to the :class:`ProcessReplica`, so that can be collected."""

    def __init__(self, stream: IO[bytes], log_path: Path | None, lines: int) -> None:
        self._lines: collections.deque[str] = collections.deque(maxlen=lines)
        self._lock = threading.Lock()
        self.port: int | None = None
        self.listening = threading.Event()  # set on the listening line, or at end of output
        self.closed = threading.Event()
        self._thread = threading.Thread(
            target=self._read, args=(stream, log_path), name="assay-replica-output", daemon=True
        )
        self._thread.start()

    def _read(self, stream: IO[bytes], log_path: Path | None) -> None:
        log = open(log_path, "ab") if log_path is not None else None  # noqa: SIM115
        try:
            while line := stream.readline(_MAX_LINE):
                if self.port is None and (at := line.find(LISTENING_PREFIX)) >= 0:
                    # anywhere in the line: it may follow a partial line the service printed
                    port = line[at + len(LISTENING_PREFIX) :].strip()
                    if port.isdigit():
                        self.port = int(port)
                        self.listening.set()
                with self._lock:
                    self._lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
                if log is not None:
                    log.write(line)
                    log.flush()
        finally:
            stream.close()
            if log is not None:
                log.close()
            self.listening.set()
            self.closed.set()

    def tail(self, n: int) -> str:
        with self._lock:
            lines = list(self._lines)
        return "\n".join(lines[-n:] if n > 0 else [])

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


class _Spawner:
    """One long-lived daemon thread that forks every replica (see the module docstring: the
    parent-death signal follows the forking thread)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[
            tuple[Callable[[], subprocess.Popen[bytes]], concurrent.futures.Future[Any]]
        ] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def popen(self, start: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="assay-replica-spawner", daemon=True
                )
                self._thread.start()
        future: concurrent.futures.Future[subprocess.Popen[bytes]] = concurrent.futures.Future()
        self._queue.put((start, future))
        return future.result()

    def _run(self) -> None:
        while True:
            start, future = self._queue.get()
            try:
                future.set_result(start())
            except BaseException as exc:
                future.set_exception(exc)
            del start, future  # hold no reference to the replica between spawns


_SPAWNER = _Spawner()
_LIVE: weakref.WeakSet[ProcessReplica] = weakref.WeakSet()


def die_with_parent_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get ``SIGKILL`` when its parent dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Finalizer of a collected replica object: kill and reap its process."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


class ProcessReplica:
    """One supervised replica process.

    ``argv`` is the full command line (see :func:`python_replica_argv`); ``env`` the child's
    whole environment (default: this process's), to which the replica secret is added;
    ``log_path`` a file that receives a copy of everything the replica prints. Use as a context
    manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        argv: list[str],
        *,
        name: str,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        buffer_lines: int = 1000,
        sandbox: Job | None = None,
    ) -> None:
        if not argv:
            raise ValidationError(f"replica {name!r}: argv is empty", field="argv")
        self.argv = list(argv)
        self.name = name
        self.secret = secrets.token_urlsafe(32)
        self._env = dict(os.environ if env is None else env)
        self._env[REPLICA_SECRET_ENV] = self.secret
        self._sandbox = sandbox
        self._watchdog: Watchdog | None = None
        self._cwd = cwd
        self._log_path = Path(log_path) if log_path is not None else None
        self._host = host
        self._buffer_lines = buffer_lines
        self._proc: subprocess.Popen[bytes] | None = None
        self._output: _Output | None = None
        self.declared: dict[str, Any] = {}
        """What the replica said of itself once ready (``GET /ready``): ``threads``, the
        calls it serves at once, and ``batch``, whether it answers a batch in one call."""

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the process (returns at once; then :meth:`wait_ready`)."""
        if self._proc is not None:
            raise ConflictError(f"replica {self.name!r} was already started")
        hook = die_with_parent_hook()
        argv, env, cwd = self.argv, self._env, self._cwd
        fds: tuple[int, ...] = ()
        listener = None
        if self._sandbox is not None:
            # The replica has no network of its own: it is handed this socket, listening on
            # the host's loopback, and answers on it (see assay.sandbox).
            listener = listening_socket(self._host)
            fds = (listener.fileno(),)
            job = dataclasses.replace(
                self._sandbox,
                env={**self._sandbox.env, REPLICA_SECRET_ENV: self.secret},
                share_fds=fds,
            )
            argv, env = sandbox_command([*argv, "--fd", str(listener.fileno())], job)
            cwd = None

        def popen() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                preexec_fn=hook,
                process_group=0,  # terminal signals (Ctrl-C) go to the parent, which stops us
                pass_fds=fds,
            )

        try:
            try:
                self._proc = _SPAWNER.popen(popen)
            finally:
                if listener is not None:
                    listener.close()  # the replica holds it now
        except OSError as exc:
            raise ReplicaStartError(
                f"replica {self.name!r} could not be started: {exc} (command: {self.argv})",
                name=self.name,
                returncode=None,
                tail="",
            ) from exc
        assert self._proc.stdout is not None
        if self._sandbox is not None:
            self._watchdog = Watchdog.of(self._proc, self._sandbox.limits.processes)
        self._output = _Output(self._proc.stdout, self._log_path, self._buffer_lines)
        _LIVE.add(self)
        weakref.finalize(self, _kill, self._proc).atexit = False  # atexit: see stop_all

    def wait_ready(self, timeout: float) -> None:
        """Wait until the replica listens and ``GET /ready`` answers 200. Raises
        :class:`ReplicaStartError` (with the last 20 lines of output) if it exits, fails to
        load its service, or is not ready within ``timeout`` seconds."""
        proc, output = self._started()
        deadline = time.monotonic() + timeout
        while not output.listening.wait(min(0.05, max(deadline - time.monotonic(), 0))):
            if proc.poll() is not None:
                break
            if time.monotonic() >= deadline:
                self._fail(f"did not start listening in {timeout:g} s")
        if output.port is None:
            self._fail_exited()
        last = "no answer yet"
        delay = 0.005
        with httpx.Client(headers={"Authorization": f"Bearer {self.secret}"}) as client:
            while True:
                remaining = deadline - time.monotonic()
                try:
                    reply = client.get(self.url + READY_PATH, timeout=max(min(remaining, 2), 0.05))
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                else:
                    if reply.status_code == 200:
                        try:
                            body = reply.json()
                        except ValueError:
                            body = None
                        self.declared = body if isinstance(body, dict) else {}
                        return
                    last = f"GET /ready answered {reply.status_code}: {_detail(reply)}"
                    if reply.status_code != 503:  # 500: the service failed to load
                        self._wait_exit(min(max(deadline - time.monotonic(), 0), 5))
                        self._fail(f"failed to load its service ({last})")
                if proc.poll() is not None:
                    self._fail_exited()
                if time.monotonic() + delay >= deadline:
                    self._fail(f"did not become ready in {timeout:g} s ({last})")
                time.sleep(delay)  # back-off between polls of the condition
                delay = min(delay * 2, 0.2)

    def stop(self, timeout: float = 5) -> None:
        """``SIGTERM``, then ``SIGKILL`` after ``timeout`` seconds; waits for the exit."""
        if self._proc is None:
            return
        _terminate(self._proc)
        self._finish(time.monotonic() + timeout)

    def _finish(self, deadline: float) -> None:
        proc, output = self._started()
        try:
            proc.wait(max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        output.join(1)
        _LIVE.discard(self)

    def __enter__(self) -> ProcessReplica:
        if self._proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- state -----------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The process id, once started."""
        return self._proc.pid if self._proc is not None else None

    @property
    def port(self) -> int | None:
        """The port the replica listens on, once it said so."""
        return self._output.port if self._output is not None else None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, the base URL of the replica's HTTP protocol."""
        port = self.port
        if port is None:
            raise ConflictError(
                f"replica {self.name!r} is not listening yet: call start() and wait_ready()"
            )
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{port}"

    @property
    def returncode(self) -> int | None:
        """The exit code (negative: killed by that signal), or ``None`` while it runs."""
        return self._proc.poll() if self._proc is not None else None

    def alive(self) -> bool:
        """Whether the process was started and has not exited."""
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, n: int = 20) -> str:
        """The last ``n`` lines the replica printed (stdout and stderr together)."""
        return self._output.tail(n) if self._output is not None else ""

    def __repr__(self) -> str:
        state = "not started" if self._proc is None else f"pid={self._proc.pid}"
        return f"<ProcessReplica {self.name!r} {state} returncode={self.returncode}>"

    # -- helpers ---------------------------------------------------------------------------

    def _started(self) -> tuple[subprocess.Popen[bytes], _Output]:
        if self._proc is None or self._output is None:
            raise ConflictError(f"replica {self.name!r} was not started: call start() first")
        return self._proc, self._output

    def _wait_exit(self, timeout: float) -> None:
        proc, output = self._started()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return
        output.closed.wait(1)  # let the reader take in the last lines

    def _fail_exited(self) -> None:
        self._wait_exit(5)
        self._fail(f"exited with code {self.returncode} before it was ready")

    def _fail(self, what: str) -> None:
        tail = self.log_tail(20)
        raise ReplicaStartError(
            f"replica {self.name!r} {what}\n--- last 20 lines of its output ---\n"
            f"{tail or '(no output)'}",
            name=self.name,
            returncode=self.returncode,
            tail=tail,
        )


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()


def _detail(reply: httpx.Response) -> str:
    try:
        body = reply.json()
    except ValueError:
        return reply.text[:200]
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)[:200]


def stop_all(timeout: float = 5) -> None:
    """Stop every replica of this process still running: ``SIGTERM`` to all at once, then
    ``SIGKILL`` to those not gone after ``timeout`` seconds. Runs at interpreter exit."""
    replicas = [r for r in list(_LIVE) if r._proc is not None]
    for replica in replicas:
        assert replica._proc is not None
        _terminate(replica._proc)
    deadline = time.monotonic() + timeout
    for replica in replicas:
        replica._finish(deadline)


atexit.register(stop_all)
