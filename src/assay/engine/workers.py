"""The worker's side of the ``processes`` executor: what runs in each worker process.

A worker (started by :class:`assay.engine.processes.ProcessExecutor` as ``python -P -c ...``)
reads one JSON object per line on its stdin and answers one per line on its stdout (moved to
private descriptors, so that what user code prints goes to stderr): the protocol is described
in :mod:`assay.engine.processes` and ``docs/design/workflows.md``. It builds its own platform
core once with the factory the parent sends (:class:`~assay.engine.executors.CoreFactory`),
runs one job at a time inline, and dies with its parent (``PR_SET_PDEATHSIG`` on Linux;
end-of-file on its request pipe elsewhere). A worker of the ``ray`` executor uses the same
:class:`WorkerExecutor` (:mod:`assay.engine.ray_worker`).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from assay.engine.executors import InlineExecutor, WorkflowJob

if TYPE_CHECKING:
    from assay.engine.engine import Engine

__all__ = ["WorkerExecutor", "protocol_line", "worker_main"]


def protocol_line(message: dict[str, Any]) -> bytes:
    """One message of the protocol: a JSON object and a newline."""
    return json.dumps(message).encode() + b"\n"


class WorkerExecutor(InlineExecutor):
    """A worker's executor (of a process of the ``processes`` executor, or of a Ray worker;
    ``report`` sends a message of the protocol to whoever submitted the job). It runs the job the pool sent (:meth:`run_job`); a job that this
    one schedules waits in the worker until the running handler asks for it
    (``Engine.drive``: an evaluation's own session) and is then run inline, or, if it is
    still waiting when the handler returns (a dependent that became runnable), goes back to
    the pool, so that dependents spread over the workers. The pool hears of every job the
    worker takes on and of its end, so that it can run them again if this process dies."""

    name = "processes-worker"

    def __init__(self, report: Callable[[dict[str, Any]], None]) -> None:
        super().__init__()
        self._report = report

    def bind(self, engine: Engine) -> None:
        super().bind(engine)
        run = self._run

        def run_and_report(job: WorkflowJob) -> None:
            try:
                run(job)
            finally:
                self._report({"ended": job.entity_id})

        self._run = run_and_report

    def run_job(self, job: WorkflowJob) -> None:
        """Run a job from the pool; hand back what it scheduled and did not wait for."""
        left: list[WorkflowJob] = []
        self._local.queue = left
        try:
            self._run(job)
        finally:
            self._local.queue = None
            for other in left:  # "done": this worker is about to ask for work itself
                message = {"entity": other.entity_id, "kind": other.kind}
                self._report({"handback": message, "done": True})

    def submit(self, job: WorkflowJob) -> None:
        message = {"entity": job.entity_id, "kind": job.kind}
        waiting: list[WorkflowJob] | None = getattr(self._local, "queue", None)
        if waiting is None:  # scheduled outside a job (a session's watcher thread): the pool's
            self._report({"handback": message})
            return
        self._report({"queued": message})
        waiting.append(job)


def worker_main() -> int:
    """A worker process of :class:`ProcessExecutor` (started by it; not for users)."""
    import logging

    # the protocol gets descriptors of its own; 0 and 1 become harmless for anything else
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    lock = threading.Lock()

    def report(message: dict[str, Any]) -> None:
        try:
            with lock:
                replies.write(protocol_line(message))
                replies.flush()
        except OSError:  # the parent is gone: so are we
            os._exit(1)

    line = requests.readline()
    if not line:
        return 0
    init = json.loads(line)
    _die_with_parent(int(init["parent"]))
    logging.basicConfig(
        level=logging.WARNING,
        format=f"assay worker {os.getpid()}: %(levelname)s %(name)s: %(message)s",
    )
    executor = WorkerExecutor(report)
    try:
        import base64
        import pickle

        # the factory comes from our own parent, over a pipe only the two of us hold
        factory = pickle.loads(base64.b64decode(init["factory"]))
        core = factory(executor=executor, owner=init["owner"])
    except Exception as exc:
        report({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    report({"ready": os.getpid()})
    jobs: queue.Queue[WorkflowJob | None] = queue.Queue()
    busy = threading.Event()
    threading.Thread(
        target=_read_requests, args=(requests, jobs, busy), name="assay-requests", daemon=True
    ).start()
    try:
        while (job := jobs.get()) is not None:
            busy.set()
            try:
                executor.run_job(job)
            except Exception:  # Engine.run records handler errors; this is the store failing
                logging.getLogger("assay.engine").exception("running %s failed", job.entity_id)
            finally:
                busy.clear()
                report({"idle": True})
    finally:
        core.close()
    return 0


def _read_requests(
    requests: IO[bytes], jobs: queue.Queue[WorkflowJob | None], busy: threading.Event
) -> None:
    for raw in requests:
        message = json.loads(raw)
        run = message["run"]
        jobs.put(WorkflowJob(run["entity"], run["kind"]))
    if busy.is_set():
        os._exit(1)  # the parent is gone in the middle of a job: its resume() runs it again
    jobs.put(None)  # the parent closed the pool: finish


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when its parent ends (Linux); exit if it has."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)
