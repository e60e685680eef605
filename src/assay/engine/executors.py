"""Executors: where a workflow's work runs.

The engine decides *when* a workflow may run (its dependencies are satisfied and it holds the
workflow's claim); an executor decides *where*. ``inline`` runs it in the caller, so that
``create()`` returns when the work is done (the LocalPlatform default). ``processes``
(:class:`assay.engine.processes.ProcessExecutor`) runs it in a pool of worker processes, and a
``ray`` executor would plug in the same way: each receives the same :class:`WorkflowJob`
(picklable: an id and a kind) and calls ``Engine.run`` in a worker that re-opens the platform
from its configuration (:class:`assay.core.platform.CoreConfig`). See
``docs/design/workflows.md``.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from assay.engine.engine import Engine

__all__ = ["Executor", "InlineExecutor", "WorkflowJob"]


@dataclass(frozen=True)
class WorkflowJob:
    """One unit of work: run the workflow of entity ``entity_id``."""

    entity_id: str
    kind: str


class Executor(abc.ABC):
    """Runs workflow jobs. ``bind`` is called once, by the engine that submits them."""

    name: str = "executor"

    def bind(self, engine: Engine) -> None:
        """Attach the executor to ``engine``: jobs are run by ``engine.run``."""
        self._engine = engine
        self._run: Callable[[WorkflowJob], None] = engine.run

    def holds(self, entity_id: str) -> bool:
        """True if this executor has the workflow of ``entity_id`` queued or running, so that
        :meth:`Engine.resume` leaves it alone. The default, False, suits executors whose jobs
        run in the thread that submits them."""
        return False

    @abc.abstractmethod
    def submit(self, job: WorkflowJob) -> None:
        """Start ``job``; may return before it finishes."""

    def shutdown(self, *, wait: bool = True) -> None:  # noqa: B027 - optional hook
        """Stop accepting work; with ``wait``, wait for running jobs."""


class InlineExecutor(Executor):
    """Runs each job to completion in the calling thread before ``submit`` returns.

    Jobs submitted while a job is running (a workflow whose completion unblocks others) are
    queued and run in order by the outermost call, so the stack does not grow with the length
    of a dependency chain.

    A Ctrl-C (``KeyboardInterrupt``) ends the running workflow and those queued behind it
    ``Terminated`` (reason ``Interrupted``), releases their claims, and is raised again.
    """

    name = "inline"

    def __init__(self) -> None:
        self._local = threading.local()

    def run_pending(self, entity_id: str) -> bool:
        """Run now, in this thread, a job queued behind the running one (a workflow that
        needs another one finished, such as an evaluation starting its own session)."""
        queue: list[WorkflowJob] | None = getattr(self._local, "queue", None)
        for job in list(queue or []):
            if job.entity_id == entity_id:
                queue.remove(job)  # type: ignore[union-attr]
                self._run(job)
                return True
        return False

    def submit(self, job: WorkflowJob) -> None:
        queue: list[WorkflowJob] | None = getattr(self._local, "queue", None)
        if queue is not None:  # a job is running in this thread: run this one after it
            queue.append(job)
            return
        queue = self._local.queue = [job]
        try:
            while queue:
                self._run(queue.pop(0))
        except KeyboardInterrupt:
            # The running workflow has ended Terminated (Interrupted) in Engine.run; so do
            # those queued behind it. Then a fresh KeyboardInterrupt, so that the traceback
            # Python prints shows the caller's line and a few of ours, not the handler's
            # depths (see docs/design/workflows.md, "Ctrl-C").
            for left in queue:
                self._engine.interrupt(left.entity_id, started=False)
                self._engine.store.release(left.entity_id, self._engine.owner)
            raise KeyboardInterrupt from None
        finally:
            self._local.queue = None
