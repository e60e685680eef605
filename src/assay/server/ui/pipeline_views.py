"""What the pipeline page shows, computed from a version's definition and the records of its
inference log (pure functions over ``PipelineDefinition`` and ``pyarrow.Table``):

- :func:`splits`: each traffic split of a version (random: weight and share of each route;
  key split: the value of each route and the default), with how many of the records read
  each route answered (``metadata.answered_by``);
- :func:`shadows`: each shadow deploy (the first step of the three), its champion and each
  challenger: the records that carry the challenger's outputs (``out_<name>.*``), its errors,
  and how often each of its fields agrees with the champion's (``out.*``); and the records
  side by side (:func:`side_by_side`);
- :func:`anomalies`: records flagged by any validation (``anomaly.count > 0``), per check
  (``anomaly.<check>``), and failed inferences;
- :func:`log_table`: the records as text cells for a table.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from assay.pipelines.definition import (
    KeySplitStep,
    MultiModelStep,
    PipelineDefinition,
    RandomSplitStep,
    column_prefix,
)

__all__ = [
    "Anomalies",
    "Challenger",
    "Route",
    "Shadow",
    "Split",
    "anomalies",
    "cell",
    "log_table",
    "shadows",
    "side_by_side",
    "splits",
]

#: The longest text a cell shows (the rest is cut, with an ellipsis).
MAX_CELL = 80

NameOf = Callable[[str], str]


def cell(value: Any) -> str:
    """A value of a record as short text: times in UTC, lists and objects as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        text = value.strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    elif isinstance(value, float):
        text = f"{value:.6g}" if math.isfinite(value) else str(value)
    elif isinstance(value, str):
        text = value
    elif isinstance(value, bytes):
        text = f"<{len(value)} bytes>"
    else:
        text = json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "\u2026"


def _column(table: pa.Table, name: str) -> list[Any]:
    return table.column(name).to_pylist() if name in table.column_names else []


def of_version(table: pa.Table, version: int) -> pa.Table:
    """The records that ``version`` answered (``metadata.pipeline_version``)."""
    name = "metadata.pipeline_version"
    if name not in table.column_names:
        return table.slice(0, 0)
    return table.filter(pc.equal(table[name], version))


# -- traffic splits -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One route of a split."""

    service: str
    """The service's id."""
    name: str
    """Its name."""
    weight: float | None = None
    """Its weight (a random split)."""
    share: float | None = None
    """Its share of the traffic, weight / sum of weights (a random split)."""
    key: str | None = None
    """The input value routed to it (a key split; None for the default)."""
    observed: int = 0
    """Records read that it answered."""


@dataclass(frozen=True)
class Split:
    """One traffic split of a version."""

    step: int
    """The step's index."""
    kind: str
    """``random`` or ``key``."""
    how: str
    """How a row is routed, in words."""
    routes: list[Route]
    """The routes, in order (a key split's default last)."""
    observed: int
    """Records read that any route answered."""


def splits(definition: PipelineDefinition, name_of: NameOf, records: pa.Table) -> list[Split]:
    """Every split of ``definition``, with what ``records`` (of that version) say each route
    answered."""
    answered = Counter(str(v) for v in _column(records, "metadata.answered_by") if v)
    found = []
    for index, step in enumerate(definition.steps):
        if isinstance(step, RandomSplitStep):
            total = sum(w for w, _ in step.weighted)
            routes = [
                Route(s, name_of(s), weight=w, share=w / total, observed=answered[name_of(s)])
                for w, s in step.weighted
            ]
            if step.hash_key and step.hash_key_mode == "hash":
                how = f"random, sticky on the hash of the input field {step.hash_key!r}"
            elif step.hash_key:
                how = f"by the input field {step.hash_key!r} (a number in [0.0, 1.0])"
            else:
                how = "random, drawn for each row"
            found.append(Split(index, "random", how, routes, sum(r.observed for r in routes)))
        elif isinstance(step, KeySplitStep):
            routes = [
                Route(s, name_of(s), key=json.dumps(v, default=str), observed=answered[name_of(s)])
                for v, s in step.options
            ]
            routes.append(
                Route(step.default, name_of(step.default), observed=answered[name_of(step.default)])
            )
            how = f"by the value of the input field {step.meta_key!r}"
            distinct = {r.service: r.observed for r in routes}  # a service on several routes
            found.append(Split(index, "key", how, routes, sum(distinct.values())))
    return found


# -- shadow deploys -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Challenger:
    """A challenger of a shadow deploy and how it compares with the champion."""

    service: str
    """The service's id."""
    name: str
    """Its name."""
    prefix: str
    """The columns of its outputs: ``out_<name>``."""
    records: int = 0
    """Records read that carry its outputs or its error."""
    errors: int = 0
    """Of those, the records where it failed (``out_<name>.error``)."""
    agreement: list[tuple[str, int, int]] = field(default_factory=list)
    """For each field both it and the champion give: (field, records where they agree,
    records where both gave it)."""


@dataclass(frozen=True)
class Shadow:
    """A shadow deploy: its champion and challengers."""

    step: int
    """The index of its first step."""
    champion: str
    """The champion's id."""
    champion_name: str
    """Its name."""
    challengers: list[Challenger]
    """Each challenger, in order."""
    fields: list[str]
    """The fields shown side by side (the champion's ``out.<field>`` columns)."""


def _fields(names: Sequence[str], prefix: str) -> list[str]:
    return [n[len(prefix) + 1 :] for n in names if n.startswith(prefix + ".")]


def shadows(definition: PipelineDefinition, name_of: NameOf, records: pa.Table) -> list[Shadow]:
    """Every shadow deploy of ``definition``, compared over ``records`` (of that version)."""
    names = records.column_names
    champion_fields = [f for f in _fields(names, "out") if not f[:1].isdigit()]
    found = []
    for index, step in enumerate(definition.steps):
        if not (isinstance(step, MultiModelStep) and step.shadow and step.service_ids):
            continue
        champion, *others = step.service_ids
        challengers = []
        for service in others:
            name = name_of(service)
            prefix = column_prefix(name)
            own = _fields(names, prefix)
            columns = [f"{prefix}.{f}" for f in own]
            present = (
                [
                    any(v is not None for v in row)
                    for row in zip(*(_column(records, c) for c in columns), strict=True)
                ]
                if columns
                else []
            )
            failed = [v is not None for v in _column(records, f"{prefix}.error")]
            agreement = []
            for f in own:
                if f == "error" or f not in champion_fields:
                    continue
                mine, theirs = _column(records, f"{prefix}.{f}"), _column(records, f"out.{f}")
                both = [
                    (a, b)
                    for a, b in zip(mine, theirs, strict=True)
                    if a is not None and b is not None
                ]
                agreement.append((f, sum(a == b for a, b in both), len(both)))
            challengers.append(
                Challenger(service, name, prefix, sum(present), sum(failed), agreement)
            )
        shown = [
            f for f in champion_fields if any(f in {a[0] for a in c.agreement} for c in challengers)
        ]
        found.append(
            Shadow(index, champion, name_of(champion), challengers, shown or champion_fields[:3])
        )
    return found


def side_by_side(shadow: Shadow, records: pa.Table, most: int = 20) -> list[dict[str, Any]]:
    """The newest ``most`` records of ``records`` with the shadow's outputs: for each, its
    ``time``, its input (``in``, short), the champion's fields and each challenger's (or its
    error)."""
    rows = []
    inputs = [n for n in records.column_names if n.startswith("in.")]
    for record in records.slice(0, most).to_pylist():
        rows.append(
            {
                "time": cell(record.get("time")),
                "input": cell({n[3:]: record[n] for n in inputs if record.get(n) is not None}),
                "champion": [cell(record.get(f"out.{f}")) for f in shadow.fields],
                "challengers": [
                    {
                        "error": cell(record.get(f"{c.prefix}.error")),
                        "cells": [cell(record.get(f"{c.prefix}.{f}")) for f in shadow.fields],
                    }
                    for c in shadow.challengers
                ],
            }
        )
    return rows


# -- anomalies ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Anomalies:
    """What the validations flagged among the records read, and the failed inferences."""

    records: int
    """Records read."""
    flagged: int
    """Records with at least one anomaly (``anomaly.count > 0``)."""
    by_check: list[tuple[str, int]]
    """Records each check flagged, by check name."""
    failures: int
    """Failed inferences read from the failure log."""


def anomalies(records: pa.Table, failures: int) -> Anomalies:
    """The anomaly counts of ``records`` (and ``failures``, counted by the caller)."""
    counts = [v for v in _column(records, "anomaly.count") if v]
    by_check = [
        (name[len("anomaly.") :], sum(bool(v) for v in _column(records, name)))
        for name in records.column_names
        if name.startswith("anomaly.") and name != "anomaly.count"
    ]
    return Anomalies(records.num_rows, len(counts), by_check, failures)


def log_table(records: pa.Table) -> tuple[list[str], list[list[str]]]:
    """The records' column names and each record's cells."""
    names = records.column_names
    return names, [[cell(row.get(n)) for n in names] for row in records.to_pylist()]
