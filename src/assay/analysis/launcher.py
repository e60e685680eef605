"""Starting analysis processes cheaply.

A fresh interpreter that imports ``pyarrow.dataset`` costs ~0.4 s on a small machine (more
when pandas is installed, which ``pyarrow.dataset`` then imports too) — most of an analysis's
fixed cost. So where the platform can fork (Linux, macOS), analyses are forked from a *fork
server* (``assay.analysis.forkserver``): one process per platform process, started with the
platform's own interpreter on first use, that has imported pyarrow and the analysis runtime
once and forks a child per analysis. (``multiprocessing``'s own fork server is not used: it
re-runs the user's ``__main__`` script in every child, which breaks every script without an
``if __name__ == "__main__"`` guard.) The server exits when the platform's process does, and
its children with it.

Sandboxed analyses (a multi-user server, ``LocalPlatform(sandbox=True)``) have a fork server of
their own, started with the sandbox's scrubbed environment; each child confines itself
(:mod:`assay.confine`: the namespaces, root and limits bubblewrap would give it) before the
analysis runs. Where that cannot work (checked once per process by a probe child) each
sandboxed analysis is a new ``bwrap`` and interpreter.

Elsewhere each analysis is a new ``python -m assay.analysis.runtime`` process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any, Protocol

from assay import sandbox
from assay.policy import SandboxLimits

__all__ = ["AnalysisProcess", "start", "start_sandboxed"]


class AnalysisProcess(Protocol):
    def poll(self, timeout: float) -> int | None:
        """The exit status once the process has ended (negative: killed by that signal),
        waiting at most ``timeout`` seconds; None while it runs."""

    def kill(self) -> None:
        """Kill the process and wait for it."""


def start(
    config_path: Path, *, log_path: Path, cwd: Path, env: Mapping[str, str]
) -> AnalysisProcess:
    """Start the analysis configured in ``config_path``."""
    if hasattr(os, "fork"):
        return _server().start(config_path, log_path=log_path, cwd=cwd, env=env)
    argv = [sys.executable, "-m", "assay.analysis.runtime", str(config_path)]
    return _Subprocess(argv, log_path=log_path, cwd=cwd, env=env)


def start_sandboxed(config_path: Path, *, log_path: Path, job: sandbox.Job) -> AnalysisProcess:
    """Start the analysis configured in ``config_path`` in the sandbox (:mod:`assay.sandbox`):
    forked from the fork server of sandboxed analyses, the child confining itself first
    (:mod:`assay.confine`); where that cannot work here (or ``ASSAY_SANDBOX_FORK=0``), a new
    ``bwrap`` and interpreter per analysis."""
    server = _sandboxed_server()
    if server is not None:
        confinement = {
            "plan": sandbox.plan(job),
            "limits": dataclasses.asdict(job.limits),
        }
        return server.start(
            config_path,
            log_path=log_path,
            cwd=job.cwd or Path(sandbox.JOB_HOME),
            env=sandbox.environment(job),
            confinement=confinement,
            processes=job.limits.processes,
        )
    argv, env = sandbox.command(
        [sys.executable, "-m", "assay.analysis.runtime", str(config_path)], job
    )
    return _Subprocess(argv, log_path=log_path, cwd=None, env=env, processes=job.limits.processes)


_lock = threading.Lock()
_servers: dict[tuple[int, bool], _ForkServer] = {}
#: Why sandboxed analyses cannot be forked here (None: they can, or it was not tried yet).
_no_fork: dict[int, str] = {}
_log = logging.getLogger(__name__)


def _server() -> _ForkServer:
    with _lock:
        key = (os.getpid(), False)
        server = _servers.get(key)
        if server is None or not server.alive():
            server = _servers[key] = _ForkServer()
        return server


def _sandboxed_server() -> _ForkServer | None:
    """The fork server of sandboxed analyses, or None where its children cannot confine
    themselves (then each analysis is a new ``bwrap``)."""
    if not hasattr(os, "fork") or not sys.platform.startswith("linux"):
        return None
    if os.environ.get("ASSAY_SANDBOX_FORK", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    with _lock:
        pid = os.getpid()
        if pid in _no_fork:
            return None
        key = (pid, True)
        server = _servers.get(key)
        if server is None or not server.alive():
            try:
                server = _ForkServer(env=sandbox.environment(sandbox.Job()))
                server.probe()
            except RuntimeError as exc:
                if server is not None:
                    server.close()
                _no_fork[pid] = str(exc)
                _log.warning(
                    "sandboxed analyses are each a new bubblewrap sandbox and interpreter "
                    "(slower to start): %s",
                    exc,
                )
                return None
            _servers[key] = server
        return server


class _ForkServer:
    """The platform's side of ``assay.analysis.forkserver``."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        # the server of sandboxed analyses starts with the sandbox's environment (a job
        # zeroes the initial one it inherits all the same) and keeps a spare child ready
        argv = [sys.executable, "-P", "-m", "assay.analysis.forkserver"]
        if env is not None:
            argv.append("--sandboxed")
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            start_new_session=True,  # a terminal's Ctrl-C is the platform's to handle
            close_fds=True,
            env=None if env is None else dict(env),
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._stdin: IO[bytes] = self._proc.stdin
        self._stdout: IO[bytes] = self._proc.stdout
        ready = self._stdout.readline()
        if not ready.startswith(b'{"ready"'):
            self._proc.kill()
            self._proc.wait()
            raise RuntimeError("the analysis fork server did not start")
        self._ids = itertools.count()
        self._write_lock = threading.Lock()
        self._pending: dict[int, _Forked] = {}
        self._reader = threading.Thread(target=self._read, name="assay-forkserver", daemon=True)
        self._reader.start()

    def alive(self) -> bool:
        return self._proc.poll() is None and self._reader.is_alive()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(timeout=10)
        with contextlib.suppress(OSError):
            self._stdout.close()

    def probe(self) -> None:
        """Fork one child that confines itself and ends: RuntimeError saying why that cannot
        work here."""
        import tempfile

        with tempfile.NamedTemporaryFile(prefix="assay-sandbox-probe-") as log:
            confinement = {
                "plan": sandbox.plan(sandbox.Job()),
                "limits": dataclasses.asdict(SandboxLimits()),
                "probe": True,
            }
            forked = self.start(
                Path(os.devnull),
                log_path=Path(log.name),
                cwd=Path(sandbox.JOB_HOME),
                env={},
                confinement=confinement,
            )
            code = forked.poll(60)
            if code != 0:
                said = Path(log.name).read_text(errors="replace").strip()[-500:]
                if code is None:
                    forked.kill()
                raise RuntimeError(
                    f"a forked analysis could not confine itself ({said or f'status {code}'})"
                )

    def start(
        self,
        config_path: Path,
        *,
        log_path: Path,
        cwd: Path,
        env: Mapping[str, str],
        confinement: Mapping[str, Any] | None = None,
        processes: int | None = None,
    ) -> _Forked:
        request_id = next(self._ids)
        forked = _Forked()
        self._pending[request_id] = forked
        request: dict[str, Any] = {
            "id": request_id,
            "config": str(config_path),
            "log": str(log_path),
            "cwd": str(cwd),
            "env": dict(env),
        }
        if confinement is not None:
            request["sandbox"] = dict(confinement)
        line = json.dumps(request)
        try:
            with self._write_lock:
                self._stdin.write(line.encode() + b"\n")
                self._stdin.flush()
        except OSError as exc:
            self._pending.pop(request_id, None)
            raise RuntimeError(f"the analysis fork server is gone ({exc})") from None
        forked.wait_started()
        if processes is not None:
            forked.watch(processes)
        return forked

    def _read(self) -> None:
        for line in self._stdout:
            message = json.loads(line)
            forked = self._pending.get(message["id"])
            if forked is None:
                continue
            if "pid" in message:
                forked.started.set_result(message["pid"])
            elif "error" in message:
                self._pending.pop(message["id"], None)
                forked.started.set_exception(RuntimeError(message["error"]))
            elif "exit" in message:
                self._pending.pop(message["id"], None)
                forked.ended.set_result(message["exit"])
        for forked in list(self._pending.values()):  # the server died: so did its children
            if not forked.started.done():
                forked.started.set_exception(RuntimeError("the analysis fork server died"))
            if not forked.ended.done():
                forked.ended.set_result(-int(signal.SIGKILL))
        self._pending.clear()


class _Forked:
    def __init__(self) -> None:
        self.started: Future[int] = Future()
        self.ended: Future[int] = Future()
        self._watchdog: sandbox.Watchdog | None = None

    def wait_started(self) -> None:
        self.started.result(timeout=60)

    def watch(self, processes: int) -> None:
        """Count the sandboxed child's processes (:class:`assay.sandbox.Watchdog`)."""
        self._watchdog = sandbox.Watchdog(
            self.started.result(),
            processes,
            running=lambda: not self.ended.done(),
            kill=self._signal_kill,
            own_namespace=True,
        )

    @property
    def exceeded_processes(self) -> bool:
        """Whether the sandbox's watchdog killed it for having too many processes."""
        return self._watchdog is not None and self._watchdog.exceeded

    def poll(self, timeout: float) -> int | None:
        try:
            code = self.ended.result(timeout=timeout)
        except TimeoutError:
            return None
        if self._watchdog is not None:
            self._watchdog.stop()
        return code

    def _signal_kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.started.result(), signal.SIGKILL)

    def kill(self) -> None:
        self._signal_kill()
        self.ended.result(timeout=60)
        if self._watchdog is not None:
            self._watchdog.stop()


class _Subprocess:
    def __init__(
        self,
        argv: list[str],
        *,
        log_path: Path,
        cwd: Path | None,
        env: Mapping[str, str],
        processes: int | None = None,
    ) -> None:
        from assay.inference.replicas import die_with_parent_hook

        with open(log_path, "ab") as log:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=dict(env),
                preexec_fn=die_with_parent_hook(),
                start_new_session=True,  # a terminal's Ctrl-C is the platform's to handle
            )
        self._watchdog = (
            sandbox.Watchdog.of(self._proc, processes) if processes is not None else None
        )

    def poll(self, timeout: float) -> int | None:
        try:
            code = self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        if self._watchdog is not None:
            self._watchdog.stop()
        return code

    @property
    def exceeded_processes(self) -> bool:
        """Whether the sandbox's watchdog killed it for having too many processes."""
        return self._watchdog is not None and self._watchdog.exceeded

    def kill(self) -> None:
        self._proc.kill()
        self._proc.wait()
        if self._watchdog is not None:
            self._watchdog.stop()
