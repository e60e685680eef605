"""Rules for artifact paths: where a file lives inside its entity's directory.

An artifact path is relative, uses ``/`` as separator, never leaves the entity directory
(no ``..``), and avoids characters that are unsafe on common file systems or in URLs.
"""

from __future__ import annotations

import re

from assay import errors

__all__ = ["MAX_PATH_BYTES", "MAX_SEGMENT_BYTES", "validate_artifact_path"]

MAX_PATH_BYTES = 900
MAX_SEGMENT_BYTES = 255
_FORBIDDEN = re.compile(r'[\x00-\x1f\x7f#?%<>:"|*\\]')
_WINDOWS_RESERVED = re.compile(r"^(CON|PRN|AUX|NUL|COM[1-9]|LPT[1-9])(\..*)?$", re.IGNORECASE)


def validate_artifact_path(path: str, *, field: str = "path", entity: str | None = None) -> str:
    """Return ``path`` if it is a safe relative artifact path, else raise
    :class:`assay.errors.ValidationError` saying which rule it breaks."""

    def bad(rule: str) -> errors.ValidationError:
        where = f"{entity}: " if entity else ""
        return errors.ValidationError(
            f"{where}{field} {path!r} is not a valid artifact path: {rule}",
            field=field,
            value=path,
            entity=entity,
        )

    if not isinstance(path, str) or not path:
        raise bad("it must be a non-empty string")
    if len(path.encode("utf-8")) > MAX_PATH_BYTES:
        raise bad(f"it is longer than {MAX_PATH_BYTES} bytes")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise bad("it must be relative to the entity directory, not absolute")
    match = _FORBIDDEN.search(path)
    if match:
        raise bad(
            f"it contains the reserved character {match.group()!r} "
            '(control characters and # ? % < > : " | * \\ are not allowed)'
        )
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            raise bad("its segments may not be empty, '.' or '..' (it must stay inside the entity)")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise bad(f"the segment {segment[:20]!r}... is longer than {MAX_SEGMENT_BYTES} bytes")
        if _WINDOWS_RESERVED.match(segment):
            raise bad(f"the segment {segment!r} is a reserved device name")
        if segment != segment.strip() or segment.endswith("."):
            raise bad(f"the segment {segment!r} starts or ends with a space or ends with '.'")
    return path
