"""Arrow schemas derived from pydantic models, and the special fields of Assay's data.

Every Arrow schema in Assay is derived from a pydantic model by :func:`arrow_schema`; it is
never written a second time by hand. The mapping from annotations to Arrow types:

=============================================  ==============================================
annotation                                     Arrow type
=============================================  ==============================================
``str``, ``Literal["a", ...]``, ``str`` enum   ``string``
``int``, ``Literal[1, ...]``, ``int`` enum     ``int64`` (or the width of :class:`ArrowDType`:
                                               :data:`Int8` ... :data:`UInt64`)
``float``                                      ``float64`` (:data:`Float32` for ``float32``)
``bool``                                       ``bool``
``bytes``                                      ``binary``
``datetime``                                   ``timestamp[us, tz=UTC]``
``date``                                       ``date32``
``list[T]``                                    ``list<T>``; ``fixed_size_list<T, n>`` when the
                                               field has ``min_length == max_length == n``
``dict[str, T]``                               ``map<string, T>``
a pydantic model                               ``struct`` of its fields
``T | None``                                   ``T``, nullable
=============================================  ==============================================

Fields are named by their alias (``index`` is ``_index_``), are nullable only when their
annotation is optional, and carry their docstring in the field metadata under ``__doc__``.

Inference inputs carry ``_index_``; evaluation outputs are ``_index_``, ``_replication_`` and
``responses`` (a list of structs whose first field is ``_response_index_``), always in that
order, whatever form the schema was given in.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import types
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import annotated_types
import pyarrow as pa
import pyarrow.ipc
from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo

from assay import errors
from assay.schema.base import SchemaModel

__all__ = [
    "DOC_KEY",
    "INDEX_FIELD",
    "REPLICATION_FIELD",
    "RESPONSES_FIELD",
    "RESPONSE_INDEX_FIELD",
    "ArrowDType",
    "Float32",
    "Float64",
    "Int8",
    "Int16",
    "Int32",
    "Int64",
    "Item",
    "ReplicatedItem",
    "ResponseItem",
    "UInt8",
    "UInt16",
    "UInt32",
    "UInt64",
    "arrow_field",
    "arrow_schema",
    "arrow_type",
    "batches",
    "decode_schema",
    "encode_schema",
    "field_with_docstring",
    "make_item_schema",
    "make_response_item_schema",
    "make_response_schema",
    "schema_docstring",
    "subset_schema",
]

#: The field-metadata key that holds a field's docstring (the reference's key, kept).
DOC_KEY = "__doc__"
INDEX_FIELD = "_index_"
REPLICATION_FIELD = "_replication_"
RESPONSE_INDEX_FIELD = "_response_index_"
RESPONSES_FIELD = "responses"

# ----------------------------------------------------------------------------------------------
# Numeric widths

_DTYPES: dict[str, pa.DataType] = {
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "uint8": pa.uint8(),
    "uint16": pa.uint16(),
    "uint32": pa.uint32(),
    "uint64": pa.uint64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
}

DTypeName = Literal[
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64"
]


@dataclass(frozen=True, slots=True)
class ArrowDType:
    """An annotation marker that stores a numeric field as a given Arrow type.

    Use the aliases rather than the marker: ``score: Float32``, ``count: UInt16``.
    """

    name: DTypeName

    @property
    def arrow(self) -> pa.DataType:
        """The Arrow type."""
        return _DTYPES[self.name]

    @property
    def is_integer(self) -> bool:
        """True for the integer types (which annotate ``int``; the others ``float``)."""
        return "int" in self.name


Int8 = Annotated[int, Field(ge=-(2**7), le=2**7 - 1), ArrowDType("int8")]
Int16 = Annotated[int, Field(ge=-(2**15), le=2**15 - 1), ArrowDType("int16")]
Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1), ArrowDType("int32")]
#: ``int`` already maps to ``int64``; this alias also checks that values fit.
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1), ArrowDType("int64")]
UInt8 = Annotated[int, Field(ge=0, le=2**8 - 1), ArrowDType("uint8")]
UInt16 = Annotated[int, Field(ge=0, le=2**16 - 1), ArrowDType("uint16")]
UInt32 = Annotated[int, Field(ge=0, le=2**32 - 1), ArrowDType("uint32")]
UInt64 = Annotated[int, Field(ge=0, le=2**64 - 1), ArrowDType("uint64")]
Float32 = Annotated[float, ArrowDType("float32")]
Float64 = Annotated[float, ArrowDType("float64")]

# ----------------------------------------------------------------------------------------------
# The special fields, as models: their Arrow fields are derived from these.


class Item(SchemaModel):
    """An indexed item of a data set; the base of inference inputs."""

    index: int = Field(alias=INDEX_FIELD, ge=0, le=2**63 - 1)
    """The index of the item in the data set."""


class ReplicatedItem(Item):
    """An indexed item that belongs to one replication of an evaluation."""

    replication: str = Field(alias=REPLICATION_FIELD)
    """The id of the replication the item belongs to."""


class ResponseItem(SchemaModel):
    """One of the responses to an indexed item."""

    response_index: int = Field(alias=RESPONSE_INDEX_FIELD, ge=0, le=2**63 - 1)
    """The index of the response among the responses to the same ``_index_``."""


#: The docstring of the ``responses`` field of evaluation outputs.
RESPONSES_DOC = "The inference responses to the item, one per output of the service."

# ----------------------------------------------------------------------------------------------
# Annotations -> Arrow types


def _unsupported(where: str, annotation: Any, why: str) -> errors.ValidationError:
    return errors.ValidationError(
        f"cannot derive an Arrow type for {where}: {annotation!r} is {why}",
        field=where,
    )


_SCALARS: dict[type, pa.DataType] = {
    bool: pa.bool_(),
    int: pa.int64(),
    float: pa.float64(),
    str: pa.string(),
    bytes: pa.binary(),
    dt.datetime: pa.timestamp("us", tz="UTC"),
    dt.date: pa.date32(),
}


def _fixed_size(metadata: Sequence[Any]) -> int | None:
    low = high = None
    for item in metadata:
        if isinstance(item, annotated_types.MinLen):
            low = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            high = item.max_length
    return low if low is not None and low == high else None


def _literal_type(annotation: Any, where: str) -> pa.DataType:
    values = typing.get_args(annotation)
    for py_type in (bool, str, int):
        # bool before int: True is an int too.
        if all(type(v) is py_type for v in values):
            return _SCALARS[py_type]
    raise _unsupported(where, annotation, "a Literal of mixed types; use values of one type")


def _enum_type(annotation: type[enum.Enum], where: str) -> pa.DataType:
    values = [member.value for member in annotation]
    if all(isinstance(v, str) for v in values):
        return pa.string()
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return pa.int64()
    raise _unsupported(where, annotation, "an enum whose values are not all str or all int")


def _convert(
    annotation: Any, metadata: Sequence[Any], where: str, seen: tuple[type, ...]
) -> tuple[pa.DataType, bool]:
    """``(arrow type, nullable)`` of ``annotation`` with its pydantic ``metadata``."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        base, *extra = typing.get_args(annotation)
        return _convert(base, [*metadata, *extra], where, seen)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(annotation)
        present = [a for a in args if a is not type(None)]
        if len(present) != 1 or len(present) == len(args):
            raise _unsupported(
                where, annotation, "a union; use one type, or `T | None` for a nullable field"
            )
        arrow, _ = _convert(present[0], metadata, where, seen)
        return arrow, True
    marker = next((m for m in metadata if isinstance(m, ArrowDType)), None)
    if marker is not None:
        expected = int if marker.is_integer else float
        if annotation is not expected:
            raise _unsupported(
                where, annotation, f"marked {marker.name} but is not `{expected.__name__}`"
            )
        return marker.arrow, False
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        item_type, item_nullable = _convert(item, (), f"{where}[]", seen)
        value_field = pa.field("item", item_type, nullable=item_nullable)
        size = _fixed_size(metadata)
        return (pa.list_(value_field) if size is None else pa.list_(value_field, size)), False
    if origin is dict:
        key, value = typing.get_args(annotation) or (Any, Any)
        key_type, _ = _convert(key, (), f"{where} keys", seen)
        value_type, value_nullable = _convert(value, (), f"{where} values", seen)
        return pa.map_(key_type, pa.field("value", value_type, nullable=value_nullable)), False
    if origin is Literal:
        return _literal_type(annotation, where), False
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            if annotation in seen:
                raise _unsupported(where, annotation, "recursive; Arrow types cannot nest forever")
            fields = _model_fields(annotation, (*seen, annotation))
            return pa.struct(fields), False
        if issubclass(annotation, enum.Enum):
            return _enum_type(annotation, where), False
        for py_type, arrow in _SCALARS.items():
            # Exact types first: ``bool`` is an ``int`` and ``datetime`` a ``date``.
            if annotation is py_type:
                return arrow, False
    raise _unsupported(
        where,
        annotation,
        "not a supported type; use str, int, float, bool, bytes, datetime, date, a list, "
        "a dict with str keys, an enum, a Literal or a pydantic model",
    )


def _field(name: str, info: FieldInfo, owner: str, seen: tuple[type, ...]) -> pa.Field:
    wire_name = info.alias or name
    arrow, nullable = _convert(info.annotation, info.metadata, f"{owner}.{wire_name}", seen)
    return field_with_docstring(wire_name, arrow, nullable, docstring=info.description)


def _model_fields(model: type[BaseModel], seen: tuple[type, ...]) -> list[pa.Field]:
    return [_field(n, info, model.__name__, seen) for n, info in model.model_fields.items()]


def arrow_type(annotation: Any) -> pa.DataType:
    """The Arrow type of a Python type annotation (see the table in the module docstring)."""
    arrow, _ = _convert(annotation, (), repr(annotation), ())
    return arrow


def arrow_field(field_name: str, field_info: FieldInfo) -> pa.Field:
    """The Arrow field of one pydantic model field: named by its alias, nullable when optional,
    its docstring in the metadata."""
    return _field(field_name, field_info, "field", ())


def arrow_schema(
    model_type: type[BaseModel], *, metadata: Mapping[str, str] | None = None
) -> pa.Schema:
    """The Arrow schema of a pydantic model type: one field per model field, in order."""
    if not (isinstance(model_type, type) and issubclass(model_type, BaseModel)):
        raise errors.ValidationError(
            f"arrow_schema() expects a pydantic model type, got {model_type!r}; "
            "pass the class (e.g. text.Text), not an instance"
        )
    return pa.schema(_model_fields(model_type, (model_type,)), metadata=metadata)


def field_with_docstring(
    name: str,
    type: pa.DataType,
    nullable: bool = True,
    metadata: Mapping[str, str] | None = None,
    *,
    docstring: str | None = None,
) -> pa.Field:
    """``pyarrow.field()`` with ``docstring`` stored in the metadata under ``__doc__``."""
    merged = dict(metadata or {})
    if docstring:
        merged[DOC_KEY] = docstring
    return pa.field(name, type, nullable, merged or None)


def schema_docstring(schema: pa.Schema) -> str:
    """A plain-text description of ``schema``: one entry per field, nested fields indented."""
    lines: list[str] = []

    def describe(fields: Iterable[pa.Field], depth: int) -> None:
        indent = "  " * depth
        for field in fields:
            doc = (field.metadata or {}).get(DOC_KEY.encode(), b"(no description)").decode()
            lines.append(f"{indent}{field.name} : {field.type}")
            lines.append(f"{indent}  {doc}")
            children = _children(field.type)
            if children:
                describe(children, depth + 1)

    describe(schema, 0)
    return "\n".join(lines)


def _children(arrow: pa.DataType) -> list[pa.Field]:
    if pa.types.is_struct(arrow):
        return [arrow.field(i) for i in range(arrow.num_fields)]
    if pa.types.is_list(arrow) or pa.types.is_fixed_size_list(arrow):
        return [arrow.value_field]
    return []


# ----------------------------------------------------------------------------------------------
# Special fields


def _special(model: type[BaseModel], name: str) -> pa.Field:
    return arrow_field(name, model.model_fields[name])


def _check_special(schema: pa.Schema, special: pa.Field) -> None:
    index = schema.get_field_index(special.name)
    if index != -1 and not schema.field(index).type.equals(special.type):
        raise errors.ValidationError(
            f"field {special.name!r} is reserved for {special.type}, but the schema has it as "
            f"{schema.field(index).type}; remove it (it is added for you) or change its type",
            field=special.name,
        )


def make_item_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with ``_index_: int64`` (not null) as its first field. An ``_index_`` that
    is already there is moved to the front, not duplicated."""
    index = _special(Item, "index")
    _check_special(schema, index)
    rest = [field for field in schema if field.name != INDEX_FIELD]
    return pa.schema([index, *rest], metadata=schema.metadata)


def make_response_item_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with ``_response_index_: int64`` (not null) as its first field."""
    response_index = _special(ResponseItem, "response_index")
    _check_special(schema, response_index)
    for reserved in (INDEX_FIELD, REPLICATION_FIELD):
        if reserved in schema.names:
            raise errors.ValidationError(
                f"an output schema cannot have a field named {reserved!r}: the platform adds it "
                "to every output row; rename the field",
                field=reserved,
            )
    rest = [field for field in schema if field.name != RESPONSE_INDEX_FIELD]
    return pa.schema([response_index, *rest], metadata=schema.metadata)


def make_response_schema(schema: pa.Schema) -> pa.Schema:
    """The schema of evaluation outputs whose responses have the fields of ``schema``:
    ``_index_: int64``, ``_replication_: string``,
    ``responses: list<struct<_response_index_: int64, ...>>``, in that order."""
    item = make_response_item_schema(schema)
    responses = pa.list_(pa.field("item", pa.struct(list(item)), nullable=False))
    return pa.schema(
        [
            _special(ReplicatedItem, "index"),
            _special(ReplicatedItem, "replication"),
            field_with_docstring(RESPONSES_FIELD, responses, False, docstring=RESPONSES_DOC),
        ],
        metadata=schema.metadata,
    )


def subset_schema(schema: pa.Schema, field_names: Sequence[str]) -> pa.Schema:
    """The fields of ``schema`` named in ``field_names``, in that order."""
    missing = [name for name in field_names if name not in schema.names]
    if missing:
        raise errors.ValidationError(
            f"the schema has no field {', '.join(map(repr, missing))}; "
            f"its fields are {schema.names}",
            field=missing[0],
        )
    return pa.schema([schema.field(name) for name in field_names], metadata=schema.metadata)


# ----------------------------------------------------------------------------------------------
# Encoding


def encode_schema(schema: pa.Schema) -> str:
    """``schema`` as base64 of its IPC serialisation (the wire form of ``arrowSchema``)."""
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def decode_schema(schema: str) -> pa.Schema:
    """The ``pyarrow.Schema`` encoded by :func:`encode_schema`."""
    try:
        raw = base64.b64decode(schema, validate=True)
        return pyarrow.ipc.read_schema(pa.py_buffer(raw))
    except (binascii.Error, ValueError, TypeError, pa.ArrowException) as exc:
        raise errors.ValidationError(
            f"arrowSchema is not a base64-encoded, IPC-serialised Arrow schema ({exc}); "
            "produce it with assay.schema.dataset.arrow.encode_schema()",
            field="arrowSchema",
        ) from None


# ----------------------------------------------------------------------------------------------
# Batches


def _check_not_null(array: pa.Array, field: pa.Field, path: str, first_row: int | None) -> None:
    """Raise if a non-nullable ``field`` (or a non-nullable field nested in it) has a null.

    ``first_row`` is the stream position of ``array[0]``; ``None`` once rows cannot be told
    apart (inside lists)."""
    if array.null_count:
        if not field.nullable:
            where = "a row"
            if first_row is not None:
                where = f"row {first_row + array.is_null().to_pylist().index(True)}"
            raise errors.ValidationError(
                f"{where}: field {path!r} is null or missing, but the schema requires it; "
                "supply a value, or make the field optional (`T | None`)",
                field=path,
            )
        array = array.filter(array.is_valid())
        first_row = None
    arrow = field.type
    if pa.types.is_struct(arrow):
        for i in range(arrow.num_fields):
            child = arrow.field(i)
            _check_not_null(array.field(i), child, f"{path}.{child.name}", first_row)
    elif pa.types.is_list(arrow) or pa.types.is_fixed_size_list(arrow):
        _check_not_null(array.flatten(), arrow.value_field, f"{path}[]", None)


def _batch(rows: list[dict[str, Any]], schema: pa.Schema | None, first_row: int) -> pa.RecordBatch:
    try:
        batch = pa.RecordBatch.from_pylist(rows, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise errors.ValidationError(
            f"rows {first_row}..{first_row + len(rows) - 1} do not fit the schema: {exc}"
        ) from None
    if schema is not None:
        for column, field in zip(batch.columns, schema, strict=True):
            _check_not_null(column, field, field.name, first_row)
    return batch


def batches(
    instances: Iterable[dict[str, Any]],
    batch_size: int,
    schema: pa.Schema | None = None,
) -> Iterator[pa.RecordBatch]:
    """Group a stream of records (dicts) into ``RecordBatch``\\es of at most ``batch_size``.

    Give the ``schema``: without it Arrow guesses the types from each batch, and batches may
    disagree. With it, values are converted to the schema's types, keys that are not in the
    schema are ignored, and a missing or null value in a required field is an error naming the
    row and the field.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise errors.ValidationError(
            f"batch_size must be a positive integer, got {batch_size!r}", field="batch_size"
        )
    rows: list[dict[str, Any]] = []
    first_row = 0
    for instance in instances:
        rows.append(instance)
        if len(rows) == batch_size:
            yield _batch(rows, schema, first_row)
            first_row += len(rows)
            rows = []
    if rows:
        yield _batch(rows, schema, first_row)
