"""Running a pipeline version on input rows: routing, shadows, flattening into records,
validations.

Each input row goes through the steps one after another. A step's result is a list of
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

    record: dict[str, Any] = field(default_factory=dict)
    failure: Failure | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)


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
    ) -> None:
        self.pipeline = pipeline
        self.version = version
        self.definition = definition
        self.steps = [s for s in definition.steps if not isinstance(s, ValidationsStep)]
        self._indices = [
            i for i, s in enumerate(definition.steps) if not isinstance(s, ValidationsStep)
        ]
        self._callers = callers
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
            with ThreadPoolExecutor(max_workers=min(concurrency, len(rows))) as pool:
                results = list(pool.map(lambda row: self._run_row(row, deadline), rows))
        else:
            results = [self._run_row(row, deadline) for row in rows]
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

    def _run_row(self, row: dict[str, Any], deadline: float) -> _Row:
        started = datetime.now(UTC)
        result = _Row(record={"time": started})
        flatten("in", row, result.record)
        result.record["metadata.pipeline"] = self.pipeline
        result.record["metadata.pipeline_version"] = self.version
        if self.input_schema is not None:
            problem = input_problem(row, self.input_schema)
            if problem is not None:
                result.failure = Failure(INPUT_STEP, "input", problem)
                return result
        outputs: list[dict[str, Any]] = [row]
        sources: list[str] = [""]
        elapsed: list[float] = []
        shadows: dict[str, Any] = {}
        for index, step in zip(self._indices, self.steps, strict=True):
            if time.monotonic() > deadline:
                result.failure = Failure(
                    index, step.kind, "the inference timed out before this step"
                )
                return result
            begin = time.perf_counter()
            try:
                outputs, sources = self._step(step, row, outputs, sources, shadows)
            except Exception as exc:  # any failure of a step is recorded, then reported
                result.failure = Failure(index, step.kind, f"{type(exc).__name__}: {exc}", exc=exc)
                return result
            elapsed.append((time.perf_counter() - begin) * 1000.0)
        result.outputs = outputs
        if outputs:
            flatten("out", outputs[0], result.record)
        for i, output in enumerate(outputs[1:], start=1):
            flatten(f"out.{i}", output, result.record)
        result.record.update(shadows)
        answered = [s for s in sources if s]
        result.record["metadata.answered_by"] = ",".join(dict.fromkeys(answered)) or None
        result.record["metadata.step_elapsed_ms"] = elapsed
        result.record["metadata.elapsed_ms"] = sum(elapsed)
        return result

    def _call(self, service: str, request: dict[str, Any]) -> list[dict[str, Any]]:
        return self._callers[service](request)

    def _step(
        self,
        step: Any,
        row: dict[str, Any],
        outputs: list[dict[str, Any]],
        sources: list[str],
        shadows: dict[str, Any],
    ) -> tuple[list[dict[str, Any]], list[str]]:
        current = outputs[0] if outputs else row
        match step:
            case ModelStep():
                return self._answer(step.service, current)
            case MultiModelStep():
                result: list[dict[str, Any]] = []
                names: list[str] = []
                for service in step.service_ids:
                    replies, who = self._answer(service, current)
                    result += replies
                    names += who
                return result, names
            case AuditStep():
                return outputs[step.start : step.stop], sources[step.start : step.stop]
            case SelectStep():
                if not -len(outputs) <= step.index < len(outputs):
                    raise IndexError(
                        f"select {step.index}: the previous step gave {len(outputs)} output(s)"
                    )
                return [outputs[step.index]], [sources[step.index]]
            case KeySplitStep():
                value = canonical_json(row.get(step.meta_key))
                chosen = next(
                    (s for v, s in step.options if canonical_json(v) == value), step.default
                )
                return self._answer(chosen, current)
            case RandomSplitStep():
                if step.hash_key is not None and step.hash_key in row:
                    point = hash_point(row[step.hash_key])
                else:
                    point = random.random()
                return self._answer(_route(step.weighted, point), current)
            case ShadowStep():
                answer = self._answer(step.champion, current)
                for challenger in step.challengers:
                    prefix = column_prefix(self._names[challenger])
                    try:
                        replies = self._call(challenger, current)
                    except Exception as exc:  # a challenger never breaks the answer
                        shadows[f"{prefix}.error"] = f"{type(exc).__name__}: {exc}"
                        continue
                    for i, reply in enumerate(replies):
                        flatten(prefix if i == 0 else f"{prefix}.{i}", reply, shadows)
                return answer
        raise AssertionError(f"unknown step {step!r}")  # pragma: no cover - the union is closed

    def _answer(
        self, service: str, request: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], list[str]]:
        replies = self._call(service, request)
        return replies, [self._names[service]] * len(replies)


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
