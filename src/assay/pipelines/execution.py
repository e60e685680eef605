"""Running a pipeline version on input rows: routing, shadows, flattening into records,
validations.

Each input row goes through the steps in order, the rows of one call together: a step calls
each of its services once for all the rows routed to it. A step's result is a list of
*outputs* (JSON objects): a model step gives the service's reply, a multi-model step the
replies of its services in order, an audit step a slice of them, a select step one of them.
A model step reads the first output of the previous step (the input row, for the first).
The record of a row flattens the input under ``in.``, the first remaining output under
``out.``, output *i* ≥ 1 under ``out.<i>.``, a challenger's under ``out_<name>.``; nested
objects are flattened with dots, lists are kept as lists. Design notes:
``docs/design/pipelines.md``.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import queue
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from assay import errors
from assay.pipelines._records import Records
from assay.pipelines.definition import (
    AuditStep,
    KeySplitStep,
    ModelStep,
    MultiModelStep,
    PipelineDefinition,
    RandomSplitStep,
    SelectStep,
    ValidationsStep,
    column_prefix,
)
from assay.pipelines.inputs import input_problem
from assay.pipelines.validations import Check, evaluate_checks

__all__ = [
    "INPUT_STEP",
    "PipelineStepError",
    "RunResult",
    "Runtime",
    "canonical_json",
    "hash_point",
    "key_point",
]

#: The ``step`` of a failure that refused the input before any step ran.
INPUT_STEP = -1

#: A service call: request → the service's outputs.
Caller = Callable[[dict[str, Any]], list[dict[str, Any]]]
#: Several calls at once: requests → each one's outputs (one batch where the service can).
BatchCaller = Callable[[list[dict[str, Any]]], list[list[dict[str, Any]]]]
#: What one call gave: the outputs, or what it raised.
_Reply = list[dict[str, Any]] | BaseException
_GROUPS = ("time", "in.", "out.", "out_", "anomaly.", "metadata.", "error.")


class PipelineStepError(errors.AssayError):
    """A step of a pipeline failed; ``step`` is its index and ``failures`` the failure
    records (also sent to the pipeline's ``on_failure`` hook)."""

    def __init__(self, message: str, *, step: int, failures: pa.Table | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.failures = failures


def canonical_json(value: Any) -> str:
    """``value`` as canonical JSON (sorted keys, no spaces): equal values, equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def hash_point(value: Any) -> float:
    """A stable point in [0, 1) for any JSON value: BLAKE2b of its canonical JSON."""
    digest = hashlib.blake2b(canonical_json(value).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def key_point(hash_key: str, value: Any) -> float:
    """The draw a random split's ``hash_key`` field gives (``hash_key_mode="value"``):
    ``value`` itself, a number in [0.0, 1.0]; ValidationError naming the field, the value and
    the range otherwise."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not 0.0 <= value <= 1.0:  # NaN is not either
        what = "a number" if number else f"a {type(value).__name__}"
        raise errors.ValidationError(
            f"random split: hash_key {hash_key!r} is {value!r} ({what}), not a number in "
            "[0.0, 1.0]; give a number from 0.0 to 1.0, leave the field out (or null) for a "
            "random draw, or route on the hash of any value with hash_key_mode='hash'",
            field=hash_key,
            value=value,
        )
    return float(value)


@dataclass
class Failure:
    """Why a row failed: the step (``INPUT_STEP`` when the input was refused), its kind and
    the message."""

    step: int
    kind: str
    message: str
    row: int = 0
    """The index of the row in the call."""
    exc: BaseException | None = None
    """The exception the step raised (None: refused input, or a timeout)."""


@dataclass
class _Row:
    """One row's trip through the steps."""

    row: dict[str, Any]
    record: dict[str, Any] = field(default_factory=dict)
    failure: Failure | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    elapsed: list[float] = field(default_factory=list)
    shadows: dict[str, Any] = field(default_factory=dict)
    groups: list[tuple[str, int, int]] | None = None
    """Per service of the last multi-model step, its name and the range of its outputs
    (None: runs of the same source in :attr:`sources`)."""

    @property
    def current(self) -> dict[str, Any]:
        """What a service step sends: the previous step's first output (the input row, for
        the first step)."""
        return self.outputs[0] if self.outputs else self.row


@dataclass
class RunResult:
    """What :meth:`Runtime.run` gives back."""

    passed: Records | None
    """The records of the rows that passed (None: none passed), column by column."""
    failed: Records | None
    """The failure records of the others (with ``error.*``)."""
    first: Failure | None
    """The first failure (None: every row passed)."""
    outputs: list[list[dict[str, Any]] | None]
    """Per row, the final outputs (what a service reply of the pipeline holds); None for a
    row that failed."""

    @property
    def records(self) -> pa.Table | None:
        """The records of the rows that passed, as one table (built when first asked)."""
        return None if self.passed is None else self.passed.table()

    @property
    def failures(self) -> pa.Table | None:
        """The failure records, as one table (built when first asked)."""
        return None if self.failed is None else self.failed.table()


class _Task:
    """Work handed to a step thread, run in the context of the caller that handed it over."""

    def __init__(self, work: Callable[[], None]) -> None:
        self._context = contextvars.copy_context()
        self._work = work
        self._finished = threading.Event()
        self._raised: BaseException | None = None

    def __call__(self) -> None:
        try:
            self._context.run(self._work)
        except BaseException as exc:  # given to the caller, if it still waits
            self._raised = exc
        finally:
            self._finished.set()

    def wait(self, timeout: float | None = None) -> bool:
        """True once the work is done (re-raising what it raised); False when ``timeout``
        seconds pass first."""
        if not self._finished.wait(timeout):
            return False
        if self._raised is not None:
            raise self._raised
        return True


class _StepThreads:
    """Daemon threads that run the steps of pipeline calls, so that a caller can stop
    waiting at its deadline. Work that outlives its caller's deadline keeps its thread until
    it returns (a Python thread cannot be interrupted); idle threads are reused, and more
    start as needed. Daemon threads, so that a step that never returns does not hold up the
    interpreter's exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tasks: queue.SimpleQueue[_Task] = queue.SimpleQueue()
        self._idle = 0

    def start(self, work: Callable[[], None]) -> _Task:
        """Run ``work`` in a step thread; wait for it with the task's ``wait``."""
        task = _Task(work)
        with self._lock:
            if self._idle:
                self._idle -= 1
            else:
                threading.Thread(target=self._work, name="assay-pipeline-step", daemon=True).start()
        self._tasks.put(task)
        return task

    def _work(self) -> None:
        while True:
            self._tasks.get()()
            with self._lock:
                self._idle += 1


_STEP_THREADS = _StepThreads()


@dataclass
class _Progress:
    """How far a step thread has got with the rows of a call, for the caller to read at its
    deadline (under ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    position: int = 0
    """The position (in ``Runtime.steps``) of the step running or next; all of them once
    every step has answered."""
    started: bool = False
    """Whether that step has begun."""
    failed: dict[int, Failure] = field(default_factory=dict)
    """The rows (by index) that the steps done failed, and why."""
    cancelled: bool = False
    """The caller stopped waiting: no further step runs."""


class Runtime:
    """One deployed version: its steps, the callers of its services and its checks."""

    def __init__(
        self,
        *,
        pipeline: str,
        version: int,
        definition: PipelineDefinition,
        callers: Mapping[str, Caller],
        names: Mapping[str, str],
        checks: Sequence[Check],
        nullable: frozenset[str] = frozenset(),
        input_schema: pa.Schema | None = None,
        batch_callers: Mapping[str, BatchCaller] | None = None,
        nonblocking: frozenset[str] = frozenset(),
    ) -> None:
        self.pipeline = pipeline
        self.version = version
        self.definition = definition
        self.steps = [s for s in definition.steps if not isinstance(s, ValidationsStep)]
        self._indices = [
            i for i, s in enumerate(definition.steps) if not isinstance(s, ValidationsStep)
        ]
        self._callers = callers
        self._batch_callers = dict(batch_callers or {})
        self._names = names
        self._checks = checks
        self._nullable = nullable
        self.input_schema = input_schema
        # every service answers at once (in-process, never waiting): the steps run on the
        # caller's thread, as no call can outlive the timeout
        self._inline = set(definition.services()) <= nonblocking

    def run(
        self, rows: Sequence[dict[str, Any]], *, timeout: float, concurrency: int = 1
    ) -> RunResult:
        """Every row through the steps: the records of those that passed, the failure
        records of the others, the first failure and each row's final outputs."""
        deadline = time.monotonic() + timeout
        if concurrency > 1 and len(rows) > 1:
            size = -(-len(rows) // concurrency)
            chunks = [rows[i : i + size] for i in range(0, len(rows), size)]
            with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
                done = pool.map(lambda chunk: self._run_rows(chunk, deadline, timeout), chunks)
                results = [r for chunk in done for r in chunk]
        else:
            results = self._run_rows(rows, deadline, timeout)
        passed = [r for r in results if r.failure is None]
        failed = [r for r in results if r.failure is not None]
        finished = {id(r) for r in passed}  # their outputs are recorded (out.*)
        table = None
        if passed:
            # column by column; Arrow only for checks (else when someone asks, or the log's
            # writer thread, for many calls at once)
            table = Records.from_parts(
                [r.row for r in passed], [r.outputs for r in passed], [r.record for r in passed]
            )
            try:
                if self._checks:
                    table = Records.from_table(self._validate(table.table()))
            except errors.ValidationError as exc:  # a check that cannot run on these rows
                step = next(
                    i for i, s in enumerate(self.definition.steps) if isinstance(s, ValidationsStep)
                )
                for r in results:
                    if r.failure is None:
                        r.failure = Failure(step, "validations", str(exc), exc=exc)
                failed = list(results)
                table = None
        failures = None
        first = None
        for i, r in enumerate(results):
            if r.failure is None:
                continue
            r.failure.row = i
            first = first or r.failure
            r.record.update(
                {
                    "error.message": r.failure.message,
                    "error.step": None if r.failure.step == INPUT_STEP else r.failure.step,
                    "error.step_kind": r.failure.kind,
                }
            )
        if failed:
            failures = Records.from_parts(
                [r.row for r in failed],
                [r.outputs if id(r) in finished else None for r in failed],
                [r.record for r in failed],
            )
        outputs = [None if r.failure is not None else r.outputs for r in results]
        return RunResult(table, failures, first, outputs)

    def _validate(self, table: pa.Table) -> pa.Table:
        if not self._checks:
            return table
        for name, values in evaluate_checks(self._checks, table, nullable=self._nullable).items():
            table = table.append_column(name, values)
        return table.select(_ordered(table.column_names))

    def _run_rows(
        self, rows: Sequence[dict[str, Any]], deadline: float, timeout: float
    ) -> list[_Row]:
        """The rows through the steps together: each step calls each of its services once
        for all the rows that go to it (one batch where the service takes batches).

        The steps run in a step thread, on copies of the rows, and the caller stops waiting
        at ``deadline``: the rows still on their way then fail with a message naming the step
        and the timeout, no further step runs, and the late answer (on the copies) is
        discarded."""
        started = datetime.now(UTC)
        states = [self._start(row, started) for row in rows]
        if self._inline:
            self._run_steps(states, _Progress())
            return states
        copies = [
            replace(s, record=dict(s.record), shadows=dict(s.shadows), elapsed=[]) for s in states
        ]
        progress = _Progress()
        task = _STEP_THREADS.start(lambda: self._run_steps(copies, progress))
        if task.wait(deadline - time.monotonic()):
            return copies
        with progress.lock:
            progress.cancelled = True
            position, began, failed = progress.position, progress.started, dict(progress.failed)
        if position >= len(self.steps):  # every step answered: only the records are left
            task.wait()
            return copies
        index, step = self._indices[position], self.steps[position]
        names = ", ".join(self._names[s] for s in step.services())
        what = f"step {index} ({step.kind}{' ' + names if names else ''})"
        message = (
            f"{what} timed out: no answer within the inference's timeout of {timeout:g} s "
            "(a late answer is discarded)"
            if began
            else f"{what} not run: the inference's timeout of {timeout:g} s ran out before it"
        )
        for i, state in enumerate(states):
            if state.failure is None:
                state.failure = failed.get(i) or Failure(index, step.kind, message)
        return states

    def _run_steps(self, rows: list[_Row], progress: _Progress) -> None:
        """The steps for ``rows`` (in a step thread), then their records; ``progress`` says
        how far they got, and no step starts once the caller has stopped waiting."""
        for position, (index, step) in enumerate(zip(self._indices, self.steps, strict=True)):
            alive = [(i, s) for i, s in enumerate(rows) if s.failure is None]
            with progress.lock:
                if progress.cancelled:
                    return
                progress.position = position if alive else len(self.steps)
                progress.started = bool(alive)
            if not alive:
                break
            begin = time.perf_counter()
            self._step(step, index, [s for _, s in alive])
            took = (time.perf_counter() - begin) * 1000.0
            with progress.lock:
                for i, state in alive:
                    state.elapsed.append(took)
                    if state.failure is not None:
                        progress.failed[i] = state.failure
                progress.position, progress.started = position + 1, False
        for state in rows:
            if state.failure is None:
                self._finish(state)

    def _start(self, row: dict[str, Any], started: datetime) -> _Row:
        # in.* and out.* are flattened later, column by column (Records.from_parts)
        state = _Row(row=row, record={"time": started}, outputs=[row], sources=[""])
        state.record["metadata.pipeline"] = self.pipeline
        state.record["metadata.pipeline_version"] = self.version
        if self.input_schema is not None:
            problem = input_problem(row, self.input_schema)
            if problem is not None:
                state.failure = Failure(INPUT_STEP, "input", problem)
        return state

    def _finish(self, state: _Row) -> None:
        record = state.record
        record.update(state.shadows)
        answered = [s for s in state.sources if s]
        record["metadata.answered_by"] = ",".join(dict.fromkeys(answered)) or None
        record["metadata.step_elapsed_ms"] = state.elapsed
        record["metadata.elapsed_ms"] = sum(state.elapsed)

    def _step(self, step: Any, index: int, rows: list[_Row]) -> None:
        """Step ``index`` for ``rows``: their new outputs, or their failures."""
        match step:
            case ModelStep():
                self._answer(step.service, rows, index, step.kind)
            case MultiModelStep():
                requests = [r.current for r in rows]
                gathered: list[tuple[list[dict[str, Any]], list[str], list[tuple[str, int, int]]]]
                gathered = [([], [], []) for _ in rows]
                for position, service in enumerate(step.service_ids):
                    name = self._names[service]
                    for (outputs, sources, groups), row, reply in zip(
                        gathered, rows, self._call_many(service, requests), strict=True
                    ):
                        if isinstance(reply, BaseException):
                            if not (step.shadow and position > 0):
                                self._fail(row, index, step.kind, reply)
                                continue
                            # a challenger never breaks the answer: its error is its output
                            reply = [{"error": f"{type(reply).__name__}: {reply}"}]
                        groups.append((name, len(outputs), len(outputs) + len(reply)))
                        outputs.extend(reply)
                        sources.extend([name] * len(reply))
                for row, (outputs, sources, groups) in zip(rows, gathered, strict=True):
                    if row.failure is None:
                        row.outputs, row.sources, row.groups = outputs, sources, groups
            case AuditStep(unit="service"):
                for row in rows:  # every output stays; the slice's are recorded
                    for name, start, stop in _groups(row)[step.start : step.stop]:
                        if not name:  # the input row, before any service step
                            continue
                        prefix = column_prefix(name)
                        for i, item in enumerate(row.outputs[start:stop]):
                            flatten(prefix if i == 0 else f"{prefix}.{i}", item, row.shadows)
            case AuditStep():
                for row in rows:
                    row.outputs = row.outputs[step.start : step.stop]
                    row.sources = row.sources[step.start : step.stop]
                    row.groups = None
            case SelectStep(unit="service"):
                for row in rows:
                    groups = _groups(row)
                    if not -len(groups) <= step.index < len(groups):
                        error = IndexError(
                            f"select service {step.index}: the previous step's outputs come "
                            f"from {len(groups)} service(s)"
                        )
                        self._fail(row, index, step.kind, error)
                        continue
                    name, start, stop = groups[step.index]
                    row.outputs = row.outputs[start:stop]
                    row.sources = row.sources[start:stop]
                    row.groups = [(name, 0, stop - start)]
            case SelectStep():
                for row in rows:
                    if not -len(row.outputs) <= step.index < len(row.outputs):
                        error = IndexError(
                            f"select {step.index}: the previous step gave {len(row.outputs)} "
                            "output(s)"
                        )
                        self._fail(row, index, step.kind, error)
                        continue
                    row.outputs = [row.outputs[step.index]]
                    row.sources = [row.sources[step.index]]
                    row.groups = None
            case KeySplitStep():
                routes: dict[str, list[_Row]] = {}
                for row in rows:
                    value = canonical_json(row.row.get(step.meta_key))
                    chosen = next(
                        (s for v, s in step.options if canonical_json(v) == value), step.default
                    )
                    routes.setdefault(chosen, []).append(row)
                for service, routed in routes.items():
                    self._answer(service, routed, index, step.kind)
            case RandomSplitStep():
                routes = {}
                for row in rows:
                    key = step.hash_key
                    drawn = row.row.get(key) if key is not None else None
                    if key is None or key not in row.row:
                        point = random.random()
                    elif step.hash_key_mode == "hash":
                        point = hash_point(drawn)
                    elif drawn is None:  # null, as a table holds a missing field
                        point = random.random()
                    else:
                        try:
                            point = key_point(key, drawn)
                        except errors.ValidationError as exc:
                            self._fail(row, index, step.kind, exc)
                            continue
                    routes.setdefault(_route(step.weighted, point), []).append(row)
                for service, routed in routes.items():
                    self._answer(service, routed, index, step.kind)
            case _:  # pragma: no cover - the union is closed
                raise AssertionError(f"unknown step {step!r}")

    def _answer(
        self,
        service: str,
        rows: list[_Row],
        index: int,
        kind: str,
        requests: list[dict[str, Any]] | None = None,
    ) -> None:
        """``service``'s replies become the rows' outputs."""
        if requests is None:
            requests = [r.current for r in rows]
        name = self._names[service]
        for row, reply in zip(rows, self._call_many(service, requests), strict=True):
            if isinstance(reply, BaseException):
                self._fail(row, index, kind, reply)
            else:
                row.outputs, row.sources, row.groups = reply, [name] * len(reply), None

    def _call_many(self, service: str, requests: list[dict[str, Any]]) -> list[_Reply]:
        """Each request's replies (or what its call raised): one batch call where the
        service has one; if the batch fails, one call per request, to tell which failed."""
        batch = self._batch_callers.get(service)
        if batch is not None and len(requests) > 1:
            try:
                replies = batch(requests)
            except Exception:  # find out which request the service cannot answer
                pass
            else:
                if len(replies) == len(requests):
                    return list(replies)
        call = self._callers[service]
        results: list[_Reply] = []
        for request in requests:
            try:
                results.append(call(request))
            except Exception as exc:  # recorded as the row's failure by the caller
                results.append(exc)
        return results

    @staticmethod
    def _fail(row: _Row, index: int, kind: str, exc: BaseException) -> None:
        if row.failure is None:
            row.failure = Failure(index, kind, f"{type(exc).__name__}: {exc}", exc=exc)


def _groups(row: _Row) -> list[tuple[str, int, int]]:
    """The services of ``row``'s outputs, each with the range of its outputs: those of the
    last multi-model step, else runs of the same source."""
    if row.groups is not None:
        return row.groups
    groups: list[tuple[str, int, int]] = []
    for i, source in enumerate(row.sources):
        if groups and groups[-1][0] == source:
            groups[-1] = (source, groups[-1][1], i + 1)
        else:
            groups.append((source, i, i + 1))
    return groups


def _route(weighted: Sequence[tuple[float, str]], point: float) -> str:
    """The service whose share holds ``point``: the weights share [0.0, 1.0] in order, each
    share ``[start, end)`` (so with two equal weights 0.4 takes the first, 0.5 and 0.6 the
    second), the last one closed (1.0 takes the last service)."""
    total = sum(w for w, _ in weighted)
    edge = 0.0
    for weight, service in weighted:
        edge += weight / total
        if point < edge:
            return service
    return weighted[-1][1]


def flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    """``value``'s fields into ``out`` under ``prefix.``: nested objects with dots; anything
    else (lists included) as it is."""
    if not isinstance(value, dict):
        out[prefix] = value
        return
    for key, item in value.items():
        name = f"{prefix}.{key}"
        if isinstance(item, dict) and item:
            flatten(name, item, out)
        else:
            out[name] = item


def _ordered(names: Sequence[str]) -> list[str]:
    def rank(name: str) -> int:
        return next((i for i, g in enumerate(_GROUPS) if name.startswith(g)), len(_GROUPS))

    return sorted(names, key=rank)  # stable: order of appearance within a group


def to_table(records: Sequence[dict[str, Any]]) -> pa.Table:
    """Records (flat dicts, maybe with different keys) as a table with every column; a column
    whose values have no common Arrow type holds their JSON text instead."""
    names = _ordered(list(dict.fromkeys(k for r in records for k in r)))
    arrays: dict[str, pa.Array] = {}
    for name in names:
        values = [r.get(name) for r in records]
        if name == "time":
            arrays[name] = pa.array(values, pa.timestamp("us", tz="UTC"))
            continue
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            arrays[name] = pa.array(
                [None if v is None else canonical_json(v) for v in values], pa.string()
            )
    return pa.table(arrays)
