"""The analysis fork server: ``python -P -m assay.analysis.forkserver``.

Imports pyarrow and the analysis runtime once, then forks one child per analysis it is asked
for. It is single-threaded and never uses pyarrow itself, so forking it is safe (forking the
platform's own, multi-threaded process would not be). See ``launcher.py`` for the other side.

Protocol, one JSON object per line: the platform writes ``{"id", "config", "log", "cwd",
"env"}`` to the server's stdin (and ``"sandbox": {"plan", "limits"}`` for a child that forks
the analysis into namespaces of its own, where it confines itself (:mod:`assay.confine`) before
it runs: the server of
sandboxed analyses, started with a scrubbed environment); the server answers ``{"id", "pid"}`` once the child is forked
(or ``{"id", "error"}``) and ``{"id", "exit"}`` when it ends (negative: killed by a signal). The
server started with ``--sandboxed`` keeps one such child forked and in its namespaces ahead
of the next request (a *spare*), which takes most of a confined job's start off its path. The
server exits when its stdin closes, which happens when the platform's process ends however it
ends; children die with the server (Linux).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import signal
import sys
import traceback
from typing import Any, NoReturn

__all__ = ["PRELOAD", "main"]

#: What the server imports once, for every analysis it forks.
PRELOAD = (
    "pyarrow",
    "pyarrow.compute",
    "pyarrow.dataset",
    "pyarrow.parquet",
    "assay.analysis.runtime",
)
#: The longest wait between looks for ended children (SIGCHLD usually wakes the loop first).
_REAP_INTERVAL = 0.5


def main() -> int:
    import importlib

    sandboxed = "--sandboxed" in sys.argv[1:]
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
    # a child's end wakes the loop at once (SIGCHLD writes to this pipe)
    woken, wake = os.pipe()
    os.set_blocking(woken, False)
    os.set_blocking(wake, False)
    signal.signal(signal.SIGCHLD, lambda number, frame: None)
    signal.set_wakeup_fd(wake)
    if sandboxed:
        from assay import confine

        confine.become_subreaper()
    print(json.dumps({"ready": os.getpid()}), file=out, flush=True)
    children: dict[int, tuple[Any, Any]] = {}
    spare: _Spare | None = None
    spares = sandboxed  # False once a spare died unused: each job is then forked on demand
    buffer = b""
    while True:
        if spares and spare is None:
            spare = _Spare()
        readable, _, _ = select.select([requests, woken], [], [], _REAP_INTERVAL)
        if woken in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(woken, 4096)
        if requests in readable:
            chunk = os.read(requests, 65536)
            if not chunk:
                break  # the platform is gone
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                request = json.loads(line)
                confinement = request.get("sandbox")
                limits = None if confinement is None else confinement["limits"]
                try:
                    pid = None
                    if confinement is not None and spare is not None:
                        pid, spare = spare.hand(request), None
                    if pid is None and confinement is not None:
                        pid = _Spare(request).pid
                    if pid is None:
                        pid = _fork(request)
                except OSError as exc:
                    reply: dict[str, Any] = {"id": request["id"], "error": str(exc)}
                else:
                    children[pid] = (request["id"], limits)
                    reply = {"id": request["id"], "pid": pid}
                print(json.dumps(reply), file=out, flush=True)
        while children or spare is not None:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if spare is not None and pid == spare.pid:
                spare, spares = None, False
                continue
            if pid not in children:
                continue  # a relay (assay.confine.start)
            request_id, limits = children.pop(pid)
            if limits is None:
                code = os.waitstatus_to_exitcode(status)
            else:
                from assay import confine

                code = confine.exit_code(status, usage.ru_utime + usage.ru_stime, limits)
            print(json.dumps({"id": request_id, "exit": code}), file=out, flush=True)
    for pid in [*children, *([spare.pid] if spare is not None else [])]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return 0


class _Spare:
    """A sandboxed job: forked, in its namespaces and adopted by the server (the relay of
    :func:`assay.confine.start` ended) — with ``request`` None, before its request comes (a
    *spare*, which takes most of a confined job's start off its path): it waits for the
    request on a pipe (:meth:`hand`), then confines itself to that job and runs it."""

    def __init__(self, request: dict[str, Any] | None = None) -> None:
        report_r, report_w = os.pipe()
        receive, self._send = os.pipe()
        relay = os.fork()
        if not relay:
            os.close(report_r)
            os.close(self._send)
            _child(request, receive=receive, report=report_w)
        os.close(report_w)
        os.close(receive)
        with os.fdopen(report_r, "rb") as report:
            said = report.readline()
        if not said.strip():  # the relay failed before forking the job
            os.close(self._send)
            raise OSError(errno.ECHILD, "a sandboxed child could not start (see the log)")
        self.pid = int(said)
        if request is not None:
            os.close(self._send)

    def hand(self, request: dict[str, Any]) -> int | None:
        """Give the spare its request: its pid, or None if it is gone."""
        try:
            with os.fdopen(self._send, "wb") as pipe:
                pipe.write(json.dumps(request).encode() + b"\n")
        except OSError:
            return None
        return self.pid


def _fork(request: dict[str, Any]) -> int:
    pid = os.fork()
    if pid:
        return pid
    _child(request)


def _child(
    request: dict[str, Any] | None,
    receive: int | None = None,
    report: int | None = None,
) -> NoReturn:
    """A forked child: run the analysis of ``request``. A sandboxed one (``report``: where
    the relay says the job's pid) confines itself first, and a spare (``request`` None) waits
    for its request on ``receive`` once in its namespaces."""
    code = 70
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        # none of the server's other fds (the protocol, another spare's request pipe)
        keep = sorted(fd for fd in (receive, report) if fd is not None)
        for low, high in zip([2, *keep], [*keep, 1 << 20], strict=True):
            os.closerange(low + 1, high)
        _die_with_server()
        if report is not None:
            from assay import confine

            try:  # the relay never returns from start(): it ends once the job is forked
                confine.start(report)
            except BaseException as exc:
                confine.fail(exc)
            assert receive is not None
            with os.fdopen(receive, "rb") as pipe:
                data = pipe.readline()
            if request is None:
                if not data:
                    os._exit(0)  # the server ended
                request = json.loads(data)
        assert request is not None
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        confinement = request.get("sandbox")
        if confinement is not None:
            confine.enter(
                confinement["plan"],
                cwd=request["cwd"],
                limits=confinement["limits"],
                env=request["env"],
            )
            os.closerange(3, 1 << 20)
            if confinement.get("probe"):
                os._exit(0)
        else:
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
