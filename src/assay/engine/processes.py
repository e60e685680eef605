"""The ``processes`` executor: workflows run in a pool of worker processes (the workers' own
side is :mod:`assay.engine.workers`).

How it works (the whole story, with the reasons, is in ``docs/design/workflows.md``):

- **Workers** are ``python -P -c ...`` processes of the platform's own interpreter, started
  with :mod:`subprocess` (never :mod:`multiprocessing`, whose ``spawn`` and ``forkserver``
  re-run the user's ``__main__`` script in every child, and whose ``fork`` is unsafe in a
  multi-threaded parent). Each gets the parent's ``sys.path``, builds its own platform core
  once with the engine's :class:`~assay.engine.executors.CoreFactory` (pickled to it), and
  then runs one job at a time. The pool grows to ``workers`` processes as jobs arrive and
  replaces the workers that die.
- **Protocol**: one JSON object per line, over the worker's stdin and stdout (the worker moves
  them to private descriptors, so what user code prints goes to stderr). The parent sends
  ``{"factory", "owner", "parent"}`` once (the factory pickled, in base64), then
  ``{"run": {"entity", "kind"}}`` per job. The
  worker answers ``{"ready": pid}`` once it has opened the platform; ``{"queued": job}`` for
  each job its engine schedules while running one (an evaluation's own session: run inline
  when the handler waits for it); ``{"handback": job}`` for each such job still waiting when
  the handler returns (a dependent that became runnable: the pool gives it to any worker);
  ``{"ended": id}`` when a job is done; ``{"idle": true}`` when it wants the next one.
- **Claims**: the parent's engine claims a workflow before submitting it. The worker's engine
  runs under the parent's owner string (``host:pid:nonce``), so the claim is the same one: it
  is renewed by the parent while the job waits, and by both while it runs. This is right
  because a worker never outlives its parent: it gets ``SIGKILL`` when the parent dies
  (``PR_SET_PDEATHSIG``, Linux) and exits when its request pipe reaches end-of-file. A
  restarted platform's ``resume()`` then finds the dead owner and runs the work again.
- **Crashes**: when a worker dies with jobs in hand, each of them that is still ``Admitted``
  is marked ``reason = Restarted`` and queued again (the handler sees ``ctx.restarted``), up
  to ``max_attempts`` runs in all; then it fails with ``reason = WorkerCrashed`` and a message
  naming the entity, how the worker died and the attempt count.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import itertools
import json
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from assay import errors
from assay._logging import logger
from assay.engine.executors import CoreFactory, Executor, WorkflowJob
from assay.engine.workers import protocol_line
from assay.schema.status import Reason, Status

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "MAX_DEFAULT_WORKERS",
    "WORKER_CRASHED",
    "ProcessExecutor",
    "default_workers",
    "rerun_or_fail",
]

log = logger("assay.engine")

#: The ``reason`` of a workflow that failed because its worker process died every time.
WORKER_CRASHED = "WorkerCrashed"
#: How many times a workflow is run before a crash of its worker fails it.
DEFAULT_MAX_ATTEMPTS = 3
#: The most workers :func:`default_workers` proposes, however many CPUs there are.
MAX_DEFAULT_WORKERS = 8

# The worker's command: the parent's sys.path first (argv[1]), so that the worker imports
# Assay, and the modules that mocks and handlers name, from where the parent does.
_WORKER_CODE = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from assay.engine.workers import worker_main; sys.exit(worker_main())"
)


def default_workers() -> int:
    """One worker per CPU this process may use, at most :data:`MAX_DEFAULT_WORKERS`."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_DEFAULT_WORKERS))


@dataclass(eq=False)
class _Pending:
    """A job the pool holds: queued (``worker`` None) or in a worker's hands."""

    job: WorkflowJob
    attempts: int = 0
    """How many workers died running it."""
    worker: _Worker | None = None
    noted: bool = False
    """Whether its entity's message says it is queued."""


class _Worker:
    """The parent's side of one worker process (served by one thread, its parent)."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.proc: subprocess.Popen[bytes] | None = None
        self.running: dict[str, _Pending] = {}
        self.idle = False
        self.thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid


class ProcessExecutor(Executor):
    """Runs workflows in a pool of up to ``workers`` worker processes (see the module doc).

    ``factory`` builds each worker's platform core (default: the factory of the engine this
    executor is given to, which a platform opened with :meth:`PlatformCore.from_config
    <assay.core.platform.PlatformCore.from_config>` hands it, as ``LocalPlatform`` and the
    server do). ``workers`` defaults to :func:`default_workers`. A workflow whose
    worker dies is run again, up to ``max_attempts`` runs in all, then fails with
    ``reason = WorkerCrashed``.

    ``submit`` returns at once. ``shutdown(wait=True)`` waits until every queued and running
    workflow is done, then stops the workers; ``shutdown(wait=False)`` kills them and gives up
    the claims of their unfinished workflows, so that ``resume()`` (in this process or
    another) runs those again.
    """

    name = "processes"
    background = True

    def __init__(
        self,
        factory: CoreFactory | None = None,
        *,
        workers: int | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        for what, value in (("workers", workers), ("max_attempts", max_attempts)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise errors.ValidationError(
                    f"ProcessExecutor {what} must be a whole number of at least 1, got {value!r}",
                    field=what,
                    value=value,
                )
        if factory is not None:
            factory.check_shared(self.name)
        self._factory = factory
        self.workers: int = workers or default_workers()
        """The most worker processes the pool runs at once."""
        self.max_attempts = max_attempts
        """How many times a workflow is run before a crash of its worker fails it."""
        self._cond = threading.Condition()
        self._queue: collections.deque[_Pending] = collections.deque()
        self._jobs: dict[str, _Pending] = {}
        self._pool: list[_Worker] = []
        self._numbers = itertools.count(1)
        self._state = "open"  # → "draining" → "closed", or → "killed"
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._notes: queue.Queue[tuple[str, str | None] | None] = queue.Queue()
        self._noter: threading.Thread | None = None

    # -- the Executor interface ----------------------------------------------------------

    def submit(self, job: WorkflowJob) -> None:
        """Queue ``job`` for the next free worker (starting one if the pool is not full)."""
        with self._cond:
            refused = self._state in ("closed", "killed")
            if not refused and job.entity_id not in self._jobs:
                pending = _Pending(job)
                self._jobs[job.entity_id] = pending
                self._queue.append(pending)
                self._start_renewer()
                self._dispatch()
        if refused:
            log.warning(
                "%s %s was not run: the processes executor is shut down (resume() runs it)",
                job.kind,
                job.entity_id,
            )
            self._engine.store.release(job.entity_id, self._engine.owner)

    def holds(self, entity_id: str) -> bool:
        with self._cond:
            return entity_id in self._jobs

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop the pool: with ``wait``, once every workflow it holds is done; without, at
        once, killing the workers (their workflows stay ``Admitted`` for ``resume()``)."""
        with self._cond:
            if self._state in ("closed", "killed"):
                return
            if wait:
                self._state = "draining"
                while self._jobs and self._state == "draining":
                    self._cond.wait()
                if self._state == "draining":
                    self._state = "closed"
                dropped: list[_Pending] = []
            else:
                self._state = "killed"
                dropped = list(self._queue)
                self._queue.clear()
                for pending in dropped:
                    self._jobs.pop(pending.job.entity_id, None)
                self._cond.notify_all()
            pool = list(self._pool)
            for worker in pool:
                if wait and worker.proc is not None and worker.proc.stdin is not None:
                    with contextlib.suppress(OSError):
                        worker.proc.stdin.close()  # an idle worker exits on end-of-file
                elif not wait and worker.proc is not None:
                    worker.proc.kill()
        for pending in dropped:
            self._engine.store.release(pending.job.entity_id, self._engine.owner)
        for worker in pool:
            if worker.thread is not None:
                worker.thread.join(timeout=60)
                if worker.thread.is_alive() and worker.proc is not None:
                    worker.proc.kill()
                    worker.thread.join(timeout=10)
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=10)
        if self._noter is not None:
            self._notes.put(None)
            self._noter.join(timeout=10)

    def interrupt(self) -> list[str]:
        """A Ctrl-C in the parent: kill the workers at once, and end every workflow the pool
        held ``Terminated`` (reason ``Interrupted``), as the inline executor does. Returns
        their ids. (``LocalPlatform`` calls it when a ``KeyboardInterrupt`` leaves its
        ``with`` block.)"""
        with self._cond:
            held = {entity_id: p.worker is not None for entity_id, p in self._jobs.items()}
        self.shutdown(wait=False)
        for entity_id, started in held.items():
            self._engine.interrupt(entity_id, started=started)
            self._engine.store.release(entity_id, self._engine.owner)
        return list(held)

    # -- looking at the pool -------------------------------------------------------------

    def running(self) -> dict[str, int]:
        """The workflows in the workers' hands: entity id → the pid of its worker."""
        with self._cond:
            return {
                entity_id: pid
                for entity_id, pending in self._jobs.items()
                if pending.worker is not None and (pid := pending.worker.pid) is not None
            }

    def worker_pids(self) -> list[int]:
        """The pids of the worker processes running now."""
        with self._cond:
            return [pid for worker in self._pool if (pid := worker.pid) is not None]

    # -- the parent's side ---------------------------------------------------------------

    def _dispatch(self) -> None:
        """Hand queued jobs to idle workers, or to new ones while the pool is not full.
        Called with the lock held."""
        while self._queue and self._state != "killed":
            worker = next((w for w in self._pool if w.idle), None)
            pending = self._queue.popleft()
            if worker is not None:
                self._send(worker, pending)
            elif len(self._pool) < self.workers:
                self._start_worker(pending)
            else:
                self._queue.appendleft(pending)
                self._note_queued()
                return

    def _note_queued(self) -> None:
        """Say in the message of each job that starts waiting for a worker that it does, and
        what the workers run. Called with the lock held; the store writes happen in the
        notes thread."""
        fresh = [p for p in self._queue if not p.noted]
        if not fresh:
            return
        running = [p.job for p in self._jobs.values() if p.worker is not None]
        busy = len({id(p.worker) for p in self._jobs.values() if p.worker is not None})
        named = ", ".join(f"{job.kind} {job.entity_id}" for job in running[:3])
        if len(running) > 3:
            named += f" and {len(running) - 3} more"
        message = (
            f"queued: {busy} of {self.workers} workers busy"
            + (f" (running {named})" if named else "")
            + "; it starts when one is free"
        )
        for pending in fresh:
            pending.noted = True
            self._note(pending.job.entity_id, message)

    def _note(self, entity_id: str, message: str | None) -> None:
        """Queue a message for the entity (None: clear a "queued" one). Called with the lock
        held."""
        self._notes.put((entity_id, message))
        if self._noter is None:
            self._noter = threading.Thread(
                target=self._write_notes, name="assay-pool-notes", daemon=True
            )
            self._noter.start()

    def _write_notes(self) -> None:
        while (note := self._notes.get()) is not None:
            entity_id, message = note

            def mutate(doc: dict[str, Any], message: str | None = message) -> dict[str, Any] | None:
                if doc.get("status") != Status.Admitted or doc.get("reason") == Reason.Restarted:
                    return None
                queued = (doc.get("message") or "").startswith("queued:")
                if message is None and not queued:
                    return None  # the worker has written its own progress already
                if message is not None and doc.get("message") and not queued:
                    return None
                if message is None:
                    doc.pop("message", None)
                else:
                    doc["message"] = message
                return doc

            try:
                self._engine.store.update(entity_id, mutate)
            except Exception:  # gone, or the store is busy: a message is not worth more
                log.debug("could not update the message of %s", entity_id, exc_info=True)

    def _assign(self, worker: _Worker, pending: _Pending) -> None:
        pending.worker = worker
        worker.running[pending.job.entity_id] = pending

    def _send(self, worker: _Worker, pending: _Pending) -> None:
        worker.idle = False
        self._assign(worker, pending)
        self._taken(pending)
        job = pending.job
        try:
            assert worker.proc is not None and worker.proc.stdin is not None
            worker.proc.stdin.write(
                protocol_line({"run": {"entity": job.entity_id, "kind": job.kind}})
            )
            worker.proc.stdin.flush()
        except (OSError, ValueError):  # the worker is gone: its thread will find out
            worker.running.pop(job.entity_id, None)
            pending.worker = None
            self._queue.appendleft(pending)

    def _taken(self, pending: _Pending) -> None:
        """A worker takes the job: its "queued" message goes. Called with the lock held."""
        if pending.noted:
            pending.noted = False
            self._note(pending.job.entity_id, None)

    def _start_worker(self, first: _Pending) -> None:
        worker = _Worker(next(self._numbers))
        self._assign(worker, first)
        self._taken(first)
        self._pool.append(worker)
        # This thread is the worker's parent for PR_SET_PDEATHSIG, so it lives as long as
        # the worker does.
        worker.thread = threading.Thread(
            target=self._serve, args=(worker,), name=f"assay-worker-{worker.number}", daemon=True
        )
        worker.thread.start()

    def _serve(self, worker: _Worker) -> None:
        """Start the worker process, then relay its messages until it exits."""
        try:
            description = self._start_and_relay(worker)
        except (errors.AssayError, OSError) as exc:  # a bad configuration, no interpreter
            description = f"could not be started: {exc}"
        except Exception as exc:  # a bug of ours: do not leave its jobs hanging
            log.exception("the thread serving worker %d failed", worker.number)
            description = f"was lost ({type(exc).__name__}: {exc})"
            if worker.proc is not None:
                with contextlib.suppress(OSError):
                    worker.proc.kill()
        if worker.proc is not None:
            description = description.replace("{exit}", _reap(worker.proc))
            with self._cond:
                for pipe in (worker.proc.stdin, worker.proc.stdout):
                    if pipe is not None:
                        with contextlib.suppress(OSError):
                            pipe.close()
        self._lost(worker, description)

    def _start_and_relay(self, worker: _Worker) -> str:
        """Run the worker; returns how it ended, where ``{exit}`` stands for its exit
        status."""
        factory = self._resolve_factory()
        proc = subprocess.Popen(
            [sys.executable, "-P", "-c", _WORKER_CODE, json.dumps(sys.path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            start_new_session=True,  # a terminal's Ctrl-C is the parent's to handle
            close_fds=True,
        )
        with self._cond:
            worker.proc = proc
            if self._state == "killed":
                proc.kill()
                return "{exit}"
        assert proc.stdin is not None and proc.stdout is not None
        init = {
            "factory": base64.b64encode(pickle.dumps(factory)).decode(),
            "owner": self._engine.owner,
            "parent": os.getpid(),
        }
        with contextlib.suppress(OSError):  # if it died at once, reading says how
            proc.stdin.write(protocol_line(init))
            proc.stdin.flush()
        messages = _messages(proc.stdout)
        ready = next(messages, None)
        if ready is None or "ready" not in ready:
            detail = ready.get("error") if ready else None
            return f"did not start ({detail or '{exit}'})"
        with self._cond:
            first = list(worker.running.values())
            worker.running.clear()
            for pending in first:
                self._send(worker, pending)
        for message in messages:
            self._relay(worker, message)
        return "{exit}"

    def _relay(self, worker: _Worker, message: dict[str, Any]) -> None:
        with self._cond:
            if "queued" in message:
                job = WorkflowJob(message["queued"]["entity"], message["queued"]["kind"])
                pending = self._jobs.get(job.entity_id)
                if pending is None:
                    pending = self._jobs[job.entity_id] = _Pending(job)
                elif pending.worker is None:  # queued here too (a resume() race): run it there
                    with contextlib.suppress(ValueError):
                        self._queue.remove(pending)
                elif pending.worker is not worker:
                    return
                self._assign(worker, pending)
            elif "handback" in message:
                job = WorkflowJob(message["handback"]["entity"], message["handback"]["kind"])
                pending = self._jobs.get(job.entity_id)
                if pending is None:
                    pending = self._jobs[job.entity_id] = _Pending(job)
                elif pending.worker is not None and pending.worker is not worker:
                    return
                worker.running.pop(job.entity_id, None)
                pending.worker = None
                if pending not in self._queue:
                    self._queue.append(pending)
                if not message.get("done"):
                    self._dispatch()
            elif "ended" in message:
                ended = worker.running.pop(message["ended"], None)
                if ended is not None and self._jobs.get(message["ended"]) is ended:
                    del self._jobs[message["ended"]]
                    self._cond.notify_all()
            elif "idle" in message:
                worker.idle = True
                self._dispatch()
                self._cond.notify_all()

    def _lost(self, worker: _Worker, description: str) -> None:
        """The worker has exited: retry (or fail) the jobs it held, and refill the pool."""
        with self._cond:
            if worker in self._pool:
                self._pool.remove(worker)
            lost = list(worker.running.values())
            worker.running.clear()
            for pending in lost:
                pending.worker = None
            killed = self._state == "killed"
        if lost and not killed:
            log.warning(
                "worker %d (pid %s) %s while running %s",
                worker.number,
                worker.pid,
                description,
                ", ".join(f"{p.job.kind} {p.job.entity_id}" for p in lost),
            )
        for pending in lost:
            if killed:
                self._forget(pending)
                self._engine.store.release(pending.job.entity_id, self._engine.owner)
            else:
                try:
                    self._retry_or_fail(pending, description)
                except Exception:  # the store is unreachable: resume() will find it
                    log.exception("could not retry %s", pending.job.entity_id)
                    self._forget(pending)
        with self._cond:
            self._dispatch()
            self._cond.notify_all()

    def _retry_or_fail(self, pending: _Pending, description: str) -> None:
        engine = self._engine
        job = pending.job
        pending.attempts += 1
        message = rerun_or_fail(
            engine,
            job,
            attempts=pending.attempts,
            max_attempts=self.max_attempts,
            what=f"the worker process running {job.kind} {job.entity_id} {description}",
            causes="its own work kills the process that runs it (memory exhausted, a crash in "
            "native code, os._exit in user code)",
            forget=lambda: self._forget(pending),
        )
        if message is None:
            return
        with self._cond:
            if self._state == "killed":
                self._jobs.pop(job.entity_id, None)
                self._cond.notify_all()
                engine.store.release(job.entity_id, engine.owner)
            else:
                self._queue.appendleft(pending)

    def _forget(self, pending: _Pending) -> None:
        with self._cond:
            if self._jobs.get(pending.job.entity_id) is pending:
                del self._jobs[pending.job.entity_id]
                self._cond.notify_all()

    def _resolve_factory(self) -> CoreFactory:
        factory = self._factory or self._engine.factory
        if factory is None:
            raise errors.ValidationError(
                "the processes executor needs a way to open the platform in its workers: open "
                "the platform with PlatformCore.from_config(config, ...) (LocalPlatform does), "
                "or pass ProcessExecutor(factory)"
            )
        factory.check_shared(self.name)
        return factory

    def _start_renewer(self) -> None:
        """Keep the claims of the jobs the pool holds alive (a queued job has no heartbeat
        of its own). Called with the lock held."""
        if self._renewer is None:
            self._renewer = threading.Thread(
                target=self._renew, name="assay-pool-claims", daemon=True
            )
            self._renewer.start()

    def _renew(self) -> None:
        engine = self._engine
        while not self._stop.wait(max(engine.claim_ttl / 3, 0.05)):
            with self._cond:
                held = list(self._jobs)
            for entity_id in held:
                try:
                    engine.store.renew(entity_id, engine.owner, engine.claim_ttl)
                except Exception:  # the store is briefly busy: next time
                    log.debug("could not renew the claim on %s", entity_id, exc_info=True)


def _messages(stream: IO[bytes]) -> Iterator[dict[str, Any]]:
    for raw in stream:
        try:
            message = json.loads(raw)
        except ValueError:
            log.warning("ignoring a malformed message from a worker: %r", raw[:200])
            continue
        if isinstance(message, dict):
            yield message


def _reap(proc: subprocess.Popen[bytes]) -> str:
    """Wait for a worker process that has closed its end of the protocol; how it ended."""
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with status {code}"


def rerun_or_fail(
    engine: Any,
    job: WorkflowJob,
    *,
    attempts: int,
    max_attempts: int,
    what: str,
    causes: str,
    forget: Callable[[], None],
) -> str | None:
    """What becomes of ``job`` once the worker running it was lost (``what`` says how, for
    the ``attempts``-th time): None when it does not run again — it had ended, it failed
    ``WorkerCrashed`` after ``max_attempts`` (a workflow fails this way when ``causes``), or
    another process claimed it — with ``forget`` called; else the message it was marked
    ``Restarted`` with, claimed again by this process, for the caller to run it again."""
    record = engine.store.get(job.entity_id)
    if record is None or record.doc.get("status") != Status.Admitted:
        forget()  # it ended (or was deleted) before the worker was lost
        engine.store.release(job.entity_id, engine.owner)
        return None
    if attempts >= max_attempts:
        forget()
        message = (
            f"{what} (attempt {attempts} of {max_attempts}), so it is not run again. A "
            f"workflow fails this way when {causes}: fix that, then create it again"
        )
        log.error("%s", message)
        engine.transition(
            job.entity_id,
            engine.spec(job.kind).failure,
            WORKER_CRASHED,
            message,
            expect=Status.Admitted,
        )
        engine.store.release(job.entity_id, engine.owner)
        return None
    if not engine.store.claim(job.entity_id, engine.owner, engine.claim_ttl):
        forget()  # another process took it over
        return None
    message = f"{what}; running it again (attempt {attempts + 1} of {max_attempts})"

    def mark(doc: dict[str, Any]) -> dict[str, Any] | None:
        if doc.get("status") != Status.Admitted:
            return None
        doc["reason"] = Reason.Restarted
        doc["message"] = message
        return doc

    engine.store.update(job.entity_id, mark)
    return message
