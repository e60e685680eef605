"""Which artifact storage a setting names: a local directory, or ``s3://bucket/prefix``."""

from __future__ import annotations

import os
from pathlib import Path

from assay import errors

from ._base import ArtifactStorage
from ._local import LocalStorage

__all__ = ["S3_CACHE_DIR", "open_storage"]

#: Where, inside a platform's data folder, an S3 storage keeps its local copies.
S3_CACHE_DIR = ".assay/s3-cache"


def open_storage(
    url: str | os.PathLike[str] | None, *, root: str | os.PathLike[str], setting: str = "storage"
) -> ArtifactStorage:
    """The storage that ``url`` names: None (or ``""``) is the directory ``root`` itself,
    ``s3://bucket/prefix`` an S3-compatible bucket (:class:`~assay.storage.S3Storage`,
    checked at once, with its local copies in ``<root>/.assay/s3-cache``), anything else
    without a scheme a local directory. ``setting`` names where ``url`` came from, for the
    message of a bad one (``--storage``, ``ASSAY_STORAGE``...)."""
    if url is None or (isinstance(url, str) and not url.strip()):
        return LocalStorage(root)
    text = os.fspath(url).strip()
    if text.startswith("s3://"):
        from ._s3 import S3Storage

        return S3Storage(text, cache_dir=Path(root) / S3_CACHE_DIR, setting=setting)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise errors.ValidationError(
            f"{setting} {text!r}: storage of scheme {scheme!r} is not supported; use "
            "s3://BUCKET[/PREFIX] for an S3-compatible bucket, or a local directory",
            field=setting,
            value=text,
        )
    return LocalStorage(Path(text).expanduser())
