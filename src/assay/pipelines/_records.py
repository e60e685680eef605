"""Flattened pipeline records, column by column.

A call's records are gathered as Python lists, one per column (cheap on the caller's thread),
and turned into one Arrow table only when someone needs it: the log's writer thread, which
merges the records of calls that arrive together and builds them at once, or a caller that
asked for a Table, a DataFrame, a hook or validations. A caller that asked for dicts gets them
straight from the lists when every column holds values that Arrow would give back unchanged
(see :meth:`Records.rows`); otherwise through the table, so the answer is the same either way.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

__all__ = ["TIME", "Records", "concat", "from_json", "ordered", "to_json"]

#: The type of every record's ``time`` column.
TIME = pa.timestamp("us", tz="UTC")
_GROUPS = ("time", "in.", "out.", "out_", "anomaly.", "metadata.", "error.")
_INT64 = (-(2**63), 2**63 - 1)
_SCALARS = (str, float, bool)


def ordered(names: Sequence[str]) -> list[str]:
    """``names`` by group (``time``, ``in.``, ``out.``, ``out_``, ``anomaly.``, ``metadata.``,
    ``error.``), in order of appearance within a group."""
    return list(_ordered(tuple(names)))


@functools.lru_cache(maxsize=512)
def _ordered(names: tuple[str, ...]) -> tuple[str, ...]:
    def rank(name: str) -> int:
        return next((i for i, g in enumerate(_GROUPS) if name.startswith(g)), len(_GROUPS))

    return tuple(sorted(names, key=rank))


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def array(name: str, values: list[Any]) -> pa.Array:
    """One column as Arrow: ``time`` as UTC microseconds; a column whose values have no
    common Arrow type as their canonical JSON text."""
    if name == "time":
        return pa.array(values, TIME)
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([None if v is None else _json(v) for v in values], pa.string())


def _same_in_arrow(values: list[Any]) -> bool:
    """Whether Arrow gives ``values`` back as they are: one scalar type (``str``, ``float``,
    ``bool``, or ``int`` within int64), nulls, or lists of such values."""
    kinds = set(map(type, values))
    kinds.discard(type(None))
    if not kinds:
        return True
    if len(kinds) > 1:
        return False
    kind = kinds.pop()
    if kind is list:
        items = [x for v in values if v is not None for x in v]
        return all(type(x) is not list for x in items) and _same_in_arrow(items)
    if kind is int:
        numbers = [v for v in values if v is not None]
        return bool(_INT64[0] <= min(numbers) and max(numbers) <= _INT64[1])
    return kind in _SCALARS


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    """``value``'s fields into ``out`` under ``prefix.``: nested objects with dots; anything
    else (lists, empty objects) as it is (as ``execution.flatten``)."""
    if not isinstance(value, dict):
        out[prefix] = value
        return
    for key, item in value.items():
        name = f"{prefix}.{key}"
        if isinstance(item, dict) and item:
            _flatten(name, item, out)
        else:
            out[name] = item


def _flat_columns(prefix: str, values: Sequence[Any]) -> dict[str, list[Any]] | None:
    """The columns that flattening each of ``values`` under ``prefix`` gives, when they are
    dicts with the same keys and no object among their values; else None."""
    first = values[0]
    if type(first) is not dict:
        return None
    keys = first.keys()
    if any(type(v) is not dict or v.keys() != keys for v in values):
        return None
    columns = {}
    for key in first:
        column = [v[key] for v in values]
        if any(isinstance(x, dict) for x in column):
            return None
        columns[f"{prefix}.{key}"] = column
    return columns


def _columns_of_parts(
    inputs: Sequence[Any],
    outputs: Sequence[Sequence[Any] | None],
    extras: Sequence[Mapping[str, Any]],
) -> dict[str, list[Any]] | None:
    """:meth:`Records.from_parts` column by column (unordered); None when the rows differ in
    shape (keys, number of outputs, finished or not, nested objects) or names clash."""
    parts: list[tuple[str, Sequence[Any]]] = [("in", inputs)]
    first = outputs[0]
    if first is not None:
        width = len(first)
        if any(o is None or len(o) != width for o in outputs):
            return None
        parts += [
            ("out" if i == 0 else f"out.{i}", [o[i] for o in outputs])  # type: ignore[index]
            for i in range(width)
        ]
    elif any(o is not None for o in outputs):
        return None
    columns: dict[str, list[Any]] = {"time": [e["time"] for e in extras]}
    expected = 1
    for prefix, values in parts:
        found = _flat_columns(prefix, values)
        if found is None:
            return None
        columns.update(found)
        expected += len(found)
    rest = [k for k in dict.fromkeys(k for e in extras for k in e) if k != "time"]
    columns.update({k: [e.get(k) for e in extras] for k in rest})
    return columns if len(columns) == expected + len(rest) else None


class Records:
    """Flattened records (``time``, ``in.*``, ``out.*``, …): as columns of Python values
    (``columns``, in their final order) or as an Arrow table, built once when asked."""

    __slots__ = ("_lock", "_table", "columns", "num_rows")

    def __init__(
        self, columns: dict[str, list[Any]] | None, num_rows: int, table: pa.Table | None = None
    ) -> None:
        self.columns = columns
        self.num_rows = num_rows
        self._table = table
        self._lock = threading.Lock()

    @classmethod
    def from_dicts(cls, records: Sequence[Mapping[str, Any]]) -> Records:
        """Records given row by row (flat dicts, maybe with different keys): every column,
        ordered by group."""
        if len(records) == 1:
            only = records[0]
            names = ordered(list(only))
            return cls({n: [only[n]] for n in names}, 1)
        names = ordered(list(dict.fromkeys(k for r in records for k in r)))
        return cls({n: [r.get(n) for r in records] for n in names}, len(records))

    @classmethod
    def from_parts(
        cls,
        inputs: Sequence[Any],
        outputs: Sequence[Sequence[Any] | None],
        extras: Sequence[Mapping[str, Any]],
    ) -> Records:
        """The records of rows given as their input (flattened under ``in.``), their final
        outputs (None: a row that did not finish; else the first under ``out.``, output *i*
        under ``out.<i>.``) and the rest of their record (``time``, ``metadata.*``,
        ``out_<name>.*``, ``error.*``, already flat): what flattening each row and
        :meth:`from_dicts` give, built column by column where the rows have the same keys."""
        n = len(extras)
        columns = _columns_of_parts(inputs, outputs, extras) if n else None
        if columns is not None:
            return cls({name: columns[name] for name in ordered(list(columns))}, n)
        records = []  # row by row: the rows differ in shape
        for i, extra in enumerate(extras):
            record = {"time": extra["time"]}
            _flatten("in", inputs[i], record)
            for j, output in enumerate(outputs[i] or ()):
                _flatten("out" if j == 0 else f"out.{j}", output, record)
            record.update((k, v) for k, v in extra.items() if k != "time")
            records.append(record)
        return cls.from_dicts(records)

    @classmethod
    def from_table(cls, table: pa.Table) -> Records:
        return cls(None, table.num_rows, table)

    @property
    def names(self) -> list[str]:
        if self.columns is not None:
            return list(self.columns)
        assert self._table is not None
        return list(self._table.column_names)

    def built(self) -> bool:
        """Whether the Arrow table exists already."""
        return self._table is not None

    def table(self) -> pa.Table:
        """The records as one Arrow table (built on the first call)."""
        table = self._table
        if table is not None:
            return table
        with self._lock:
            if self._table is None:
                assert self.columns is not None
                self._table = pa.table({n: array(n, v) for n, v in self.columns.items()})
            return self._table

    def rows(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The records as dicts (``names``: those columns, in that order), as the table's
        ``select(names).to_pylist()`` gives them."""
        names = self.names if names is None else list(names)
        columns = self.columns
        if columns is not None:  # from the columns even once the table is built: faster
            chosen = [columns[n] for n in names]
            times = columns.get("time") if "time" in names else None
            plain = times is None or all(type(t) is datetime for t in times)
            pairs = zip(names, chosen, strict=True)
            if plain and all(n == "time" or _same_in_arrow(c) for n, c in pairs):
                if self.num_rows == 1:
                    return [{n: c[0] for n, c in zip(names, chosen, strict=True)}]
                return [dict(zip(names, row, strict=True)) for row in zip(*chosen, strict=True)]
        found: list[dict[str, Any]] = self.table().select(names).to_pylist()
        return found

    def renamed(self, names: Mapping[str, str]) -> Records:
        """The same records with some columns renamed."""
        if self.columns is not None and self._table is None:
            columns = {names.get(n, n): v for n, v in self.columns.items()}
            return Records(columns, self.num_rows)
        table = self.table()
        return Records.from_table(
            table.rename_columns([names.get(n, n) for n in table.schema.names])
        )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_JSON_SCALARS = frozenset({type(None), bool, int, float, str})


def _faithful(values: list[Any]) -> bool:
    """Whether JSON gives ``values`` back as they are: nulls, booleans, ints, floats,
    strings, and lists and string-keyed objects of those (no tuples, subclasses, dates...)."""
    for kind in set(map(type, values)):
        if kind in _JSON_SCALARS:
            continue
        if kind is list:
            if not _faithful([x for v in values if type(v) is list for x in v]):
                return False
        elif kind is dict:
            objects = [v for v in values if type(v) is dict]
            if any(type(k) is not str for v in objects for k in v):
                return False
            if not _faithful([x for v in objects for x in v.values()]):
                return False
        else:
            return False
    return True


def to_json(records: Records) -> bytes | None:
    """``records`` (as columns) as JSON text: ``time`` in microseconds since the epoch; None
    when some value would not come back as it is."""
    columns = records.columns
    if columns is None:
        return None
    data: dict[str, list[Any]] = {}
    for name, values in columns.items():
        if name == "time":
            if any(type(t) is not datetime or t.tzinfo is None for t in values):
                return None
            data[name] = [(t - _EPOCH) // _MICROSECOND for t in values]
        elif _faithful(values):
            data[name] = values
        else:
            return None
    return json.dumps(data, separators=(",", ":")).encode()


def from_json(payload: bytes | memoryview) -> Records:
    """The records :func:`to_json` wrote (``time`` as microseconds, which Arrow reads as
    the same instants)."""
    columns: dict[str, list[Any]] = json.loads(bytes(payload))
    return Records(columns, len(columns["time"]))


def concat(parts: Sequence[Records]) -> Records:
    """Records with the same columns (as lists), one after another."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0].columns
    assert first is not None
    columns: dict[str, list[Any]] = {n: [] for n in first}
    for part in parts:
        assert part.columns is not None
        for name, values in part.columns.items():
            columns[name].extend(values)
    return Records(columns, sum(p.num_rows for p in parts))
