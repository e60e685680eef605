"""Entity ids: ``uuid4().hex`` for new entities, ``uuid5`` for ids derived from a parent."""

from __future__ import annotations

import re
import uuid

__all__ = [
    "generate_entity_id",
    "is_entity_id",
    "namespaced_id",
    "null_id",
    "replication_id",
    "score_id",
]

_ID_RE = re.compile(r"^[0-9a-f]{32}$")


def generate_entity_id() -> str:
    """A new unique entity id: 32 lowercase hex digits."""
    return uuid.uuid4().hex


def null_id() -> str:
    """The all-zero id, for things whose identity does not matter."""
    return uuid.UUID(int=0).hex


def is_entity_id(value: str) -> bool:
    """True if ``value`` has the form of an entity id."""
    return isinstance(value, str) and _ID_RE.match(value) is not None


def namespaced_id(namespace_id: str, name: str) -> str:
    """The id of the thing called ``name`` inside the entity ``namespace_id``:
    ``uuid5(UUID(namespace_id), name).hex``; the same inputs always give the same id."""
    return uuid.uuid5(uuid.UUID(hex=namespace_id), name).hex


def replication_id(evaluation_id: str, replication_index: int) -> str:
    """The id of replication ``replication_index`` (0-based) of an evaluation."""
    return namespaced_id(evaluation_id, str(replication_index))


def score_id(analysis_id: str, score_name: str) -> str:
    """The id of the score called ``score_name`` produced by an analysis."""
    return namespaced_id(analysis_id, score_name)
