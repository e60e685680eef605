"""How an evaluation's work is cut into parts, and how parts are stored.

The data set is read file by file (sorted paths) in batches of ``client.batchSize`` rows —
the same cut on every run. Part ``(replication, file, batch)`` holds the outputs of exactly
those rows for that replication, written atomically as ``data/part-R-FFFF-BBBBBB.parquet``:
a part exists whole or not at all, so a resumed run skips the parts that exist and redoes the
rest, and every (``_index_``, ``_replication_``) pair is written exactly once.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow

    from assay.storage import ArtifactStorage

__all__ = ["DATA_PREFIX", "ERRORS_PREFIX", "Part", "done_parts", "read_units", "write_parquet"]

DATA_PREFIX = "data/"
ERRORS_PREFIX = ".assay/errors/"


@dataclass(frozen=True)
class Part:
    replication: int
    file: int
    batch: int

    @property
    def name(self) -> str:
        return f"part-{self.replication:03d}-{self.file:04d}-{self.batch:06d}.parquet"

    @property
    def path(self) -> str:
        return DATA_PREFIX + self.name

    @property
    def errors_path(self) -> str:
        return ERRORS_PREFIX + self.name


def done_parts(storage: ArtifactStorage, evaluation_id: str) -> set[str]:
    """The names of the parts already written."""
    return {
        info.path.removeprefix(DATA_PREFIX) for info in storage.list(evaluation_id, DATA_PREFIX)
    }


def read_units(
    storage: ArtifactStorage, dataset_id: str, paths: list[str], batch_size: int
) -> Iterator[tuple[int, int, pyarrow.RecordBatch]]:
    """``(file, batch, rows)`` for every batch of the data set, always in the same order."""
    import pyarrow.parquet as pq

    filesystem, base = storage.arrow_location(dataset_id, "")
    base = base.rstrip("/")
    for f, path in enumerate(sorted(paths)):
        location = f"{base}/{path}" if base else path
        with filesystem.open_input_file(location) as handle:
            reader = pq.ParquetFile(handle)
            for b, batch in enumerate(
                reader.iter_batches(batch_size=batch_size, use_threads=False)
            ):
                yield f, b, batch


def write_parquet(storage: ArtifactStorage, entity_id: str, path: str, table: Any) -> None:
    """Write ``table`` (a Table or RecordBatch) as one Parquet artifact, atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    storage.put_bytes(entity_id, path, sink.getvalue())
