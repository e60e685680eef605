"""Executors: where a workflow's work runs.

The engine decides *when* a workflow may run (its dependencies are satisfied and it holds the
workflow's claim); an executor decides *where*. ``inline`` runs it in the caller, so that
``create()`` returns when the work is done (the LocalPlatform default). ``processes``
(:class:`assay.engine.processes.ProcessExecutor`) runs it in a pool of worker processes, and
``ray`` (:class:`assay.engine.ray_executor.RayExecutor`) as tasks of a Ray cluster: each
receives the same :class:`WorkflowJob` (picklable: an id and a kind) and calls ``Engine.run``
in a worker that builds its own platform core with the engine's :class:`CoreFactory` (the
platform hands it over; the engine never imports the platform's package). See
``docs/design/workflows.md`` and ``docs/design/ray.md``.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from assay.engine.engine import Engine

__all__ = ["CoreFactory", "Executor", "InlineExecutor", "Shards", "WorkerCore", "WorkflowJob"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class WorkflowJob:
    """One unit of work: run the workflow of entity ``entity_id``."""

    entity_id: str
    kind: str


class WorkerCore(Protocol):
    """What a worker's platform core offers the executor that built it: its engine (whose
    ``run`` runs a job) and ``close()``. :class:`assay.core.platform.PlatformCore` is one."""

    @property
    def engine(self) -> Engine:
        """The core's engine."""
        ...

    def close(self) -> None:
        """Release what the core holds (its store connections, its replicas)."""
        ...


@runtime_checkable
class CoreFactory(Protocol):
    """Builds the platform core of a worker: a process of the ``processes`` executor or a
    worker of the ``ray`` executor opens the same platform as the one that submitted the job,
    and builds it the same way, by calling the factory the platform handed to its engine
    (:attr:`Engine.factory`; :class:`assay.core.platform.PlatformFactory` for a
    ``PlatformCore``). A factory must be picklable: it travels to the worker.
    """

    def __call__(self, *, executor: Executor, owner: str) -> WorkerCore:
        """A new platform core whose workflows run on ``executor`` and whose claims are
        held as ``owner`` (the owner string of the engine that submitted the job)."""
        ...

    def check_shared(self, executor: str, *, machines: bool = False) -> None:
        """Raise :class:`assay.errors.ValidationError` (naming the setting and the fix) if
        the platform cannot be opened by another process of this machine or, with
        ``machines``, by a process on another machine. ``executor`` names the executor that
        asks, for the message."""
        ...


class Executor(abc.ABC):
    """Runs workflow jobs. ``bind`` is called once, by the engine that submits them."""

    name: str = "executor"
    background: bool = False
    """True where ``submit`` returns before the job has run (worker processes, a cluster):
    a platform then resumes interrupted work as it opens, since that does not block."""

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

    def shards(self) -> Shards | None:
        """Where the workflow running in this thread may run pieces of its work side by side
        on other workers (a cluster's): None, the default, where it may not, and does the
        work itself."""
        return None


class Shards(abc.ABC):
    """Runs pieces (*shards*) of one workflow's work side by side, each on a worker that
    builds its own platform core with the engine's :class:`CoreFactory` (an evaluation cut
    by input files, batches and replications: :mod:`assay.evaluation.shards`).

    A shard whose worker is lost (its process or its machine died) is run again, up to a
    number of attempts: a shard must therefore be safe to run twice, continuing from what
    it wrote durably.
    """

    @property
    @abc.abstractmethod
    def width(self) -> int:
        """How many shards may run at once (the CPUs of the cluster)."""

    @abc.abstractmethod
    def run(
        self,
        fn: Callable[[WorkerCore, T], R],
        items: Sequence[T],
        *,
        tick: Callable[[], None] | None = None,
        retried: Callable[[int, str, int], None] | None = None,
    ) -> Iterator[tuple[int, R]]:
        """Run ``fn(core, item)`` for every item (``fn`` and the items picklable), and
        yield ``(position, result)`` as each ends. ``tick`` is called at least every 0.2 s
        while they run (it may raise, to stop them); ``retried(position, why, attempt)``
        when a shard whose worker was lost starts again. The first exception a shard raises
        is raised here; shards not yet ended when the iteration stops are cancelled."""


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
