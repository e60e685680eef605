"""Canonical components for text: whole texts, token lists and tagged spans."""

from __future__ import annotations

from pydantic import Field

from assay.schema.base import SchemaModel

__all__ = ["TaggedSpan", "TaggedSpans", "Text", "Tokens"]


class Text(SchemaModel):
    """Text data."""

    text: str
    """The text."""


class Tokens(SchemaModel):
    """A list of text tokens."""

    tokens: list[str] = Field(default_factory=list)
    """The tokens, in order."""


class TaggedSpan(SchemaModel):
    """A contiguous run of characters of a text, with a tag (e.g. a named entity)."""

    start: int = Field(ge=0)
    """The index of the first character of the span."""
    end: int = Field(ge=0)
    """The index one past the last character of the span."""
    tag: str
    """The tag of the span."""


class TaggedSpans(SchemaModel):
    """A list of tagged spans."""

    spans: list[TaggedSpan]
    """The tagged spans."""
