"""A PostgreSQL server for the platform tests that need one (see ``tests/postgres.py``)."""

from tests.postgres import postgres_url

__all__ = ["postgres_url"]
