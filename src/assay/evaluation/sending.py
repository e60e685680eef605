"""Sending an evaluation's instances and writing its parts: what the workflow's own process
does (``workflow.py``) and what each shard does on its worker (``shards.py``), made the same
way in both — the service's pipelines and retry policy (:class:`Setup`), the dispatcher, and
the loop that keeps parts in flight and writes each atomically as its answers are in
(:func:`answer_parts`)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from assay.evaluation.cache import CachedDispatcher, service_key
from assay.evaluation.dispatch import HTTPDispatcher, InProcessDispatcher, Request
from assay.evaluation.outcomes import (
    Answers,
    BadRequest,
    FailureTally,
    Outcome,
    Requester,
    Responder,
    RetryPolicy,
    summarize_failures,
)
from assay.evaluation.parts import Part, PartSizer, PartWriter, output_batch, with_request_columns
from assay.schema import ids

if TYPE_CHECKING:
    import pyarrow

    from assay.evaluation.workflow import Watch
    from assay.schema.platform import Evaluation

__all__ = ["Aborted", "Setup", "answer_parts"]


@dataclass
class Setup:
    """What every process that sends an evaluation's instances needs, made the same way in
    each (the workflow's own, and each of its shards: :mod:`assay.evaluation.shards`)."""

    service: Any
    """The session's InferenceService."""
    endpoint: str
    """The service's endpoint that answers the instances."""
    requester: Requester
    """Makes each instance a request (the input pipelines)."""
    responder: Responder
    """Checks and adapts each reply (the output pipeline)."""
    policy: RetryPolicy
    """How transient errors are retried."""
    schema: pyarrow.Schema | None
    """The output schema (None: inferred)."""
    dataset_id: str
    paths: list[str]
    """The data set's files."""
    replications: list[str]
    """The replication ids, in order."""

    @classmethod
    def make(cls, core: Any, evaluation: Evaluation, session_id: str) -> Setup:
        """The setup of ``evaluation`` against the session ``session_id``."""
        from assay.inference.client import _item_schema, _output_schema
        from assay.schema.adapters import create_pipeline

        config = evaluation.client
        service = core.inferencesessions.require(session_id).inferenceService
        interface = service.interface
        adapters = []
        if config.inputPipeline:
            adapters.append(create_pipeline([a.model_dump() for a in config.inputPipeline]))
        if interface.inputPipeline:
            adapters.append(create_pipeline([a.model_dump() for a in interface.inputPipeline]))
        output_adapter = (
            create_pipeline([a.model_dump() for a in interface.outputPipeline])
            if interface.outputPipeline
            else None
        )
        declared = interface.outputSchema.arrow_schema() if interface.outputSchema else None
        dataset = core.datasets.require(evaluation.dataset)
        return cls(
            service=service,
            endpoint=interface.endpoint,
            requester=Requester(adapters),
            responder=Responder(
                output_adapter, _item_schema(declared), f"Evaluation {evaluation.id}"
            ),
            policy=RetryPolicy(
                config.transientErrorRetryLimit,
                float(config.transientErrorRetryDelaySeconds),
                budget=float(config.transientErrorRetryBudgetSeconds),
            ),
            schema=_output_schema(declared),
            dataset_id=dataset.id,
            paths=[a.path for a in dataset.artifacts],
            replications=[
                ids.replication_id(evaluation.id, r) for r in range(evaluation.replications)
            ],
        )

    def dispatcher(
        self,
        core: Any,
        evaluation: Evaluation,
        handles: list[Any],
        *,
        tick: Callable[[], None],
        log: Callable[[str], None],
    ) -> tuple[HTTPDispatcher | InProcessDispatcher | CachedDispatcher, Any]:
        """The dispatcher that sends to ``handles``, and the one inside it (the response
        cache wraps it where ``client.cache`` is set)."""
        config = evaluation.client
        inner: HTTPDispatcher | InProcessDispatcher
        if handles[0].style == "inprocess":
            inner = InProcessDispatcher(
                handles, self.endpoint, self.responder, self.policy, tick=tick
            )
        else:
            workers = evaluation.workersPerReplica
            inner = HTTPDispatcher(
                handles,
                self.endpoint,
                self.responder,
                self.policy,
                concurrency=workers * len(handles) if workers else None,
                request_timeout=float(config.requestTimeoutSeconds),
                batch_size=config.requestBatchSize,
                log=log,
            )
        if config.cache:  # answers already received are not asked for again
            # per account: another tenant's answers are never served, however alike the spec
            scope = f"{evaluation.account}/{service_key(core, self.service)}/{self.endpoint}"
            return CachedDispatcher(inner, core.response_cache(), scope=scope), inner
        return inner, inner


def answer_parts(
    core: Any,
    evaluation: Evaluation,
    setup: Setup,
    dispatcher: Any,
    inner: Any,
    watch: Watch,
    todo: Iterator[tuple[Part, pyarrow.RecordBatch]],
    sizer: PartSizer,
    failures: FailureTally,
) -> dict[str, str]:
    """Send the parts of ``todo`` and write each when all its instances have an outcome;
    returns the digests of the files written (``PartWriter.digests``)."""
    # Parts in flight: over HTTP enough to keep every worker busy across part boundaries
    # (those before the newest hold twice what the workers take at once; two parts at
    # least, 64 at most); in-process parts are answered on submission, and written at
    # once while their data is fresh in the caches.
    over_http = isinstance(inner, HTTPDispatcher)
    pending: deque[tuple[Part, pyarrow.RecordBatch, Future[Answers]]] = deque()
    waiting = 0  # instances of the parts in flight
    replications = setup.replications

    def full() -> bool:
        if len(pending) < 2:
            return len(pending) == 1 and not over_http
        ahead = 2 * inner.capacity if over_http else 0
        return len(pending) >= 64 or waiting - pending[-1][1].num_rows >= ahead

    def finish_oldest() -> None:
        nonlocal waiting
        part, batch, future = pending.popleft()
        waiting -= batch.num_rows
        answers = watch.wait(future)
        _write_part(
            writer,
            evaluation,
            part,
            batch,
            replications[part.replication],
            answers,
            setup.schema,
            failures,
        )
        watch.written += batch.num_rows
        sizer.answered(batch.num_rows)

    submit = _submitter(dispatcher, setup.requester)
    with PartWriter(core.storage, evaluation.id) as writer:
        for part, batch in todo:
            watch.tick()
            pending.append((part, batch, submit(batch, part.replication)))
            waiting += batch.num_rows
            sizer.sent()
            while full():
                finish_oldest()
        dispatcher.finishing()
        while pending:
            finish_oldest()
    return writer.digests


class Aborted(Exception):
    """The evaluation stops: ``badRequestPolicy`` is ``Abort``, or the data set does not fit
    the service."""


def _submitter(
    dispatcher: Any, requester: Requester
) -> Callable[[pyarrow.RecordBatch, int], Future[Answers]]:
    """How to send a part's rows (of a replication) to ``dispatcher`` and get their answers
    column-wise.

    Rows sent as they are (no input pipeline) go to the dispatcher's ``submit_rows`` where it
    has one (their bodies made column-wise, see ``bodies.py``); otherwise, or where it
    declines the rows, each row is made a request (``_requests``). A dispatcher that keeps
    answers per replication (the response cache) gets the replication too."""
    rows = getattr(dispatcher, "submit_rows", None) if requester.passthrough else None
    if isinstance(dispatcher, CachedDispatcher):
        rows = None

        def answers(requests: list[Request], replication: int) -> Future[Answers]:
            return dispatcher.submit_part(requests, replication)

    else:
        plain = _answerer(dispatcher)

        def answers(requests: list[Request], replication: int) -> Future[Answers]:
            return plain(requests)

    def submit(batch: pyarrow.RecordBatch, replication: int) -> Future[Answers]:
        future: Future[Answers] | None = rows(batch) if rows is not None else None
        if future is not None:
            return future
        return answers(_requests(batch, requester), replication)

    return submit


def _answerer(dispatcher: Any) -> Callable[[list[Request]], Future[Answers]]:
    """``dispatcher``'s way to answer a part's requests column-wise: ``submit_answers``
    where it has one; otherwise its ``submit`` (one :class:`Outcome` per instance), which any
    dispatcher has, converted."""
    fast: Callable[[list[Request]], Future[Answers]] | None = getattr(
        dispatcher, "submit_answers", None
    )
    if fast is not None:
        return fast

    def answers(requests: list[Request]) -> Future[Answers]:
        future: Future[Answers] = Future()

        def convert(done: Future[list[Outcome]]) -> None:
            try:
                future.set_result(Answers.from_outcomes(done.result()))
            except BaseException as exc:
                future.set_exception(exc)

        dispatcher.submit(requests).add_done_callback(convert)
        return future

    return answers


def _requests(batch: pyarrow.RecordBatch, requester: Requester) -> list[Request]:
    """The request of each instance of ``batch`` (or the BadRequest that stopped it)."""
    rows: list[Any] = batch.to_pylist()
    if requester.passthrough:
        return rows
    requests: list[Request] = []
    for row in rows:
        try:
            requests.append(requester(row))
        except BadRequest as exc:
            requests.append(exc)
    return requests


def _abort_message(failures: list[tuple[int, Outcome]]) -> str:
    """Why the evaluation stopped at the first part with failed instances."""
    return (
        f"{summarize_failures(failures)} (client.badRequestPolicy is Abort; 'Skip' records "
        "such instances as errors and goes on)"
    )


def _write_part(
    writer: PartWriter,
    evaluation: Evaluation,
    part: Part,
    batch: pyarrow.RecordBatch,
    replication: str,
    answers: Answers,
    schema: pyarrow.Schema | None,
    failures: FailureTally,
) -> None:
    """Write one part (its errors first, in order: the data file is what marks the part
    done)."""
    import pyarrow as pa

    indices = batch.column("_index_")
    files: list[tuple[str, Any]] = []
    if answers.failed:
        positions = sorted(answers.failed)
        at = indices.take(pa.array(positions, pa.int64())).to_pylist()
        failed = [(index, answers.failed[p]) for index, p in zip(at, positions, strict=True)]
        if evaluation.client.badRequestPolicy == "Abort":
            raise Aborted(_abort_message(failed))
        for index, outcome in failed:
            failures.add(index, outcome)
        errors_table = pa.table(
            {
                "_index_": pa.array([i for i, _ in failed], pa.int64()),
                "_replication_": pa.array([replication] * len(failed), pa.string()),
                "kind": pa.array([o.kind for _, o in failed], pa.string()),
                "error": pa.array([o.error for _, o in failed], pa.string()),
                "attempts": pa.array([o.attempts for _, o in failed], pa.int64()),
            }
        )
        files.append((part.errors_path, errors_table))
    output = output_batch(indices, replication, answers.responses, schema, answers.all_columns())
    files.append((part.path, with_request_columns(output, answers)))
    writer.write(*files)  # in this order
