"""Artifact storage: the files of entities, under ``<entity id>/<path>``.

One interface, :class:`ArtifactStorage`, over a local directory (:class:`LocalStorage`, the
default) or, later, an S3-compatible bucket. Writes are atomic and report an md5 digest;
:meth:`ArtifactStorage.verify` checks one::

    from assay.storage import LocalStorage

    storage = LocalStorage("artifacts")
    info = storage.put_bytes(dataset_id, "data/part-0.parquet", payload)
    storage.verify(dataset_id, "data/part-0.parquet", info.md5)
"""

from ._base import CHUNK_SIZE, ArtifactInfo, ArtifactStorage, Chunks
from ._local import LocalStorage

__all__ = ["CHUNK_SIZE", "ArtifactInfo", "ArtifactStorage", "Chunks", "LocalStorage"]
