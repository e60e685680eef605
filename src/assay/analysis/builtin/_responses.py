"""The responses of an evaluation's rows, flattened for vectorised work."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

__all__ = ["Flat", "take_rows"]

Ints = NDArray[np.int64]


@dataclass(frozen=True)
class Flat:
    """The responses of a chunk of rows, one after another: by row, then by
    ``_response_index_`` (the order the evaluation writes them in, restored if not)."""

    rows: int
    """Number of rows."""
    items: pa.StructArray
    """Every response."""
    parent: Ints
    """Row of each response."""
    first: Ints
    """Position in ``items`` of each row's first response; -1 for a row with none."""

    @staticmethod
    def of(responses: pa.Array) -> Flat:
        """Flatten one chunk of a ``responses`` column."""
        items = responses.flatten()
        parent = np.asarray(pc.list_parent_indices(responses).to_numpy(), dtype=np.int64)
        if parent.size > 1 and items.type.get_field_index("_response_index_") >= 0:
            order = pc.struct_field(items, "_response_index_").fill_null(0).to_numpy()
            same = parent[1:] == parent[:-1]
            if np.any(same & (order[1:] < order[:-1])):
                resort = np.lexsort((order, parent))
                items = items.take(pa.array(resort))
                parent = parent[resort]
        first = np.full(len(responses), -1, dtype=np.int64)
        if parent.size:
            starts = np.flatnonzero(np.r_[True, parent[1:] != parent[:-1]])
            first[parent[starts]] = starts
        return Flat(len(responses), items, parent, first)

    def field(self, name: str) -> pa.Array:
        """The field ``name`` of every response."""
        return pc.struct_field(self.items, name)

    def first_field(self, name: str) -> pa.Array:
        """The field ``name`` of each row's first response (null for a row with none)."""
        return take_rows(self.field(name), self.first)

    def rank(self) -> Ints:
        """The position of each response among its row's responses (0 for the first)."""
        return np.arange(self.parent.size, dtype=np.int64) - self.first[self.parent]


def take_rows(values: pa.Array, positions: Ints) -> pa.Array:
    """``values[positions]``, null where a position is -1."""
    missing = positions < 0
    if not missing.any():
        return values.take(pa.array(positions))
    return values.take(pa.array(positions, mask=missing))
