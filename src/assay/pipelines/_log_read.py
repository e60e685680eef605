"""The reading side of the inference log: the segments of a log as one ``pyarrow.dataset``
(the union of their schemas, missing columns null), filtered by time, validity and column
groups, without reading more than the columns it needs."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from assay import errors
from assay.pipelines._log_segments import segment_files

__all__ = ["TIME", "Query", "columns_of", "open_segments", "timestamp"]

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


def columns_of(
    names: Sequence[str],
    dataset: Sequence[str] | str | None,
    exclude: Sequence[str] | str | None,
    separator: str,
) -> list[str]:
    """The columns of ``names`` whose group (the part before ``separator``) or whole name is
    selected by ``dataset`` (None or ``"*"``: all) and not by ``exclude``."""

    def as_list(value: Sequence[str] | str | None) -> list[str]:
        return [value] if isinstance(value, str) else list(value or [])

    def matches(name: str, wanted: list[str]) -> bool:
        return any(name == w or name.split(separator, 1)[0] == w for w in wanted)

    wanted = as_list(dataset)
    if not separator:
        raise errors.ValidationError(
            "inference log: dataset_separator must not be empty (the stored names use '.')",
            field="dataset_separator",
        )
    chosen = [n for n in names if not wanted or "*" in wanted or matches(n, wanted)]
    if wanted and "*" not in wanted and not chosen:
        groups = sorted({n.split(separator, 1)[0] for n in names})
        raise errors.ValidationError(
            f"inference log: dataset {wanted} selects no column; the groups are "
            f"{', '.join(groups)} (or '*' for all)",
            field="dataset",
        )
    dropped = as_list(exclude)
    return [n for n in chosen if not matches(n, dropped)]


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
            if "anomaly.count" in schema.names:
                count = ds.field("anomaly.count")  # null: a segment without validations
                parts.append(count.is_null() | (count == 0) if self.valid else count > 0)
            elif not self.valid:
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
        needed = columns if "time" in columns else ["time", *columns]
        if limit is None:
            table = data.to_table(columns=needed, filter=where).sort_by([("time", order)])
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
        table = data.to_table(columns=needed, filter=where).sort_by([("time", order)])
        table = table.slice(0, max(limit, 0)).select(columns)
        return table, matched > table.num_rows
