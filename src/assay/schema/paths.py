"""Rules for artifact paths: where a file lives inside its entity's directory.

An artifact path is relative, uses ``/`` as separator, never leaves the entity directory
(no ``..``), and avoids characters that are unsafe on common file systems or in URLs
(:func:`validate_artifact_path`, which the storage applies to every path it is given).

A path that a *user* names — a declared artifact or Module file, a notebook's
``notebookPath``, the module file of a ``python`` runner's ``target`` — has one check more,
:func:`check_entity_path`: no segment may start with :data:`RESERVED_PREFIX`, the names the
platform keeps for itself in every entity directory (``.assay/`` for logs and work files,
``.assay-tmp-*`` for writes in progress); and where the path is read on disk, it must resolve
inside its entity's directory (no symbolic link leads out). It is the one check of such paths.
"""

from __future__ import annotations

import re
from pathlib import Path

from assay import errors

__all__ = [
    "MAX_PATH_BYTES",
    "MAX_SEGMENT_BYTES",
    "RESERVED_PREFIX",
    "check_entity_path",
    "validate_artifact_path",
]

MAX_PATH_BYTES = 900
MAX_SEGMENT_BYTES = 255
_FORBIDDEN = re.compile(r'[\x00-\x1f\x7f#?%<>:"|*\\]')
_WINDOWS_RESERVED = re.compile(r"^(CON|PRN|AUX|NUL|COM[1-9]|LPT[1-9])(\..*)?$", re.IGNORECASE)
#: Names in an entity directory that start with this (in any case) are the platform's own.
RESERVED_PREFIX = ".assay"


def validate_artifact_path(path: str, *, field: str = "path", entity: str | None = None) -> str:
    """Return ``path`` if it is a safe relative artifact path, else raise
    :class:`assay.errors.UnsafePathError` (a ValidationError, 400 from the server) saying which
    rule it breaks."""

    def bad(rule: str) -> errors.UnsafePathError:
        where = f"{entity}: " if entity else ""
        return errors.UnsafePathError(
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


def check_entity_path(
    path: str, *, field: str = "path", entity: str | None = None, root: Path | None = None
) -> str:
    """Return ``path`` if a user may name it inside an entity: a valid artifact path
    (:func:`validate_artifact_path`: relative, no ``..``, not absolute) with no segment that
    starts with :data:`RESERVED_PREFIX`; with ``root`` (the entity's directory on disk), one
    that also resolves inside ``root`` (symbolic links followed). Otherwise
    :class:`assay.errors.UnsafePathError` naming ``entity``, ``field`` and the rule broken."""
    validate_artifact_path(path, field=field, entity=entity)
    where = f"{entity}: " if entity else ""
    for segment in path.split("/"):
        if segment.lower().startswith(RESERVED_PREFIX):
            raise errors.UnsafePathError(
                f"{where}{field} {path!r} is not a valid path: the name {segment!r} is reserved "
                f"for the platform (names starting with {RESERVED_PREFIX!r}, such as '.assay/' "
                "and '.assay-tmp-...', hold its own files); rename it",
                field=field,
                value=path,
                entity=entity,
            )
    if root is not None:
        base = Path(root).resolve()
        if not (base / path).resolve().is_relative_to(base):
            raise errors.UnsafePathError(
                f"{where}{field} {path!r} leads outside its entity's directory through a "
                "symbolic link; a path must stay inside the entity",
                field=field,
                value=path,
                entity=entity,
            )
    return path
