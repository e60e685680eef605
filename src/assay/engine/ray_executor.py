"""The ``ray`` executor: workflows run as tasks of a Ray cluster (the workers' side is
:mod:`assay.engine.ray_worker`).

How it works (the whole story, with the reasons, is in ``docs/design/ray.md``):

- **Connecting**: :func:`connect` joins the cluster at ``address`` (``host:port`` of its head,
  ``auto``, or None: ``RAY_ADDRESS``, else a Ray instance of this machine's own). An address
  that nothing answers fails at once, naming the setting and the fix, instead of Ray's
  minute of retries.
- **Jobs**: each workflow is a Ray task (one CPU) that builds its worker's platform core with
  the engine's :class:`~assay.engine.executors.CoreFactory` (once per worker process) and
  runs ``Engine.run`` under the head's claim (its owner string), as a worker of the
  ``processes`` executor does. The head renews the claims of every job it holds. What the
  task's handler schedules and does not wait for comes back through the head's mailbox (a
  Ray actor on the head's node) and runs as a task of its own.
- **Shards**: a workflow running in a task may cut its work into shards that run side by side
  on the cluster (:class:`~assay.engine.ray_worker.RayShards`; an evaluation's files, batches
  and replications: :mod:`assay.evaluation.shards`).
- **Lost workers**: when a task's worker process or node dies, every workflow it held that is
  still ``Admitted`` is marked ``reason = Restarted`` and run again (its handler continues from
  what it wrote durably), up to ``max_attempts`` runs; then it fails with
  ``reason = WorkerCrashed``. A killed head (the process that submitted the tasks) takes its
  tasks with it (Ray ends the tasks of a dead driver); the next head on the same store
  resumes its workflows, as with the ``processes`` executor.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from assay import errors
from assay._logging import logger
from assay.engine.executors import CoreFactory, Executor, WorkflowJob
from assay.engine.processes import DEFAULT_MAX_ATTEMPTS, rerun_or_fail

if TYPE_CHECKING:
    from assay.engine.ray_worker import Head

__all__ = ["RAY_INSTALL_HINT", "RayExecutor", "check_address", "connect"]

log = logger("assay.engine")

#: How to install what the executor needs.
RAY_INSTALL_HINT = "pip install 'assay[ray]'"
#: Seconds to wait for the head of a cluster to accept a connection before giving up.
CONNECT_TIMEOUT = 5.0
#: Seconds between two looks at the tasks and the mailbox.
POLL = 0.1
#: Kinds whose workflows run in the head's own process rather than as Ray tasks: a session's
#: replica processes must live as long as the session, and a Ray worker lives only as long
#: as Ray keeps it (idle workers are reclaimed). An evaluation's own session still starts in
#: the evaluation's task, which lives as long as it needs it. See ``docs/design/ray.md``.
HEAD_KINDS = frozenset({"InferenceSession"})
#: The task tag of the jobs that run in the head.
HEAD_TASK = "head"


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise errors.ValidationError(
            f"the ray executor needs Ray, which is not installed: {RAY_INSTALL_HINT}",
            field="executor",
            value="ray",
        ) from None
    return ray


def connect(address: str | None, *, setting: str = "ray_address") -> bool:
    """Join the Ray cluster at ``address`` unless this process is connected already; returns
    whether it connected now. ``setting`` names where the address came from, for errors
    (``--ray-address / ASSAY_RAY_ADDRESS``)."""
    ray = _ray()
    check_address(address, setting)
    if ray.is_initialized():
        current = str(ray.get_runtime_context().gcs_address)
        wanted = (address or "").rpartition(":")[2]
        if wanted.isdigit() and current.rpartition(":")[2] != wanted:
            raise errors.ValidationError(
                f"this process is connected to the Ray cluster at {current} already, and Ray "
                f"joins one cluster per process: {setting} {address!r} names another; give "
                f"{current}, or use another process",
                field=setting,
                value=address,
            )
        return False
    try:
        ray.init(
            address=address or None,
            logging_level="WARNING",
            configure_logging=True,
            log_to_driver=True,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise errors.ValidationError(
            f"could not join the Ray cluster at {address or 'RAY_ADDRESS / a local one'!r} "
            f"({setting}): {exc}; give the address of a running cluster's head (host:port, as "
            "`ray start --head --port=6379` prints it)",
            field=setting,
            value=address,
        ) from None
    return True


def check_address(address: str | None, setting: str = "ray_address") -> None:
    """Fail at once, clearly, where nothing answers at ``address`` (Ray itself retries for a
    minute and more, then says little): a :class:`~assay.errors.ValidationError` naming
    ``setting`` and the fix. None and ``auto`` are left to Ray."""
    if not address or address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port_text = hostport.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit():
        raise errors.ValidationError(
            f"{setting} {address!r} is not the address of a Ray cluster: give host:port of its "
            "head (e.g. 10.0.0.5:6379, as `ray start --head --port=6379` prints it), or 'auto' "
            "for the cluster this machine belongs to",
            field=setting,
            value=address,
        )
    try:
        with socket.create_connection((host, int(port_text)), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        raise errors.ValidationError(
            f"no Ray cluster answers at {address} ({setting}): {why}. Start one there "
            f"(`ray start --head --port={port_text}`) or fix the address; it is host:port of "
            "the cluster's head",
            field=setting,
            value=address,
        ) from None


@dataclass(eq=False)
class _Pending:
    """A job the executor holds: ``task`` is the tag of the Ray task that runs it (None: it
    is being started)."""

    job: WorkflowJob
    attempts: int = 0
    """How many times the task running it was lost."""
    task: str | None = None


@dataclass(eq=False)
class _Task:
    tag: str
    ref: Any
    jobs: set[str] = field(default_factory=set)
    """The workflows this task has taken on (its own, and those it runs inline)."""


class RayExecutor(Executor):
    """Runs workflows as tasks of a Ray cluster (see the module doc and ``docs/design/ray.md``).

    ``address``: the cluster's head (``host:port``), ``auto``, or None for ``RAY_ADDRESS`` or a
    Ray instance of this machine's own; ``setting`` names where it came from, for errors.
    ``factory`` builds the workers' platform cores (default: the engine's, which
    ``PlatformCore.from_config`` hands it). A workflow whose worker or node is lost is run
    again, up to ``max_attempts`` runs in all, then fails with ``reason = WorkerCrashed``.
    The connection is made here, so a bad address fails at once.

    ``submit`` returns at once. ``shutdown(wait=True)`` waits until every workflow it holds
    is done; ``shutdown(wait=False)`` cancels their tasks and gives up their claims, so that
    ``resume()`` (in this process or another) runs them again.
    """

    name = "ray"
    background = True

    def __init__(
        self,
        address: str | None = None,
        *,
        factory: CoreFactory | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        setting: str = "ray_address",
    ) -> None:
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise errors.ValidationError(
                f"RayExecutor max_attempts must be a whole number of at least 1, got "
                f"{max_attempts!r}",
                field="max_attempts",
                value=max_attempts,
            )
        self.address = address
        self.max_attempts = max_attempts
        """How many times a workflow is run before the loss of its worker fails it."""
        self._factory = factory
        self._setting = setting
        self._connected_here = connect(address, setting=setting)
        self._cond = threading.Condition()
        self._jobs: dict[str, _Pending] = {}
        self._tasks: dict[str, _Task] = {}
        self._state = "open"  # → "closed", or → "killed"
        self._stop = threading.Event()
        self._head: Head | None = None
        self._mailbox: Any = None
        self._watcher: threading.Thread | None = None
        self._renewer: threading.Thread | None = None

    # -- the Executor interface ----------------------------------------------------------

    def submit(self, job: WorkflowJob) -> None:
        """Start ``job`` as a Ray task."""
        with self._cond:
            refused = self._state != "open"
            if not refused and job.entity_id not in self._jobs:
                pending = self._jobs[job.entity_id] = _Pending(job)
            else:
                pending = None
        if refused:
            log.warning(
                "%s %s was not run: the ray executor is shut down (resume() runs it)",
                job.kind,
                job.entity_id,
            )
            self._engine.store.release(job.entity_id, self._engine.owner)
            return
        if pending is not None:
            self._launch(pending)

    def holds(self, entity_id: str) -> bool:
        with self._cond:
            return entity_id in self._jobs

    def running(self) -> dict[str, str]:
        """The workflows this executor holds: entity id → the tag of the task running it."""
        with self._cond:
            return {entity_id: p.task or "" for entity_id, p in self._jobs.items()}

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop: with ``wait``, once every workflow held is done; without, at once, cancelling
        their tasks (the workflows stay ``Admitted`` for ``resume()``)."""
        ray = _ray()
        with self._cond:
            if self._state != "open":
                return
            if wait:
                while self._jobs and self._state == "open":
                    self._cond.wait(0.5)
            self._state = "closed" if wait else "killed"
            dropped = list(self._jobs.values()) if not wait else []
            tasks = list(self._tasks.values()) if not wait else []
            self._jobs.clear()
            self._tasks.clear()
            self._cond.notify_all()
        for task in tasks:
            with contextlib.suppress(Exception):
                ray.cancel(task.ref, force=True)
        for pending in dropped:
            self._engine.store.release(pending.job.entity_id, self._engine.owner)
        self._stop.set()
        for thread in (self._watcher, self._renewer):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=10)
        if self._mailbox is not None:
            with contextlib.suppress(Exception):
                ray.kill(self._mailbox)
        if self._connected_here and ray.is_initialized():
            ray.shutdown()

    def interrupt(self) -> list[str]:
        """A Ctrl-C in the head: cancel the tasks at once, and end every workflow held
        ``Terminated`` (reason ``Interrupted``), as the other executors do. Returns their
        ids."""
        with self._cond:
            held = {entity_id: p.task is not None for entity_id, p in self._jobs.items()}
        self.shutdown(wait=False)
        for entity_id, started in held.items():
            self._engine.interrupt(entity_id, started=started)
            self._engine.store.release(entity_id, self._engine.owner)
        return list(held)

    # -- starting tasks ------------------------------------------------------------------

    def head(self) -> Head:
        """What every task of this executor carries (made on first use: the mailbox actor
        starts on this node)."""
        with self._cond:
            if self._head is not None:
                return self._head
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from assay.engine.ray_worker import Head, Mailbox

        ray = _ray()
        factory = self._factory or self._engine.factory
        if factory is None:
            raise errors.ValidationError(
                "the ray executor needs a way to open the platform on its workers: open the "
                "platform with PlatformCore.from_config(config, ...) (LocalPlatform and the "
                "server do), or pass RayExecutor(factory=...)"
            )
        nodes = {n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")}
        factory.check_shared(self.name, machines=len(nodes) > 1)
        here = ray.get_runtime_context().get_node_id()
        mailbox = (
            ray.remote(num_cpus=0)(Mailbox)
            .options(scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False))
            .remote()
        )
        head = Head(factory, self._engine.owner, mailbox, tuple(sys.path), self.max_attempts)
        with self._cond:
            if self._head is None:
                self._head, self._mailbox = head, mailbox
                self._watcher = threading.Thread(
                    target=self._watch, name="assay-ray-tasks", daemon=True
                )
                self._renewer = threading.Thread(
                    target=self._renew, name="assay-ray-claims", daemon=True
                )
                self._watcher.start()
                self._renewer.start()
            else:
                ray.kill(mailbox)
            return self._head

    def _launch(self, pending: _Pending) -> None:
        """Start the task of ``pending``'s job (on failure, give it up to ``resume()``); the
        kinds of :data:`HEAD_KINDS` run in a thread of this process instead."""
        from assay.engine.ray_worker import remote

        if pending.job.kind in HEAD_KINDS:
            pending.task = HEAD_TASK
            threading.Thread(
                target=self._run_here,
                args=(pending,),
                name=f"assay-{pending.job.kind.lower()}-{pending.job.entity_id[:8]}",
                daemon=True,
            ).start()
            return
        try:
            head = self.head()
            tag = uuid.uuid4().hex
            job = pending.job
            ref = remote("job").remote(head, tag, job.entity_id, job.kind)
        except Exception as exc:
            log.error(
                "could not start %s %s on the Ray cluster (%s); it stays Admitted for resume()",
                pending.job.kind,
                pending.job.entity_id,
                exc,
            )
            self._forget(pending)
            self._engine.store.release(pending.job.entity_id, self._engine.owner)
            return
        with self._cond:
            task = self._tasks[tag] = _Task(tag, ref, {job.entity_id})
            pending.task = task.tag
            if self._state == "killed":
                self._tasks.pop(tag, None)
                with contextlib.suppress(Exception):
                    _ray().cancel(ref, force=True)

    def _run_here(self, pending: _Pending) -> None:
        try:
            self._run(pending.job)
        except Exception:  # the engine records handler failures; this is the engine failing
            log.exception(
                "workflow %s %s could not be run", pending.job.kind, pending.job.entity_id
            )
        finally:
            self._forget(pending)

    # -- watching ------------------------------------------------------------------------

    def _watch(self) -> None:
        ray = _ray()
        while not self._stop.is_set():
            if not ray.is_initialized():  # any call now would start a Ray of its own
                log.warning("the connection to the Ray cluster was shut down under the executor")
                return
            with self._cond:
                refs = {task.ref: task for task in self._tasks.values()}
            try:
                if refs:
                    ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=POLL)
                else:
                    ready = []
                    self._stop.wait(POLL)
                messages = ray.get(self._mailbox.take.remote())
            except Exception:
                if self._stop.is_set():
                    return
                log.warning("could not look at the Ray tasks; trying again", exc_info=True)
                time.sleep(1)
                continue
            for message in messages:  # before the ends: a task tells before it returns
                self._relay(message)
            for ref in ready:
                self._ended(refs[ref], ref)

    def _relay(self, message: dict[str, Any]) -> None:
        tag = message.get("task") or None
        with self._cond:
            task = self._tasks.get(tag) if tag else None
            if "queued" in message:
                job = WorkflowJob(message["queued"]["entity"], message["queued"]["kind"])
                pending = self._jobs.get(job.entity_id)
                if pending is None:
                    pending = self._jobs[job.entity_id] = _Pending(job)
                if task is not None and pending.task in (None, tag):
                    pending.task = tag
                    task.jobs.add(job.entity_id)
                return
            if "ended" in message:
                entity_id = message["ended"]
                pending = self._jobs.get(entity_id)
                if pending is not None and pending.task == tag:
                    del self._jobs[entity_id]
                    self._cond.notify_all()
                if task is not None:
                    task.jobs.discard(entity_id)
                return
            if "handback" not in message:
                return
            job = WorkflowJob(message["handback"]["entity"], message["handback"]["kind"])
            pending = self._jobs.get(job.entity_id)
            if pending is not None and pending.task is not None and pending.task != tag:
                return  # another task holds it
            if pending is None:
                pending = self._jobs[job.entity_id] = _Pending(job)
            if task is not None:
                task.jobs.discard(job.entity_id)
            pending.task = None
            killed = self._state == "killed"
        if killed:
            self._forget(pending)
            self._engine.store.release(job.entity_id, self._engine.owner)
        else:
            self._launch(pending)

    def _ended(self, task: _Task, ref: Any) -> None:
        ray = _ray()
        with self._cond:
            if self._tasks.get(task.tag) is not task:
                return
            del self._tasks[task.tag]
            held = [p for p in self._jobs.values() if p.task == task.tag]
            killed = self._state == "killed"
        try:
            ray.get(ref)
            failure: BaseException | None = None
        except Exception as exc:
            failure = exc
        if failure is None or killed:
            for pending in held:
                self._forget(pending)
                if killed:
                    self._engine.store.release(pending.job.entity_id, self._engine.owner)
            return
        from assay.engine.ray_worker import lost_worker

        why = lost_worker(failure)
        if why is None:  # Engine.run records handler errors: this is the store failing
            log.error(
                "the Ray task running %s failed: %s; resume() runs them again",
                ", ".join(f"{p.job.kind} {p.job.entity_id}" for p in held),
                failure,
            )
            for pending in held:
                self._forget(pending)
                self._engine.store.release(pending.job.entity_id, self._engine.owner)
            return
        log.warning(
            "the Ray task running %s was lost (%s)",
            ", ".join(f"{p.job.kind} {p.job.entity_id}" for p in held),
            why,
        )
        for pending in held:
            try:
                self._retry_or_fail(pending, why)
            except Exception:  # the store is unreachable: resume() will find it
                log.exception("could not retry %s", pending.job.entity_id)
                self._forget(pending)

    def _retry_or_fail(self, pending: _Pending, why: str) -> None:
        job = pending.job
        pending.attempts += 1
        pending.task = None
        message = rerun_or_fail(
            self._engine,
            job,
            attempts=pending.attempts,
            max_attempts=self.max_attempts,
            what=f"the Ray task running {job.kind} {job.entity_id} was lost: {why}",
            causes="its own work kills the worker that runs it (memory exhausted, a crash in "
            "native code, os._exit in user code) or the cluster keeps losing nodes",
            forget=lambda: self._forget(pending),
        )
        if message is None:
            return
        log.warning("%s", message)
        self._launch(pending)

    def _forget(self, pending: _Pending) -> None:
        with self._cond:
            if self._jobs.get(pending.job.entity_id) is pending:
                del self._jobs[pending.job.entity_id]
                self._cond.notify_all()

    def _renew(self) -> None:
        """Keep the claims of the jobs held alive (a task waiting for a CPU has no
        heartbeat of its own)."""
        engine = self._engine
        while not self._stop.wait(max(engine.claim_ttl / 3, 0.05)):
            with self._cond:
                held = list(self._jobs)
            for entity_id in held:
                try:
                    engine.store.renew(entity_id, engine.owner, engine.claim_ttl)
                except Exception:  # the store is briefly busy: next time
                    log.debug("could not renew the claim on %s", entity_id, exc_info=True)

    def __repr__(self) -> str:
        return f"RayExecutor(address={self.address!r}, pid={os.getpid()})"
