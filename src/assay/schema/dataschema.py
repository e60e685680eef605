"""``DataSchema``: the schema of a data set or of an inference output, as carried on the wire."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from assay.schema.base import SchemaModel

if TYPE_CHECKING:
    import pyarrow

__all__ = ["DataSchema", "DyffDataSchema"]


class DyffDataSchema(SchemaModel):
    """A schema named by its canonical components (e.g. ``["text.Text"]``)."""

    components: list[str] = Field(min_length=1)
    """The named canonical components; the schema is their composition."""
    schemaVersion: Literal["0.1"] = "0.1"
    """Version of the component naming scheme."""

    def model_type(self) -> type[BaseModel]:
        """The composite model type: the fields of the components, in the order listed
        (:func:`assay.schema.dataset.component_model`)."""
        from assay.schema.dataset import component_model

        return component_model(self)


class DataSchema(SchemaModel):
    """The schema of some Arrow data, in one or more encodings."""

    arrowSchema: str
    """The Arrow schema: base64 of the IPC-serialised ``pyarrow.Schema``."""
    dyffSchema: DyffDataSchema | None = None
    """The schema as canonical components, where it is made of them."""
    jsonSchema: dict[str, Any] | None = None
    """The schema as JSON Schema, where known."""

    def arrow_schema(self) -> pyarrow.Schema:
        """Decode :attr:`arrowSchema` into a ``pyarrow.Schema``."""
        from assay.schema.dataset.arrow import decode_schema

        return decode_schema(self.arrowSchema)

    @staticmethod
    def from_arrow(schema: pyarrow.Schema) -> DataSchema:
        """A DataSchema that carries ``schema`` as is."""
        from assay.schema.dataset.arrow import encode_schema

        return DataSchema(arrowSchema=encode_schema(schema))

    @staticmethod
    def from_model(model: type[BaseModel]) -> DataSchema:
        """The schema of data shaped like the pydantic model type ``model``, as it is (no
        special fields added): its Arrow schema and its JSON Schema."""
        from assay.schema.dataset.arrow import arrow_schema, encode_schema

        return DataSchema(
            arrowSchema=encode_schema(arrow_schema(model)), jsonSchema=model.model_json_schema()
        )

    @staticmethod
    def make_input_schema(schema: Any) -> DataSchema:
        """The schema of inference inputs: ``schema`` plus the special ``_index_`` field."""
        from assay.schema.dataset import make_input_schema

        return make_input_schema(schema)

    @staticmethod
    def make_output_schema(schema: Any) -> DataSchema:
        """The schema of evaluation outputs: ``_index_``, ``_replication_`` and ``responses``
        (a list of ``schema`` items, each with ``_response_index_``)."""
        from assay.schema.dataset import make_output_schema

        return make_output_schema(schema)
