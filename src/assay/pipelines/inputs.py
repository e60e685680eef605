"""The kinds of data a pipeline takes and gives back: a dict (one row), a list of dicts, a
pandas DataFrame or a pyarrow Table; and the files ``infer_from_file`` reads."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa

from assay import errors

__all__ = ["as_kind", "bookkeeping", "check_call", "input_problem", "read_file", "rows_of"]


def read_file(path: str | os.PathLike[str]) -> Any:
    """The rows of an Arrow IPC or Parquet file (a Table), or of a JSON file (a list of
    objects) or JSON Lines file (a list of dicts)."""
    file = Path(path)
    suffix = file.suffix.lower()
    data: Any
    if suffix in (".arrow", ".feather", ".ipc"):
        import pyarrow.feather as feather

        data = feather.read_table(file)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        data = pq.read_table(file)
    elif suffix in (".json", ".jsonl", ".ndjson"):
        text = file.read_text(encoding="utf-8")
        if suffix == ".json":
            data = json.loads(text)
        else:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        raise errors.ValidationError(
            f"{str(file)!r}: unknown file type {suffix!r}; use .arrow/.feather/.ipc, "
            ".parquet, .json (a list of objects) or .jsonl",
            field="path",
            value=str(file),
        )
    return data


def rows_of(data: Any) -> tuple[list[dict[str, Any]], str]:
    if isinstance(data, dict):
        return [data], "dict"
    if isinstance(data, pa.Table):
        return data.to_pylist(), "arrow"
    if type(data).__name__ == "DataFrame" and hasattr(data, "to_dict"):
        return pa.Table.from_pandas(data, preserve_index=False).to_pylist(), "pandas"
    if isinstance(data, list):
        for i, row in enumerate(data):
            if not isinstance(row, dict):
                raise errors.ValidationError(
                    f"input row {i} must be a JSON object (dict), got {type(row).__name__}",
                    field="data",
                )
        return data, "list"
    raise errors.ValidationError(
        f"infer takes a dict, a list of dicts, a pandas DataFrame or a pyarrow Table, got "
        f"{type(data).__name__}",
        field="data",
    )


def as_kind(table: pa.Table, kind: str) -> Any:
    if kind == "arrow":
        return table
    if kind == "pandas":
        return table.to_pandas()
    rows = table.to_pylist()
    return rows[0] if kind == "dict" else rows


def bookkeeping(name: str) -> bool:
    """``_index_``, ``_replication_`` and the like: the platform's columns, which an
    evaluation's requests carry beside the instance's fields."""
    return len(name) > 2 and name.startswith("_") and name.endswith("_")


def input_problem(row: dict[str, Any], schema: pa.Schema) -> str | None:
    """Why ``row`` does not fit the pipeline's input schema (None: it fits): a field it
    lacks, a field the schema does not declare (the platform's ``_name_`` columns aside), or
    a value of the wrong type."""
    for field in schema:
        value = row.get(field.name)
        if value is None:
            if not field.nullable:
                return (
                    f"field {field.name!r} is missing or null; the schema requires a {field.type}"
                )
            continue
        try:
            pa.array([value], type=field.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
            return (
                f"field {field.name!r} is {shown} ({type(value).__name__}); the schema "
                f"expects {field.type}"
            )
    extra = [k for k in row if schema.get_field_index(k) < 0 and not bookkeeping(k)]
    if extra:
        return (
            f"field {extra[0]!r} is not in the pipeline's input schema (its fields: "
            f"{', '.join(schema.names)}); remove it or declare it"
        )
    return None


def check_call(timeout: Any, concurrency: Any = 1) -> None:
    """Refuse a ``timeout`` that is not a positive number of seconds, or a ``concurrency``
    that is not an integer of at least 1 (``infer`` and ``parallel_infer``, here and on a
    client)."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise errors.ValidationError(
            f"timeout must be a positive number of seconds, got {timeout!r}",
            field="timeout",
            value=timeout,
        )
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise errors.ValidationError(
            f"concurrency must be an integer of at least 1, got {concurrency!r}",
            field="concurrency",
            value=concurrency,
        )
