"""Artifact storage: the files of entities, under ``<entity id>/<path>``.

One interface, :class:`ArtifactStorage`, over a local directory (:class:`LocalStorage`, the
default) or an S3-compatible bucket (:class:`S3Storage`, ``s3://bucket/prefix``; boto3 is
imported only when one is opened). :func:`open_storage` gives the one a setting names. Writes
are atomic and report an md5 digest; :meth:`ArtifactStorage.verify` checks one::

    from assay.storage import LocalStorage

    storage = LocalStorage("artifacts")
    info = storage.put_bytes(dataset_id, "data/part-0.parquet", payload)
    storage.verify(dataset_id, "data/part-0.parquet", info.md5)
"""

from ._base import CHUNK_SIZE, ArtifactInfo, ArtifactStorage, Chunks
from ._local import LocalStorage
from ._open import open_storage
from ._s3 import S3Location, S3Storage

__all__ = [
    "CHUNK_SIZE",
    "ArtifactInfo",
    "ArtifactStorage",
    "Chunks",
    "LocalStorage",
    "S3Location",
    "S3Storage",
    "open_storage",
]
