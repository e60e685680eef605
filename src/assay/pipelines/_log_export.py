"""Exporting an inference log to JSON Lines or Arrow IPC files, under a size limit, in the
order records were logged (their sequence numbers), so that an export stopped by its limit
goes on from ``start_sequence`` without skipping or repeating a record."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from assay import errors
from assay.pipelines._log_read import Query, columns_of, shaped
from assay.pipelines._log_segments import seq_range

__all__ = [
    "SEQUENCE",
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
#: The column of an export's tables that holds each record's sequence number (its position
#: in its log); :func:`write_tables` uses it to say where to go on, and does not write it.
SEQUENCE = "__assay_sequence__"
_RESUME = b"assay.resume"  # schema metadata: the argument that resumes in the table's log
_END = b"assay.sequence_end"  # schema metadata: the number after its segment's last record


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
    """The ``time`` of the last record written (None: none, or ``time`` not exported)."""
    complete: bool = True
    """False when the export stopped at ``data_size_limit`` (or ``limit``) before the end."""
    message: str = ""
    """One line saying how far it got, and how to go on."""
    resume: dict[str, Any] = field(default_factory=dict)
    """Where to go on: the arguments to give the next export (``**resume``; ints, typed
    ``Any`` so that they splat into ``export_logs``): ``start_sequence`` (the
    sequence number of the first record of the log not exported: after a stop, the one after
    the last record written; after a complete export, the first record logged after it) and,
    when ``valid=False`` added the failure log, ``start_failure_sequence``."""
    existing_bytes: int = 0
    """Bytes of the files already in the directory, counted against ``data_size_limit``."""

    @property
    def next_sequence(self) -> int | None:
        """``resume["start_sequence"]``: the export's next record in the log it read."""
        return self.resume.get("start_sequence")


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
        if rows and "time" in chunk.column_names:
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


def in_order(paths: Sequence[Path]) -> list[Path]:
    """Segment files (of one log, from several folders: this machine's and the bucket's)
    in ``seq`` order: those without ``seq`` first, as they were given, then by their first
    ``seq``."""
    keyed = []
    for position, path in enumerate(paths):
        bounds = seq_range(path)
        keyed.append((bounds is not None, bounds[0] if bounds else position, position, path))
    return [path for *_, path in sorted(keyed)]


def segment_tables(
    logs: Sequence[tuple[str, Sequence[Path], int | None]],
    *,
    query: Query,
    dataset: Sequence[str] | str | None,
    dataset_exclude: Sequence[str] | str | None,
    dataset_separator: Sequence[str] | str | None,
    limit: int | None,
) -> Iterator[pa.Table]:
    """The records that ``query`` selects, log by log and in each in sequence order (the
    order they were committed), until ``limit`` records have been given. ``logs``:
    ``(resume, segments, start)`` — the argument that resumes in that log (``start_sequence``
    or ``start_failure_sequence``), its segment files (:func:`in_order`), and the sequence
    number to start at (None: the first).

    Per log, an empty table first, then one per segment (a segment with none selected gives
    an empty table), shaped as ``dataset_separator`` asks, with each record's sequence number
    in the column :data:`SEQUENCE` and, in the schema's metadata, the ``resume`` argument and
    where to go on once the table is written (for the first, the start; else the number
    after the segment's last record). What :func:`write_tables` writes, in order."""
    given = 0
    for resume, paths, start in logs:
        for table in _log_tables(
            resume,
            paths,
            start,
            query=query,
            dataset=dataset,
            dataset_exclude=dataset_exclude,
            dataset_separator=dataset_separator,
        ):
            if limit is not None:
                table = table.slice(0, limit - given)
            given += table.num_rows
            yield table
            if limit is not None and given >= limit:
                return


def _log_tables(
    resume: str,
    paths: Sequence[Path],
    start: int | None,
    *,
    query: Query,
    dataset: Sequence[str] | str | None,
    dataset_exclude: Sequence[str] | str | None,
    dataset_separator: Sequence[str] | str | None,
) -> Iterator[pa.Table]:
    """The selected records of one log from sequence number ``start``, a table per segment,
    each in ``seq`` order.

    A record's sequence number is its ``seq``, which the log gives it as it is committed
    (records and failures together, across processes); one writer at a time turns the
    journal into segments, oldest first, so each log's segments come in ``seq`` order and a
    record published after an export read the log has a number above every record of that
    log the export saw — resuming at ``start`` skips nothing and repeats nothing, whatever
    the records' times. Segments written before records had a ``seq`` (they precede the
    others) number their records by position, below 0: ``-n`` to ``-1`` for ``n`` of them."""
    schemas = [pq.read_schema(p) for p in paths]
    every = list(dict.fromkeys(n for s in schemas for n in s.names))
    wanted = columns_of(every, dataset, dataset_exclude, dataset_separator) if every else []
    older = [p for p, s in zip(paths, schemas, strict=True) if "seq" not in s.names]
    first = -sum(pq.read_metadata(p).num_rows for p in older)
    start = first if start is None else start
    marker = pa.table({SEQUENCE: pa.array([], pa.int64())})
    yield marker.replace_schema_metadata({_RESUME: resume, _END: str(start)})
    for path, schema in zip(paths, schemas, strict=True):
        stored = "seq" in schema.names
        if stored:
            bounds = seq_range(path)
            end = start if bounds is None else bounds[1] + 1
        else:
            end = first + pq.read_metadata(path).num_rows
        if end > start:
            columns = [n for n in wanted if n in schema.names]
            where = query.filter(schema)
            needed = ["seq"] if stored else []
            needed += [n for n in ("time", "anomaly.count", "error") if n in schema.names]
            data = ds.dataset(str(path), format="parquet")
            table = data.to_table(columns=list(dict.fromkeys([*columns, *needed])))
            numbers = (
                table.column("seq").cast(pa.int64())
                if stored
                else pa.array(np.arange(first, end, dtype=np.int64))
            )
            table = table.append_column(SEQUENCE, numbers).sort_by(SEQUENCE)
            table = table.filter(ds.field(SEQUENCE) >= start)
            if where is not None:
                table = table.filter(where)
            out = shaped(table.select(columns), dataset_separator)
            out = out.append_column(SEQUENCE, table.column(SEQUENCE))
            yield out.replace_schema_metadata({_RESUME: resume, _END: str(end)})
        if not stored:
            first = end


def _bytes_in(directory: Path) -> int:
    """The size of every file under ``directory``."""
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def write_tables(
    tables: Iterable[pa.Table],
    directory: Path,
    *,
    prefix: str,
    size_limit: int,
    arrow: bool,
    limit: int | None,
    start: Mapping[str, int] | None = None,
) -> ExportResult:
    """Write ``tables`` (as :func:`segment_tables` gives them: a pipeline's log here, or one
    read from a server) into ``directory`` as an export: a new file at each change of schema,
    stopping before the files in ``directory`` (those already there included) would pass
    ``size_limit`` bytes, or after ``limit`` records. ``start``: the ``resume`` arguments
    the export started from (``{"start_sequence": 0}``...), updated as tables are written."""
    directory.mkdir(parents=True, exist_ok=True)
    existing = _bytes_in(directory)
    output = _Output(directory, prefix, arrow, max(size_limit - existing, 0))
    resume = dict(start or {})
    stopped = False
    try:
        for table in tables:
            meta = table.schema.metadata or {}
            sequence = table.column(SEQUENCE) if SEQUENCE in table.column_names else None
            body = table.drop_columns([SEQUENCE]) if sequence is not None else table
            before = output.result.records
            whole = not body.num_rows or output.write(body.replace_schema_metadata(None))
            written = output.result.records - before
            stopped = not whole or (limit is not None and output.result.records >= limit)
            key = meta.get(_RESUME, b"").decode()
            if key and whole and not stopped and _END in meta:
                resume[key] = int(meta[_END])  # past the segment's last record, selected or not
            elif key and written and sequence is not None:
                resume[key] = int(sequence[written - 1].as_py()) + 1
            if stopped:
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
    result.resume = resume
    result.existing_bytes = existing
    where = f" up to {result.last_time.isoformat()}" if result.last_time else ""
    result.message = (
        f"exported {result.records:,} records{where} to {len(result.files)} file(s) in "
        f"{str(directory)!r} ({result.bytes:,} bytes)"
    )
    again = ", ".join(f"{k}={v}" for k, v in resume.items())
    if stopped:
        reason = (
            f"the data_size_limit of {size_limit:,} bytes"
            + (f" ({existing:,} of them taken by the files already there)" if existing else "")
            if limit is None or result.records < limit
            else f"the limit of {limit:,} records"
        )
        result.message += f"; stopped at {reason}" + (
            f" — export again with {again} to go on" if again else ""
        )
        logger.warning("inference log export: %s", result.message)
    else:
        if again:
            result.message += f"; export again with {again} for the records logged since"
        logger.info("inference log export: %s", result.message)
    return result


def export_segments(
    logs: Sequence[tuple[str, Sequence[Path], int | None]],
    directory: Path,
    *,
    prefix: str,
    size_limit: int,
    arrow: bool,
    query: Query,
    dataset: Sequence[str] | str | None,
    dataset_exclude: Sequence[str] | str | None,
    dataset_separator: Sequence[str] | str | None,
    limit: int | None,
) -> ExportResult:
    """Export the records of ``logs`` (as :func:`segment_tables` takes them) that ``query``
    selects, in sequence order, into ``directory``."""
    tables = segment_tables(
        logs,
        query=query,
        dataset=dataset,
        dataset_exclude=dataset_exclude,
        dataset_separator=dataset_separator,
        limit=limit,
    )
    return write_tables(
        tables,
        directory,
        prefix=prefix,
        size_limit=size_limit,
        arrow=arrow,
        limit=limit,
        start={resume: start for resume, _, start in logs if start is not None},
    )
