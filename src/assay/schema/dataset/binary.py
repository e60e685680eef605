"""Canonical components for binary media, and the base64 text form of binary data.

On the JSON wire, binary values are base64 strings (``encode``/``decode``); in Arrow they are
``binary`` columns.
"""

from __future__ import annotations

import base64
import binascii

from pydantic import ConfigDict

from assay import errors
from assay.schema.base import SchemaModel

__all__ = ["Media", "decode", "encode"]


def encode(data: bytes | bytearray | memoryview) -> str:
    """``data`` as a base64 string."""
    return base64.b64encode(data).decode("ascii")


def decode(data: str) -> bytes:
    """The bytes of a base64 string; an error naming the problem if it is not base64."""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise errors.ValidationError(f"not a valid base64 string ({exc}): {data[:40]!r}") from None


class Media(SchemaModel):
    """Binary data with its media type (an image, a sound, a document)."""

    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    data: bytes
    """The binary data (base64 in JSON)."""
    mediaType: str
    """The IETF media type (MIME type) of the data, e.g. ``image/png``."""
