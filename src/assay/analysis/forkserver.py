"""The analysis fork server: ``python -P -m assay.analysis.forkserver``.

Imports pyarrow and the analysis runtime once, then forks one child per analysis it is asked
for. It is single-threaded and never uses pyarrow itself, so forking it is safe (forking the
platform's own, multi-threaded process would not be). See ``launcher.py`` for the other side.

Protocol, one JSON object per line: the platform writes ``{"id", "config", "log", "cwd",
"env"}`` to the server's stdin; the server answers ``{"id", "pid"}`` once the child is forked
(or ``{"id", "error"}``) and ``{"id", "exit"}`` when it ends (negative: killed by a signal). The
server exits when its stdin closes, which happens when the platform's process ends however it
ends; children die with the server (Linux).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import traceback
from typing import Any

__all__ = ["PRELOAD", "main"]

#: What the server imports once, for every analysis it forks.
PRELOAD = (
    "pyarrow",
    "pyarrow.compute",
    "pyarrow.dataset",
    "pyarrow.parquet",
    "assay.analysis.runtime",
)
_REAP_INTERVAL = 0.02


def main() -> int:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    # the protocol gets fds of its own; 0 and 1 become harmless for anything else
    requests = os.dup(0)
    replies = os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    out = os.fdopen(replies, "w", buffering=1)
    print(json.dumps({"ready": os.getpid()}), file=out, flush=True)
    children: dict[int, Any] = {}
    buffer = b""
    while True:
        readable, _, _ = select.select([requests], [], [], _REAP_INTERVAL)
        if readable:
            chunk = os.read(requests, 65536)
            if not chunk:
                break  # the platform is gone
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                request = json.loads(line)
                try:
                    pid = _fork(request, requests, replies)
                except OSError as exc:
                    reply: dict[str, Any] = {"id": request["id"], "error": str(exc)}
                else:
                    children[pid] = request["id"]
                    reply = {"id": request["id"], "pid": pid}
                print(json.dumps(reply), file=out, flush=True)
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            print(json.dumps({"id": children.pop(pid), "exit": code}), file=out, flush=True)
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return 0


def _fork(request: dict[str, Any], *protocol: int) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 70
    try:
        for fd in protocol:
            os.close(fd)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        _die_with_server()
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        from assay.analysis import runtime

        code = runtime.main([request["config"]])
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _die_with_server() -> None:
    """Have the kernel kill this child when the server ends (Linux)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    server = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    if os.getppid() != server:
        os._exit(1)


if __name__ == "__main__":
    sys.exit(main())
