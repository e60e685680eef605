"""Request bodies made column-wise: the JSON of a part's rows, written by Arrow.

Without an input pipeline the request of an instance is its row (``{"_index_": 7, "text":
"..."}``). Made one by one, each row is a dict (``RecordBatch.to_pylist``) that is then
JSON-encoded and later freed, all under the interpreter lock that the HTTP client's event
loop needs too: ~1 µs per instance over HTTP with 32 instances per request, a fifth of what
the whole request costs the client. Here the JSON text of every row of a part comes from a
few Arrow compute kernels (which run without the lock), as one buffer in which the rows of a
request are consecutive: a request's body is one slice of it. No Python object is made per
instance. See ``docs/design/evaluation.md`` ("Speed").

Only the column types whose JSON Arrow writes as :func:`json.dumps` writes the Python value
of ``to_pylist`` (the same text, up to the escaping of non-ASCII characters, which JSON
allows either way) are made here: integers, booleans and strings, nulls as ``null``. A part
with any other column type (floats: Arrow writes ``1.0`` as ``1``; lists, structs,
timestamps ...) is left to the one-by-one path (:meth:`RowBodies.of` returns None).
"""

from __future__ import annotations

import itertools
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy
    import pyarrow

__all__ = ["RowBodies", "rows_json"]

#: Characters a JSON string cannot hold as they are: the quote, the backslash, controls.
_NEEDS_ESCAPE = r'[\x00-\x1f"\\]'


def rows_json(batch: pyarrow.RecordBatch, *, end: str = "") -> pyarrow.Array | None:
    """The JSON text of each row of ``batch`` as an object of all its columns, followed by
    ``end`` (a string array; ``json.loads`` of each gives ``batch.to_pylist()``'s row), or
    None where a column's type is not one written here (see the module doc)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if batch.num_columns == 0:
        return None
    pieces: list[pyarrow.Array | str] = []
    try:
        for k, (name, column) in enumerate(zip(batch.schema.names, batch.columns, strict=True)):
            value = _json_values(column)
            if value is None:
                return None
            pieces.append(("{" if k == 0 else ",") + json.dumps(name) + ":")
            pieces.append(value)
        pieces.append("}" + end)
        text: pyarrow.Array = pc.binary_join_element_wise(*pieces, "")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return text


def _json_values(column: pyarrow.Array) -> pyarrow.Array | None:
    """Each value of ``column`` as JSON text (``null`` for nulls), or None for a type not
    written here."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        text = pc.cast(column, pa.string())  # 123, -4, true, false: as json.dumps writes them
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        if pa.types.is_large_string(kind):
            column = column.cast(pa.string())  # ArrowInvalid past 2 GiB: the caller's fallback
        column.validate(full=True)  # UTF-8 (ArrowInvalid otherwise: the same fallback)
        text = pc.binary_join_element_wise('"', column, '"', "")
        if _may_need_escapes(column):  # only then find which values, and let json write them
            escape = pc.fill_null(pc.match_substring_regex(column, _NEEDS_ESCAPE), False)
            if pc.any(escape).as_py():
                values = column.filter(escape).to_pylist()
                escaped = pa.array([json.dumps(v, ensure_ascii=False) for v in values])
                text = pc.replace_with_mask(text, escape, escaped)
    elif pa.types.is_null(kind):
        text = pa.nulls(len(column), pa.string())
    else:
        return None
    if text.null_count:
        text = pc.fill_null(text, "null")
    return text


def _may_need_escapes(column: pyarrow.Array) -> bool:
    """Whether the characters of the string array ``column`` hold a byte that a JSON string
    must escape (a quote, a backslash, a control): one pass over its bytes, not a regular
    expression per value. Null values may count (their bytes are usually none)."""
    import numpy as np

    _, offsets, data = column.buffers()
    if data is None or len(column) == 0:
        return False
    bounds = np.frombuffer(offsets, dtype=np.int32)[column.offset : column.offset + len(column) + 1]
    characters = np.frombuffer(data, dtype=np.uint8)[bounds[0] : bounds[-1]]
    # Three comparisons: ~6x faster than a lookup table, ~10x than a regular expression.
    return bool(
        (characters < 0x20).any()
        or (characters == ord('"')).any()
        or (characters == ord("\\")).any()
    )


class RowBodies:
    """The request bodies of a part whose requests are its rows: ``batches[k]`` the body of
    the ``k``-th run of ``size`` rows (a JSON array of them; with ``size`` 1, the row itself),
    :meth:`one` the body of one row (sent alone after its batch was refused).

    The rows' texts are kept as one byte string, each followed by a comma, so that the body
    of consecutive rows is one slice of it."""

    __slots__ = ("_ends", "_text", "batches", "size")

    _ends: numpy.ndarray

    def __init__(self, texts: pyarrow.Array, size: int) -> None:
        """``texts``: each row's JSON followed by a comma (``rows_json(batch, end=",")``)."""
        import numpy as np

        _, offsets, data = texts.buffers()
        n = len(texts)
        self._ends = np.frombuffer(offsets, dtype=np.int32)[texts.offset : texts.offset + n + 1]
        self._text = b"" if data is None else data.slice(0, int(self._ends[-1])).to_pybytes()
        self.size = size = max(1, size)
        text = self._text
        # Row i is text[ends[i] : ends[i + 1] - 1] (the comma left out); a run of rows is the
        # slice from the first one's start to the last one's end.
        at: list[int] = self._ends[::size].tolist()
        if at[-1] != self._ends[-1]:
            at.append(int(self._ends[-1]))
        if size == 1:
            self.batches: list[bytes] = [text[a : b - 1] for a, b in itertools.pairwise(at)]
        else:
            self.batches = [b"[" + text[a : b - 1] + b"]" for a, b in itertools.pairwise(at)]

    @classmethod
    def of(cls, batch: pyarrow.RecordBatch, size: int) -> RowBodies | None:
        """The bodies of ``batch``'s rows, ``size`` per request; None where
        :func:`rows_json` cannot write them."""
        texts = rows_json(batch, end=",")
        return None if texts is None else cls(texts, size)

    def __len__(self) -> int:
        return len(self._ends) - 1

    def one(self, i: int) -> bytes:
        """The body of row ``i`` alone."""
        return self._text[int(self._ends[i]) : int(self._ends[i + 1]) - 1]
