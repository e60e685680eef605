"""The Evaluation workflow: every instance of the data set through the session, exactly once.

1. The session: the evaluation's own (started here, terminated at the end) or a running one
   (``inferenceSessionReference``, which must be ``Ready``).
2. The first instance goes through the input pipelines before any request is sent: a data set
   that does not fit the service fails at once, naming the field.
3. Parts (see ``parts.py``: runs of whole ``batchSize`` batches, as many as the service
   answers in ~0.5 s) are sent part by part — over HTTP enough in flight to keep every worker
   busy across part boundaries, their request bodies made column-wise where the rows are the
   requests (``bodies.py``) — and each is written atomically when all its instances have an
   outcome (built column-wise, stored by a thread of its own while the next parts are
   answered). A resumed run skips the batches already written.
4. The integrity check counts the output's (``_index_``, ``_replication_``) pairs; the result
   is recorded on the entity, and the evaluation is ``Complete`` only when it holds.
"""

from __future__ import annotations

import contextlib
import gc
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from assay import errors, provenance
from assay.engine import WorkflowCancelled, WorkflowContext, WorkflowResult
from assay.engine.progress import Meter, duration_text
from assay.evaluation.cache import CachedDispatcher
from assay.evaluation.dispatch import HTTPDispatcher, InProcessDispatcher
from assay.evaluation.integrity import (
    INTEGRITY_ANNOTATION,
    Integrity,
    check_integrity,
    locate_problems,
)
from assay.evaluation.outcomes import (
    Answers,
    BadRequest,
    FailureTally,
    FatalError,
    Requester,
)
from assay.evaluation.parts import (
    ERRORS_PREFIX,
    Part,
    PartSizer,
    cut_parts,
    done_batches,
    drop_unfinished,
    read_columns,
    read_runs,
    read_units,
)
from assay.evaluation.sending import Aborted, Setup, answer_parts
from assay.schema.status import Reason, Status

if TYPE_CHECKING:
    import pyarrow

    from assay.schema.platform import Evaluation

__all__ = ["SESSION_LABEL", "OutOfTime", "SessionEnded", "Watch", "run_evaluation"]

#: The label that marks a session an evaluation started for itself.
SESSION_LABEL = "assay.io/evaluation"
#: Seconds between checks that the evaluation was not deleted or terminated meanwhile.
CHECK_INTERVAL = 0.2
#: Seconds between two looks at the session (ended, failed, expired?).
SESSION_INTERVAL = 0.5
#: Seconds between two progress messages.
PROGRESS_INTERVAL = 1.0
#: Net new container objects between two collections of the youngest generation during a
#: run (Python's default is 700; see ``_young_objects_only``).
GC_YOUNG_THRESHOLD = 10_000
INCOMPLETE = "Incomplete"
UNVERIFIED = "Unverified"


class _Progress:
    """The evaluation's progress: instances with an outcome (written, answered in flight, or
    done by an earlier run) out of all, shown in the entity's message with the rate and ETA
    (and to the engine's progress listener: a progress bar)."""

    def __init__(self, ctx: WorkflowContext, total: int) -> None:
        self._ctx = ctx
        self.meter = Meter(total)
        self.skipped = 0
        """Instances done by an earlier run (resumed)."""
        self.note = ""

    @property
    def done(self) -> int:
        return self.meter.done

    def show(self, answered: int, *, force: bool = False) -> None:
        self.meter.set(min(self.skipped + answered, self.meter.total))
        message = self.meter.message(self.note)
        self._ctx.progress(message, force=force, done=self.meter.done, total=self.meter.total)


def _own_session(ctx: WorkflowContext, evaluation: Evaluation) -> str:
    """Start the evaluation's own session (stopping any left by an earlier run)."""
    from assay.schema.requests import InferenceSessionCreateRequest

    core = ctx.platform
    for old in core.store.query(
        kind="InferenceSession", labels={SESSION_LABEL: evaluation.id}, status=Status.Ready
    ):
        core.sessions.terminate(old["id"])
    spec = evaluation.inferenceSession
    request = InferenceSessionCreateRequest(
        account=evaluation.account,
        inferenceService=spec.inferenceService.id,
        replicas=spec.replicas,
        expires=spec.expires,
        accelerator=spec.accelerator,
    )
    session = core.inferencesessions._insert(core.inferencesessions._build(request))

    def label(doc: dict[str, Any]) -> dict[str, Any]:
        doc["labels"] = {**(doc.get("labels") or {}), SESSION_LABEL: evaluation.id}
        return doc

    core.store.update(session.id, label)
    doc = core.engine.drive(session.id)
    if doc.get("status") != Status.Ready:
        raise errors.UnavailableError(
            f"the evaluation's session {session.id} did not start: {doc.get('status')}"
            f"{' (' + doc['reason'] + ')' if doc.get('reason') else ''}: {doc.get('message', '')}"
        )
    return str(session.id)


def run_evaluation(ctx: WorkflowContext) -> WorkflowResult:
    """The Evaluation workflow handler (see the module doc)."""
    with _young_objects_only():
        return _run(ctx)


@contextlib.contextmanager
def _young_objects_only() -> Iterator[None]:
    """Keep the garbage collector to the objects made during the run, and collect them less
    often.

    An evaluation makes a few container objects per instance (rows, requests, replies), and
    enough of them live through a collection or two that a full collection comes every
    ~25,000 instances — each one walking every object of the process (~65 ms in a platform
    process, a third of an in-process run's time). With the objects that exist at the start
    frozen (``gc.freeze``), those collections walk only the run's own.

    The youngest generation is also collected every :data:`GC_YOUNG_THRESHOLD` net new
    container objects instead of Python's 700: a part's objects die together when it is
    written, so with 700 a collection came every ~330 instances over HTTP (~610 in a
    200,000-instance run, each walking the parts in flight and promoting them towards the
    older generations) and took 8-12 % of the client's time. Cycles are still collected, a
    little later.

    Both are restored at the end; left alone where something else froze objects already.
    """
    if gc.get_freeze_count():
        yield
        return
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(thresholds[0], GC_YOUNG_THRESHOLD), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _run(ctx: WorkflowContext) -> WorkflowResult:
    evaluation: Evaluation = ctx.entity  # type: ignore[assignment]
    core = ctx.platform
    config = evaluation.client
    started = time.monotonic()
    started_at = provenance.now()
    own = evaluation.inferenceSessionReference is None
    session_id = _own_session(ctx, evaluation) if own else evaluation.inferenceSessionReference
    assert session_id is not None
    dispatcher: HTTPDispatcher | InProcessDispatcher | CachedDispatcher | None = None
    watch: Watch | None = None
    try:
        try:
            handles = core.sessions.handles(session_id)
        except (errors.UnavailableError, errors.ConflictError) as exc:
            return WorkflowResult(
                status=Status.Failed, reason=Reason.FailedDependency, message=str(exc)
            )
        setup = Setup.make(core, evaluation, session_id)
        service, paths, dataset_id = setup.service, setup.paths, setup.dataset_id
        rows = _count_rows(core, dataset_id, paths)
        if not setup.requester.passthrough:  # without a pipeline every instance is its request
            _check_first_instance(core, dataset_id, paths, setup.requester)

        replications = setup.replications
        progress = _Progress(ctx, rows * len(replications))
        watch = Watch(ctx, evaluation, session_id, started, progress)
        from assay.evaluation import shards

        sharded = shards.plan(ctx, evaluation, setup, handles, session_id, watch)
        if sharded is None:
            dispatcher, inner = setup.dispatcher(
                core, evaluation, handles, tick=watch.tick, log=ctx.log
            )
            watch.dispatcher = dispatcher
            how = inner.describe()
        else:
            how = sharded.describe()
        ctx.log(
            f"{'resumed' if ctx.restarted else 'started'}: {rows:,} instances x "
            f"{len(replications)} replication(s) of Dataset {dataset_id} on InferenceSession "
            f"{session_id} ({service.runner.kind if service.runner else '?'} service "
            f"{service.name!r}); {how}; retries: at most "
            f"{config.transientErrorRetryLimit} per request within "
            f"{config.transientErrorRetryBudgetSeconds} s, back-off up to "
            f"{config.transientErrorRetryDelaySeconds} s"
            + ("; answers cached" if config.cache else "")
        )
        drop_unfinished(core.storage, evaluation.id)
        done = done_batches(core.storage, evaluation.id)
        if sharded is None:
            assert dispatcher is not None
            failures = FailureTally()
            sizer = PartSizer(config.batchSize, in_process=isinstance(inner, InProcessDispatcher))
            todo = _todo(
                core, dataset_id, paths, len(replications), config.batchSize, done, sizer, progress
            )
            digests = answer_parts(
                core, evaluation, setup, dispatcher, inner, watch, todo, sizer, failures
            )
            watch.tick(force=True)
            retries: dict[str, int] = dict(dispatcher.retries)
            hits = dispatcher.hits if isinstance(dispatcher, CachedDispatcher) else 0
            versions = getattr(dispatcher, "versions", None) or {}
        else:
            outcome = sharded.run(done)
            watch.tick(force=True)
            failures, digests, retries = outcome.failures, outcome.digests, outcome.retries
            hits, versions = outcome.hits, outcome.versions
        retried = _retried(retries)
        if retried:
            ctx.log(f"requests retried: {retried}")
        result = _verify(ctx, evaluation, core, dataset_id, paths, replications, digests)
        if result.status in (None, Status.Complete):
            _record_provenance(core, evaluation, service, digests, started_at, versions)
        if failures.total:
            ctx.log(f"skipped after errors: {failures.summary()}")
        took = duration_text(time.monotonic() - started)
        result.message = f"{result.message} in {took}"
        if retried:
            result.message = f"{result.message}; requests retried: {retried}"
        if hits:
            result.message = f"{result.message}; {hits:,} answers from the response cache"
        ctx.log(f"ended: {result.status or Status.Complete}: {result.message}")
        return result
    except FatalError as exc:
        if watch is not None and exc.reason == Reason.FailedDependency:
            try:  # the replicas were stopped with their session: say that, not how they ended
                watch.look_at_session()
            except SessionEnded as ended:
                exc = FatalError(str(ended), reason=exc.reason)
        ctx.log(f"failed: {exc}")
        return WorkflowResult(status=Status.Failed, reason=exc.reason, message=str(exc))
    except Aborted as exc:
        ctx.log(f"failed: {exc}")
        return WorkflowResult(status=Status.Failed, reason=INCOMPLETE, message=str(exc))
    except SessionEnded as exc:
        ctx.log(f"failed: {exc}")
        return WorkflowResult(
            status=Status.Failed, reason=Reason.FailedDependency, message=str(exc)
        )
    except OutOfTime as exc:
        ctx.log(f"failed: {exc}")
        return WorkflowResult(status=Status.Failed, reason=INCOMPLETE, message=str(exc))
    except WorkflowCancelled:
        ctx.log("stopped: the evaluation was terminated or deleted; the parts written are kept")
        raise
    finally:
        if dispatcher is not None:
            dispatcher.close()
        if own:
            core.sessions.terminate(session_id)


class SessionEnded(Exception):
    """The session the evaluation sends its requests to ended or failed while it ran."""


class OutOfTime(Exception):
    """``totalTimeoutSeconds`` ran out."""


class Watch:
    """What the evaluation keeps an eye on while it waits for answers: a cancel (the entity
    deleted or terminated), its session (ended, failed), ``totalTimeoutSeconds``, and the
    progress message (at least every :data:`PROGRESS_INTERVAL` seconds; a shard has none:
    ``progress`` None). ``fence`` is called with every check of a cancel (a shard's: it
    raises once another run of the evaluation has taken over)."""

    def __init__(
        self,
        ctx: WorkflowContext,
        evaluation: Evaluation,
        session_id: str,
        started: float,
        progress: _Progress | None,
        *,
        fence: Callable[[], None] | None = None,
    ) -> None:
        self._ctx = ctx
        self._evaluation = evaluation
        self._session = session_id
        self.started = started
        """When the evaluation started (``time.monotonic()`` of this process)."""
        self._progress = progress
        self._fence = fence
        self._done: Callable[[], int] | None = None
        self.dispatcher: Any = None
        self.written = 0
        self._checked = self._looked = self._shown = -1e9

    def tick(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if now - self._checked >= CHECK_INTERVAL:
            self._checked = now
            self._ctx.check()
            if self._fence is not None:
                self._fence()
            limit = self._evaluation.client.totalTimeoutSeconds
            if limit and now - self.started > limit:
                raise OutOfTime(
                    f"totalTimeoutSeconds ({limit} s) ran out after {self._counts()} instances "
                    "(the parts written are kept); raise client.totalTimeoutSeconds (0: no "
                    "limit), or look at the evaluation's log for what slowed it down"
                )
        if now - self._looked >= SESSION_INTERVAL:
            self._looked = now
            self.look_at_session()
        if self._progress is not None and (force or now - self._shown >= PROGRESS_INTERVAL):
            self._shown = now
            if self._done is not None:  # counted elsewhere (by the parts of the shards)
                self._progress.skipped = 0
                answered = self._done()
            else:
                answered = self.dispatcher.answered if self.dispatcher is not None else 0
            self._progress.show(answered, force=force)

    def set_counter(self, done: Callable[[], int]) -> None:
        """Count the instances done with ``done()`` (the rows of the parts written) rather
        than the dispatcher's answers: the shards of the evaluation answer elsewhere."""
        self._done = done

    def _counts(self) -> str:
        """``41,000 / 100,000``: instances done out of all (a shard: instances it wrote)."""
        if self._progress is None:
            return f"{self.written:,}"
        return f"{self._progress.done:,} / {self._progress.meter.total:,}"

    def look_at_session(self) -> None:
        record = self._ctx.store.get(self._session)
        doc = record.doc if record is not None else {"status": Status.Deleted}
        status = doc.get("status")
        if status == Status.Ready:
            return
        state = str(status) + (f" ({doc['reason']})" if doc.get("reason") else "")
        detail = f": {doc['message']}" if doc.get("message") else ""
        total = f" / {self._progress.meter.total:,}" if self._progress is not None else ""
        raise SessionEnded(
            f"its InferenceSession {self._session} is {state}{detail}\n"
            f"The evaluation stopped after {self.written:,}{total} "
            "instances written (kept). "
            + (
                "Fix what made the service fail, then run the evaluation again."
                if status == Status.Error
                else "Run the evaluation again with a Ready session."
            )
        )

    def wait(self, future: Future[Answers]) -> Answers:
        """The answers of a part, watching meanwhile."""
        while True:
            try:
                return future.result(timeout=CHECK_INTERVAL)
            except TimeoutError:
                self.tick()


def _retried(retries: Any) -> str:
    """``267 (267 x HTTP 429)``, or an empty string when nothing was retried."""
    counts = {k: n for k, n in dict(retries).items() if n}
    if not counts:
        return ""
    kinds = ", ".join(f"{n:,} x {k}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f"{sum(counts.values()):,} ({kinds})"


def _todo(
    core: Any,
    dataset_id: str,
    paths: list[str],
    replications: int,
    batch_size: int,
    done: set[tuple[int, int, int]],
    sizer: PartSizer,
    progress: _Progress,
) -> Iterator[tuple[Part, pyarrow.RecordBatch]]:
    """The parts still to answer, with their rows, in order: replication by replication,
    the data set's batches cut into parts as ``sizer`` says when each starts. Batches written
    by an earlier run (``done``) count as progress and are not sent again."""
    for r in range(replications):
        for f, first, run in read_runs(core.storage, dataset_id, paths, batch_size):
            for part, batch in cut_parts(r, f, first, run, batch_size, done, sizer.next):
                if part is None:
                    progress.skipped += batch.num_rows
                    continue
                yield part, batch


def _count_rows(core: Any, dataset_id: str, paths: list[str]) -> int:
    import pyarrow.parquet as pq

    filesystem, base = core.storage.arrow_location(dataset_id, "")
    base = base.rstrip("/")
    total = 0
    for path in paths:
        with filesystem.open_input_file(f"{base}/{path}" if base else path) as handle:
            total += pq.ParquetFile(handle).metadata.num_rows
    return total


def _check_first_instance(
    core: Any, dataset_id: str, paths: list[str], requester: Requester
) -> None:
    for _, _, batch in read_units(core.storage, dataset_id, paths, 1):
        try:
            requester(batch.to_pylist()[0])
        except BadRequest as exc:
            raise Aborted(
                f"the data set does not fit the service's input pipeline (no request was sent): {exc}"
            ) from None
        return


def _record_provenance(
    core: Any,
    evaluation: Evaluation,
    service: Any,
    written: dict[str, str],
    started: str,
    versions: dict[str, list[str]],
) -> None:
    """The Evaluation's provenance (:mod:`assay.provenance`): its output parts' digests
    (taken as they were written), its Dataset's, the system's (with the versions a remote
    service said it is, in its reply headers) and the settings."""
    if not provenance.ENABLED:
        return
    files = provenance.output_files(core.storage, evaluation.id, written)
    settings = {
        "replications": evaluation.replications,
        "workersPerReplica": evaluation.workersPerReplica,
        "client": evaluation.client.model_dump(mode="json", by_alias=True),
    }
    block = provenance.make(
        "Evaluation",
        evaluation.id,
        files=files,
        started=started,
        inputs=[provenance.input_link(core, "Dataset", evaluation.dataset)],
        system=provenance.system_block(core, service, versions=versions),
        settings=settings,
    )
    provenance.record(core, evaluation.id, block)


def _verify(
    ctx: WorkflowContext,
    evaluation: Evaluation,
    core: Any,
    dataset_id: str,
    paths: list[str],
    replications: list[str],
    written: dict[str, str] | None = None,
) -> WorkflowResult:
    """The integrity check, and the client's output policies (``policies.py``): files that
    ``Deduplicate`` rewrites lose their digest in ``written`` (taken as they were written)."""
    import dataclasses

    import pyarrow as pa

    from assay.evaluation import policies
    from assay.evaluation.parts import DATA_PREFIX

    # Read file by file (see read_columns): memory must not grow with the number of parts.
    chunks = [
        b.column(0).cast(pa.int64())
        for b in read_columns(core.storage, dataset_id, paths, ["_index_"])
    ]
    indices = pa.chunked_array(chunks, pa.int64())
    columns = ["_index_", "_replication_"]

    def check() -> tuple[list[str], Integrity]:
        outputs = [i.path for i in core.storage.list(evaluation.id, DATA_PREFIX)]
        output = read_columns(core.storage, evaluation.id, outputs, columns)
        # Counted from the recorded errors, so instances skipped before a resume count too.
        skipped = (
            _count_skipped(core, evaluation.id)
            if core.storage.list(evaluation.id, ERRORS_PREFIX)
            else 0
        )
        return outputs, check_integrity(output, indices, replications, skipped=skipped)

    outputs, result = check()
    config = evaluation.client
    failed = None
    if not result.ok:  # where the problems are: examples, and the rows to deduplicate
        problems = locate_problems(
            ((p, read_columns(core.storage, evaluation.id, [p], columns)) for p in outputs),
            indices,
            replications,
        )
        failed = policies.failure(result, problems, config)
        if failed is None and result.duplicates and config.duplicateOutputPolicy == "Deduplicate":
            changed = policies.deduplicate(core.storage, evaluation.id, problems.extra_rows)
            if written is not None:
                for path in changed:
                    written.pop(path, None)
            ctx.log(
                f"duplicateOutputPolicy Deduplicate: removed {problems.duplicates:,} duplicate "
                f"output rows (e.g. {policies.pair_text(problems.duplicate)}) from "
                f"{len(changed):,} files"
            )
            _, result = check()
            result = dataclasses.replace(result, deduplicated=problems.duplicates)

    def record(doc: dict[str, Any]) -> dict[str, Any]:
        notes = [a for a in doc.get("annotations") or [] if a.get("key") != INTEGRITY_ANNOTATION]
        notes.append(
            {"key": INTEGRITY_ANNOTATION, "value": json.dumps(result.as_dict(), sort_keys=True)}
        )
        doc["annotations"] = notes
        return doc

    core.store.update(evaluation.id, record)
    summary = f"{result.answered:,} / {result.expected:,} instances x replications answered" + (
        f", {result.skipped:,} skipped after errors" if result.skipped else ""
    )
    if failed is not None:
        policy, why = failed
        return WorkflowResult(
            status=Status.Failed,
            reason=UNVERIFIED if policy == "duplicateOutputPolicy" else INCOMPLETE,
            message=f"{summary}; {why}",
        )
    return WorkflowResult(message=f"{summary}; {policies.completed(result, config)}")


def _count_skipped(core: Any, evaluation_id: str) -> int:
    import pyarrow.dataset as ds

    filesystem, base = core.storage.arrow_location(evaluation_id, "")
    base = base.rstrip("/")
    paths = [
        f"{base}/{i.path}" if base else i.path
        for i in core.storage.list(evaluation_id, ERRORS_PREFIX)
    ]
    return int(ds.dataset(paths, format="parquet", filesystem=filesystem).count_rows())
