"""What every built-in method reads: its arguments, and the data of its inputs.

A built-in is called as ``method(args, **inputs)``: ``args`` maps parameter keywords to string
values, each input is a ``pyarrow.dataset.Dataset`` (a ``pyarrow.Table`` is accepted too, for
notebooks). The helpers here parse and check both, and raise :class:`assay.errors.ValidationError`
with the method's name, the argument or column, what was expected and what was found.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from assay import errors
from assay.analysis import stats

__all__ = [
    "BOOTSTRAP_PARAMETERS",
    "Arguments",
    "Evaluation",
    "Resampling",
    "align",
    "check_inputs",
    "read_columns",
    "read_evaluation",
]

Ints = NDArray[np.int64]

#: The parameters of every dataset-level built-in.
BOOTSTRAP_PARAMETERS = {
    "resamples": f"Bootstrap resamples behind each interval (default {stats.DEFAULT_RESAMPLES}).",
    "seed": "Seed of the bootstrap's random numbers (default 0): the same seed on the same data "
    "gives the same intervals.",
    "confidence": "Confidence level of the intervals, between 0 and 1 (default "
    f"{stats.DEFAULT_CONFIDENCE}).",
}

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


class Arguments:
    """The string arguments of one call of a built-in method, parsed on demand."""

    def __init__(self, method: str, args: Mapping[str, str], parameters: Iterable[str]) -> None:
        self.method = method
        self._args = dict(args)
        known = set(parameters)
        unknown = sorted(set(self._args) - known)
        if unknown:
            raise errors.ValidationError(
                f"{method}: unknown argument {unknown[0]!r}; its parameters are "
                f"{', '.join(sorted(known))}",
                field=unknown[0],
            )
        for keyword, value in self._args.items():
            if not isinstance(value, str):
                raise errors.ValidationError(
                    f"{method}: the argument {keyword} must be a string, got "
                    f"{type(value).__name__} {value!r}",
                    field=keyword,
                )

    def given(self, keyword: str) -> bool:
        """Whether the user gave ``keyword``."""
        return keyword in self._args

    def text(self, keyword: str, default: str) -> str:
        """The argument as given, or ``default``."""
        return self._args.get(keyword, default)

    def optional(self, keyword: str) -> str | None:
        """The argument as given, or None."""
        return self._args.get(keyword)

    def required(self, keyword: str, what: str) -> str:
        """The argument; an error saying it is ``what`` if it is missing."""
        if keyword not in self._args:
            raise self.error(keyword, f"the argument {keyword} is required: {what}")
        return self._args[keyword]

    def integer(self, keyword: str, default: int, *, minimum: int) -> int:
        """The argument as an integer of at least ``minimum``."""
        raw = self._args.get(keyword)
        if raw is None:
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise self.error(
                keyword, f"the argument {keyword} must be an integer of at least {minimum}", raw
            )
        return value

    def number(self, keyword: str, default: float, *, low: float, high: float) -> float:
        """The argument as a number strictly between ``low`` and ``high``."""
        raw = self._args.get(keyword)
        if raw is None:
            return default
        try:
            value = float(raw.strip())
        except ValueError:
            value = math.nan
        if not low < value < high:
            raise self.error(
                keyword, f"the argument {keyword} must be a number between {low} and {high}", raw
            )
        return value

    def flag(self, keyword: str, default: bool) -> bool:
        """The argument as a boolean (true/false, yes/no, 1/0, on/off)."""
        raw = self._args.get(keyword)
        if raw is None:
            return default
        word = raw.strip().lower()
        if word not in _TRUE | _FALSE:
            raise self.error(keyword, f"the argument {keyword} must be true or false", raw)
        return word in _TRUE

    def choice(self, keyword: str, default: str, choices: Sequence[str]) -> str:
        """The argument, one of ``choices``."""
        value = self._args.get(keyword, default)
        if value not in choices:
            raise self.error(
                keyword, f"the argument {keyword} must be one of {', '.join(choices)}", value
            )
        return value

    def strings(self, keyword: str) -> list[str] | None:
        """The argument as a list of strings: a JSON array of strings, or one string; None if
        it was not given."""
        raw = self._args.get(keyword)
        if raw is None:
            return None
        if not raw.lstrip().startswith("["):
            items: Any = [raw]
        else:
            try:
                items = json.loads(raw)
            except json.JSONDecodeError:
                items = None
        if not isinstance(items, list) or not all(isinstance(x, str) and x for x in items):
            raise self.error(
                keyword,
                f"the argument {keyword} must be a non-empty string or a JSON array of "
                'non-empty strings, e.g. ["yes", "sure"]',
                raw,
            )
        if not items:
            raise self.error(keyword, f"the argument {keyword} must not be an empty list", raw)
        return items

    def names(self, keyword: str, default: str, choices: Sequence[str]) -> list[str]:
        """The argument as a comma-separated list of names among ``choices``."""
        raw = self._args.get(keyword, default)
        names = [x.strip() for x in raw.split(",") if x.strip()]
        bad = [x for x in names if x not in choices]
        if not names or bad:
            raise self.error(
                keyword,
                f"the argument {keyword} must be a comma-separated list of names among "
                f"{', '.join(choices)}",
                bad[0] if bad else raw,
            )
        return list(dict.fromkeys(names))

    def error(self, keyword: str, message: str, value: str | None = None) -> errors.ValidationError:
        """A ValidationError about the argument ``keyword``."""
        found = "" if value is None else f", got {value!r}"
        return errors.ValidationError(
            f"{self.method}: {message}{found}", field=keyword, value=value
        )


@dataclass(frozen=True)
class Resampling:
    """How a dataset-level built-in bootstraps its intervals."""

    resamples: int = stats.DEFAULT_RESAMPLES
    """Number of resamples."""
    confidence: float = stats.DEFAULT_CONFIDENCE
    """Confidence level of the intervals."""
    seed: int = 0
    """Seed of the random numbers."""

    @staticmethod
    def from_arguments(arguments: Arguments) -> Resampling:
        """The ``resamples``, ``confidence`` and ``seed`` arguments."""
        return Resampling(
            resamples=arguments.integer("resamples", stats.DEFAULT_RESAMPLES, minimum=1),
            confidence=arguments.number("confidence", stats.DEFAULT_CONFIDENCE, low=0.0, high=1.0),
            seed=arguments.integer("seed", 0, minimum=0),
        )

    def bootstrap(
        self, statistic: stats.Statistic, *samples: stats.Sample, stream: int | None = None
    ) -> list[stats.Estimate]:
        """:func:`assay.analysis.stats.bootstrap` with these settings; ``stream`` picks one of
        several independent streams of random numbers from the one seed."""
        seed: int | np.random.SeedSequence = self.seed
        if stream is not None:
            seed = np.random.SeedSequence(self.seed, spawn_key=(stream,))
        return stats.bootstrap(
            statistic,
            *samples,
            resamples=self.resamples,
            confidence=self.confidence,
            seed=seed,
        )


def check_inputs(method: str, inputs: Mapping[str, Any], expected: Sequence[str]) -> None:
    """Refuse inputs that are missing, or not among ``expected``."""
    for keyword in expected:
        if inputs.get(keyword) is None:
            raise errors.ValidationError(
                f"{method}: the input {keyword!r} is missing; its inputs are {', '.join(expected)}",
                field=keyword,
            )
    for keyword in inputs:
        if keyword not in expected:
            raise errors.ValidationError(
                f"{method}: unknown input {keyword!r}; its inputs are {', '.join(expected)}",
                field=keyword,
            )


def read_columns(
    method: str, keyword: str, data: Any, columns: Sequence[str], *, kind: str, hint: str
) -> pa.Table:
    """Columns of an input (a ``pyarrow.dataset.Dataset`` or ``pyarrow.Table``), checked to
    exist; ``hint`` says how to fix a missing one."""
    schema = data.schema
    for column in columns:
        if schema.get_field_index(column) < 0:
            raise errors.ValidationError(
                f"{method}: the {kind} bound to {keyword!r} has no column {column!r} (its "
                f"columns: {', '.join(schema.names)}); {hint}",
                field=column,
            )
    if isinstance(data, pa.Table):
        return data.select(list(columns))
    return data.to_table(columns=list(columns))


@dataclass(frozen=True)
class Evaluation:
    """An evaluation's output, read: its keys and its responses."""

    method: str
    """The method reading it (for error messages)."""
    keyword: str
    """The input it is bound to."""
    table: pa.Table
    """``_index_``, ``_replication_`` and ``responses``, as read (any number of chunks)."""
    index: Ints
    """``_index_`` of each row."""

    @property
    def replication(self) -> pa.ChunkedArray:
        """``_replication_`` of each row (null where the output has none)."""
        return self.table.column("_replication_")

    def response_fields(self) -> dict[str, pa.DataType]:
        """The fields of a response, by name."""
        item = self.table.schema.field("responses").type.value_type
        return {item.field(i).name: item.field(i).type for i in range(item.num_fields)}

    def require_field(self, name: str, argument: str, what: str) -> pa.DataType:
        """The type of the response field ``name``; an error naming ``argument`` if absent."""
        fields = self.response_fields()
        if name not in fields:
            raise errors.ValidationError(
                f"{self.method}: the responses of {self.keyword!r} have no field {name!r} "
                f"(their fields: {', '.join(fields)}); set the argument {argument} to the "
                f"field that holds {what}",
                field=argument,
                value=name,
            )
        return fields[name]

    def batches(self) -> Iterable[tuple[int, pa.ListArray]]:
        """``(first row, responses)`` of each chunk, in row order."""
        start = 0
        for chunk in self.table.column("responses").chunks:
            yield start, chunk
            start += len(chunk)


def read_evaluation(method: str, keyword: str, data: Any) -> Evaluation:
    """An Evaluation's output bound to ``keyword``; ``_replication_`` is null if absent."""
    schema = data.schema
    columns = ["_index_", "responses"]
    hint = f"bind the output of an Evaluation to {keyword!r}"
    if schema.get_field_index("_replication_") >= 0:
        columns.append("_replication_")
    table = read_columns(method, keyword, data, columns, kind="data", hint=hint)
    responses = table.schema.field("responses").type
    if not pa.types.is_list(responses) and not pa.types.is_large_list(responses):
        raise errors.ValidationError(
            f"{method}: the column 'responses' of {keyword!r} must be a list of structs (an "
            f"Evaluation's output), got {responses}; {hint}",
            field="responses",
        )
    if not pa.types.is_struct(responses.value_type):
        raise errors.ValidationError(
            f"{method}: the column 'responses' of {keyword!r} must be a list of structs, got "
            f"{responses}; {hint}",
            field="responses",
        )
    if "_replication_" not in columns:
        table = table.append_column("_replication_", pa.nulls(table.num_rows, pa.string()))
    elif table.schema.field("_replication_").type != pa.string():
        table = table.set_column(
            table.schema.get_field_index("_replication_"),
            "_replication_",
            table.column("_replication_").cast(pa.string()),
        )
    index = _index_column(method, keyword, table)
    return Evaluation(
        method, keyword, table.select(["_index_", "_replication_", "responses"]), index
    )


def _index_column(method: str, keyword: str, table: pa.Table) -> Ints:
    column = table.column("_index_")
    if not pa.types.is_integer(column.type):
        raise errors.ValidationError(
            f"{method}: the column '_index_' of {keyword!r} must hold integers, got {column.type}",
            field="_index_",
        )
    if column.null_count:
        raise errors.ValidationError(
            f"{method}: the column '_index_' of {keyword!r} has {column.null_count} null "
            "values; every row needs an _index_",
            field="_index_",
        )
    return np.asarray(column.to_numpy(), dtype=np.int64)


@dataclass(frozen=True)
class Aligned:
    """Dataset columns aligned to an evaluation's rows."""

    columns: dict[str, pa.Array]
    """Each requested Dataset column, one value per evaluation row."""
    positions: Ints
    """Row of the Dataset that each evaluation row answers."""
    replicated: bool
    """Whether some Dataset row is answered by more than one evaluation row (replications)."""


def align(
    method: str,
    keyword: str,
    data: Any,
    index: Ints,
    fields: Mapping[str, str],
    *,
    evaluation: str = "evaluation",
) -> Aligned:
    """The Dataset columns ``fields`` (column → the argument that names it) looked up by
    ``_index_`` for each evaluation row.

    The lookup is a join on ``_index_``: by direct addressing in numpy where the Dataset's
    ``_index_`` values lie in a compact range (the usual case: they number the rows), else
    with ``pyarrow.Table.join``. Both are vectorised; the first is ~20x faster at 10 million
    rows. Evaluation rows whose ``_index_`` is not in the Dataset are refused.
    """
    for column, argument in fields.items():
        if data.schema.get_field_index(column) < 0:
            raise errors.ValidationError(
                f"{method}: the Dataset bound to {keyword!r} has no column {column!r} (its "
                f"columns: {', '.join(data.schema.names)}); set the argument {argument} to "
                "the column that holds it",
                field=argument,
                value=column,
            )
    table = read_columns(
        method, keyword, data, ["_index_", *fields], kind="Dataset", hint="bind a Dataset"
    )
    dataset_index = _index_column(method, keyword, table)
    positions = _lookup(method, keyword, dataset_index, index)
    missing = positions < 0
    if missing.any():
        examples = ", ".join(str(x) for x in np.unique(index[missing])[:5])
        raise errors.ValidationError(
            f"{method}: {int(missing.sum())} rows of {evaluation!r} have an _index_ that is not "
            f"in the Dataset bound to {keyword!r} (e.g. {examples}); bind the Dataset the "
            "evaluation was run on",
            field=keyword,
        )
    take = pa.array(positions)
    columns = {column: table.column(column).combine_chunks().take(take) for column in fields}
    counts = np.bincount(positions, minlength=len(dataset_index)) if positions.size else None
    replicated = bool(counts is not None and counts.max() > 1)
    return Aligned(columns, positions, replicated)


def _lookup(method: str, keyword: str, keys: Ints, wanted: Ints) -> Ints:
    """Position of each of ``wanted`` among ``keys`` (unique), -1 where absent."""
    n = keys.size
    if n == 0:
        return np.full(wanted.size, -1, dtype=np.int64)
    low, high = int(keys.min()), int(keys.max())
    span = high - low + 1
    if span <= 4 * n + 1024:
        slots = np.full(span, -1, dtype=np.int64)
        slots[keys - low] = np.arange(n)
        if int(np.count_nonzero(slots >= 0)) != n:
            raise _duplicates(method, keyword, keys)
        inside = (wanted >= low) & (wanted <= high)
        out = np.full(wanted.size, -1, dtype=np.int64)
        out[inside] = slots[wanted[inside] - low]
        return out
    if pc.count_distinct(pa.array(keys)).as_py() != n:
        raise _duplicates(method, keyword, keys)
    left = pa.table({"_index_": wanted, "_row_": np.arange(wanted.size)})
    right = pa.table({"_index_": keys, "_position_": np.arange(n)})
    joined = left.join(right, "_index_", join_type="left outer")
    out = np.full(wanted.size, -1, dtype=np.int64)
    rows = joined.column("_row_").to_numpy()
    out[rows] = joined.column("_position_").fill_null(-1).to_numpy()
    return out


def _duplicates(method: str, keyword: str, keys: Ints) -> errors.ValidationError:
    values, counts = np.unique(keys, return_counts=True)
    examples = ", ".join(str(x) for x in values[counts > 1][:5])
    return errors.ValidationError(
        f"{method}: the Dataset bound to {keyword!r} has repeated _index_ values (e.g. "
        f"{examples}); each instance needs its own _index_",
        field="_index_",
    )
