"""``WorkflowThreadExecutor``: the server's executor for now — each workflow in a background
thread of the server process, so that ``POST /evaluations`` answers at once.

A thread per job rather than a bounded pool: a workflow may wait for another (an evaluation
waits for the session it starts), and a bounded pool whose every thread waits on a queued job
never finishes. Workflows are few and long, so threads are cheap here. The ``processes``
executor (worker processes, DESIGN §2) replaces this one as the server default when it exists.

Shutting down waits for running workflows up to a timeout; what is still running then is
left to the claim mechanism: its claim expires and the next start's ``resume()`` runs it again.
"""

from __future__ import annotations

import threading
import time

from assay._logging import logger
from assay.engine import Executor
from assay.engine.executors import WorkflowJob

__all__ = ["WorkflowThreadExecutor"]

log = logger("assay.server")


class WorkflowThreadExecutor(Executor):
    """Runs each workflow job in a daemon thread of its own; ``submit`` returns at once."""

    name = "threads"

    def __init__(self, *, shutdown_timeout: float = 30.0) -> None:
        self._shutdown_timeout = shutdown_timeout
        self._threads: dict[threading.Thread, str] = {}
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, job: WorkflowJob) -> None:
        with self._lock:
            closed = self._closed
            if not closed:
                thread = threading.Thread(
                    target=self._work,
                    args=(job,),
                    name=f"assay-{job.kind.lower()}-{job.entity_id[:8]}",
                    daemon=True,
                )
                self._threads[thread] = job.entity_id
        if closed:
            # The entity stays Admitted; without our claim, resume() (here or in the next
            # process) runs it.
            log.info("not starting %s %s: the server is shutting down", job.kind, job.entity_id)
            self._engine.store.release(job.entity_id, self._engine.owner)
            return
        thread.start()

    def holds(self, entity_id: str) -> bool:
        with self._lock:
            return entity_id in self._threads.values()

    def _work(self, job: WorkflowJob) -> None:
        try:
            self._run(job)
        except Exception:  # the engine records handler failures; this is the engine failing
            log.exception("workflow %s %s could not be run", job.kind, job.entity_id)
        finally:
            with self._lock:
                self._threads.pop(threading.current_thread(), None)

    @property
    def running(self) -> int:
        """How many workflow threads are alive."""
        with self._lock:
            return sum(t.is_alive() for t in self._threads)

    def shutdown(self, *, wait: bool = True) -> None:
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        if not wait:
            return
        deadline = time.monotonic() + self._shutdown_timeout
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0))
        left = [t.name for t in threads if t.is_alive()]
        if left:
            log.warning(
                "%d workflows still running at shutdown (%s); they resume at the next start",
                len(left),
                ", ".join(left),
            )
