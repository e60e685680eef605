"""The tables of the entity store (SQLAlchemy Core), portable to SQLite and PostgreSQL.

One row per entity in ``entities`` holds the whole document (``doc``) and the columns that
queries filter and order on; labels and named references get side tables so that a filter is
an indexed lookup rather than a scan of JSON. Text columns have no length limit (PostgreSQL
would refuse an over-long value where SQLite would not); ids are checked before they are
written. See ``docs/design/store.md``.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "ID_LENGTH",
    "TIME_LENGTH",
    "claims",
    "entities",
    "entity_labels",
    "entity_refs",
    "metadata",
]

#: Entity ids are ``uuid4().hex``: 32 lowercase hex digits.
ID_LENGTH = 32
#: Timestamps are stored as fixed-width UTC strings, ``2024-05-01T12:00:00.000000Z``, so that
#: string order is time order on every database (see ``_documents.canonical_time``).
TIME_LENGTH = 27

#: Ids and times are compared byte by byte (PostgreSQL's default collation could order
#: them by locale rules); SQLite compares bytes already.
_Key = sa.String(ID_LENGTH).with_variant(sa.String(ID_LENGTH, collation="C"), "postgresql")
_Time = sa.String(TIME_LENGTH).with_variant(sa.String(TIME_LENGTH, collation="C"), "postgresql")

metadata = sa.MetaData()

entities = sa.Table(
    "entities",
    metadata,
    sa.Column("id", _Key, primary_key=True),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("account", sa.String, nullable=False),
    sa.Column("status", sa.String, nullable=True),
    sa.Column("reason", sa.String, nullable=True),
    sa.Column("name", sa.String, nullable=True),
    sa.Column("creation_time", _Time, nullable=False),
    sa.Column("last_transition_time", _Time, nullable=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("doc", sa.JSON, nullable=False),
    sa.Index("ix_entities_kind_time", "kind", "creation_time", "id"),
    sa.Index("ix_entities_time", "creation_time", "id"),
    sa.Index("ix_entities_account", "account"),
    sa.Index("ix_entities_status", "status"),
    sa.Index("ix_entities_name", "name"),
)

entity_labels = sa.Table(
    "entity_labels",
    metadata,
    sa.Column(
        "entity_id",
        _Key,
        sa.ForeignKey("entities.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("key", sa.String, primary_key=True),
    sa.Column("value", sa.String, nullable=False),
    sa.Index("ix_entity_labels_key_value", "key", "value"),
)

entity_refs = sa.Table(
    "entity_refs",
    metadata,
    sa.Column(
        "entity_id",
        _Key,
        sa.ForeignKey("entities.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("field", sa.String, primary_key=True),
    sa.Column("ref", _Key, primary_key=True),
    sa.Index("ix_entity_refs_field_ref", "field", "ref"),
)

#: Leases: the process holding an unexpired claim on an entity is the one that runs its workflow.
#: No foreign key: a claim may be taken before (or outlive) the entity record, and the key
#: may name something that is not an entity (a singleton job such as the scheduler).
claims = sa.Table(
    "claims",
    metadata,
    sa.Column("entity_id", sa.String, primary_key=True),
    sa.Column("owner", sa.String, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)
