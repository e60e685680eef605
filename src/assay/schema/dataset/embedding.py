"""Canonical components for embedding vectors."""

from __future__ import annotations

import functools
from typing import Annotated, Any

import pydantic
from pydantic import Field

from assay import errors
from assay.schema.base import SchemaModel
from assay.schema.dataset.arrow import ArrowDType, Float32, Float64

__all__ = ["Embedding", "embedding"]


class Embedding(SchemaModel):
    """An embedding vector of any length (``list<double>`` in Arrow)."""

    embedding: list[float]
    """The embedding vector."""


@functools.cache
def embedding(element_type: Any, size: int) -> type[SchemaModel]:
    """A component type for embedding vectors of exactly ``size`` elements, stored as an Arrow
    ``fixed_size_list<element_type, size>``.

    ``element_type`` is :data:`~assay.schema.dataset.arrow.Float32` or
    :data:`~assay.schema.dataset.arrow.Float64` (or plain ``float``, the same as ``Float64``).
    The same arguments always return the same type.
    """
    if element_type is float:
        element_type = Float64
    if element_type not in (Float32, Float64):
        raise errors.ValidationError(
            f"embedding(): element_type must be Float32 or Float64 (from "
            f"assay.schema.dataset.arrow), got {element_type!r}",
            field="element_type",
        )
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise errors.ValidationError(
            f"embedding(): size must be a positive integer, got {size!r}", field="size"
        )
    width = next(m for m in element_type.__metadata__ if isinstance(m, ArrowDType)).name
    vector = Annotated[list[element_type], Field(min_length=size, max_length=size)]
    model: type[SchemaModel] = pydantic.create_model(
        f"Embedding{width.capitalize()}x{size}",
        __base__=SchemaModel,
        __doc__=f"An embedding vector of {size} {width} values.",
        embedding=(vector, Field(description="The embedding vector.")),
    )
    return model
