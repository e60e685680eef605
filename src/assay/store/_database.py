"""The database behind an :class:`~assay.store.EntityStore`: its engine, its transactions,
and the translation of database failures into Assay errors.

SQLite gets WAL mode (readers never wait for the writer), a busy timeout (writers wait for
each other instead of failing), ``synchronous=NORMAL`` (durable at checkpoints, no fsync per
commit) and enforced foreign keys. SQLite's Python driver starts transactions lazily and
upgrades a read lock to a write lock mid-transaction, which fails at once (no busy wait) when
another process wrote in between; so the driver's transaction handling is switched off and the
store emits ``BEGIN IMMEDIATE`` itself for write transactions (``BEGIN`` for reads). Nothing
here applies to PostgreSQL, which needs none of it. See ``docs/design/store.md``.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.pool import StaticPool

from assay import errors

from ._tables import metadata

__all__ = ["WRITE_OPTION", "Database", "is_memory_sqlite", "make_engine"]

#: Execution option that marks a connection as one that writes (SQLite: ``BEGIN IMMEDIATE``).
WRITE_OPTION = "assay_write"

_dumps = functools.partial(json.dumps, separators=(",", ":"), allow_nan=False)


def is_memory_sqlite(url: sa.URL) -> bool:
    """True for an in-memory SQLite database (one connection, shared by all threads)."""
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def make_engine(url: sa.URL, *, busy_timeout: float) -> sa.Engine:
    """An engine for ``url``; ``busy_timeout`` is how long (seconds) a SQLite writer waits
    for the database lock before giving up."""
    options: dict[str, Any] = {"json_serializer": _dumps}
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True, **options)
    memory = is_memory_sqlite(url)
    if memory:
        # One shared connection; the store serialises all access to it with a lock.
        options.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        # as many pooled connections as a server has request threads (anyio's default of 40):
        # with fewer, a busy server opened and closed a connection (and ran the PRAGMAs
        # below) for most requests, which cost more than the query (gets 1,100 -> 1,700/s at 50
        # concurrent requests in-process). Idle SQLite connections cost next to nothing.
        options.update(connect_args={"timeout": busy_timeout}, pool_size=40, max_overflow=24)
    engine = sa.create_engine(url, **options)
    busy_ms = int(busy_timeout * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the store emits BEGIN itself (below)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            if not memory:
                cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        writes = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")

    return engine


class Database:
    """One database, shared by the threads of a process: hands out transactions.

    ``transaction(write=True)`` takes the write lock at once on SQLite (``BEGIN IMMEDIATE``);
    reads never wait. After ``fork()`` the child drops the parent's pooled connections.
    """

    def __init__(self, url: sa.URL, *, busy_timeout: float) -> None:
        self.url = url
        self._engine = make_engine(url, busy_timeout=busy_timeout)
        self._writer = self._engine.execution_options(**{WRITE_OPTION: True})
        # An in-memory SQLite database is one connection: transactions must take turns.
        self._serial: AbstractContextManager[Any] = (
            threading.RLock() if is_memory_sqlite(url) else nullcontext()
        )
        # Writers of a SQLite file take turns in this process before they ask SQLite: SQLite's
        # busy handler polls with sleeps of up to 100 ms, so threads of one process competing
        # for the write lock there gave a busy server's creates a p99 latency of ~1 s. Other
        # processes still wait in SQLite (busy_timeout).
        self._busy_timeout = busy_timeout
        self._sqlite_file = url.get_backend_name() == "sqlite" and not is_memory_sqlite(url)
        self._writers = threading.RLock()
        self._pid = os.getpid()
        self._closed = False

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        self._closed = True
        self._engine.dispose()

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[sa.Connection]:
        """One transaction, committed when the block ends and rolled back if it raises.
        Database failures come out as Assay errors; IntegrityError is left to the caller."""
        if self._closed:
            raise errors.PlatformError(
                f"the entity store {self.url.render_as_string(hide_password=True)} is closed; "
                "open a new EntityStore"
            )
        if os.getpid() != self._pid:  # forked: never share pooled connections with the parent
            self._engine.dispose(close=False)
            self._writers = threading.RLock()
            self._pid = os.getpid()
        if write and self._sqlite_file:
            if not self._writers.acquire(timeout=self._busy_timeout):
                raise errors.UnavailableError(
                    "the entity store is busy (another write held it for over "
                    f"{self._busy_timeout:g} s); retry shortly",
                    retry_after=1.0,
                )
            try:
                with self._transaction(write=True) as conn:
                    yield conn
            finally:
                self._writers.release()
        else:
            with self._transaction(write=write) as conn:
                yield conn

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[sa.Connection]:
        with self._serial:
            try:
                with (self._writer if write else self._engine).begin() as conn:
                    yield conn
            except sa.exc.IntegrityError:
                raise
            except sa.exc.OperationalError as exc:
                if "locked" in str(exc.orig) or "busy" in str(exc.orig):
                    raise errors.UnavailableError(
                        f"the entity store is busy ({exc.orig}); retry shortly", retry_after=1.0
                    ) from exc
                raise errors.PlatformError(f"the entity store failed: {exc.orig}") from exc
            except sa.exc.StatementError as exc:
                raise errors.PlatformError(f"the entity store failed: {exc}") from exc

    def create_tables(self) -> None:
        """Create the store's tables where missing. In a write transaction, so that processes
        opening a new database take turns; PostgreSQL may still see two at once: retried."""
        for attempt in range(3):
            try:
                with self.transaction(write=True) as conn:
                    metadata.create_all(conn)
                return
            except (errors.PlatformError, sa.exc.IntegrityError):
                if attempt == 2:
                    raise
