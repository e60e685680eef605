"""Runner kind ``pipeline``: a deployed pipeline version as an InferenceService, so that it
answers sessions and evaluations like any other system.

Configuration: ``{"pipeline": "<name>", "version": <n>}`` — the stored version of the
pipeline of the service's account. Starting a session of such a service starts one session
per service the version calls (with the pipeline session's replicas and expiry, labelled
``assay.io/pipeline-session``) and records their ids in the artifact
``.assay/pipeline-steps.json`` of the pipeline session; the pipeline itself runs in-process,
in whichever process calls it (another process builds its own from that artifact). A reply
is the final outputs of the version's steps (what the answering service returned, after any
audit or select), and every call is appended to the pipeline's inference log. Stopping the
session stops the step sessions; a step session that ends makes the pipeline session fail
(``ReplicaFailed``), as a dead replica does. Design notes: ``docs/design/pipelines.md``.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay import errors
from assay.inference.runners.base import (
    ReplicaHandle,
    Runner,
    RunnerEnv,
    config_error,
    configuration,
)
from assay.pipelines._log_archive import Archive, archive_id
from assay.pipelines.catalog import ServiceCatalog
from assay.pipelines.execution import INPUT_STEP, BatchCaller, Failure, RunResult, Runtime
from assay.pipelines.log import Durability, InferenceLog, open_shared, release_shared
from assay.pipelines.versions import PipelineVersion, VersionStore

if TYPE_CHECKING:
    from assay.schema.platform import InferenceService, InferenceSession

__all__ = [
    "RUNNER",
    "STEPS_ARTIFACT",
    "STEP_SESSION_LABEL",
    "PipelineRunner",
    "PipelineService",
    "log_directory",
    "open_log",
]

STEPS_ARTIFACT = ".assay/pipeline-steps.json"
STEP_SESSION_LABEL = "assay.io/pipeline-session"
#: Calls in flight at once to a step service whose replicas take one request at a time.
REMOTE_CONCURRENCY = 16


def log_directory(core: Any, account: str, pipeline: str) -> Path:
    """The folder of the inference log of ``account``'s pipeline ``pipeline``."""
    root = core.config.storage_root if core.config is not None else None
    if root is None:
        root = getattr(core.storage, "root", None)
    if root is None:
        raise errors.PlatformError(
            "pipeline inference logs need a local storage root (the platform's data folder)"
        )
    return Path(root) / ".assay" / "pipelines" / account / pipeline


def open_log(core: Any, account: str, pipeline: str) -> InferenceLog:
    """The inference log of ``account``'s pipeline ``pipeline``, shared in this process (give
    it back with :func:`~assay.pipelines.log.release_shared`): in its folder of
    :func:`log_directory` and, where the platform's artifacts are not on this machine (a
    bucket), with its segments copied there (:mod:`assay.pipelines._log_archive`)."""
    directory = log_directory(core, account, pipeline)
    storage = core.storage
    archive = None
    if storage.local_dir(archive_id(account, pipeline)) is None:
        archive = Archive(storage, archive_id(account, pipeline), directory)
    return open_shared(directory, archive=archive)


def pipeline_config(service: InferenceService) -> tuple[str, int]:
    """The pipeline name and version number a ``pipeline`` service runs."""
    config = configuration(service)
    name, version = config.get("pipeline"), config.get("version")
    if not isinstance(name, str) or not name:
        raise config_error(service, "pipeline", "must name the pipeline (a string)")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise config_error(service, "version", f"must be a version number (≥ 1), got {version!r}")
    unknown = sorted(set(config) - {"pipeline", "version", "readyTimeoutSeconds"})
    if unknown:
        raise config_error(
            service, unknown[0], "is not a setting of this kind (settings: pipeline, version)"
        )
    return name, version


def _version(core: Any, service: Any) -> PipelineVersion:
    name, number = pipeline_config(service)
    try:
        return VersionStore(core.store, pipeline=name, account=service.account).get(number)
    except errors.NotFoundError as exc:
        raise config_error(service, "version", f"does not exist: {exc}") from None


class PipelineService:
    """One pipeline version running in this process: the in-process replica of a
    ``pipeline`` session. ``owner``: this object started the step sessions (and stops them)."""

    def __init__(
        self,
        core: Any,
        session: InferenceSession,
        steps: dict[str, str],
        *,
        owner: bool,
    ) -> None:
        self._core = core
        self.session_id = session.id
        self.version = _version(core, session.inferenceService)
        self._steps = steps
        self._owner = owner
        self._closed = False
        self._lock = threading.Lock()
        definition = self.version.definition
        catalog = ServiceCatalog(core, self.version.pipeline)
        checks, nullable = catalog.compile(definition)
        self._names = {s: catalog.name_of(s) for s in definition.services()}
        sessions = core.inferencesessions
        lasting = datetime.now(UTC) + timedelta(days=3650)  # the step session's expiry caps it
        self._clients = {
            service: sessions.client(sid, sessions.token(sid, expires=lasting))
            for service, sid in steps.items()
        }
        self._pool: ThreadPoolExecutor | None = None
        handles = {service: core.sessions.handles(sid) for service, sid in steps.items()}
        self.runtime = Runtime(
            pipeline=self.version.pipeline,
            version=self.version.version,
            definition=definition,
            callers={service: client.infer for service, client in self._clients.items()},
            batch_callers={
                service: self._batch_caller(client, handles[service])
                for service, client in self._clients.items()
            },
            nonblocking=frozenset(
                service
                for service, found in handles.items()
                if found and all(_nonblocking(h) for h in found)
            ),
            names=self._names,
            checks=checks,
            nullable=nullable,
            input_schema=definition.input_schema(),
        )
        self.log: InferenceLog = open_log(core, self.version.account, self.version.pipeline)

    def _batch_caller(self, client: Any, handles: Sequence[Any]) -> BatchCaller:
        """Several requests to one step service: one batch where its replicas take batches
        (in-process, Assay's replicas), else concurrent single calls."""
        if all(h.style == "inprocess" or (h.style == "replica" and h.batching) for h in handles):
            batch: BatchCaller = client.infer_many
            return batch

        def concurrently(requests: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(
                        REMOTE_CONCURRENCY, thread_name_prefix="assay-pipeline"
                    )
                pool = self._pool
            return list(pool.map(client.infer, requests))

        return concurrently

    @property
    def closed(self) -> bool:
        """True once the session stopped (or this process let go of it)."""
        return self._closed

    # -- inference -------------------------------------------------------------------------

    def run(
        self,
        rows: Sequence[dict[str, Any]],
        *,
        timeout: float = 15.0,
        concurrency: int = 1,
        durable: Durability | None = None,
    ) -> RunResult:
        """Run ``rows`` and log them: records to the log, failures to the failure log. With
        ``durable`` (None: the log's default, written) as the log's ``durable``: by default,
        return only once both are written, so that no answer — and no refusal — is ever
        missing from the log after the process dies."""
        if self._closed:  # no retry makes it answer (as for any ended session)
            raise errors.ConflictError(
                f"pipeline {self.version.pipeline!r} version {self.version.version} was stopped "
                f"(InferenceSession {self.session_id}); deploy it again"
            )
        result = self.runtime.run(rows, timeout=timeout, concurrency=concurrency)
        failed = result.failed.renamed(FAILURE_RENAMES) if result.failed is not None else None
        self.log.append_inference(result.passed, failed, wait=durable)
        return result

    def infer(self, endpoint: str, request: dict[str, Any]) -> list[dict[str, Any]]:
        """One input row → the pipeline's final outputs (the session interface)."""
        return self.infer_batch(endpoint, [request])[0]

    def infer_batch(
        self, endpoint: str, requests: list[dict[str, Any]]
    ) -> list[list[dict[str, Any]]]:
        """Several rows at once; a failure of any row raises (after every row is logged)."""
        for i, request in enumerate(requests):
            if not isinstance(request, dict):
                raise errors.ValidationError(
                    f"pipeline {self.version.pipeline!r}: request {i} must be a JSON object "
                    f"(one input row), got {type(request).__name__}",
                    field="request",
                )
        result = self.run(requests, timeout=3600.0)
        if result.first is not None:
            raise self._error(result.first)
        return [outputs or [] for outputs in result.outputs]

    def _error(self, failure: Failure) -> BaseException:
        where = (
            "its input" if failure.step == INPUT_STEP else f"step {failure.step} ({failure.kind})"
        )
        message = (
            f"pipeline {self.version.pipeline!r} version {self.version.version}: {where} "
            f"failed: {failure.message}"
        )
        exc = failure.exc
        if exc is None:
            if failure.step == INPUT_STEP:
                return errors.ValidationError(message, field="request")
            return errors.UnavailableError(message)
        if isinstance(exc, errors.ValidationError | KeyError | TypeError | ValueError):
            return errors.ValidationError(message)
        exc.add_note(message)  # keep the step's kind of failure (transient or not)
        return exc

    # -- lifecycle -------------------------------------------------------------------------

    def health(self) -> str | None:
        """Why the pipeline can no longer answer (None: every step session is Ready)."""
        from assay.schema.status import Status

        for service, sid in self._steps.items():
            record = self._core.store.get(sid)
            status = record.doc.get("status") if record is not None else "deleted"
            if status != Status.Ready:
                message = record.doc.get("message") if record is not None else None
                return (
                    f"the session {sid} of step service {self._names.get(service, service)!r} "
                    f"is {status}{': ' + message if message else ''}"
                )
        return None

    def close(self) -> None:
        """Stop using the step sessions (and stop them, if this object started them)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for client in self._clients.values():
            client.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._owner:
            for sid in self._steps.values():
                _terminate(self._core, sid)
        release_shared(self.log)


#: Failure records as the failure log keeps them: the message as ``error``, the step under
#: ``metadata.``.
FAILURE_RENAMES = {
    "error.message": "error",
    "error.step": "metadata.error_step",
    "error.step_kind": "metadata.error_step_kind",
}


def failure_log_records(table: Any) -> Any:
    """Failure records as the failure log keeps them: the message as ``error``, the step
    under ``metadata.``."""
    return table.rename_columns([FAILURE_RENAMES.get(n, n) for n in table.schema.names])


def _terminate(core: Any, session_id: str) -> None:
    with contextlib.suppress(errors.AssayError):  # already ended or deleted: nothing to stop
        core.sessions.terminate(session_id)


class PipelineRunner(Runner):
    kind = "pipeline"

    def __init__(self) -> None:
        self._starting: dict[str, PipelineService] = {}
        self._lock = threading.Lock()

    def check(self, service: InferenceService, env: RunnerEnv | None = None) -> None:
        pipeline_config(service)
        if env is not None and env.platform is not None:
            _version(env.platform, service)

    def start(self, session: InferenceSession, index: int, env: RunnerEnv) -> ReplicaHandle:
        core = env.platform
        if core is None:
            raise errors.PlatformError("the pipeline runner needs the platform core")
        with self._lock:
            started = self._starting.get(session.id) if index > 0 else None
        if started is None:
            started = self._start(core, session)
        with self._lock:
            if index + 1 < session.replicas:
                self._starting[session.id] = started
            else:
                self._starting.pop(session.id, None)
        return ReplicaHandle(
            index=index,
            style="inprocess",
            service=started,
            health=started.health,
            watched=True,
        )

    def attach(self, session: InferenceSession, env: RunnerEnv) -> list[ReplicaHandle]:
        core = env.platform
        try:
            steps = json.loads(core.storage.read_bytes(session.id, STEPS_ARTIFACT))
        except errors.NotFoundError:
            raise errors.UnavailableError(
                f"InferenceSession {session.id} of a pipeline has no step sessions recorded; "
                "create a new session"
            ) from None
        service = PipelineService(core, session, steps, owner=False)
        return [ReplicaHandle(index=0, style="inprocess", service=service)]

    def _start(self, core: Any, session: InferenceSession) -> PipelineService:
        from assay.schema.requests import InferenceSessionCreateRequest
        from assay.schema.status import Status

        version = _version(core, session.inferenceService)
        try:  # sessions an interrupted earlier start (or a crashed process) left behind
            for sid in json.loads(core.storage.read_bytes(session.id, STEPS_ARTIFACT)).values():
                _terminate(core, sid)
        except errors.NotFoundError:
            pass
        steps: dict[str, str] = {}
        try:
            for service in version.definition.services():
                request = InferenceSessionCreateRequest(
                    account=session.account,
                    inferenceService=service,
                    replicas=session.replicas,
                    expires=session.expires,
                    accelerator=session.accelerator,
                )
                group = core.inferencesessions
                created = group._insert(group._build(request))
                steps[service] = created.id

                def label(doc: dict[str, Any], owner: str = session.id) -> dict[str, Any]:
                    doc["labels"] = {**(doc.get("labels") or {}), STEP_SESSION_LABEL: owner}
                    return doc

                core.store.update(created.id, label)
                core.storage.put_bytes(session.id, STEPS_ARTIFACT, json.dumps(steps).encode())
                doc = core.engine.drive(created.id)
                if doc.get("status") != Status.Ready:
                    name = doc.get("inferenceService", {}).get("name", service)
                    raise errors.UnavailableError(
                        f"pipeline {version.pipeline!r}: the session of step service {name!r} "
                        f"did not start: {doc.get('status')}"
                        f"{' (' + doc['reason'] + ')' if doc.get('reason') else ''}: "
                        f"{doc.get('message', '')}"
                    )
            return PipelineService(core, session, steps, owner=True)
        except BaseException:
            for sid in steps.values():
                _terminate(core, sid)
            raise


RUNNER = PipelineRunner()


def _nonblocking(handle: Any) -> bool:
    """An in-process replica whose service answers at once (a mock that never waits)."""
    return handle.style == "inprocess" and bool(getattr(handle.service, "nonblocking", False))
