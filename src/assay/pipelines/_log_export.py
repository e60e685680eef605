"""Exporting an inference log to JSON Lines or Arrow IPC files, under a size limit."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from assay import errors
from assay.pipelines._log_read import Query, columns_of
from assay.pipelines._log_segments import segment_files

__all__ = [
    "ExportResult",
    "export_segments",
    "json_default",
    "parse_size",
    "segment_tables",
    "write_tables",
]

logger = logging.getLogger("assay.pipelines.log")

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_CHUNK = 1000  # rows converted and written at a time


def parse_size(value: str | int) -> int:
    """A size in bytes: an int, or a string such as ``"100 MiB"``, ``"1GB"``, ``"512kb"``
    (KB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB powers of 1024)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise errors.ValidationError(
            f"data_size_limit must be an int or a string such as '100 MiB', got {value!r}",
            field="data_size_limit",
        )
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(value)
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _UNITS:
            raise errors.ValidationError(
                f"data_size_limit {value!r} is not a size; write a number and a unit among "
                "B, KB, MB, GB, TB, KiB, MiB, GiB, TiB (e.g. '100 MiB')",
                field="data_size_limit",
                value=value,
            )
        size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise errors.ValidationError(
            f"data_size_limit must be positive, got {value!r}", field="data_size_limit"
        )
    return size


@dataclass
class ExportResult:
    """How far an export got."""

    records: int = 0
    """Records written."""
    bytes: int = 0
    """Bytes written, over all files."""
    files: list[Path] = field(default_factory=list)
    """The files written, in order (a new one at each change of schema)."""
    last_time: dt.datetime | None = None
    """The ``time`` of the last record written."""
    complete: bool = True
    """False when the export stopped at ``data_size_limit`` (or ``limit``) before the end."""
    message: str = ""
    """One line saying how far it got, and how to go on."""


def json_default(value: Any) -> Any:
    """The JSON of values JSON does not have: times in ISO 8601, bytes in base64."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return str(value)


class _Output:
    """The file being written, and the budget left."""

    def __init__(self, directory: Path, prefix: str, arrow: bool, limit: int) -> None:
        self.directory = directory
        self.prefix = prefix
        self.arrow = arrow
        self.left = limit
        self.schema: pa.Schema | None = None
        self.text: IO[bytes] | None = None
        self.sink: pa.NativeFile | None = None
        self.writer: Any = None
        self.result = ExportResult()
        self._number = 0

    def _open(self, schema: pa.Schema) -> bool:
        self.close()
        overhead = 2 * len(schema.serialize()) + 64 if self.arrow else 0
        if overhead > self.left:
            return False
        suffix = "arrow" if self.arrow else "jsonl"
        while (path := self.directory / f"{self.prefix}-{self._number:04d}.{suffix}").exists():
            self._number += 1
        self._number += 1
        self.result.files.append(path)
        self.schema = schema
        self.left -= overhead
        if self.arrow:
            self.sink = pa.OSFile(str(path), "wb")
            self.writer = pa.ipc.new_file(self.sink, schema)
        else:
            self.text = open(path, "wb")  # noqa: SIM115 - closed by close()
        return True

    def write(self, table: pa.Table) -> bool:
        """Write ``table``'s rows while they fit; False once the budget is spent."""
        new_schema = self.schema is None or not self.schema.equals(table.schema)
        if new_schema and not self._open(table.schema):
            return False
        for start in range(0, table.num_rows, _CHUNK):
            chunk = table.slice(start, _CHUNK)
            fits = self._write_arrow(chunk) if self.arrow else self._write_json(chunk)
            if fits < chunk.num_rows:
                return False
        return True

    def _written(self, chunk: pa.Table, rows: int, size: int) -> None:
        self.left -= size
        self.result.records += rows
        self.result.bytes += size
        if rows:
            self.result.last_time = chunk.column("time")[rows - 1].as_py()

    def _write_json(self, chunk: pa.Table) -> int:
        assert self.text is not None
        lines = [
            (json.dumps(row, default=json_default, ensure_ascii=False) + "\n").encode()
            for row in chunk.to_pylist()
        ]
        size = rows = 0
        for line in lines:
            if size + len(line) > self.left:
                break
            size += len(line)
            rows += 1
        self.text.write(b"".join(lines[:rows]))
        self._written(chunk, rows, size)
        return rows

    def _write_arrow(self, chunk: pa.Table) -> int:
        rows: int = chunk.num_rows
        while rows > 0:
            batch = chunk.slice(0, rows).combine_chunks().to_batches()[0]
            size = int(pa.ipc.get_record_batch_size(batch)) + 32  # and its footer entry
            if size <= self.left:
                self.writer.write_batch(batch)
                self._written(chunk, rows, size)
                return rows
            rows //= 2
        return 0

    def close(self) -> None:
        if self.text is not None:
            self.text.close()
            self.text = None
        if self.writer is not None:
            self.writer.close()
            assert self.sink is not None
            self.sink.close()
            self.writer = self.sink = None
        self.schema = None


def segment_tables(
    folder: Path,
    *,
    query: Query,
    dataset: Sequence[str] | str | None,
    dataset_exclude: Sequence[str] | str | None,
    dataset_separator: str,
    limit: int | None,
) -> Iterator[pa.Table]:
    """The records of ``folder``'s segments that ``query`` selects, in time order, until
    ``limit`` records have been given: one table per segment (a segment with none selected is
    an empty table), except where segments written at once by several writers overlap in time
    — their records are merged by time and given as runs, each a slice of one segment, so
    that every table keeps its segment's schema. What :func:`write_tables` writes, in order."""
    given = 0
    for cluster in _overlapping(segment_files(folder)):
        tables = []
        for path in cluster:
            data = ds.dataset(str(path), format="parquet")
            columns = columns_of(data.schema.names, dataset, dataset_exclude, dataset_separator)
            needed = columns if "time" in columns else ["time", *columns]
            table = data.to_table(columns=needed, filter=query.filter(data.schema))
            tables.append(table.sort_by("time"))
        for table in _merged_runs(tables):
            if limit is not None:
                table = table.slice(0, limit - given)
            given += table.num_rows
            yield table
            if limit is not None and given >= limit:
                return


def _overlapping(paths: Sequence[Path]) -> Iterator[list[Path]]:
    """The segments in order of their first record's time, grouped where their time ranges
    overlap (one writer's segments never do; several writers' may)."""
    ranges = []
    for path in paths:
        times = pq.read_table(path, columns=["time"]).column("time")
        low, high = pc.min(times).value, pc.max(times).value
        if low is not None:
            ranges.append((low, high, path))
    ranges.sort(key=lambda r: r[0])
    cluster: list[Path] = []
    end = None
    for low, high, path in ranges:
        if cluster and end is not None and low > end:
            yield cluster
            cluster, end = [], None
        cluster.append(path)
        end = high if end is None else max(end, high)
    if cluster:
        yield cluster


def _merged_runs(tables: Sequence[pa.Table]) -> Iterator[pa.Table]:
    """The records of ``tables`` (each sorted by time) in time order, as runs of consecutive
    records of one table."""
    if len(tables) == 1:
        yield tables[0]
        return
    keys = pa.table(
        {
            "time": pa.chunked_array(
                [t.column("time").cast(pa.int64()) for t in tables], type=pa.int64()
            ),
            "table": pa.array(np.repeat(np.arange(len(tables)), [t.num_rows for t in tables])),
            "row": pa.array(np.concatenate([np.arange(t.num_rows) for t in tables])),
        }
    )
    order = keys.sort_by([("time", "ascending"), ("table", "ascending"), ("row", "ascending")])
    owners = order.column("table").to_numpy()
    rows = order.column("row").to_numpy()
    if owners.size == 0:
        yield tables[0].slice(0, 0)
        return
    starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
    stops = np.r_[starts[1:], owners.size]
    for start, stop in zip(starts, stops, strict=True):
        yield tables[int(owners[start])].slice(int(rows[start]), int(stop - start))


def write_tables(
    tables: Iterable[pa.Table],
    directory: Path,
    *,
    prefix: str,
    size_limit: int,
    arrow: bool,
    limit: int | None,
) -> ExportResult:
    """Write ``tables`` (as :func:`segment_tables` gives them: a pipeline's log here, or one
    read from a server) into ``directory`` as an export: a new file at each change of schema,
    stopping before ``size_limit`` bytes or after ``limit`` records."""
    directory.mkdir(parents=True, exist_ok=True)
    output = _Output(directory, prefix, arrow, size_limit)
    stopped = False
    try:
        for table in tables:
            if table.num_rows and not output.write(table):
                stopped = True
                break
            if limit is not None and output.result.records >= limit:
                stopped = True
                break
    finally:
        output.close()
    result = output.result
    # a file opened for a schema whose first rows did not fit holds nothing: remove it
    for path in list(result.files):
        if path.stat().st_size == 0:
            path.unlink()
            result.files.remove(path)
    result.bytes = sum(p.stat().st_size for p in result.files)
    result.complete = not stopped
    where = f" up to {result.last_time.isoformat()}" if result.last_time else ""
    result.message = (
        f"exported {result.records:,} records{where} to {len(result.files)} file(s) in "
        f"{str(directory)!r} ({result.bytes:,} bytes)"
    )
    if stopped:
        reason = (
            f"the data_size_limit of {size_limit:,} bytes"
            if limit is None or result.records < limit
            else f"the limit of {limit:,} records"
        )
        result.message += (
            f"; stopped at {reason} — export again with start_datetime just after the last "
            "time exported to go on"
        )
        logger.warning("inference log export: %s", result.message)
    else:
        logger.info("inference log export: %s", result.message)
    return result


def export_segments(
    folder: Path,
    directory: Path,
    *,
    prefix: str,
    size_limit: int,
    arrow: bool,
    query: Query,
    dataset: Sequence[str] | str | None,
    dataset_exclude: Sequence[str] | str | None,
    dataset_separator: str,
    limit: int | None,
) -> ExportResult:
    """Export the records of ``folder``'s segments that ``query`` selects, segment by segment
    (records by time within one), into ``directory``."""
    tables = segment_tables(
        folder,
        query=query,
        dataset=dataset,
        dataset_exclude=dataset_exclude,
        dataset_separator=dataset_separator,
        limit=limit,
    )
    return write_tables(
        tables, directory, prefix=prefix, size_limit=size_limit, arrow=arrow, limit=limit
    )
