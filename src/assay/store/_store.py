"""The entity store: entity documents with indexed columns, versions and claims.

Design notes: ``docs/design/store.md``.
"""

from __future__ import annotations

import copy
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import sqlalchemy as sa

from assay import errors

from ._database import Database
from ._documents import Prepared, Record, RefsArg, canonical_time, label_rows, prepare, ref_rows
from ._query import (
    FieldsArg,
    Filters,
    LabelsArg,
    Match,
    RefsFilterArg,
    check_limit,
    check_order,
    page_statement,
)
from ._tables import claims, entities, entity_labels, entity_refs

#: The read of one entity, built once (building the statement cost as much as running it).
_GET = sa.select(entities.c.doc, entities.c.version, entities.c.kind).where(
    entities.c.id == sa.bindparam("id")
)

__all__ = ["EntityStore"]

#: The columns :meth:`EntityStore.count_by` can group by.
GROUP_COLUMNS = ("kind", "account", "status", "reason", "name")

Doc = dict[str, Any]
Clock = Callable[[], float]


class _StaleVersion(Exception):
    """The row changed between the read and the compare-and-set write."""

    def __init__(self, found: int | None) -> None:
        super().__init__(found)
        self.found = found


class EntityStore:
    """Entity documents in a SQL database (SQLite by default, PostgreSQL for a shared server).

    Thread-safe and process-safe: every method is one transaction, and any number of stores,
    in any number of threads or processes, may open the same database.

    Args:
        url: a SQLAlchemy database URL, e.g. ``sqlite:///assay.db`` or
            ``postgresql+psycopg://user@host/assay``; ``sqlite://`` is a private in-memory store.
        clock: the time in epoch seconds, used for claims and for documents without a
            ``creationTime``; tests pass a controlled clock.
        busy_timeout: seconds a SQLite writer waits for another writer before it gives up
            with :class:`~assay.errors.UnavailableError`.
    """

    def __init__(
        self, url: str | sa.URL, *, clock: Clock = time.time, busy_timeout: float = 30.0
    ) -> None:
        self._clock = clock
        self._db = Database(sa.make_url(url), busy_timeout=busy_timeout)
        self._db.create_tables()

    @classmethod
    def sqlite(
        cls, path: str | os.PathLike[str], *, clock: Clock = time.time, busy_timeout: float = 30.0
    ) -> EntityStore:
        """A store in the SQLite file ``path`` (created, with its directory, if missing)."""
        file = Path(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        url = sa.URL.create("sqlite", database=str(file))
        return cls(url, clock=clock, busy_timeout=busy_timeout)

    @property
    def url(self) -> str:
        """The database URL, with any password hidden."""
        return self._db.url.render_as_string(hide_password=True)

    def close(self) -> None:
        """Close the store's connections. The store cannot be used afterwards."""
        self._db.close()

    def __enter__(self) -> EntityStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EntityStore({self.url!r})"

    # -- documents ---------------------------------------------------------------------------

    def create(self, doc: Mapping[str, Any], *, refs: RefsArg | None = None) -> int:
        """Insert a new entity; return its version (1). ``refs`` are the named references
        that queries can filter on, e.g. ``{"dataset": [dataset_id]}``.

        Raises ConflictError if an entity with that id exists, ValidationError if the
        document lacks ``id``, ``kind`` or ``account`` or has a malformed indexed field.
        """
        self.create_many([doc], refs=None if refs is None else [refs])
        return 1

    def create_many(
        self,
        docs: Iterable[Mapping[str, Any]],
        *,
        refs: Sequence[RefsArg | None] | None = None,
    ) -> None:
        """Insert several new entities in one transaction: all of them or none.
        ``refs``, if given, holds one references mapping (or None) per document."""
        now = canonical_time(datetime.fromtimestamp(self._clock_time(), UTC), field="clock")
        docs = list(docs)
        if refs is not None and len(refs) != len(docs):
            raise errors.ValidationError(
                f"create_many got {len(docs)} documents but {len(refs)} refs entries; "
                "pass one refs mapping (or None) per document",
                field="refs",
            )
        batch = [
            prepare(doc, {} if refs is None else refs[i] or {}, default_time=now)
            for i, doc in enumerate(docs)
        ]
        seen: set[str] = set()
        for item in batch:
            if item.id in seen:
                raise errors.ConflictError(f"{item.kind} {item.id!r} appears twice in the batch")
            seen.add(item.id)
        if not batch:
            return
        try:
            with self._db.transaction(write=True) as conn:
                conn.execute(entities.insert(), [{**b.columns, "version": 1} for b in batch])
                labels = [row for b in batch for row in label_rows(b.id, b.labels)]
                if labels:
                    conn.execute(entity_labels.insert(), labels)
                refs_rows = [row for b in batch for row in ref_rows(b.id, b.refs or [])]
                if refs_rows:
                    conn.execute(entity_refs.insert(), refs_rows)
        except sa.exc.IntegrityError as exc:
            existing = self._existing_ids([b.id for b in batch])
            if not existing:
                raise errors.PlatformError(f"the entity store refused the insert: {exc}") from exc
            kinds = {b.id: b.kind for b in batch}
            named = ", ".join(f"{kinds[i]} {i!r}" for i in existing[:5])
            raise errors.ConflictError(
                f"{named} already exist{'s' if len(existing) == 1 else ''}; "
                "use a new id, or update the existing entity"
            ) from None

    def get(self, id: str, *, kind: str | None = None) -> Record | None:
        """The entity ``id`` (of ``kind``, if given), or None."""
        with self._db.transaction(write=False) as conn:
            row = conn.execute(_GET, {"id": id}).one_or_none()
        if row is None or (kind is not None and row.kind != kind):
            return None
        return Record(row.doc, row.version)

    def require(self, id: str, *, kind: str | None = None) -> Record:
        """The entity ``id`` (of ``kind``, if given); NotFoundError if there is none."""
        record = self.get(id, kind=kind)
        if record is None:
            raise errors.NotFoundError.entity(kind or "Entity", id)
        return record

    def replace(
        self,
        id: str,
        doc: Mapping[str, Any],
        *,
        expected_version: int,
        refs: RefsArg | None = None,
    ) -> int:
        """Replace the document of ``id`` if its version is still ``expected_version``;
        return the new version. ``refs=None`` keeps the stored references.

        Raises ConflictError if the entity was modified since it was read, NotFoundError if
        it does not exist, ValidationError if ``doc`` has another id or kind.
        """
        item = prepare(doc, refs, default_time=None)
        self._check_same_id(id, item)
        with self._db.transaction(write=True) as conn:
            current = self._lock_row(conn, id)
            if current is None:
                raise errors.NotFoundError.entity(item.kind, id)
            if current.version != expected_version:
                raise self._modified(item.kind, id, expected_version, current.version)
            self._check_same_kind(item, current.kind)
            try:
                return self._write(conn, item, current.version)
            except _StaleVersion as stale:
                raise self._modified(item.kind, id, expected_version, stale.found) from None

    def update(
        self,
        id: str,
        mutate: Callable[[Doc], Doc | None],
        *,
        kind: str | None = None,
        refs: RefsArg | Callable[[Doc], RefsArg] | None = None,
        retries: int = 20,
    ) -> Record:
        """Read-modify-write: ``mutate`` gets a copy of the document and returns the new one
        (or None for "no change": nothing is written). ``refs``, if given, replace the stored
        references when the document is written: a mapping, or a function of the new
        document that returns one (for references that follow from the change). Returns the
        record as stored.

        ``mutate`` runs inside the write transaction, with the row locked, so concurrent
        updates from threads or processes are applied one after the other and none is lost;
        it must be quick and must not use the store. Should the compare-and-set still fail
        (a database without row locks), the update is retried up to ``retries`` times.
        """
        for attempt in range(retries + 1):
            try:
                with self._db.transaction(write=True) as conn:
                    current = self._lock_row(conn, id, document=True)
                    if current is None or (kind is not None and current.kind != kind):
                        raise errors.NotFoundError.entity(kind or "Entity", id)
                    changed = mutate(copy.deepcopy(current.doc))
                    if changed is None:
                        return Record(current.doc, current.version)
                    new_refs = refs(changed) if callable(refs) else refs
                    item = prepare(changed, new_refs, default_time=None)
                    self._check_same_id(id, item)
                    self._check_same_kind(item, current.kind)
                    return Record(changed, self._write(conn, item, current.version))
            except _StaleVersion:
                time.sleep(random.uniform(0, 0.005 * (attempt + 1)))
        raise errors.ConflictError(
            f"{kind or 'Entity'} {id!r} was modified concurrently {retries + 1} times in a row; "
            "try again later"
        )

    def delete(self, id: str) -> bool:
        """Purge the entity, its labels, references and claim. False if there was none."""
        with self._db.transaction(write=True) as conn:
            conn.execute(claims.delete().where(claims.c.entity_id == id))
            conn.execute(entity_labels.delete().where(entity_labels.c.entity_id == id))
            conn.execute(entity_refs.delete().where(entity_refs.c.entity_id == id))
            deleted = conn.execute(entities.delete().where(entities.c.id == id))
        return deleted.rowcount > 0

    # -- queries -------------------------------------------------------------------------------

    def query(
        self,
        *,
        kind: Match | None = None,
        ids: Match | None = None,
        account: Match | None = None,
        status: Match | None = None,
        reason: Match | None = None,
        name: Match | None = None,
        labels: LabelsArg | None = None,
        refs: RefsFilterArg | None = None,
        fields: FieldsArg | None = None,
        order: str = "ascending",
        limit: int | None = None,
        after: str | None = None,
    ) -> list[Doc]:
        """The documents that pass every filter, ordered by creation time (then id).

        Each filter is a string (exact match) or a list of strings (any of them).
        ``labels`` maps a key to a value, a list of values, or None ("has the key");
        ``refs`` maps a reference field to an id or a list of ids; ``fields`` maps a
        document field's dotted path (``output.kind``) to a value or a list of values (not
        indexed: use it with ``kind``). For the next page, pass the id of the last document
        of this page as ``after``.
        """
        filters = Filters.of(
            kind=kind,
            ids=ids,
            account=account,
            status=status,
            reason=reason,
            name=name,
            labels=labels,
            refs=refs,
            fields=fields,
        )
        checked_order = check_order(order)
        check_limit(limit)
        if limit == 0:
            return []
        with self._db.transaction(write=False) as conn:
            cursor = None if after is None else self._cursor(conn, after)
            statement = page_statement(filters, order=checked_order, limit=limit, cursor=cursor)
            return [row.doc for row in conn.execute(statement)]

    def iter_query(
        self,
        *,
        kind: Match | None = None,
        ids: Match | None = None,
        account: Match | None = None,
        status: Match | None = None,
        reason: Match | None = None,
        name: Match | None = None,
        labels: LabelsArg | None = None,
        refs: RefsFilterArg | None = None,
        fields: FieldsArg | None = None,
        order: str = "ascending",
        page_size: int = 1000,
    ) -> Iterator[Doc]:
        """Like :meth:`query` without a limit, read ``page_size`` documents at a time
        (one short transaction per page, none held open between pages)."""
        filters = Filters.of(
            kind=kind,
            ids=ids,
            account=account,
            status=status,
            reason=reason,
            name=name,
            labels=labels,
            refs=refs,
            fields=fields,
        )
        checked_order = check_order(order)
        if check_limit(page_size, "page_size") == 0:
            raise errors.ValidationError("page_size must be at least 1", field="page_size")
        return self._pages(filters, checked_order, page_size)

    def count(
        self,
        *,
        kind: Match | None = None,
        ids: Match | None = None,
        account: Match | None = None,
        status: Match | None = None,
        reason: Match | None = None,
        name: Match | None = None,
        labels: LabelsArg | None = None,
        refs: RefsFilterArg | None = None,
        fields: FieldsArg | None = None,
    ) -> int:
        """How many entities pass the filters (the same filters as :meth:`query`)."""
        filters = Filters.of(
            kind=kind,
            ids=ids,
            account=account,
            status=status,
            reason=reason,
            name=name,
            labels=labels,
            refs=refs,
            fields=fields,
        )
        statement = sa.select(sa.func.count()).select_from(entities).where(*filters.conditions())
        with self._db.transaction(write=False) as conn:
            return int(conn.execute(statement).scalar_one())

    def count_by(
        self,
        by: Sequence[str],
        *,
        kind: Match | None = None,
        ids: Match | None = None,
        account: Match | None = None,
        status: Match | None = None,
        reason: Match | None = None,
        name: Match | None = None,
        labels: LabelsArg | None = None,
        refs: RefsFilterArg | None = None,
        fields: FieldsArg | None = None,
    ) -> dict[tuple[str | None, ...], int]:
        """How many entities pass the filters (those of :meth:`query`), per distinct value of
        the columns ``by`` (any of ``kind``, ``account``, ``status``, ``reason``, ``name``):
        one grouped count, no document read (the UI's dashboard counts by kind and status)."""
        columns = []
        for column in by:
            if column not in GROUP_COLUMNS:
                raise errors.ValidationError(
                    f"count_by: cannot group by {column!r}; group by any of "
                    f"{', '.join(GROUP_COLUMNS)}",
                    field="by",
                    value=column,
                )
            columns.append(entities.c[column])
        filters = Filters.of(
            kind=kind,
            ids=ids,
            account=account,
            status=status,
            reason=reason,
            name=name,
            labels=labels,
            refs=refs,
            fields=fields,
        )
        statement = (
            sa.select(*columns, sa.func.count())
            .select_from(entities)
            .where(*filters.conditions())
            .group_by(*columns)
        )
        with self._db.transaction(write=False) as conn:
            return {tuple(row[:-1]): int(row[-1]) for row in conn.execute(statement)}

    # -- claims --------------------------------------------------------------------------------

    def claim(self, id: str, owner: str, ttl: float) -> bool:
        """Take the claim on ``id`` for ``ttl`` seconds: True if ``owner`` now holds it
        (it was free, expired, or already ``owner``'s, in which case it is renewed)."""
        now = self._clock_time()
        expires = now + self._check_ttl(ttl)
        with self._db.transaction(write=True) as conn:
            taken = conn.execute(
                claims.update()
                .where(
                    claims.c.entity_id == id,
                    sa.or_(claims.c.owner == owner, claims.c.expires_at <= now),
                )
                .values(owner=owner, expires_at=expires)
            )
            if taken.rowcount == 1:
                return True
            try:
                with conn.begin_nested():  # a savepoint: PostgreSQL aborts on a failed insert
                    conn.execute(
                        claims.insert().values(entity_id=id, owner=owner, expires_at=expires)
                    )
            except sa.exc.IntegrityError:
                return False  # someone else holds an unexpired claim
            return True

    def renew(self, id: str, owner: str, ttl: float) -> bool:
        """Extend ``owner``'s claim on ``id`` to ``ttl`` seconds from now. False if ``owner``
        does not hold it (never claimed, released, or expired and taken over)."""
        expires = self._clock_time() + self._check_ttl(ttl)
        with self._db.transaction(write=True) as conn:
            renewed = conn.execute(
                claims.update()
                .where(claims.c.entity_id == id, claims.c.owner == owner)
                .values(expires_at=expires)
            )
        return renewed.rowcount == 1

    def release(self, id: str, owner: str) -> bool:
        """Give up ``owner``'s claim on ``id``. False if ``owner`` did not hold it."""
        with self._db.transaction(write=True) as conn:
            released = conn.execute(
                claims.delete().where(claims.c.entity_id == id, claims.c.owner == owner)
            )
        return released.rowcount == 1

    def claim_owner(self, id: str) -> tuple[str, float] | None:
        """``(owner, expires_at)`` of the claim on ``id``, expired or not; None if unclaimed."""
        with self._db.transaction(write=False) as conn:
            row = conn.execute(
                sa.select(claims.c.owner, claims.c.expires_at).where(claims.c.entity_id == id)
            ).one_or_none()
        return None if row is None else (row.owner, float(row.expires_at))

    # -- internals -----------------------------------------------------------------------------

    def _clock_time(self) -> float:
        return float(self._clock())

    def _lock_row(self, conn: sa.Connection, id: str, *, document: bool = False) -> Any:
        """The row of ``id`` (kind, version and optionally doc), locked until the end of the
        transaction (PostgreSQL: ``FOR UPDATE``; SQLite: the whole database is locked)."""
        columns = [entities.c.kind, entities.c.version]
        if document:
            columns.append(entities.c.doc)
        statement = sa.select(*columns).where(entities.c.id == id).with_for_update()
        return conn.execute(statement).one_or_none()

    def _write(self, conn: sa.Connection, item: Prepared, version: int) -> int:
        """Compare-and-set the row of ``item`` from ``version``; return the new version."""
        new_version = version + 1
        updated = conn.execute(
            entities.update()
            .where(entities.c.id == item.id, entities.c.version == version)
            .values(**item.columns, version=new_version)
        )
        if updated.rowcount != 1:
            found = conn.execute(
                sa.select(entities.c.version).where(entities.c.id == item.id)
            ).scalar_one_or_none()
            raise _StaleVersion(found)
        stored = conn.execute(
            sa.select(entity_labels.c.key, entity_labels.c.value).where(
                entity_labels.c.entity_id == item.id
            )
        )
        if {row.key: row.value for row in stored} != item.labels:
            conn.execute(entity_labels.delete().where(entity_labels.c.entity_id == item.id))
            if item.labels:
                conn.execute(entity_labels.insert(), label_rows(item.id, item.labels))
        if item.refs is not None:
            conn.execute(entity_refs.delete().where(entity_refs.c.entity_id == item.id))
            if item.refs:
                conn.execute(entity_refs.insert(), ref_rows(item.id, item.refs))
        return new_version

    def _cursor(self, conn: sa.Connection, after: str) -> tuple[str, str]:
        row = conn.execute(
            sa.select(entities.c.creation_time).where(entities.c.id == after)
        ).one_or_none()
        if row is None:
            raise errors.ValidationError(
                f"after {after!r} is not the id of a stored entity; pass the id of the last "
                "item of the previous page, or leave it out for the first page",
                field="after",
                value=after,
            )
        return (row.creation_time, after)

    def _pages(self, filters: Filters, order: Any, page_size: int) -> Iterator[Doc]:
        cursor: tuple[str, str] | None = None
        while True:
            statement = page_statement(filters, order=order, limit=page_size, cursor=cursor)
            with self._db.transaction(write=False) as conn:
                rows = conn.execute(statement).all()
            for row in rows:
                yield row.doc
            if len(rows) < page_size:
                return
            cursor = (rows[-1].creation_time, rows[-1].id)

    def _existing_ids(self, ids: list[str]) -> list[str]:
        with self._db.transaction(write=False) as conn:
            found = conn.execute(sa.select(entities.c.id).where(entities.c.id.in_(ids)))
            return sorted(row.id for row in found)

    @staticmethod
    def _check_same_id(id: str, item: Prepared) -> None:
        if item.id != id:
            raise errors.ValidationError(
                f"{item.kind} {id!r}: the document's id is {item.id!r}; an entity's id "
                "cannot change",
                field="id",
                value=item.id,
                entity=id,
            )

    @staticmethod
    def _check_same_kind(item: Prepared, stored_kind: str) -> None:
        if item.kind != stored_kind:
            raise errors.ValidationError(
                f"{stored_kind} {item.id!r}: the document's kind is {item.kind!r}; an "
                "entity's kind cannot change",
                field="kind",
                value=item.kind,
                entity=item.id,
            )

    @staticmethod
    def _check_ttl(ttl: float) -> float:
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
            raise errors.ValidationError(
                f"ttl must be a positive number of seconds, not {ttl!r}", field="ttl", value=ttl
            )
        return float(ttl)

    @staticmethod
    def _modified(kind: str, id: str, expected: int, found: int | None) -> errors.AssayError:
        if found is None:
            return errors.NotFoundError.entity(kind, id)
        return errors.ConflictError(
            f"{kind} {id!r} was modified concurrently (expected version {expected}, "
            f"found {found}); read it again and reapply the change"
        )
