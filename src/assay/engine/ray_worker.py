"""The workers' side of the ``ray`` executor: the Ray tasks that run workflows and shards.

Every task carries a :class:`Head`: the factory that builds a platform core
(:class:`~assay.engine.executors.CoreFactory`), the owner string of the head's claims, the
head's mailbox (a small Ray actor on the head's node) and the head's ``sys.path``. A Ray worker
process builds its core once per head, with a :class:`RayWorkerExecutor` (the executor of a
``processes`` worker, :class:`~assay.engine.workers.WorkerExecutor`, whose messages go to the
mailbox instead of a pipe), and keeps it for the next tasks of that head.

- :func:`run_job` runs one workflow (``Engine.run`` under the head's claim). Jobs the
  handler waits for (an evaluation's own session) run inline; the others are handed back
  to the head through the mailbox, which hears of every job the task takes on and of its
  end, so that it can run them again if the task's worker or node is lost.
- :func:`run_shard` runs one piece of a workflow's work (:class:`RayShards`): the shards of
  an evaluation (:mod:`assay.evaluation.shards`).

The head's side is :mod:`assay.engine.ray_executor`; the design is in ``docs/design/ray.md``.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from assay import errors
from assay._logging import logger
from assay.engine.executors import CoreFactory, Shards, WorkerCore, WorkflowJob
from assay.engine.workers import WorkerExecutor

__all__ = [
    "JOB_CPUS",
    "SHARD_CPUS",
    "Head",
    "Mailbox",
    "RayShards",
    "RayWorkerExecutor",
    "lost_worker",
    "run_job",
    "run_shard",
]

log = logger("assay.engine")

T = TypeVar("T")
R = TypeVar("R")

#: CPUs a workflow's task asks of its node. A task waiting for its shards (``ray.wait``)
#: gives its CPU back to the cluster meanwhile, as Ray does for every blocked task.
JOB_CPUS = 1.0
#: CPUs each shard asks of its node.
SHARD_CPUS = 1.0
#: Seconds between two looks at running shards (and calls of their ``tick``).
SHARD_TICK = 0.2


class Mailbox:
    """The head's inbox: workers ``put`` the messages of the worker protocol (``queued``,
    ``handback``, ``ended``; see :mod:`assay.engine.processes`) and the head ``take``\\ s them.
    Run as a Ray actor (no CPU) on the head's node."""

    def __init__(self) -> None:
        self._messages: list[dict[str, Any]] = []

    def put(self, message: dict[str, Any]) -> None:
        """Leave a message for the head."""
        self._messages.append(message)

    def take(self) -> list[dict[str, Any]]:
        """Every message left since the last call, oldest first."""
        messages, self._messages = self._messages, []
        return messages


@dataclass(frozen=True)
class Head:
    """What every task of one head carries (picklable)."""

    factory: CoreFactory
    """How the worker builds its platform core."""
    owner: str
    """The owner string of the head's claims: the worker's engine runs under it."""
    mailbox: Any
    """The handle of the head's :class:`Mailbox` actor."""
    paths: tuple[str, ...]
    """The head's ``sys.path``: the worker imports mocks and user modules from where the head
    does (where those directories exist on its machine)."""
    max_attempts: int = 3
    """How many times a shard whose worker is lost is run."""


class RayWorkerExecutor(WorkerExecutor):
    """The executor of a Ray worker's platform core: a ``processes`` worker's executor whose
    messages go to the head's mailbox, tagged with the task that sent them; its
    :meth:`shards` run on the cluster."""

    name = "ray-worker"

    def __init__(self, head: Head) -> None:
        self._head = head
        self.tag = ""
        """The tag of the task this worker runs now (set by :func:`run_job`)."""
        super().__init__(self._send)

    def _send(self, message: dict[str, Any]) -> None:
        import ray

        try:
            ray.get(self._head.mailbox.put.remote({**message, "task": self.tag}))
        except Exception:  # the head is gone: its resume() takes the work over
            log.warning("could not tell the head %s", message, exc_info=True)

    def shards(self) -> RayShards:
        return RayShards(self._head)


_cores: dict[bytes, tuple[RayWorkerExecutor, WorkerCore]] = {}
_cores_lock = threading.Lock()


def worker_core(head: Head) -> tuple[RayWorkerExecutor, WorkerCore]:
    """This worker process's platform core for ``head`` (built on first use)."""
    key = pickle.dumps((head.factory, head.owner))
    with _cores_lock:
        found = _cores.get(key)
        if found is None:
            _use_paths(head.paths)
            executor = RayWorkerExecutor(head)
            core = head.factory(executor=executor, owner=head.owner)
            found = _cores[key] = (executor, core)
    return found


def _use_paths(paths: Sequence[str]) -> None:
    """Put the head's import paths that exist here in front of this worker's own."""
    missing = [p for p in paths if p and p not in sys.path and os.path.isdir(p)]
    sys.path[:0] = missing


def run_job(head: Head, tag: str, entity_id: str, kind: str) -> None:
    """A Ray task: run the workflow of ``entity_id`` (``Engine.run``; not for users)."""
    executor, _ = worker_core(head)
    executor.tag = tag
    try:
        executor.run_job(WorkflowJob(entity_id, kind))
    finally:
        executor.tag = ""


def run_shard(head: Head, fn: Callable[[WorkerCore, T], R], item: T) -> R:
    """A Ray task: run one shard, ``fn(core, item)`` (not for users)."""
    _, core = worker_core(head)
    return fn(core, item)


def lost_worker(exc: BaseException) -> str | None:
    """How a task's worker was lost, where ``exc`` (raised by ``ray.get``) says it was: its
    process or its node died, or Ray killed it for memory. None for other errors (the task
    raised, was cancelled, or cannot be scheduled)."""
    import ray.exceptions as rex

    if isinstance(exc, rex.NodeDiedError):
        return "its node died"
    if isinstance(exc, rex.OutOfMemoryError):
        return "Ray killed its worker to free memory"
    if isinstance(exc, rex.LocalRayletDiedError | rex.WorkerCrashedError):
        return "its worker process died"
    if isinstance(exc, rex.ObjectLostError):
        return "its result was lost with its node"
    return None


def task_error(exc: BaseException) -> BaseException:
    """The exception a task raised (Ray wraps it), to raise again here."""
    import ray.exceptions as rex

    if isinstance(exc, rex.RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, Exception) and not isinstance(cause, rex.RayError):
            return cause
        return errors.PlatformError(str(exc))
    return exc


_remote_functions: dict[str, Any] = {}


def remote(name: str) -> Any:
    """The Ray remote function of :func:`run_job` or :func:`run_shard` (made once)."""
    import ray

    function = _remote_functions.get(name)
    if function is None:
        target: Any = run_job if name == "job" else run_shard
        cpus = JOB_CPUS if name == "job" else SHARD_CPUS
        # Ray does not retry: the head (jobs) and RayShards (shards) decide, and say so
        function = ray.remote(num_cpus=cpus, max_retries=0, retry_exceptions=False)(target)
        _remote_functions[name] = function
    return function


class RayShards(Shards):
    """Shards as Ray tasks spread over the cluster's nodes, each on a worker that builds its
    core from the head's factory; a shard whose worker is lost runs again (at most
    ``head.max_attempts`` times)."""

    def __init__(self, head: Head) -> None:
        self._head = head

    @property
    def width(self) -> int:
        import ray

        resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
        return max(1, int(resources.get("CPU", 1)))

    def run(
        self,
        fn: Callable[[WorkerCore, T], R],
        items: Sequence[T],
        *,
        tick: Callable[[], None] | None = None,
        retried: Callable[[int, str, int], None] | None = None,
    ) -> Iterator[tuple[int, R]]:
        import ray

        task = remote("shard").options(scheduling_strategy="SPREAD")
        pending: dict[Any, tuple[int, int]] = {}
        for i, item in enumerate(items):
            pending[task.remote(self._head, fn, item)] = (i, 1)
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=SHARD_TICK)
                if tick is not None:
                    tick()
                for ref in ready:
                    i, attempt = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        why = lost_worker(exc)
                        if why is None:
                            raise task_error(exc) from None
                        if attempt >= self._head.max_attempts:
                            describe = getattr(items[i], "describe", None)
                            what = describe() if callable(describe) else f"shard {i}"
                            raise errors.PlatformError(
                                f"{what} was lost {attempt} time{'s' if attempt > 1 else ''} "
                                f"({why}; the last time: {exc}); what its runs wrote is kept: "
                                "run the workflow again when the cluster is whole"
                            ) from None
                        if retried is not None:
                            retried(i, why, attempt + 1)
                        pending[task.remote(self._head, fn, items[i])] = (i, attempt + 1)
                        continue
                    yield i, result
        finally:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
