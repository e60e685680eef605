"""The integrity check run after every evaluation: each instance x replication was answered
exactly once. Its result is recorded on the entity (annotation ``assay.io/integrity``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow.dataset

__all__ = ["INTEGRITY_ANNOTATION", "Integrity", "check_integrity"]

INTEGRITY_ANNOTATION = "assay.io/integrity"


@dataclass(frozen=True)
class Integrity:
    expected: int
    """Instances x replications."""
    answered: int
    """Distinct expected (``_index_``, ``_replication_``) pairs present in the output."""
    duplicates: int
    """Output rows beyond the first for a pair."""
    missing: int
    """Expected pairs with no output row."""
    unexpected: int
    """Output rows whose pair was not expected (an unknown index or replication)."""
    skipped: int = 0
    """Pairs answered with no responses because the instance failed (``Skip`` policy)."""

    @property
    def ok(self) -> bool:
        return self.duplicates == 0 and self.missing == 0 and self.unexpected == 0

    def as_dict(self) -> dict[str, int | bool]:
        return {**asdict(self), "ok": self.ok}


def check_integrity(
    output: pyarrow.dataset.Dataset,
    indices: pyarrow.Array,
    replications: list[str],
    *,
    skipped: int = 0,
) -> Integrity:
    """Count the output's (``_index_``, ``_replication_``) pairs against the data set's
    ``indices`` x ``replications``; only those two columns are read."""
    import pyarrow as pa
    import pyarrow.compute as pc

    pairs = output.to_table(columns=["_index_", "_replication_"])
    counts = pairs.group_by(["_index_", "_replication_"]).aggregate([([], "count_all")])
    duplicates = int(pc.sum(pc.subtract(counts["count_all"], 1)).as_py() or 0)
    expected_pairs = pa.table(
        {
            "_index_": pa.concat_arrays([indices.cast(pa.int64())] * len(replications))
            if replications
            else pa.array([], pa.int64()),
            "_replication_": pa.array(
                [r for r in replications for _ in range(len(indices))], pa.string()
            ),
        }
    )
    keys = ["_index_", "_replication_"]
    present = counts.select(keys).join(expected_pairs, keys=keys, join_type="inner")
    answered = present.num_rows
    unexpected_rows = counts.join(expected_pairs, keys=keys, join_type="left anti")
    unexpected = (
        int(pc.sum(unexpected_rows["count_all"]).as_py() or 0) if unexpected_rows.num_rows else 0
    )
    expected = len(indices) * len(replications)
    return Integrity(
        expected=expected,
        answered=answered,
        duplicates=duplicates,
        missing=expected - answered,
        unexpected=unexpected,
        skipped=skipped,
    )
