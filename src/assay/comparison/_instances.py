"""The per-instance values behind a score: what a paired comparison joins.

A SafetyCase's score summarises data; where the case reads an **instance-level Measurement**
(one row per instance and replication: ``_index_``, ``_replication_`` and the measured
columns), the instance values are one numeric column of it:

- the column named after the score, if there is one;
- otherwise the only numeric column of the case's instance-level Measurements;
- otherwise none: the case says which columns it has and how to name one after the score.

Replications are averaged per instance: an instance is the unit of a paired comparison
(replication ids are drawn per Evaluation, so the ``r``-th replications of two systems have
nothing in common beyond the instance). Rows whose value is null or NaN are left out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assay.schema.status import Status

__all__ = ["InstanceValues", "Readable", "instance_values"]

INDEX, REPLICATION = "_index_", "_replication_"


#: Whether the caller may read the data of an entity (kind, account, id).
Readable = Callable[[str, str, str], bool]


@dataclass(frozen=True)
class InstanceValues:
    """One value per instance, in increasing ``_index_`` order."""

    measurement: str
    """The Measurement the values come from."""
    column: str
    """Its column."""
    index: np.ndarray[Any, np.dtype[np.int64]]
    """The instances' ``_index_``, sorted, unique."""
    values: np.ndarray[Any, np.dtype[np.float64]]
    """The instance's value (mean over its replications)."""


def _numeric(schema: pa.Schema) -> list[str]:
    return [
        f.name
        for f in schema
        if f.name not in (INDEX, REPLICATION)
        and (
            pa.types.is_integer(f.type)
            or pa.types.is_floating(f.type)
            or pa.types.is_boolean(f.type)
        )
    ]


def _measurements(core: Any, case_id: str) -> list[Any]:
    """The instance-level, Complete Measurements the safety case ``case_id`` read."""
    case = core.safetycases.get(case_id)
    if case is None:
        return []
    found = []
    for given in case.inputs:
        measurement = core.measurements.get(given.entity)
        if (
            measurement is not None
            and str(measurement.level) == "Instance"
            and measurement.status == Status.Complete
        ):
            found.append(measurement)
    return found


def instance_values(
    core: Any, case_id: str, score: str, readable: Readable | None = None
) -> InstanceValues | str:
    """The per-instance values behind the score ``score`` of the safety case ``case_id``
    (see the module docstring), or why there are none (a sentence)."""
    measurements = _measurements(core, case_id)
    if not measurements:
        return (
            f"SafetyCase {case_id} reads no instance-level Measurement, so it has no "
            "per-instance values to pair"
        )
    candidates: list[tuple[Any, str]] = []
    for measurement in measurements:
        schema = core.measurements.open(measurement.id).schema
        if INDEX not in schema.names:
            continue
        candidates += [(measurement, column) for column in _numeric(schema)]
    named = [c for c in candidates if c[1] == score]
    chosen = named[:1] or (candidates if len(candidates) == 1 else [])
    if not chosen:
        shown = ", ".join(f"{m.id}.{c}" for m, c in candidates) or "none"
        return (
            f"SafetyCase {case_id}: no per-instance column for the score {score!r} (numeric "
            f"columns of its instance-level Measurements: {shown}); name a column {score!r} "
            "to pair this score per instance"
        )
    measurement, column = chosen[0]
    if readable is not None and not readable("Measurement", measurement.account, measurement.id):
        return (
            f"the per-instance data of SafetyCase {case_id} (Measurement {measurement.id}) is "
            "not readable with this token"
        )
    table = core.measurements.open(measurement.id).to_table(columns=[INDEX, column])
    values = pc.cast(table[column], pa.float64())
    keep = pc.and_(pc.is_valid(values), pc.invert(pc.is_nan(pc.fill_null(values, 0.0))))
    table = pa.table({INDEX: table[INDEX], "v": values}).filter(keep)
    grouped = table.group_by(INDEX).aggregate([("v", "mean")]).sort_by(INDEX)
    return InstanceValues(
        measurement=measurement.id,
        column=column,
        index=grouped[INDEX].to_numpy().astype(np.int64),
        values=grouped["v_mean"].to_numpy().astype(np.float64),
    )
