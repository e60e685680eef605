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

import hashlib
import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from assay import errors
from assay.pipelines.definition import (
    AuditStep,
    KeySplitStep,
    ModelStep,
    MultiModelStep,
    PipelineDefinition,
    RandomSplitStep,
    SelectStep,
    ShadowStep,
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

    @property
    def current(self) -> dict[str, Any]:
        """What a service step sends: the previous step's first output (the input row, for
        the first step)."""
        return self.outputs[0] if self.outputs else self.row


@dataclass
class RunResult:
    """What :meth:`Runtime.run` gives back."""

    records: pa.Table | None
    """The records of the rows that passed (None: none passed)."""
    failures: pa.Table | None
    """The failure records of the others (with ``error.*``)."""
    first: Failure | None
    """The first failure (None: every row passed)."""
    outputs: list[list[dict[str, Any]] | None]
    """Per row, the final outputs (what a service reply of the pipeline holds); None for a
    row that failed."""


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
                done = pool.map(lambda chunk: self._run_rows(chunk, deadline), chunks)
                results = [r for chunk in done for r in chunk]
        else:
            results = self._run_rows(rows, deadline)
        passed = [r.record for r in results if r.failure is None]
        failed = [r for r in results if r.failure is not None]
        table = None
        if passed:
            table = to_table(passed)
            try:
                table = self._validate(table)
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
            failures = to_table([r.record for r in failed])
        outputs = [None if r.failure is not None else r.outputs for r in results]
        return RunResult(table, failures, first, outputs)

    def _validate(self, table: pa.Table) -> pa.Table:
        if not self._checks:
            return table
        for name, values in evaluate_checks(self._checks, table, nullable=self._nullable).items():
            table = table.append_column(name, values)
        return table.select(_ordered(table.column_names))

    def _run_rows(self, rows: Sequence[dict[str, Any]], deadline: float) -> list[_Row]:
        """The rows through the steps together: each step calls each of its services once
        for all the rows that go to it (one batch where the service takes batches)."""
        started = datetime.now(UTC)
        states = [self._start(row, started) for row in rows]
        for index, step in zip(self._indices, self.steps, strict=True):
            alive = [s for s in states if s.failure is None]
            if not alive:
                break
            if time.monotonic() > deadline:
                for state in alive:
                    state.failure = Failure(
                        index, step.kind, "the inference timed out before this step"
                    )
                break
            begin = time.perf_counter()
            self._step(step, index, alive)
            took = (time.perf_counter() - begin) * 1000.0
            for state in alive:
                state.elapsed.append(took)
        for state in states:
            if state.failure is None:
                self._finish(state)
        return states

    def _start(self, row: dict[str, Any], started: datetime) -> _Row:
        state = _Row(row=row, record={"time": started}, outputs=[row], sources=[""])
        flatten("in", row, state.record)
        state.record["metadata.pipeline"] = self.pipeline
        state.record["metadata.pipeline_version"] = self.version
        if self.input_schema is not None:
            problem = input_problem(row, self.input_schema)
            if problem is not None:
                state.failure = Failure(INPUT_STEP, "input", problem)
        return state

    def _finish(self, state: _Row) -> None:
        outputs, record = state.outputs, state.record
        if outputs:
            flatten("out", outputs[0], record)
        for i, output in enumerate(outputs[1:], start=1):
            flatten(f"out.{i}", output, record)
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
                gathered: list[tuple[list[dict[str, Any]], list[str]]] = [([], []) for _ in rows]
                for service in step.service_ids:
                    for got, row, reply in zip(
                        gathered, rows, self._call_many(service, requests), strict=True
                    ):
                        if isinstance(reply, BaseException):
                            self._fail(row, index, step.kind, reply)
                        else:
                            got[0].extend(reply)
                            got[1].extend([self._names[service]] * len(reply))
                for row, (outputs, sources) in zip(rows, gathered, strict=True):
                    if row.failure is None:
                        row.outputs, row.sources = outputs, sources
            case AuditStep():
                for row in rows:
                    row.outputs = row.outputs[step.start : step.stop]
                    row.sources = row.sources[step.start : step.stop]
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
                    if step.hash_key is not None and step.hash_key in row.row:
                        point = hash_point(row.row[step.hash_key])
                    else:
                        point = random.random()
                    routes.setdefault(_route(step.weighted, point), []).append(row)
                for service, routed in routes.items():
                    self._answer(service, routed, index, step.kind)
            case ShadowStep():
                requests = [r.current for r in rows]
                for challenger in step.challengers:  # never breaks the answer
                    prefix = column_prefix(self._names[challenger])
                    for row, reply in zip(rows, self._call_many(challenger, requests), strict=True):
                        if isinstance(reply, BaseException):
                            row.shadows[f"{prefix}.error"] = f"{type(reply).__name__}: {reply}"
                            continue
                        for i, item in enumerate(reply):
                            flatten(prefix if i == 0 else f"{prefix}.{i}", item, row.shadows)
                self._answer(step.champion, rows, index, step.kind, requests)
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
                row.outputs, row.sources = reply, [name] * len(reply)

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


def _route(weighted: Sequence[tuple[float, str]], point: float) -> str:
    """The service whose share of [0, 1) holds ``point``."""
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
