"""The store tests run on PostgreSQL too: the session's server (see ``tests/postgres.py``)."""

from tests.postgres import postgres_url

__all__ = ["postgres_url"]
