"""Canonical data components, and the schemas of inference inputs and outputs.

Components are pydantic models, grouped in one module per family, and named on the wire as
``"<module>.<Class>"`` (the names a :class:`~assay.schema.dataschema.DyffDataSchema` lists):

- :mod:`~assay.schema.dataset.text`: ``text.Text``, ``text.Tokens``, ``text.TaggedSpan``,
  ``text.TaggedSpans``;
- :mod:`~assay.schema.dataset.classification`: ``classification.Label``;
- :mod:`~assay.schema.dataset.embedding`: ``embedding.Embedding`` (and fixed-size vectors from
  :func:`~assay.schema.dataset.embedding.embedding`);
- :mod:`~assay.schema.dataset.binary`: ``binary.Media``.

:func:`make_input_schema` and :func:`make_output_schema` turn a component list, a model type or
an Arrow schema into the :class:`~assay.schema.dataschema.DataSchema` of inference inputs
(``_index_`` first) and evaluation outputs (``_index_``, ``_replication_``, ``responses``).
The Arrow schema is the same whichever form the schema is given in. Arrow helpers live in
:mod:`~assay.schema.dataset.arrow`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import pyarrow as pa
import pydantic
from pydantic import BaseModel, Field

from assay import errors
from assay.schema.base import SchemaModel
from assay.schema.dataschema import DataSchema, DyffDataSchema
from assay.schema.dataset import arrow, binary, classification, embedding, text
from assay.schema.dataset.arrow import RESPONSES_DOC, Item, ReplicatedItem, ResponseItem

__all__ = [
    "Item",
    "ReplicatedItem",
    "ResponseItem",
    "SchemaLike",
    "arrow",
    "binary",
    "classification",
    "component_model",
    "embedding",
    "known_components",
    "make_input_schema",
    "make_item_type",
    "make_output_schema",
    "make_response_item_type",
    "make_response_type",
    "text",
]

_COMPONENTS: dict[str, type[SchemaModel]] = {
    f"{model.__module__.rsplit('.', 1)[-1]}.{model.__name__}": model
    for model in (
        binary.Media,
        classification.Label,
        embedding.Embedding,
        text.TaggedSpan,
        text.TaggedSpans,
        text.Text,
        text.Tokens,
    )
}

#: What :func:`make_input_schema` and :func:`make_output_schema` accept: an Arrow schema, a
#: pydantic model type, a ``DyffDataSchema``, or a list of component names.
SchemaLike: TypeAlias = pa.Schema | type[BaseModel] | DyffDataSchema | Sequence[str]


def known_components() -> dict[str, type[SchemaModel]]:
    """The canonical components by wire name, e.g. ``{"text.Text": text.Text, ...}``."""
    return dict(_COMPONENTS)


def component_model(components: DyffDataSchema | Sequence[str]) -> type[BaseModel]:
    """The model type composed of the named components: their fields, in the order listed."""
    names = components.components if isinstance(components, DyffDataSchema) else components
    if isinstance(names, str):
        names = [names]
    if not names:
        raise errors.ValidationError(
            f"a component list needs at least one name; known components: {sorted(_COMPONENTS)}",
            field="components",
        )
    models: list[type[SchemaModel]] = []
    owner: dict[str, str] = {}
    for name in names:
        model = _COMPONENTS.get(name)
        if model is None:
            raise errors.ValidationError(
                f"unknown data component {name!r}; known components: {sorted(_COMPONENTS)}",
                field="components",
                value=name,
            )
        for field_name in model.model_fields:
            if field_name in owner:
                raise errors.ValidationError(
                    f"components {owner[field_name]!r} and {name!r} both have a field "
                    f"{field_name!r}; a schema can hold only one of them",
                    field="components",
                )
            owner[field_name] = name
        models.append(model)
    if len(models) == 1:
        return models[0]
    # pydantic orders the fields of multiple bases last base first: reverse to keep our order.
    product: type[BaseModel] = pydantic.create_model(
        "".join(m.__name__ for m in models), __base__=tuple(reversed(models))
    )
    return product


def _aliases(model: type[BaseModel]) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items()}


def make_item_type(model: type[BaseModel]) -> type[BaseModel]:
    """``model`` with the ``_index_`` field of :class:`Item` first."""
    if arrow.INDEX_FIELD in _aliases(model):
        return model
    item: type[BaseModel] = pydantic.create_model(f"{model.__name__}Item", __base__=(model, Item))
    return item


def make_response_item_type(model: type[BaseModel]) -> type[BaseModel]:
    """``model`` with the ``_response_index_`` field of :class:`ResponseItem` first."""
    if arrow.RESPONSE_INDEX_FIELD in _aliases(model):
        return model
    item: type[BaseModel] = pydantic.create_model(
        f"{model.__name__}ResponseItem", __base__=(model, ResponseItem)
    )
    return item


def make_response_type(model: type[BaseModel]) -> type[BaseModel]:
    """The type of evaluation output rows whose responses are ``model`` items:
    ``_index_``, ``_replication_``, ``responses: list[<model>ResponseItem]``."""
    item = make_response_item_type(model)
    response: type[BaseModel] = pydantic.create_model(
        f"{model.__name__}Response",
        __base__=ReplicatedItem,
        responses=(list[item], Field(description=RESPONSES_DOC)),  # type: ignore[valid-type]
    )
    return response


def _resolve(schema: Any) -> tuple[pa.Schema, type[BaseModel] | None, DyffDataSchema | None]:
    """``(arrow schema, model type or None, DyffDataSchema or None)`` of a :data:`SchemaLike`."""
    if isinstance(schema, pa.Schema):
        return schema, None, None
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return arrow.arrow_schema(schema), schema, None
    if isinstance(schema, str):
        schema = [schema]
    if isinstance(schema, Sequence) and all(isinstance(name, str) for name in schema):
        model = component_model(schema)  # checks the names before DyffDataSchema does
        return arrow.arrow_schema(model), model, DyffDataSchema(components=list(schema))
    if isinstance(schema, DyffDataSchema):
        model = component_model(schema)
        return arrow.arrow_schema(model), model, schema
    raise errors.ValidationError(
        f"expected a pyarrow.Schema, a pydantic model type, a DyffDataSchema or a list of "
        f"component names, got {schema!r}",
        field="schema",
    )


def make_input_schema(schema: SchemaLike) -> DataSchema:
    """The :class:`DataSchema` of inference inputs: ``_index_: int64`` (not null), then the
    fields of ``schema``. ``jsonSchema`` is filled in for model types and component lists,
    ``dyffSchema`` for component lists."""
    arrow_schema, model, dyff_schema = _resolve(schema)
    return DataSchema(
        arrowSchema=arrow.encode_schema(arrow.make_item_schema(arrow_schema)),
        dyffSchema=dyff_schema,
        jsonSchema=None if model is None else make_item_type(model).model_json_schema(),
    )


def make_output_schema(schema: SchemaLike) -> DataSchema:
    """The :class:`DataSchema` of evaluation outputs for responses shaped like ``schema``:
    ``_index_: int64``, ``_replication_: string``,
    ``responses: list<struct<_response_index_: int64, ...>>``, in that order whatever form
    ``schema`` takes."""
    arrow_schema, model, dyff_schema = _resolve(schema)
    return DataSchema(
        arrowSchema=arrow.encode_schema(arrow.make_response_schema(arrow_schema)),
        dyffSchema=dyff_schema,
        jsonSchema=None if model is None else make_response_type(model).model_json_schema(),
    )
