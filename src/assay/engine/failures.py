"""How the engine tells what went wrong when a workflow's writes fail: a full disk (or quota,
or database) anywhere in an exception's chain, and which store errors are worth retrying.

A handler's write may fail deep inside a library that wraps the ``OSError`` (pyarrow, a
thread pool, SQLAlchemy over ``sqlite3``), so :func:`storage_full` walks the whole chain
(``__cause__``, ``__context__``, and SQLAlchemy's ``orig``). See ``docs/design/workflows.md``,
"A full disk".
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from assay import errors

__all__ = ["chain", "retryable", "storage_full", "storage_full_message"]

#: ``errno`` values that mean "no space": the device is full, or the user's quota is.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
_SQLITE_FULL = 13  # sqlite3.SQLITE_FULL
_POSTGRES_DISK_FULL = "53100"  # SQLSTATE disk_full


def chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception behind it (causes, contexts, SQLAlchemy's ``orig``),
    each once."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        orig = getattr(item, "orig", None)
        todo += [item.__context__, item.__cause__]
        if isinstance(orig, BaseException):
            todo.append(orig)


def storage_full(exc: BaseException) -> BaseException | None:
    """The exception in ``exc``'s chain that says the storage is full (``ENOSPC``,
    ``EDQUOT``, SQLite's "database or disk is full", PostgreSQL's ``disk_full``), or None."""
    for item in chain(exc):
        if isinstance(item, OSError) and item.errno in _NO_SPACE:
            return item
        if getattr(item, "sqlite_errorcode", None) == _SQLITE_FULL:
            return item
        if type(item).__module__.startswith("sqlite3") and "disk is full" in str(item):
            return item
        if getattr(item, "sqlstate", None) == _POSTGRES_DISK_FULL:
            return item
    return None


def retryable(exc: BaseException) -> bool:
    """True for a failure to write that may pass: a full disk, a busy or unreachable
    database, an ``OSError``. False for the rest (a closed store, a bug)."""
    import sqlalchemy as sa

    if storage_full(exc) is not None:
        return True
    return any(
        isinstance(item, errors.UnavailableError | sa.exc.OperationalError | OSError)
        for item in chain(exc)
    )


def storage_full_message(
    kind: str,
    entity_id: str,
    full: BaseException,
    *,
    storage_root: Path | None,
    database: str | None,
) -> str:
    """What a workflow that failed on a full storage says: the entity, what could not be
    written where, how much space is left there, and the fix."""
    filename = getattr(full, "filename", None) if isinstance(full, OSError) else None
    if isinstance(full, OSError):
        reason = os.strerror(full.errno) if full.errno else str(full)
        code = errno.errorcode.get(full.errno or 0, "")
        outputs = storage_root / entity_id if storage_root else "the storage"
        what = f"{filename}" if filename else f"its outputs under {outputs}"
        place = _directory(Path(os.fsdecode(filename)), storage_root) if filename else storage_root
        detail = f"{reason}{f', {code}' if code else ''}"
    else:  # the database
        what = f"to the entity store {database or ''}".rstrip()
        place = _database_directory(database)
        detail = str(full)
    free = _free(place)
    where = f"in {place}{f' ({free} free now)' if free else ''}" if place else "on the device"
    fix = f"free space {where}, then create the {kind} again"
    if kind == "Evaluation":
        fix += (
            " (with the evaluation's response cache on, answers received before are not "
            "asked for again)"
        )
    return (
        f"{kind} {entity_id} failed because the storage is full: it could not write {what} "
        f"({detail}). To run it: {fix}"
    )


def _directory(path: Path, storage_root: Path | None) -> Path:
    """The storage root if ``path`` is under it, else the nearest existing directory."""
    if storage_root is not None and path.is_relative_to(storage_root):
        return storage_root
    for parent in (path, *path.parents):
        if parent.is_dir():
            return parent
    return path.parent


def _database_directory(database: str | None) -> Path | None:
    """The directory of a SQLite store's file (None for other databases)."""
    if not database or not database.startswith("sqlite"):
        return None
    import sqlalchemy as sa

    file = sa.make_url(database).database
    return Path(file).parent if file else None


def _free(place: Path | None) -> str:
    if place is None:
        return ""
    try:
        free = shutil.disk_usage(place).free
    except OSError:
        return ""
    size = float(free)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            return f"{free:,} bytes" if free < 1024 else f"{size:,.1f} {unit}"
    return f"{free:,} bytes"  # pragma: no cover - the loop always returns
