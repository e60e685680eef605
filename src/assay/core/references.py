"""References: the one check of every id a request names.

A request names other entities by id — a session's service, an evaluation's data set and
session, a Method's Modules, an analysis's Method, inputs and scope, a service's Model and
Modules, a Family's members, a pipeline step's service. Each is looked up here, by
:func:`find` (or :func:`resolve`, which raises), and nowhere else, so that one rule holds for
all of them: an entity the caller may not use is answered **exactly as an id that names no
entity** — same error, same message — and another account's ids cannot be probed
(``docs/design/server.md``, "403 or 404").

Who the caller is: the server runs each request that names ids inside :func:`acting_for`,
with a :class:`Viewer` made from the request's token (``assay.server.access.acting_as``).
Outside it (``LocalPlatform``, whose one user owns everything, and the platform's own
workflows) every entity may be used.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol

from assay import errors
from assay.schema.platform import entity_class

__all__ = ["Viewer", "acting_for", "find", "may_use", "not_found", "resolve"]


class Viewer(Protocol):
    """Whether the caller may build on an entity (refer to it in a request)."""

    def __call__(self, kind: str, account: str, id: str) -> bool:
        """True if the caller may use the entity ``id`` (of ``kind``, owned by ``account``);
        False if it must look as if it did not exist. May raise
        :class:`~assay.errors.PermissionDeniedError` for an entity the caller can see but
        not use."""
        ...


_VIEWER: ContextVar[Viewer | None] = ContextVar("assay_reference_viewer", default=None)


@contextmanager
def acting_for(viewer: Viewer) -> Iterator[None]:
    """Resolve references with ``viewer``'s rights until the block ends (in this thread or
    task, and in what it runs in copies of its context)."""
    token = _VIEWER.set(viewer)
    try:
        yield
    finally:
        _VIEWER.reset(token)


def may_use(kind: str, account: str, id: str) -> bool:
    """Whether the current caller may refer to the entity (always, outside
    :func:`acting_for`)."""
    viewer = _VIEWER.get()
    return viewer is None or viewer(kind, account, id)


def find(core: Any, kind: str, id: str) -> dict[str, Any] | None:
    """The stored document of entity ``id`` if it exists, is a ``kind`` and the caller may
    use it; otherwise None (the three cases look the same)."""
    record = core.store.get(id) if isinstance(id, str) else None
    if record is None:
        return None
    doc: Mapping[str, Any] = record.doc
    if doc.get("kind") != kind or not may_use(kind, str(doc.get("account")), id):
        return None
    return dict(doc)


def not_found(what: str, field: str, kind: str, id: str) -> errors.NotFoundError:
    """The answer for a reference to no entity the caller may use."""
    return errors.NotFoundError(
        f"{what}: {field} refers to {kind} {id!r}, which does not exist (create it first, or "
        "check the id)",
        kind=kind,
        id=id,
    )


def resolve(core: Any, kind: str, id: str, *, what: str, field: str) -> Any:
    """The entity ``id`` of ``kind`` that ``field`` of a request (``what``) names, or
    :func:`not_found`."""
    doc = find(core, kind, id)
    if doc is None:
        raise not_found(what, field, kind, id)
    return entity_class(kind).model_validate(doc)
