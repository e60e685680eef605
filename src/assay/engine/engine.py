"""The workflow engine: the dependency rules of DESIGN §1 and the running of workflows.

How a workflow moves (see ``docs/design/workflows.md``):

1. ``schedule(id)`` looks at the entity's dependencies. If one has failed (or is gone), the
   entity fails with ``reason = FailedDependency``; if one is not yet in a success status it
   stays ``Created`` with ``reason = UnsatisfiedDependency``; otherwise the engine takes the
   entity's *claim* (a lease in the store, so that one process runs it), moves it to
   ``Admitted`` and hands a :class:`WorkflowJob` to the executor. Kinds with nothing to run
   (a Model, a Method) go straight to their success status.
2. ``run(job)`` calls the kind's handler, keeping the claim alive with a heartbeat. When the
   handler returns, its outputs are written, so the engine sets the success status; when it
   raises, the failure status with a reason and a message that says what went wrong.
3. Every terminal transition re-schedules the entities that wait on this one.
4. ``resume()`` picks up what a killed process left: ``Admitted`` workflows whose claim holder
   is dead (or whose lease expired) run again (``reason = Restarted``), and waiting ``Created``
   entities are re-checked.

A run never returns leaving its entity ``Admitted``: a handler that fails on a full disk
ends ``StorageFull`` (``failures.py``), the final status write is retried until it lands, and
a Ctrl-C in the thread that runs it ends it ``Terminated`` (``Interrupted``) before the
``KeyboardInterrupt`` goes on.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay import errors
from assay._logging import logger
from assay.engine.executors import CoreFactory, Executor, InlineExecutor, WorkflowJob
from assay.engine.failures import retryable, storage_full, storage_full_message
from assay.engine.logs import WorkflowLog
from assay.engine.transitions import apply_transition
from assay.schema.status import (
    Reason,
    Status,
    is_status_failure,
    is_status_success,
    is_status_terminal,
)

if TYPE_CHECKING:
    from assay.schema.platform import Entity
    from assay.storage import ArtifactStorage
    from assay.store import EntityStore

__all__ = [
    "Engine",
    "WorkflowCancelled",
    "WorkflowContext",
    "WorkflowResult",
    "WorkflowSpec",
]

log = logger("assay.engine")


class WorkflowCancelled(Exception):
    """Raised inside a handler (by :meth:`WorkflowContext.check`) when its entity was deleted
    or terminated while it ran."""


@dataclass
class WorkflowResult:
    """What a handler may return to choose the final status or message."""

    status: str | None = None
    reason: str | None = None
    message: str | None = None


Handler = Callable[["WorkflowContext"], WorkflowResult | None]
ProgressListener = Callable[["Entity", str, int | None, int | None], None]


@dataclass(frozen=True)
class WorkflowSpec:
    """How the engine treats one entity kind."""

    kind: str
    handler: Handler | None = None
    """The work to run once dependencies are satisfied; None: nothing to run, the entity
    reaches ``success`` as soon as its dependencies have."""
    success: str = Status.Complete
    failure: str = Status.Failed
    failure_reason: str = Reason.WorkflowError
    """The reason set when the handler raises."""
    upload_gate: bool = False
    """The entity waits (``reason = WaitingForUpload``) until its artifacts are finalized."""
    runs: Callable[[Entity], bool] | None = None
    """Whether this entity's handler has work to do (None: always); an entity with none
    reaches ``success`` as soon as its dependencies have, without being admitted."""


@dataclass
class WorkflowContext:
    """What a handler gets: the entity, the platform's parts, and progress reporting."""

    engine: Engine
    entity: Entity
    platform: Any = None
    """The platform core that registered the handler (for handlers that need its groups)."""
    restarted: bool = False
    """True when this run resumes one that a dead process left unfinished."""
    _last_progress: float = field(default=0.0, repr=False)
    _log: WorkflowLog | None = field(default=None, repr=False)

    @property
    def store(self) -> EntityStore:
        return self.engine.store

    @property
    def storage(self) -> ArtifactStorage:
        return self.engine.storage

    def progress(
        self,
        message: str,
        *,
        force: bool = False,
        done: int | None = None,
        total: int | None = None,
    ) -> None:
        """Show progress in the entity's ``message`` (written at most every 0.5 s unless
        ``force``). ``done`` and ``total`` (units of work, e.g. instances) go to the engine's
        :attr:`Engine.progress_listener` with the message (a progress bar), every call."""
        listener = self.engine.progress_listener
        if listener is not None:
            try:
                listener(self.entity, message, done, total)
            except Exception:  # a display must never fail the work
                log.debug("the progress listener failed", exc_info=True)
        now = time.monotonic()
        if not force and now - self._last_progress < 0.5:
            return
        self._last_progress = now

        def mutate(doc: dict[str, Any]) -> dict[str, Any] | None:
            if doc.get("status") != Status.Admitted:
                return None
            doc["message"] = message
            return doc

        self.engine.store.update(self.entity.id, mutate)

    def check(self) -> None:
        """Raise :class:`WorkflowCancelled` if the entity was deleted or terminated."""
        record = self.engine.store.get(self.entity.id)
        if record is None or record.doc.get("status") in (Status.Deleted, Status.Terminated):
            raise WorkflowCancelled(self.entity.id)

    @property
    def logbook(self) -> WorkflowLog:
        """The entity's workflow log (see :mod:`assay.engine.logs`)."""
        if self._log is None:
            self._log = WorkflowLog(self.engine.storage, self.entity.id)
        return self._log

    def log(self, message: str, **labels: str) -> None:
        """Append a timestamped line to the entity's workflow log (``logs(id)``)."""
        self.logbook.write(message, **labels)


def _this_host() -> str:
    return socket.gethostname()


def owner_is_dead(owner: str) -> bool:
    """True if ``owner`` (``host:pid:nonce``) names a process on this host that is gone."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != _this_host() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Engine:
    """Schedules and runs workflows over one store and one artifact storage."""

    def __init__(
        self,
        store: EntityStore,
        storage: ArtifactStorage,
        *,
        executor: Executor | None = None,
        specs: Iterable[WorkflowSpec] = (),
        platform: Any = None,
        claim_ttl: float = 30.0,
        owner: str | None = None,
        factory: CoreFactory | None = None,
    ) -> None:
        self.store = store
        self.storage = storage
        self.platform = platform
        self.factory = factory
        """How a worker builds the platform core this engine belongs to (None: the platform
        cannot be opened elsewhere; executors that run jobs in other processes need one)."""
        self.claim_ttl = claim_ttl
        self.owner = owner or f"{_this_host()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        """Who holds this engine's claims (``host:pid:nonce``). A worker process of the
        ``processes`` executor runs under its parent's owner: it dies with the parent."""
        self.record_retry: tuple[float, float] = (0.5, 5.0)
        """The first and the longest wait (seconds) between tries of a workflow's final
        status write that failed (a full disk, a busy database): it is tried until it lands."""
        self.progress_listener: ProgressListener | None = None
        """Called with ``(entity, message, done, total)`` on every progress report of a
        workflow run by this engine (in the thread that runs it): e.g. a progress bar."""
        self._specs: dict[str, WorkflowSpec] = {}
        for spec in specs:
            self.register(spec)
        self.executor = executor or InlineExecutor()
        self.executor.bind(self)

    # -- configuration -------------------------------------------------------------------

    def register(self, spec: WorkflowSpec) -> None:
        """Set (or replace) how the engine treats ``spec.kind``."""
        self._specs[spec.kind] = spec

    def spec(self, kind: str) -> WorkflowSpec:
        spec = self._specs.get(kind)
        if spec is None:
            raise errors.PlatformError(f"the engine has no workflow spec for kind {kind!r}")
        return spec

    @property
    def specs(self) -> Mapping[str, WorkflowSpec]:
        return dict(self._specs)

    # -- scheduling ----------------------------------------------------------------------

    def _entity(self, doc: dict[str, Any]) -> Entity:
        from assay.schema.platform import parse_entity

        return parse_entity(doc)

    def _dependency_state(self, entity: Entity) -> tuple[str, str | None]:
        """``("ready", None)``, ``("waiting", message)`` or ``("failed", message)``."""
        deps = entity.dependencies()
        if not deps:
            return "ready", None
        found = {doc["id"]: doc for doc in self.store.query(ids=list(deps))}
        waiting: list[str] = []
        for dep in deps:
            doc = found.get(dep)
            if doc is None:
                return "failed", f"dependency {dep} does not exist (it was purged or never created)"
            status = doc.get("status", Status.Created)
            what = f"{doc.get('kind', 'Entity')} {dep}"
            if is_status_success(status):
                continue
            if is_status_failure(status) or is_status_terminal(status):
                detail = f": {doc['message']}" if doc.get("message") else ""
                return "failed", f"dependency {what} is {status}{detail}"
            reason = f", {doc['reason']}" if doc.get("reason") else ""
            waiting.append(f"{what} ({status}{reason})")
        if waiting:
            return "waiting", "waiting for " + "; ".join(waiting)
        return "ready", None

    def initial_state(self, entity: Entity) -> tuple[str, str | None, str | None]:
        """The ``(status, reason, message)`` a new entity should be stored with, so that
        kinds with nothing to run are written once, already in their final status."""
        spec = self.spec(entity.kind)
        if spec.upload_gate and entity.reason == Reason.WaitingForUpload:
            return Status.Created, Reason.WaitingForUpload, None
        state, message = self._dependency_state(entity)
        if state == "failed":
            return spec.failure, Reason.FailedDependency, message
        if state == "waiting":
            return Status.Created, Reason.UnsatisfiedDependency, message
        if spec.handler is None or (spec.runs is not None and not spec.runs(entity)):
            return spec.success, None, None
        return Status.Created, None, None

    def schedule(self, entity_id: str) -> bool:
        """Move the entity along as far as its dependencies allow (see the module doc).
        Returns whether anything changed."""
        record = self.store.get(entity_id)
        if record is None:
            return False
        doc = record.doc
        if doc.get("status", Status.Created) != Status.Created:
            return False
        status, reason, message = self.initial_state(self._entity(doc))
        if status != Status.Created or reason is not None:
            return self.transition(entity_id, status, reason, message, expect=Status.Created)
        if not self.store.claim(entity_id, self.owner, self.claim_ttl):
            return False  # another process is about to run it
        if not self.transition(entity_id, Status.Admitted, None, None, expect=Status.Created):
            # Someone admitted it first. If that was an engine with our owner (a worker of
            # the processes executor), claim() only renewed its claim: leave it in place.
            record = self.store.get(entity_id)
            if record is None or record.doc.get("status") != Status.Admitted:
                self.store.release(entity_id, self.owner)
            return False
        self.executor.submit(WorkflowJob(entity_id, doc["kind"]))
        return True

    def transition(
        self,
        entity_id: str,
        status: str,
        reason: str | None,
        message: str | None,
        *,
        expect: str | tuple[str, ...],
    ) -> bool:
        """Transition the entity if its status is still ``expect``; returns whether it did.
        A move into a terminal status re-schedules the entities that wait on this one."""
        changed = self._write_transition(entity_id, status, reason, message, expect=expect)
        if changed and is_status_terminal(status):
            self.notify_dependents(entity_id)
        return changed

    def _write_transition(
        self,
        entity_id: str,
        status: str,
        reason: str | None,
        message: str | None,
        *,
        expect: str | tuple[str, ...],
    ) -> bool:
        """The store write of :meth:`transition`, without re-scheduling the dependents."""
        expected = (expect,) if isinstance(expect, str) else expect
        changed = False

        def mutate(doc: dict[str, Any]) -> dict[str, Any] | None:
            nonlocal changed
            if doc.get("status") not in expected:
                changed = False
                return None
            if (doc.get("status"), doc.get("reason"), doc.get("message")) == (
                status,
                reason,
                message,
            ):
                changed = True
                return None
            apply_transition(doc, status, reason=reason, message=message)
            changed = True
            return doc

        try:
            self.store.update(entity_id, mutate)
        except errors.NotFoundError:
            return False
        return changed

    def terminate(
        self, entity_id: str, reason: str = Reason.TerminateCommand, message: str | None = None
    ) -> bool:
        """Move a workflow that has not ended to ``Terminated``; returns whether it did. Its
        handler, wherever it runs, sees it at its next :meth:`WorkflowContext.check` and stops,
        keeping what it wrote."""
        return self.transition(
            entity_id,
            Status.Terminated,
            reason,
            message,
            expect=(Status.Created, Status.Schedulable, Status.Admitted),
        )

    def notify_dependents(self, entity_id: str) -> None:
        """Re-schedule every entity that waits on ``entity_id``."""
        for doc in self.store.query(refs={"dependency": entity_id}, status=Status.Created):
            self.schedule(doc["id"])

    # -- running -------------------------------------------------------------------------

    def run(self, job: WorkflowJob, *, restarted: bool = False) -> None:
        """Run one admitted workflow to a terminal status (called by the executor)."""
        if not self.store.claim(job.entity_id, self.owner, self.claim_ttl):
            log.info("workflow %s %s is claimed by another process", job.kind, job.entity_id)
            return
        record = self.store.get(job.entity_id)
        if record is None or record.doc.get("status") != Status.Admitted:
            self.store.release(job.entity_id, self.owner)
            return
        spec = self.spec(job.kind)
        if spec.handler is None:
            self.transition(job.entity_id, spec.success, None, None, expect=Status.Admitted)
            self.store.release(job.entity_id, self.owner)
            return
        restarted = restarted or record.doc.get("reason") == Reason.Restarted
        ctx = WorkflowContext(self, self._entity(record.doc), self.platform, restarted)
        stop = threading.Event()
        beat = threading.Thread(
            target=self._heartbeat,
            args=(job.entity_id, stop),
            name=f"assay-claim-{job.entity_id[:8]}",
            daemon=True,
        )
        beat.start()
        try:
            final = self._call(spec, ctx)
            if final is not None:
                self._record(job, *final)
        except KeyboardInterrupt:
            self.interrupt(job.entity_id)
            raise
        finally:
            stop.set()
            beat.join()
            self.store.release(job.entity_id, self.owner)

    def _call(
        self, spec: WorkflowSpec, ctx: WorkflowContext
    ) -> tuple[str, str | None, str | None] | None:
        """Run the handler; the ``(status, reason, message)`` it ends with (None: cancelled)."""
        entity, handler = ctx.entity, spec.handler
        assert handler is not None  # run() finishes handler-less kinds itself
        try:
            result = handler(ctx) or WorkflowResult()
        except WorkflowCancelled:
            log.info("workflow %s %s was cancelled", entity.kind, entity.id)
            return None
        except Exception as exc:
            full = storage_full(exc)
            if full is not None:
                message = storage_full_message(
                    entity.kind,
                    entity.id,
                    full,
                    storage_root=getattr(self.storage, "root", None),
                    database=self.store.url,
                )
                log.error("%s", message)
                return spec.failure, Reason.StorageFull, message
            message = _failure_message(exc)
            log.warning(
                "workflow %s %s failed: %s",
                entity.kind,
                entity.id,
                message,
                exc_info=not isinstance(exc, errors.AssayError),
            )
            return spec.failure, spec.failure_reason, message
        return result.status or spec.success, result.reason, result.message

    def _record(
        self, job: WorkflowJob, status: str, reason: str | None, message: str | None
    ) -> None:
        """Write a workflow's final status, trying again (with back-off, while the claim's
        heartbeat goes on) until it lands: a full disk or a busy database must not leave the
        entity ``Admitted``. Then re-schedule its dependents."""
        delay, longest = self.record_retry
        tries = 0
        while True:
            try:
                changed = self._write_transition(
                    job.entity_id, status, reason, message, expect=Status.Admitted
                )
                break
            except Exception as exc:
                if not retryable(exc):
                    raise
                tries += 1
                if tries == 1 or tries % 20 == 0:
                    log.warning(
                        "could not record that %s %s is %s%s (%s); trying again every %g s "
                        "until it lands (free space where the store is, if it is full)",
                        job.kind,
                        job.entity_id,
                        status,
                        f" ({reason})" if reason else "",
                        _failure_message(exc),
                        longest,
                    )
            time.sleep(delay)
            delay = min(delay * 2, longest)
        if tries:
            log.warning(
                "recorded %s %s as %s after %d tries", job.kind, job.entity_id, status, tries + 1
            )
        if changed and is_status_terminal(status):
            try:
                self.notify_dependents(job.entity_id)
            except Exception:  # resume() re-checks every waiting entity
                log.warning(
                    "could not schedule what waits on %s %s; resume() will",
                    job.kind,
                    job.entity_id,
                    exc_info=True,
                )

    def interrupt(self, entity_id: str, *, started: bool = True) -> bool:
        """End a workflow that a Ctrl-C stopped in this process: ``Terminated``, reason
        ``Interrupted``, saying what was kept. Tried once (the process is on its way out; if
        the write fails, the entity stays ``Admitted`` and ``resume()`` runs it again)."""
        record = self.store.get(entity_id)
        kind = record.doc.get("kind", "Entity") if record is not None else "Entity"
        if started:
            root = getattr(self.storage, "root", None)
            where = f" in {root / entity_id}" if isinstance(root, Path) else ""
            message = (
                f"interrupted (Ctrl-C) while running; what it wrote so far is kept{where}; "
                f"create the {kind} again to run it to the end"
            )
        else:
            message = f"interrupted (Ctrl-C) before it started; create the {kind} again to run it"
        try:
            return self.transition(
                entity_id, Status.Terminated, Reason.Interrupted, message, expect=Status.Admitted
            )
        except Exception:
            log.warning("could not record that %s was interrupted", entity_id, exc_info=True)
            return False

    def _heartbeat(self, entity_id: str, stop: threading.Event) -> None:
        interval = max(self.claim_ttl / 3, 0.05)
        while not stop.wait(interval):
            try:
                self.store.renew(entity_id, self.owner, self.claim_ttl)
            except Exception:  # the store is briefly busy: try again next beat
                log.debug("could not renew the claim on %s", entity_id, exc_info=True)

    def orphans(self) -> list[dict[str, Any]]:
        """The documents of the ``Admitted`` workflows that no live process runs: their claim
        is gone, expired, or held by a dead process on this host (and this engine's executor
        does not hold them). :meth:`resume` runs them again."""
        found: list[dict[str, Any]] = []
        now = time.time()
        for doc in self.store.iter_query(status=Status.Admitted):
            if self.executor.holds(doc["id"]) or doc.get("kind") not in self._specs:
                continue
            holder = self.store.claim_owner(doc["id"])
            if (
                holder is None
                or holder[1] <= now
                or (holder[0] != self.owner and owner_is_dead(holder[0]))
            ):
                found.append(doc)
        return found

    def resume(self) -> list[str]:
        """Continue every workflow that a killed process left unfinished; re-check every
        entity that waits on dependencies. Returns the ids of the workflows run again."""
        resumed: list[str] = []
        for doc in list(self.store.iter_query(status=Status.Admitted)):
            entity_id = doc["id"]
            if self.executor.holds(entity_id):
                continue  # queued or running in this engine's executor
            holder = self.store.claim_owner(entity_id)
            if holder is not None and holder[0] != self.owner and owner_is_dead(holder[0]):
                self.store.release(entity_id, holder[0])
            if not self.store.claim(entity_id, self.owner, self.claim_ttl):
                continue  # a live process holds it
            spec = self.spec(doc["kind"])

            def mark(d: dict[str, Any]) -> dict[str, Any] | None:
                if d.get("status") != Status.Admitted:
                    return None
                d["reason"] = Reason.Restarted
                d["message"] = "resumed after the process running it stopped"
                return d

            self.store.update(entity_id, mark)
            resumed.append(entity_id)
            if spec.handler is None:
                self.transition(entity_id, spec.success, None, None, expect=Status.Admitted)
                self.store.release(entity_id, self.owner)
            else:
                self.executor.submit(WorkflowJob(entity_id, doc["kind"]))
        for doc in list(self.store.iter_query(status=Status.Created)):
            self.schedule(doc["id"])
        return resumed

    # -- waiting -------------------------------------------------------------------------

    def drive(self, entity_id: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Wait for a workflow that the running one depends on: with the inline executor its
        job is queued behind the caller's, so run it here first. Returns its document."""
        run_pending = getattr(self.executor, "run_pending", None)
        if callable(run_pending):
            run_pending(entity_id)
        return self.wait(entity_id, timeout=timeout)

    def wait(
        self, entity_id: str, *, kind: str | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """Block until the entity's status is terminal; return its document."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        while True:
            doc = self.store.require(entity_id, kind=kind).doc
            if is_status_terminal(doc.get("status")):
                return doc
            if deadline is not None and time.monotonic() >= deadline:
                raise errors.WaitTimeoutError(
                    f"{doc.get('kind', kind or 'Entity')} {entity_id} is still {doc.get('status')}"
                    f"{' (' + doc['reason'] + ')' if doc.get('reason') else ''} after {timeout} s"
                    f"{': ' + doc['message'] if doc.get('message') else ''}; {self._hint(doc)}"
                )
            time.sleep(
                delay if deadline is None else min(delay, max(deadline - time.monotonic(), 0))
            )
            delay = min(delay * 2, 0.25)

    def _hint(self, doc: dict[str, Any]) -> str:
        """What to do about an entity that is taking long, from its state."""
        status, reason = doc.get("status"), doc.get("reason")
        if status == Status.Admitted:
            if (doc.get("message") or "").startswith("queued:"):
                return (
                    "all workers are busy: wait longer, give the platform more workers, or "
                    "terminate what runs"
                )
            if any(orphan["id"] == doc["id"] for orphan in self.orphans()):
                return "no live process runs it: call resume() to continue it"
            return "it is running: wait longer, or terminate it"
        if reason == Reason.WaitingForUpload:
            return "upload its files (and finalize the upload)"
        return "wait longer, or check its dependencies"

    def close(self) -> None:
        self.executor.shutdown(wait=True)


def orphans_text(docs: list[dict[str, Any]], limit: int = 5) -> str:
    """``1 interrupted Evaluation <id> (41 / 60 instances when it stopped)``, for up to
    ``limit`` workflows (then ``and N more``)."""
    import re

    kinds = sorted({str(doc.get("kind", "workflow")) for doc in docs})
    single = len(kinds) == 1
    noun = f"{kinds[0]}{'s' if len(docs) > 1 else ''}" if single else "workflows"
    items: list[str] = []
    for doc in docs[:limit]:
        counted = re.match(r"[\d,]+ / [\d,]+ \w+", doc.get("message") or "")
        when = f" ({counted.group(0)} when it stopped)" if counted else ""
        items.append(f"{'' if single else doc.get('kind', 'workflow') + ' '}{doc['id']}{when}")
    more = f" and {len(docs) - limit} more" if len(docs) > limit else ""
    return f"{len(docs)} interrupted {noun} {', '.join(items)}{more}"


def _failure_message(exc: BaseException) -> str:
    if isinstance(exc, errors.AssayError):
        return str(exc)
    text = str(exc) or "(no message)"
    return f"{type(exc).__name__}: {text}"
