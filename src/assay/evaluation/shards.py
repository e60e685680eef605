"""An evaluation cut into shards that run side by side on a cluster (the ``ray`` executor).

Where the workflow runs on a worker whose executor offers :meth:`shards()
<assay.engine.executors.Executor.shards>` (a Ray worker), and the session's replicas can be
reached from any worker — in-process mocks, which each worker makes its own instances of, and
services that run elsewhere (``http``, ``openai``) — the evaluation's work is cut into
shards: runs of consecutive ``batchSize`` batches of one data set file for one replication,
about two per CPU of the cluster. Each shard (:func:`run_shard`, on a worker of its own)
sends its batches and writes its own parts, named as every part is (``part-R-FFFF-BBBBBB...``:
replication, file, batches), so shards never write the same name.

Exactly once holds across shards as it does across runs (``docs/design/evaluation.md``): a
shard starts by reading which of its batches have a part already and sends only the others
— so a shard run again after its worker or node was lost continues where it stopped — and
deletes only its own batches' unfinished error records. A shard stops as soon as the
workflow run that started it is no longer the evaluation's (the *fence*: a claim on
``namespaced_id(evaluation, "shards")`` held by a token of that run), so shards left running
by a run that was lost cannot write beside the next run's. The integrity check then runs
once, in the workflow, over every part. Design: ``docs/design/ray.md``.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from assay import errors
from assay.engine import WorkflowCancelled, WorkflowContext
from assay.evaluation.dispatch import InProcessDispatcher
from assay.evaluation.outcomes import FailureTally, FatalError
from assay.evaluation.parts import (
    Part,
    PartSizer,
    cut_parts,
    done_batches,
    drop_unfinished_in,
    read_batches,
)
from assay.evaluation.sending import Aborted, Setup, answer_parts
from assay.evaluation.workflow import OutOfTime, SessionEnded, Watch, _young_objects_only
from assay.schema import ids

if TYPE_CHECKING:
    import pyarrow

    from assay.engine.executors import Shards
    from assay.schema.platform import Evaluation

__all__ = [
    "SHARDS_PER_CPU",
    "Shard",
    "ShardResult",
    "ShardTask",
    "ShardedRun",
    "fence_id",
    "plan",
    "run_shard",
]

#: Shards per CPU of the cluster: more than one, so that a fast worker takes more of them
#: and the last ones are short.
SHARDS_PER_CPU = 2
#: Seconds the fence claim lasts (the workflow releases it when it ends; a run that is lost
#: leaves it to the next run, which takes it over at once).
FENCE_TTL = 7 * 24 * 3600.0


@dataclass(frozen=True)
class Shard:
    """Batches ``first`` to ``stop - 1`` of data set file ``file`` (sorted order), for
    replication ``replication`` (its position)."""

    replication: int
    file: int
    first: int
    stop: int

    def holds(self, part: Part) -> bool:
        """Whether ``part`` lies within this shard."""
        return (
            part.replication == self.replication
            and part.file == self.file
            and self.first <= part.batch
            and part.batch + part.count <= self.stop
        )

    def describe(self) -> str:
        return (
            f"replication {self.replication}, file {self.file}, batches "
            f"{self.first}-{self.stop - 1}"
        )


@dataclass(frozen=True)
class ShardTask:
    """What a shard's worker is sent (picklable)."""

    evaluation_id: str
    session_id: str
    shard: Shard
    token: str
    """The fence token of the workflow run that started the shard."""
    started: float
    """When the evaluation started (``time.time()``), for ``totalTimeoutSeconds``."""

    def describe(self) -> str:
        return f"the shard of {self.shard.describe()}"


@dataclass
class ShardResult:
    """What a shard did (picklable): its files' digests, failures, retries, log lines, and
    the error that stopped it (``(kind, message, reason)``; None: it did its work)."""

    digests: dict[str, str] = field(default_factory=dict)
    failures: FailureTally = field(default_factory=FailureTally)
    retries: dict[str, int] = field(default_factory=dict)
    hits: int = 0
    versions: dict[str, list[str]] = field(default_factory=dict)
    written: int = 0
    log: list[str] = field(default_factory=list)
    error: tuple[str, str, str | None] | None = None


def fence_id(evaluation_id: str) -> str:
    """The id of the claim that says which run of the evaluation its shards belong to."""
    return ids.namespaced_id(evaluation_id, "shards")


def plan(
    ctx: WorkflowContext,
    evaluation: Evaluation,
    setup: Setup,
    handles: list[Any],
    session_id: str,
    watch: Watch,
) -> ShardedRun | None:
    """The shards of the evaluation, where it should be cut (see the module doc); None where
    it runs in the workflow's own process."""
    runner = ctx.engine.executor.shards()
    if runner is None or evaluation.client.cache:
        return None  # the response cache is one SQLite file, on one machine
    service = setup.service
    kind = str(service.runner.kind) if service.runner is not None else ""
    reachable = all(h.style == "plain" for h in handles) or (
        kind == "mock" and all(h.style == "inprocess" for h in handles)
    )
    if not reachable:
        return None  # replica processes: on this machine's loopback, and the bottleneck
    core = ctx.platform
    batch_size = evaluation.client.batchSize
    rows = _file_rows(core, setup.dataset_id, setup.paths)
    batches = [-(-n // batch_size) for n in rows]
    units = len(setup.replications) * sum(batches)
    width = runner.width
    per = max(1, -(-units // (SHARDS_PER_CPU * width)))
    shards = [
        Shard(r, f, first, min(first + per, count))
        for r in range(len(setup.replications))
        for f, count in enumerate(batches)
        for first in range(0, count, per)
    ]
    if len(shards) <= 1:
        return None
    return ShardedRun(ctx, evaluation, session_id, runner, shards, rows, width, watch)


def _file_rows(core: Any, dataset_id: str, paths: list[str]) -> list[int]:
    """The rows of each data set file, in sorted order."""
    import pyarrow.parquet as pq

    filesystem, base = core.storage.arrow_location(dataset_id, "")
    base = base.rstrip("/")
    counts = []
    for path in sorted(paths):
        with filesystem.open_input_file(f"{base}/{path}" if base else path) as handle:
            counts.append(pq.ParquetFile(handle).metadata.num_rows)
    return counts


@dataclass
class ShardOutcome:
    """The shards' results, merged."""

    failures: FailureTally = field(default_factory=FailureTally)
    digests: dict[str, str] = field(default_factory=dict)
    retries: Counter[str] = field(default_factory=Counter)
    hits: int = 0
    versions: dict[str, list[str]] = field(default_factory=dict)


class ShardedRun:
    """The shards of one run of an evaluation, and how the workflow waits for them."""

    def __init__(
        self,
        ctx: WorkflowContext,
        evaluation: Evaluation,
        session_id: str,
        runner: Shards,
        shards: list[Shard],
        rows: list[int],
        width: int,
        watch: Watch,
    ) -> None:
        self._ctx = ctx
        self._evaluation = evaluation
        self._session = session_id
        self._runner = runner
        self.shards = shards
        self._rows = rows
        self._width = width
        self._watch = watch

    def describe(self) -> str:
        return (
            f"{len(self.shards)} shards (files x batches x replications) over the cluster's "
            f"{self._width} CPUs, each on a worker of its own"
        )

    def done_rows(self) -> int:
        """Instances x replications whose part is written (for the progress message)."""
        size = self._evaluation.client.batchSize
        done = done_batches(self._ctx.storage, self._evaluation.id)
        return sum(min(size, self._rows[f] - b * size) for _, f, b in done)

    def run(self, done: set[tuple[int, int, int]]) -> ShardOutcome:
        """Run the shards with batches left to do; raise what stopped one (the others are
        cancelled)."""
        store, evaluation = self._ctx.store, self._evaluation
        fence = fence_id(evaluation.id)
        holder = store.claim_owner(fence)
        if holder is not None:  # an earlier run's: its shards stop at their next look
            store.release(fence, holder[0])
        token = f"{self._ctx.engine.owner}:{uuid.uuid4().hex[:8]}"
        if not store.claim(fence, token, FENCE_TTL):
            raise WorkflowCancelled(evaluation.id)  # another run took over this instant
        started = time.time() - (time.monotonic() - self._watch.started)
        todo = [
            ShardTask(evaluation.id, self._session, shard, token, started)
            for shard in self.shards
            if any(
                (shard.replication, shard.file, b) not in done
                for b in range(shard.first, shard.stop)
            )
        ]
        self._watch.set_counter(self.done_rows)
        outcome = ShardOutcome()
        log = self._ctx.log
        if len(todo) < len(self.shards):
            log(f"{len(self.shards) - len(todo)} of {len(self.shards)} shards were done already")

        def retried(position: int, why: str, attempt: int) -> None:
            log(
                f"shard {todo[position].shard.describe()} was lost ({why}); running it again "
                f"(attempt {attempt}), from its last written part"
            )

        try:
            for position, result in self._runner.run(
                run_shard, todo, tick=self._watch.tick, retried=retried
            ):
                task = todo[position]
                for line in result.log:
                    log(f"shard {task.shard.describe()}: {line}")
                if result.error is not None:
                    _raise(result.error, evaluation.id)
                outcome.failures.merge(result.failures)
                outcome.digests.update(result.digests)
                outcome.retries.update(result.retries)
                outcome.hits += result.hits
                for name, versions in result.versions.items():
                    known = outcome.versions.setdefault(name, [])
                    known.extend(v for v in versions if v not in known)
        finally:
            store.release(fence, token)
        return outcome


def _raise(error: tuple[str, str, str | None], evaluation_id: str) -> None:
    """Raise in the workflow what stopped a shard."""
    kind, message, reason = error
    if kind == "aborted":
        raise Aborted(message)
    if kind == "fatal":
        raise FatalError(message, reason=reason or "Incomplete")
    if kind == "session":
        raise SessionEnded(message)
    if kind == "time":
        raise OutOfTime(message)
    raise WorkflowCancelled(evaluation_id)


def run_shard(core: Any, task: ShardTask) -> ShardResult:
    """Run one shard on this worker (called by the executor's shards; see the module doc)."""
    with _young_objects_only():
        return _run_shard(core, task)


def _run_shard(core: Any, task: ShardTask) -> ShardResult:
    from assay.schema.platform import parse_entity

    result = ShardResult()
    dispatcher: Any = None
    try:
        fence = _fence(core, task)
        fence()
        evaluation: Evaluation = parse_entity(core.store.require(task.evaluation_id).doc)  # type: ignore[assignment]
        ctx = WorkflowContext(core.engine, evaluation, core, True)
        try:
            handles = core.sessions.handles(task.session_id)
        except (errors.UnavailableError, errors.ConflictError) as exc:
            raise SessionEnded(str(exc)) from None
        setup = Setup.make(core, evaluation, task.session_id)
        started = time.monotonic() - max(0.0, time.time() - task.started)
        watch = Watch(ctx, evaluation, task.session_id, started, None, fence=fence)
        dispatcher, inner = setup.dispatcher(
            core, evaluation, handles, tick=watch.tick, log=result.log.append
        )
        watch.dispatcher = dispatcher
        shard = task.shard
        drop_unfinished_in(core.storage, evaluation.id, shard.holds)
        done = done_batches(core.storage, evaluation.id)
        size = evaluation.client.batchSize
        sizer = PartSizer(size, in_process=isinstance(inner, InProcessDispatcher))
        path = sorted(setup.paths)[shard.file]
        todo = _todo(core, setup.dataset_id, path, shard, size, done, sizer)
        result.digests = answer_parts(
            core, evaluation, setup, dispatcher, inner, watch, todo, sizer, result.failures
        )
        result.written = watch.written
        result.retries = dict(dispatcher.retries)
        result.hits = int(getattr(dispatcher, "hits", 0) or 0)
        result.versions = dict(getattr(dispatcher, "versions", None) or {})
    except Aborted as exc:
        result.error = ("aborted", str(exc), None)
    except FatalError as exc:
        result.error = ("fatal", str(exc), exc.reason)
    except SessionEnded as exc:
        result.error = ("session", str(exc), None)
    except OutOfTime as exc:
        result.error = ("time", str(exc), None)
    except WorkflowCancelled:
        result.error = ("cancelled", "", None)
    finally:
        if dispatcher is not None:
            dispatcher.close()
    return result


def _fence(core: Any, task: ShardTask) -> Callable[[], None]:
    """Raise :class:`WorkflowCancelled` once the run that started the shard is no longer the
    evaluation's (see the module doc)."""
    fence = fence_id(task.evaluation_id)

    def check() -> None:
        holder = core.store.claim_owner(fence)
        if holder is None or holder[0] != task.token:
            raise WorkflowCancelled(task.evaluation_id)

    return check


def _todo(
    core: Any,
    dataset_id: str,
    path: str,
    shard: Shard,
    batch_size: int,
    done: set[tuple[int, int, int]],
    sizer: PartSizer,
) -> Iterator[tuple[Part, pyarrow.RecordBatch]]:
    """The shard's parts still to answer, with their rows, cut as ``sizer`` says."""
    for first, rows in read_batches(
        core.storage, dataset_id, path, shard.first, shard.stop, batch_size
    ):
        for part, batch in cut_parts(
            shard.replication, shard.file, first, rows, batch_size, done, sizer.next
        ):
            if part is not None:
                yield part, batch
