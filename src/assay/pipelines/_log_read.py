"""The reading side of the inference log: the segments of a log as one ``pyarrow.dataset``
(the union of their schemas, missing columns null), filtered by time, validity and column
groups, without reading more than the columns it needs; and the shape of what is returned
(flattened names joined by ``dataset_separator``, or nested structs)."""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from assay import errors
from assay.pipelines._log_segments import segment_files

__all__ = [
    "DEFAULT_GROUPS",
    "TIME",
    "Query",
    "columns_of",
    "group_of",
    "open_segments",
    "separator_of",
    "shaped",
    "timestamp",
]

#: The type of every log's ``time`` column.
TIME = pa.timestamp("us", tz="UTC")


def timestamp(value: dt.datetime | None, what: str) -> pa.Scalar | None:
    """``value`` as a UTC timestamp scalar (a naive datetime is taken as UTC)."""
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        raise errors.ValidationError(
            f"inference log: {what} must be a datetime.datetime, got {type(value).__name__} "
            f"{value!r}",
            field=what,
        )
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return pa.scalar(value.astimezone(dt.UTC), TIME)


def open_segments(folder: Path, files: Sequence[Path] | None = None) -> ds.Dataset | None:
    """The segments (all of ``folder``'s, or ``files``) as one dataset, or None if none.

    A column whose types differ between segments in a way Arrow cannot unify (a field that
    was a number and later a string) is read as the JSON text of its values, as the pipeline
    does within one batch; that case reads the segments into memory."""
    paths = list(files) if files is not None else segment_files(folder)
    if not paths:
        return None
    schemas = [pq.read_schema(p) for p in paths]
    try:
        schema = pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    else:
        return ds.dataset([str(p) for p in paths], schema=schema, format="parquet")
    conflicting = _conflicting(schemas)
    tables = [_as_text(pq.read_table(p), conflicting) for p in paths]
    return ds.dataset(pa.concat_tables(tables, promote_options="permissive"))


def _conflicting(schemas: Sequence[pa.Schema]) -> set[str]:
    types: dict[str, list[pa.DataType]] = {}
    for schema in schemas:
        for field in schema:
            types.setdefault(field.name, []).append(field.type)
    found = set()
    for name, kinds in types.items():
        try:
            pa.unify_schemas(
                [pa.schema([pa.field(name, kind)]) for kind in kinds],
                promote_options="permissive",
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            found.add(name)
    return found


def _as_text(table: pa.Table, names: set[str]) -> pa.Table:
    for i, name in enumerate(table.column_names):
        if name in names:
            text = [
                None
                if value is None
                else json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
                for value in table.column(i).to_pylist()
            ]
            table = table.set_column(i, name, pa.array(text, pa.string()))
    return table


#: The column groups ``dataset=["*"]`` (the default) selects: every one but ``metadata``.
DEFAULT_GROUPS = ("time", "in", "out", "check_failures", "error")
#: Names of a group that differ from the first part of its columns' names.
_ALIASES = {"check_failures": "anomaly"}


def group_of(name: str) -> str:
    """The group of a stored column: ``time``, ``in``, ``out`` (``out.*`` and a challenger's
    ``out_<name>.*``), ``check_failures`` (``anomaly.*``), ``metadata`` or ``error`` (a failed
    inference's message)."""
    head = name.split(".", 1)[0]
    if head.startswith("out_"):
        return "out"
    return "check_failures" if head == "anomaly" else head


def separator_of(value: Sequence[str] | str | None) -> str | None:
    """``dataset_separator`` checked: a non-empty string (flattened names joined by it), or
    None (nested columns: structs)."""
    if value is not None and not isinstance(value, str):
        values = list(value) if isinstance(value, Sequence) else []
        value = values[0] if len(values) == 1 and isinstance(values[0], str) else ""
    if value == "":
        raise errors.ValidationError(
            "dataset_separator must be a non-empty string such as '.' (flattened column "
            "names) or None (nested columns)",
            field="dataset_separator",
        )
    return value


def columns_of(
    names: Sequence[str],
    dataset: Sequence[str] | str | None,
    exclude: Sequence[str] | str | None,
    separator: Sequence[str] | str | None = ".",
) -> list[str]:
    """The stored columns of ``names`` (dotted) that ``dataset`` selects and ``exclude`` does
    not. An entry is ``"*"`` (the groups of :data:`DEFAULT_GROUPS`: all but ``metadata``), a
    group (``time``, ``in``, ``out``, ``check_failures`` or ``anomaly``, ``metadata``,
    ``error``), a challenger's ``out_<name>``, or a column or a dotted prefix of columns
    (``in.text``, ``out.1``; written with ``separator`` or with dots). None: ``["*"]``."""

    def as_tuple(value: Sequence[str] | str | None) -> tuple[str, ...]:
        return (value,) if isinstance(value, str) else tuple(value or ())

    sep = separator_of(separator) or "."
    # the same names and arguments call after call (one pipeline's records): cached
    return list(_columns_of(tuple(names), as_tuple(dataset), as_tuple(exclude), sep))


@functools.lru_cache(maxsize=512)
def _columns_of(
    names: tuple[str, ...], dataset: tuple[str, ...], exclude: tuple[str, ...], sep: str
) -> tuple[str, ...]:

    def matches(name: str, wanted: list[str]) -> bool:
        group = group_of(name)
        for w in wanted:
            w = _ALIASES.get(w, w).replace(sep, ".")
            if w == "*" and group in DEFAULT_GROUPS:
                return True
            if group == w or name == w or name.startswith(w + "."):
                return True
        return False

    wanted = list(dataset) or ["*"]
    chosen = [n for n in names if matches(n, wanted)]
    if not chosen and "*" not in wanted:
        groups = sorted({n.split(".", 1)[0] for n in names})
        raise errors.ValidationError(
            f"inference log: dataset {wanted} selects no column; the groups are "
            f"{', '.join(groups)} (check_failures names anomaly; '*' for all but metadata)",
            field="dataset",
        )
    dropped = list(exclude)
    return tuple(n for n in chosen if not matches(n, dropped))


def shaped(table: pa.Table, separator: Sequence[str] | str | None) -> pa.Table:
    """``table`` (dotted column names) as ``dataset_separator`` asks: ``"."`` as it is,
    another separator in its names, None nested (``in.text`` and ``in.x`` become the fields of
    a struct column ``in``)."""
    sep = separator_of(separator)
    if sep == ".":
        return table
    if sep is not None:
        return table.rename_columns([n.replace(".", sep) for n in table.column_names])
    names, arrays = _nest(
        [n.split(".") for n in table.column_names],
        [c.combine_chunks() for c in table.columns],
    )
    return pa.Table.from_arrays(arrays, names=names)


def _nest(paths: list[list[str]], arrays: list[pa.Array]) -> tuple[list[str], list[pa.Array]]:
    """Columns named by ``paths`` nested by their first part (in order of appearance). A name
    that is both a value and the parent of fields (a field that was a number in one record
    and an object in another) keeps its dotted names at that level."""
    heads: dict[str, list[int]] = {}
    for i, path in enumerate(paths):
        heads.setdefault(path[0], []).append(i)
    names: list[str] = []
    nested: list[pa.Array] = []
    for head, members in heads.items():
        if all(len(paths[i]) == 1 for i in members):
            names.extend(head for _ in members)
            nested.extend(arrays[i] for i in members)
        elif any(len(paths[i]) == 1 for i in members):
            names.extend(".".join(paths[i]) for i in members)
            nested.extend(arrays[i] for i in members)
        else:
            fields, values = _nest([paths[i][1:] for i in members], [arrays[i] for i in members])
            names.append(head)
            nested.append(pa.StructArray.from_arrays(values, names=fields))
    return names, nested


class Query:
    """Which records of a log to read: a time window ``[start, end)`` and validity."""

    def __init__(
        self,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        valid: bool | None = None,
    ) -> None:
        self.start = timestamp(start, "start_datetime")
        self.end = timestamp(end, "end_datetime")
        self.valid = valid
        self.ranged = start is not None or end is not None

    def filter(self, schema: pa.Schema) -> ds.Expression | None:
        """The filter expression over a dataset of ``schema``; None for every record."""
        time = ds.field("time")
        parts: list[ds.Expression] = []
        if self.start is not None:
            parts.append(time >= self.start)
        if self.end is not None:
            parts.append(time < self.end)
        if self.valid is not None:
            # not valid: flagged by a check (anomaly.count > 0) or failed (with an error)
            flagged: list[ds.Expression] = []
            clean: list[ds.Expression] = []
            if "anomaly.count" in schema.names:
                count = ds.field("anomaly.count")  # null: a segment without validations
                flagged.append(count > 0)
                clean.append(count.is_null() | (count == 0))
            if "error" in schema.names:
                flagged.append(ds.field("error").is_valid())
                clean.append(ds.field("error").is_null())
            if self.valid:
                parts.extend(clean)
            elif flagged:
                parts.append(flagged[0] if len(flagged) == 1 else flagged[0] | flagged[1])
            else:
                parts.append(ds.scalar(False))
        if not parts:
            return None
        expression = parts[0]
        for part in parts[1:]:
            expression = expression & part
        return expression

    def read(
        self, data: ds.Dataset, columns: list[str], limit: int | None
    ) -> tuple[pa.Table, bool]:
        """The matching records (``columns`` of them): chronological within a time window
        (the first ``limit``), else the newest ``limit``, newest first; and whether more
        records match than were returned."""
        where = self.filter(data.schema)
        order = "ascending" if self.ranged else "descending"
        # records of one time (the rows of one call) in the order they were logged
        keys = [k for k in ("time", "seq") if k == "time" or k in data.schema.names]
        needed = list(dict.fromkeys([*keys, *columns]))
        by = [(k, order) for k in keys]
        if limit is None:
            table = data.to_table(columns=needed, filter=where).sort_by(by)
            return table.select(columns), False
        matched = data.count_rows(filter=where)
        if limit == 0:
            return data.schema.empty_table().select(columns), matched > 0
        if matched > limit:
            # the time of the limit-th record, from the time column alone
            times = data.to_table(columns=["time"], filter=where).column("time")
            cut = pc.select_k_unstable(times, limit, [("time", order)])
            bound = pc.take(times, cut[-1:])[0]
            time = ds.field("time")
            within = time <= bound if self.ranged else time >= bound
            where = within if where is None else where & within
        table = data.to_table(columns=needed, filter=where).sort_by(by)
        table = table.slice(0, max(limit, 0)).select(columns)
        return table, matched > table.num_rows
