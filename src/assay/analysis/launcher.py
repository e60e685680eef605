"""Starting analysis processes cheaply.

A fresh interpreter that imports ``pyarrow.dataset`` costs ~0.4 s on a small machine (more
when pandas is installed, which ``pyarrow.dataset`` then imports too) — most of an analysis's
fixed cost. So on platforms that can fork, analyses are forked from a *fork server*: one clean
process, started from the platform's own interpreter on first use, that has imported pyarrow
and the analysis runtime once and forks a child per analysis (``multiprocessing``'s
``forkserver`` start method: the server is single-threaded, so forking it is safe, unlike
forking the platform). Each child takes the environment, working directory and log file it is
given, and dies with the fork server, which exits with the platform.

Elsewhere (no ``fork``), each analysis is a new ``python -m assay.analysis.runtime`` process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

__all__ = ["AnalysisProcess", "start"]

#: What the fork server imports once, for every analysis it forks.
PRELOAD = [
    "pyarrow",
    "pyarrow.compute",
    "pyarrow.dataset",
    "pyarrow.parquet",
    "assay.analysis.runtime",
]

_lock = threading.Lock()
_context: Any = None


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
    context = _fork_server()
    if context is None:
        return _Subprocess(config_path, log_path=log_path, cwd=cwd, env=env)
    process = context.Process(
        target=_child,
        args=(str(config_path), str(log_path), str(cwd), dict(env)),
        name="assay-analysis",
        daemon=False,
    )
    process.start()
    return _Forked(process)


def _fork_server() -> Any:
    global _context
    with _lock:
        if _context is None:
            import multiprocessing

            if "forkserver" not in multiprocessing.get_all_start_methods():
                _context = False
            else:
                _context = multiprocessing.get_context("forkserver")
                _context.set_forkserver_preload(PRELOAD)
        return _context or None


def _child(config_path: str, log_path: str, cwd: str, env: dict[str, str]) -> None:
    """The analysis, in a child of the fork server."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    _die_with_fork_server()
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    from assay.analysis import runtime

    try:
        code = runtime.main([config_path])
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def _die_with_fork_server() -> None:
    """Have the kernel kill this process when the fork server (which exits with the
    platform) ends (Linux)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    server = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    if os.getppid() != server:
        os._exit(1)


class _Forked:
    def __init__(self, process: Any) -> None:
        self._process = process

    def poll(self, timeout: float) -> int | None:
        self._process.join(timeout)
        code: int | None = self._process.exitcode
        return code

    def kill(self) -> None:
        self._process.kill()
        self._process.join()


class _Subprocess:
    def __init__(
        self, config_path: Path, *, log_path: Path, cwd: Path, env: Mapping[str, str]
    ) -> None:
        from assay.inference.replicas import die_with_parent_hook

        with open(log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "assay.analysis.runtime", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=dict(env),
                preexec_fn=die_with_parent_hook(),
            )

    def poll(self, timeout: float) -> int | None:
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        self._proc.kill()
        self._proc.wait()
