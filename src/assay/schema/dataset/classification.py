"""Canonical components for classification."""

from __future__ import annotations

from assay.schema.base import SchemaModel

__all__ = ["Label"]


class Label(SchemaModel):
    """A single discrete label for an item."""

    label: str
    """The discrete label of the item."""
