"""Sessions: starting, watching and stopping the replicas of InferenceSessions.

A session's workflow starts ``replicas`` replicas with the service's runner, waits until each
answers (or fails the session with the replica's last output), and leaves the session
``Ready``. The manager then watches the sessions this process serves:

- a replica process that dies marks its session ``Error`` (``reason = ReplicaFailed``) with
  the exit code and the replica's last output — replicas are not restarted behind the
  auditor's back, since a crash is evidence about the system under test;
- a session terminated or deleted (by any process) has its replicas stopped.

Every session past its ``expires`` time (whatever its runner, whoever started it) is marked
``Terminated`` (``Expired``): the monitor looks for them in the store every
:data:`EXPIRY_SCAN_INTERVAL` seconds, and reading a session (``get``, a client's call) checks
it too. A client made while a session was ``Ready`` refuses inference once it has ended
(:meth:`SessionManager.status_check`). What happens to a session's replicas goes to its
workflow log (``<session>/.assay/logs/workflow.jsonl``).

Replica processes belong to the process that started them and die with it (see
``docs/design/replicas.md``); ``close()`` stops them and marks their sessions ``Terminated``
(``Interrupted``). After a crash, ``resume()`` restarts the replicas of sessions that were
``Ready``. Mocks and services that run elsewhere (``http``, ``openai``) need no process of
ours: any process can reach them.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay import errors
from assay._logging import logger
from assay.engine import WorkflowCancelled, WorkflowContext, WorkflowResult
from assay.engine.engine import owner_is_dead
from assay.engine.logs import WorkflowLog
from assay.inference.client import ReplicaCaller, StatusCheck
from assay.inference.runners.base import ReplicaHandle, RunnerEnv, configuration, runner_for
from assay.schema import ids
from assay.schema.status import Reason, Status

if TYPE_CHECKING:
    from assay.engine import Engine
    from assay.schema.platform import InferenceSession

__all__ = ["EXPIRY_SCAN_INTERVAL", "REPLICAS_ARTIFACT", "STATUS_CHECK_INTERVAL", "SessionManager"]

log = logger("assay.inference")

REPLICAS_ARTIFACT = ".assay/replicas.json"
REPLICA_FAILED = "ReplicaFailed"
DEFAULT_READY_TIMEOUT = 120.0
#: Seconds between the monitor's looks for Ready sessions past their ``expires``.
EXPIRY_SCAN_INTERVAL = 1.0
#: Seconds a client trusts that its session is still Ready before reading it again.
STATUS_CHECK_INTERVAL = 0.5


def _serving_claim(session_id: str) -> str:
    return ids.namespaced_id(session_id, "replicas")


class SessionManager:
    """The replicas of the sessions this process serves."""

    def __init__(self, engine: Engine, *, secret: Any, interval: float = 0.25) -> None:
        self._engine = engine
        self._store = engine.store
        self._storage = engine.storage
        self._secret = secret
        self._interval = interval
        self._served: dict[str, list[ReplicaHandle]] = {}
        self._attached: dict[str, list[ReplicaHandle]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None
        self._logs: dict[str, WorkflowLog] = {}
        self._last_scan = 0.0

    # -- environment ---------------------------------------------------------------------

    def env(self, session_id: str | None = None) -> RunnerEnv:
        def entity_dir(id: str) -> Path:
            directory = self._storage.local_dir(id)
            if directory is None:  # a storage elsewhere (S3): replicas read a local copy
                return self._storage.local_copy(id)
            return directory

        log_dir = None
        if session_id is not None:
            log_dir = entity_dir(session_id) / ".assay" / "logs"
            log_dir.mkdir(parents=True, exist_ok=True)
        return RunnerEnv(
            entity_dir=entity_dir,
            secret=self._secret,
            log_dir=log_dir,
            platform=self._engine.platform,
        )

    # -- the workflow --------------------------------------------------------------------

    def start(self, ctx: WorkflowContext) -> WorkflowResult:
        """The InferenceSession workflow: start the replicas and wait until they answer."""
        session: InferenceSession = ctx.entity  # type: ignore[assignment]
        handles = self._start_replicas(session)
        try:
            ctx.check()  # terminated or deleted while its replicas started
        except WorkflowCancelled:
            self._forget(session.id)
            raise
        if session.expires is not None:
            self._ensure_monitor()
        n = len(handles)
        return WorkflowResult(
            status=Status.Ready, message=f"{n} replica{'s' if n != 1 else ''} ready"
        )

    def _start_replicas(self, session: InferenceSession) -> list[ReplicaHandle]:
        service = session.inferenceService
        if service.runner is None:
            raise errors.ValidationError(f"InferenceService {service.id} has no runner")
        runner = runner_for(service.runner.kind)
        env = self.env(session.id)
        timeout = float(configuration(service).get("readyTimeoutSeconds", DEFAULT_READY_TIMEOUT))  # type: ignore[arg-type]
        handles: list[ReplicaHandle] = []
        target = _target(configuration(service))  # type: ignore[arg-type]
        try:
            for i in range(session.replicas):
                self.log(session.id, f"replica {i} starting ({service.runner.kind}{target})")
                handles.append(runner.start(session, i, env))
            for handle in handles:
                runner.wait_ready(handle, timeout)
                self.log(session.id, f"replica {handle.index} ready{_where(handle)}")
        except BaseException as exc:
            for handle in handles:
                handle.stop()
            self.log(session.id, f"the replicas did not start: {exc}")
            raise
        shared = [h.shareable() for h in handles]
        if any(h.process is not None or h.watched for h in handles):
            data = json.dumps([s for s in shared if s is not None]).encode()
            self._storage.put_bytes(session.id, REPLICAS_ARTIFACT, data)
            self._store.claim(
                _serving_claim(session.id), self._engine.owner, self._engine.claim_ttl
            )
            with self._lock:
                self._served[session.id] = handles
            self._ensure_monitor()
        else:
            with self._lock:
                self._attached[session.id] = handles
        return handles

    # -- watching ------------------------------------------------------------------------

    def _ensure_monitor(self) -> None:
        with self._lock:
            if self._monitor is not None and self._monitor.is_alive():
                return
            self._stop.clear()
            self._monitor = threading.Thread(target=self._watch, name="assay-sessions", daemon=True)
            self._monitor.start()

    def _watch(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.check()
            except Exception:  # the store was busy: look again next time
                log.debug("session check failed", exc_info=True)

    def check(self) -> None:
        """One look at every served session (dead replicas, external termination), and
        every :data:`EXPIRY_SCAN_INTERVAL` seconds at every Ready session of the store
        (expiry)."""
        with self._lock:
            served = dict(self._served)
        for session_id, handles in served.items():
            record = self._store.get(session_id)
            status = record.doc.get("status") if record else None
            if status != Status.Ready:
                self._forget(session_id)
                continue
            expires = record.doc.get("expires") if record else None
            if expires and _past(expires):
                self.expire(session_id)
                continue
            dead = [h for h in handles if not h.alive()]
            if dead:
                message = dead[0].describe_exit()
                self._forget(session_id)
                if self._engine.transition(
                    session_id,
                    Status.Error,
                    REPLICA_FAILED,
                    f"{message}\nThe session's other replicas were stopped; create a new session.",
                    expect=Status.Ready,
                ):
                    self.log(session_id, message)
                continue
            self._store.renew(
                _serving_claim(session_id), self._engine.owner, self._engine.claim_ttl
            )
        now = time.monotonic()
        if now - self._last_scan >= EXPIRY_SCAN_INTERVAL:
            self._last_scan = now
            self.expire_due()

    def expire_due(self) -> list[str]:
        """Mark every Ready session past its ``expires`` ``Terminated`` (``Expired``), whoever
        runs it; returns their ids."""
        expired: list[str] = []
        for doc in self._store.query(kind="InferenceSession", status=Status.Ready):
            expires = doc.get("expires")
            if expires and _past(expires) and self.expire(doc["id"]):
                expired.append(doc["id"])
        return expired

    def expire(self, session_id: str) -> bool:
        """Stop a Ready session whose ``expires`` has passed: ``Terminated`` (``Expired``).
        Returns whether it did."""
        record = self._store.get(session_id)
        expires = record.doc.get("expires") if record else None
        if record is None or record.doc.get("status") != Status.Ready or not expires:
            return False
        if not _past(expires):
            return False
        self._forget(session_id)
        changed = self._engine.transition(
            session_id,
            Status.Terminated,
            Reason.Expired,
            f"the session expired at {expires}; create a new one (with a later expires) to "
            "continue",
            expect=Status.Ready,
        )
        if changed:
            self.log(session_id, f"expired at {expires}")
        return changed

    def log(self, session_id: str, message: str) -> None:
        """Append a line to the session's workflow log (``logs(id)``)."""
        with self._lock:
            book = self._logs.get(session_id)
            if book is None:
                book = self._logs[session_id] = WorkflowLog(self._storage, session_id)
        book.write(message)

    def _forget(self, session_id: str) -> None:
        with self._lock:
            handles = self._served.pop(session_id, []) + self._attached.pop(session_id, [])
        for handle in handles:
            handle.stop()
        self._store.release(_serving_claim(session_id), self._engine.owner)

    # -- using ---------------------------------------------------------------------------

    def _session(self, session_id: str) -> InferenceSession:
        from assay.schema.platform import InferenceSession

        doc = self._store.require(session_id, kind="InferenceSession").doc
        session = InferenceSession.model_validate(doc)
        if (
            session.status == Status.Ready
            and session.expires is not None
            and session.expires <= datetime.now(UTC)
            and self.expire(session_id)
        ):
            session = InferenceSession.model_validate(self._store.require(session_id).doc)
        return session

    def handles(self, session_id: str) -> list[ReplicaHandle]:
        """The replicas to call for a Ready session (from any process on this machine)."""
        session = self._session(session_id)
        if session.status != Status.Ready:
            state = session.status + (f" ({session.reason})" if session.reason else "")
            detail = (
                f": {session.message}"
                if session.message and session.status != Status.Created
                else ""
            )
            message = (
                f"InferenceSession {session_id} is {state}{detail}; inference needs a Ready session"
            )
            if session.status in (Status.Created, Status.Admitted):  # starting: worth a retry
                raise errors.UnavailableError(message, retry_after=1)
            raise errors.ConflictError(message + " (start a new one)")
        with self._lock:
            local = self._served.get(session_id) or self._attached.get(session_id)
        if local:
            return local
        runner = runner_for(session.inferenceService.runner.kind)  # type: ignore[union-attr]
        attached = runner.attach(session, self.env())
        if attached is None:
            attached = self._shared(session_id)
        with self._lock:
            self._attached[session_id] = attached
        return attached

    def _shared(self, session_id: str) -> list[ReplicaHandle]:
        try:
            data = json.loads(self._storage.read_bytes(session_id, REPLICAS_ARTIFACT))
        except errors.NotFoundError:
            data = []
        handles = [
            ReplicaHandle(
                index=d["index"],
                style=d["style"],
                url=d["url"],
                headers=d.get("headers") or {},
                batching=bool(d.get("batching")),
                capacity=d.get("capacity"),
                ready_path=d.get("ready_path"),
            )
            for d in data
        ]
        if not handles:
            raise errors.UnavailableError(
                f"InferenceSession {session_id} is Ready but no process serves its replicas; "
                "call resume() to restart them, or create a new session"
            )
        return handles

    def caller(self, session_id: str, *, timeout: float = 30.0) -> ReplicaCaller:
        """Calls to the session's replicas, refused once the session has ended."""
        return ReplicaCaller(
            self.handles(session_id),
            timeout=timeout,
            what=f"InferenceSession {session_id}",
            check=self.status_check(session_id),
        )

    def status_check(self, session_id: str) -> StatusCheck:
        """A cheap check, for every call of a client made while the session was Ready, that
        it still is: it reads the session at most every :data:`STATUS_CHECK_INTERVAL` seconds
        (and checks ``expires`` on every call) and raises
        :class:`~assay.errors.ConflictError` once it has ended (terminated, deleted, expired,
        failed): no retry makes an ended session answer."""
        last = -STATUS_CHECK_INTERVAL
        ended: str | None = None  # why the session may no longer be used
        expires: datetime | None = None

        def check(*, force: bool = False) -> None:
            nonlocal last, ended, expires
            if ended is not None:
                raise errors.ConflictError(ended)
            now = time.monotonic()
            due = expires is not None and expires <= datetime.now(UTC)
            if not (force or due) and now - last < STATUS_CHECK_INTERVAL:
                return
            last = now
            record = self._store.get(session_id)
            doc = record.doc if record is not None else {}
            if doc.get("status") == Status.Ready and doc.get("expires") and _past(doc["expires"]):
                self.expire(session_id)
                record = self._store.get(session_id)
            if record is None:
                ended = f"InferenceSession {session_id} no longer exists (it was purged); start a new one"
                raise errors.ConflictError(ended)
            doc = record.doc
            status = str(doc.get("status"))
            if status != Status.Ready:
                state = status + (f" ({doc['reason']})" if doc.get("reason") else "")
                ended = f"InferenceSession {session_id} is {state}; start a new one"
                raise errors.ConflictError(ended)
            if doc.get("expires"):
                expires = _parse_time(doc["expires"])

        return check

    def ready(self, session_id: str) -> bool:
        """True if the session is Ready and its replicas answer."""
        try:
            handles = self.handles(session_id)
        except (errors.UnavailableError, errors.ConflictError):
            return False
        return all(h.alive() for h in handles) and all(
            _answers(h) for h in handles if h.process is None
        )

    def terminate(self, session_id: str) -> bool:
        """Stop the session's replicas and mark it Terminated (TerminateCommand); returns
        whether it did (False: it had ended already). The status is written first, so that
        whoever sees the replicas go knows why."""
        changed = self._engine.transition(
            session_id,
            Status.Terminated,
            Reason.TerminateCommand,
            None,
            expect=(Status.Created, Status.Admitted, Status.Ready),
        )
        self._forget(session_id)
        if changed:
            self.log(session_id, f"terminated: {Reason.TerminateCommand}")
        return changed

    def stop(self, session_id: str, why: str | None = None) -> None:
        """Stop the replicas this process runs for the session, and log ``why`` (it was
        deleted) where given. Other processes' monitors stop theirs at their next look."""
        self._forget(session_id)
        if why is not None:
            self.log(session_id, f"{why}: replicas stopped")

    # -- lifecycle -----------------------------------------------------------------------

    def resume(self) -> list[str]:
        """Restart the replicas of Ready sessions whose serving process is gone (and end those
        past their ``expires``; watch for the expiry of the others)."""
        restarted: list[str] = []
        self.expire_due()
        for doc in list(self._store.iter_query(kind="InferenceSession", status=Status.Ready)):
            session_id = doc["id"]
            if doc.get("expires"):
                self._ensure_monitor()
            with self._lock:
                if session_id in self._served:
                    continue
            if not self._storage.exists(session_id, REPLICAS_ARTIFACT):
                continue  # mocks and remote services: nothing to restart
            holder = self._store.claim_owner(_serving_claim(session_id))
            if holder is not None and holder[0] == self._engine.owner and holder[1] > time.time():
                continue  # served under our owner by a worker of the processes executor
            if holder is not None and owner_is_dead(holder[0]):
                self._store.release(_serving_claim(session_id), holder[0])
            if not self._store.claim(
                _serving_claim(session_id), self._engine.owner, self._engine.claim_ttl
            ):
                continue
            session = self._session(session_id)
            if session.status != Status.Ready:
                continue
            self.log(session_id, "restarting the replicas: the process that served them stopped")
            try:
                self._start_replicas(session)
            except Exception as exc:
                self._engine.transition(
                    session_id,
                    Status.Error,
                    REPLICA_FAILED,
                    f"could not restart the replicas: {exc}",
                    expect=Status.Ready,
                )
                continue
            restarted.append(session_id)
        return restarted

    def close(self) -> None:
        """Stop every replica this process runs; their sessions become Terminated."""
        self._stop.set()
        if self._monitor is not None:
            self._monitor.join(timeout=10)
        with self._lock:
            served = list(self._served)
            attached = list(self._attached)
        for session_id in served:
            self._forget(session_id)
            if self._engine.transition(
                session_id,
                Status.Terminated,
                Reason.Interrupted,
                "the platform process that ran its replicas was closed",
                expect=Status.Ready,
            ):
                self.log(session_id, f"terminated: {Reason.Interrupted} (the platform was closed)")
        for session_id in attached:
            self._forget(session_id)


def _answers(handle: ReplicaHandle) -> bool:
    if handle.style == "inprocess" or handle.url is None:
        return True
    import httpx

    path = "/ready" if handle.style == "replica" else "/" + (handle.ready_path or "").lstrip("/")
    try:
        with httpx.Client(timeout=2) as client:
            return client.get(handle.url + path, headers=handle.headers).is_success
    except httpx.HTTPError:
        return False


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _past(expires: str) -> bool:
    """True when the ISO time ``expires`` has passed."""
    return _parse_time(expires) <= datetime.now(UTC)


def _target(config: dict[str, Any]) -> str:
    """What a replica of this runner serves, for the log (``, target pkg.mod:Class``)."""
    for key in ("target", "url", "baseURL", "mockType", "model"):
        value = config.get(key)
        if isinstance(value, str) and value:
            return f", {key} {value}"
    return ""


def _where(handle: ReplicaHandle) -> str:
    """`` at http://127.0.0.1:PORT (pid N)`` for the log (nothing for an in-process one)."""
    where = f" at {handle.url}" if handle.url else " (in-process)"
    pid = handle.process.pid if handle.process is not None else None
    return where + (f" (pid {pid})" if pid is not None else "")
