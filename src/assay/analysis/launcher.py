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

Elsewhere each analysis is a new ``python -m assay.analysis.runtime`` process.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Protocol

from assay import sandbox

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
    a new interpreter per analysis (a fork of the platform's fork server would share its
    view of the machine)."""
    argv, env = sandbox.command(
        [sys.executable, "-m", "assay.analysis.runtime", str(config_path)], job
    )
    return _Subprocess(argv, log_path=log_path, cwd=None, env=env, processes=job.limits.processes)


_lock = threading.Lock()
_servers: dict[int, _ForkServer] = {}


def _server() -> _ForkServer:
    with _lock:
        server = _servers.get(os.getpid())
        if server is None or not server.alive():
            server = _servers[os.getpid()] = _ForkServer()
        return server


class _ForkServer:
    """The platform's side of ``assay.analysis.forkserver``."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "assay.analysis.forkserver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            start_new_session=True,  # a terminal's Ctrl-C is the platform's to handle
            close_fds=True,
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

    def start(
        self, config_path: Path, *, log_path: Path, cwd: Path, env: Mapping[str, str]
    ) -> _Forked:
        request_id = next(self._ids)
        forked = _Forked()
        self._pending[request_id] = forked
        line = json.dumps(
            {
                "id": request_id,
                "config": str(config_path),
                "log": str(log_path),
                "cwd": str(cwd),
                "env": dict(env),
            }
        )
        try:
            with self._write_lock:
                self._stdin.write(line.encode() + b"\n")
                self._stdin.flush()
        except OSError as exc:
            self._pending.pop(request_id, None)
            raise RuntimeError(f"the analysis fork server is gone ({exc})") from None
        forked.wait_started()
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

    def wait_started(self) -> None:
        self.started.result(timeout=60)

    def poll(self, timeout: float) -> int | None:
        try:
            return self.ended.result(timeout=timeout)
        except TimeoutError:
            return None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.started.result(), signal.SIGKILL)
        self.ended.result(timeout=60)


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
        self._watchdog = sandbox.Watchdog(self._proc, processes) if processes is not None else None

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
