"""The entity store: entity records as JSON documents with indexed columns.

SQLite (WAL) by default, PostgreSQL for a shared server, through SQLAlchemy Core::

    from assay.store import EntityStore

    with EntityStore.sqlite("assay.db") as store:
        store.create({"id": id, "kind": "Dataset", "account": "alice", "status": "Created"})
        store.query(kind="Dataset", labels={"team": ["red", "blue"]}, limit=100)

The store works on plain JSON documents; it knows nothing of the entity models. Design notes:
``docs/design/store.md``.
"""

from ._documents import Record, RefsArg
from ._query import ORDERS, FieldsArg, LabelsArg, Match, Order, RefsFilterArg
from ._store import EntityStore

__all__ = [
    "ORDERS",
    "EntityStore",
    "FieldsArg",
    "LabelsArg",
    "Match",
    "Order",
    "Record",
    "RefsArg",
    "RefsFilterArg",
]
