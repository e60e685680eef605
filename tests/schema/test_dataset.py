"""Canonical components, Arrow schema derivation, and the input/output schemas."""

from __future__ import annotations

import enum
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import BaseModel, Field

from assay import errors
from assay.schema import dataset
from assay.schema.base import SchemaModel
from assay.schema.dataschema import DataSchema, DyffDataSchema
from assay.schema.dataset import arrow as A
from assay.schema.dataset import (
    binary,
    classification,
    embedding,
    make_input_schema,
    make_output_schema,
    text,
)


def _required(name: str, arrow: pa.DataType) -> pa.Field:
    return pa.field(name, arrow, nullable=False)


def _items(arrow: pa.DataType) -> pa.DataType:
    return pa.list_(pa.field("item", arrow, nullable=False))


def _docs(schema: pa.Schema | pa.DataType) -> list[str]:
    """Every field (nested ones too) that has no ``__doc__`` metadata."""
    missing: list[str] = []
    fields = list(schema) if isinstance(schema, pa.Schema) else A._children(schema)
    for field in fields:
        if field.name != "item" and b"__doc__" not in (field.metadata or {}):
            missing.append(field.name)
        missing.extend(_docs(field.type))
    return missing


# ----------------------------------------------------------------------------------------------
# Components


SPAN = pa.struct(
    [_required("start", pa.int64()), _required("end", pa.int64()), _required("tag", pa.string())]
)


@pytest.mark.parametrize(
    ("component", "expected"),
    [
        (text.Text, pa.schema([_required("text", pa.string())])),
        (text.Tokens, pa.schema([_required("tokens", _items(pa.string()))])),
        (text.TaggedSpan, pa.schema(list(SPAN))),
        (text.TaggedSpans, pa.schema([_required("spans", _items(SPAN))])),
        (classification.Label, pa.schema([_required("label", pa.string())])),
        (embedding.Embedding, pa.schema([_required("embedding", _items(pa.float64()))])),
        (
            binary.Media,
            pa.schema([_required("data", pa.binary()), _required("mediaType", pa.string())]),
        ),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_component_arrow_schema(component: type[BaseModel], expected: pa.Schema) -> None:
    schema = A.arrow_schema(component)
    assert schema.equals(expected)
    assert _docs(schema) == []


def test_component_names_are_the_wire_names() -> None:
    assert dataset.known_components() == {
        "binary.Media": binary.Media,
        "classification.Label": classification.Label,
        "embedding.Embedding": embedding.Embedding,
        "text.TaggedSpan": text.TaggedSpan,
        "text.TaggedSpans": text.TaggedSpans,
        "text.Text": text.Text,
        "text.Tokens": text.Tokens,
    }


def test_tagged_spans_convert_to_arrow_and_parquet_and_back(tmp_path: Any) -> None:
    """The reference cannot convert tagged spans to Arrow (unconstrained ``int``)."""
    model = dataset.make_item_type(dataset.component_model(["text.Text", "text.TaggedSpans"]))
    rows = [
        model.model_validate(
            {
                "_index_": 0,
                "text": "Ada Lovelace met Babbage in London",
                "spans": [
                    {"start": 0, "end": 12, "tag": "PER"},
                    {"start": 17, "end": 24, "tag": "PER"},
                    {"start": 28, "end": 34, "tag": "LOC"},
                ],
            }
        ).model_dump(mode="json"),
        model.model_validate({"_index_": 1, "text": "nothing here", "spans": []}).model_dump(
            mode="json"
        ),
    ]
    schema = make_input_schema(["text.Text", "text.TaggedSpans"]).arrow_schema()
    table = pa.Table.from_batches(list(A.batches(rows, 10, schema)), schema=schema)
    path = tmp_path / "spans.parquet"
    pq.write_table(table, path)
    back = pq.read_table(path)
    # Parquet names list items "element" rather than Arrow's "item"; types and docs survive.
    assert back.schema.equals(schema)
    assert [f.metadata for f in back.schema] == [f.metadata for f in schema]
    assert pq.read_table(path, schema=schema).schema.equals(schema, check_metadata=True)
    assert back.to_pylist() == rows
    assert back.column("spans")[0].as_py()[2] == {"start": 28, "end": 34, "tag": "LOC"}


def test_embedding_factory_gives_a_fixed_size_list() -> None:
    model = embedding.embedding(A.Float32, 4)
    assert embedding.embedding(A.Float32, 4) is model
    schema = A.arrow_schema(model)
    assert schema.field("embedding").type == pa.list_(
        pa.field("item", pa.float32(), nullable=False), 4
    )
    assert model.model_validate({"embedding": [0.5, 1, 2, 3]})
    with pytest.raises(Exception, match="4 items"):
        model.model_validate({"embedding": [0.5]})
    with pytest.raises(errors.ValidationError, match="element_type must be Float32 or Float64"):
        embedding.embedding(int, 4)
    with pytest.raises(errors.ValidationError, match="size must be a positive integer"):
        embedding.embedding(A.Float64, 0)


def test_media_is_base64_in_json() -> None:
    media = binary.Media(data=b"\x89PNG", mediaType="image/png")
    wire = media.model_dump_json()
    assert '"data":"iVBORw=="' in wire
    assert binary.Media.model_validate_json(wire) == media
    assert binary.decode(binary.encode(b"\x00\xff")) == b"\x00\xff"
    with pytest.raises(errors.ValidationError, match="not a valid base64"):
        binary.decode("not base64!")


def test_composed_components_keep_their_order_and_refuse_clashes() -> None:
    model = dataset.component_model(["classification.Label", "text.Text"])
    assert A.arrow_schema(model).names == ["label", "text"]
    with pytest.raises(errors.ValidationError, match=r"unknown data component 'text\.Txt'.*"):
        dataset.component_model(["text.Txt"])
    with pytest.raises(errors.ValidationError, match="both have a field 'text'"):
        dataset.component_model(["text.Text", "text.Text"])


# ----------------------------------------------------------------------------------------------
# Annotations -> Arrow types


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    LOW = 1


class Inner(SchemaModel):
    x: int
    """An x."""


class Everything(SchemaModel):
    s: str
    """s"""
    i: int
    """i"""
    f: float
    """f"""
    b: bool
    """b"""
    raw: bytes
    """raw"""
    when: datetime
    """when"""
    day: date
    """day"""
    small: A.Int8
    """small"""
    count: A.UInt32
    """count"""
    score: A.Float32
    """score"""
    maybe: int | None = None
    """maybe"""
    choice: Literal["a", "b"]
    """choice"""
    colour: Colour
    """colour"""
    level: Level
    """level"""
    inner: Inner
    """inner"""
    inners: list[Inner | None]
    """inners"""
    tags: dict[str, float]
    """tags"""
    pair: list[float] = Field(min_length=2, max_length=2)
    """pair"""
    renamed: int = Field(alias="_renamed_")
    """renamed"""


def test_arrow_types_of_annotations() -> None:
    schema = A.arrow_schema(Everything)
    expected = pa.schema(
        [
            _required("s", pa.string()),
            _required("i", pa.int64()),
            _required("f", pa.float64()),
            _required("b", pa.bool_()),
            _required("raw", pa.binary()),
            _required("when", pa.timestamp("us", tz="UTC")),
            _required("day", pa.date32()),
            _required("small", pa.int8()),
            _required("count", pa.uint32()),
            _required("score", pa.float32()),
            pa.field("maybe", pa.int64(), nullable=True),
            _required("choice", pa.string()),
            _required("colour", pa.string()),
            _required("level", pa.int64()),
            _required("inner", pa.struct([_required("x", pa.int64())])),
            _required(
                "inners",
                pa.list_(pa.field("item", pa.struct([_required("x", pa.int64())]), nullable=True)),
            ),
            _required("tags", pa.map_(pa.string(), _required("value", pa.float64()))),
            _required("pair", pa.list_(pa.field("item", pa.float64(), nullable=False), 2)),
            _required("_renamed_", pa.int64()),
        ]
    )
    assert schema.equals(expected), schema
    assert _docs(schema) == []
    assert schema.field("s").metadata == {b"__doc__": b"s"}


def test_constrained_widths_are_validated() -> None:
    class Small(SchemaModel):
        v: A.Int8

    Small(v=127)
    with pytest.raises(Exception, match="less than or equal to 127"):
        Small(v=128)


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        (int | str, "a union"),
        (Any, "not a supported type"),
        (Literal["a", 1], "mixed types"),
        (set[int], "not a supported type"),
    ],
)
def test_unsupported_annotations_are_clear_errors(annotation: Any, message: str) -> None:
    with pytest.raises(errors.ValidationError, match=message):
        A.arrow_type(annotation)


def test_recursive_model_is_an_error() -> None:
    class Node(SchemaModel):
        children: list[Node]

    Node.model_rebuild()
    with pytest.raises(errors.ValidationError, match="recursive"):
        A.arrow_schema(Node)


def test_arrow_schema_wants_a_model_type() -> None:
    with pytest.raises(errors.ValidationError, match="pass the class"):
        A.arrow_schema(text.Text(text="x"))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# Encoding


def test_encode_decode_round_trip_keeps_metadata() -> None:
    schema = A.arrow_schema(text.TaggedSpans, metadata={"origin": "test"})
    encoded = A.encode_schema(schema)
    assert isinstance(encoded, str)
    assert A.decode_schema(encoded).equals(schema, check_metadata=True)
    data_schema = DataSchema.from_arrow(schema)
    assert data_schema.arrowSchema == encoded
    assert data_schema.arrow_schema().equals(schema, check_metadata=True)


@pytest.mark.parametrize("bad", ["not base64!", "aGVsbG8="])
def test_decode_refuses_garbage(bad: str) -> None:
    with pytest.raises(errors.ValidationError, match="arrowSchema is not"):
        A.decode_schema(bad)


# ----------------------------------------------------------------------------------------------
# Input and output schemas


def test_input_schema_puts_index_first() -> None:
    schema = make_input_schema(text.Text).arrow_schema()
    assert schema.names == ["_index_", "text"]
    assert schema.field("_index_").type == pa.int64()
    assert not schema.field("_index_").nullable
    assert _docs(schema) == []


def test_input_schema_does_not_duplicate_an_existing_index() -> None:
    given = pa.schema([pa.field("text", pa.string()), pa.field("_index_", pa.int64())])
    schema = make_input_schema(given).arrow_schema()
    assert schema.names == ["_index_", "text"]
    wrong = pa.schema([pa.field("_index_", pa.string())])
    with pytest.raises(errors.ValidationError, match="'_index_' is reserved for int64"):
        make_input_schema(wrong)


def test_input_schema_forms_agree() -> None:
    from_arrow = make_input_schema(A.arrow_schema(text.Text))
    from_model = make_input_schema(text.Text)
    from_names = make_input_schema(["text.Text"])
    assert from_arrow.arrowSchema == from_model.arrowSchema == from_names.arrowSchema
    assert from_arrow.jsonSchema is None and from_arrow.dyffSchema is None
    assert from_model.jsonSchema is not None
    assert list(from_model.jsonSchema["properties"]) == ["_index_", "text"]
    assert from_names.dyffSchema == DyffDataSchema(components=["text.Text"])


OUTPUT_FORMS: dict[str, Callable[[], DataSchema]] = {
    "arrow": lambda: make_output_schema(A.arrow_schema(text.Text)),
    "model": lambda: make_output_schema(text.Text),
    "names": lambda: make_output_schema(["text.Text"]),
    "name": lambda: make_output_schema("text.Text"),
    "dyff": lambda: make_output_schema(DyffDataSchema(components=["text.Text"])),
    "static": lambda: DataSchema.make_output_schema(text.Text),
}


def test_output_schema_has_one_column_order_whatever_the_input_form() -> None:
    """The reference's column order depends on the input form; Assay's does not."""
    schemas = {name: make().arrow_schema() for name, make in OUTPUT_FORMS.items()}
    expected = pa.schema(
        [
            _required("_index_", pa.int64()),
            _required("_replication_", pa.string()),
            _required(
                "responses",
                _items(
                    pa.struct(
                        [_required("_response_index_", pa.int64()), _required("text", pa.string())]
                    )
                ),
            ),
        ]
    )
    for name, schema in schemas.items():
        assert schema.equals(expected), name
        assert schema.equals(schemas["model"], check_metadata=True), name
    assert _docs(schemas["model"]) == []


def test_output_schema_is_what_the_response_model_derives() -> None:
    derived = A.arrow_schema(dataset.make_response_type(text.Text))
    made = make_output_schema(text.Text).arrow_schema()
    assert derived.equals(made, check_metadata=True)
    assert A.arrow_schema(dataset.make_item_type(text.Text)).equals(
        make_input_schema(text.Text).arrow_schema(), check_metadata=True
    )


def test_output_schema_refuses_reserved_response_fields() -> None:
    with pytest.raises(errors.ValidationError, match="cannot have a field named '_index_'"):
        make_output_schema(pa.schema([pa.field("_index_", pa.int64())]))


def test_output_schema_json_and_dyff_schema() -> None:
    out = make_output_schema(["text.Text"])
    assert out.dyffSchema == DyffDataSchema(components=["text.Text"])
    assert out.jsonSchema is not None
    assert list(out.jsonSchema["properties"]) == ["_index_", "_replication_", "responses"]


def test_make_schema_refuses_other_things() -> None:
    with pytest.raises(errors.ValidationError, match="needs at least one name"):
        make_input_schema([])
    with pytest.raises(errors.ValidationError, match=r"expected a pyarrow\.Schema"):
        make_input_schema(42)


def test_output_rows_round_trip_through_parquet(tmp_path: Any) -> None:
    schema = make_output_schema(text.Text).arrow_schema()
    rows = [
        {
            "_index_": i,
            "_replication_": "r0",
            "responses": [{"_response_index_": j, "text": f"{i}-{j}"} for j in range(2)],
        }
        for i in range(5)
    ]
    table = pa.Table.from_batches(list(A.batches(rows, 2, schema)), schema=schema)
    pq.write_table(table, tmp_path / "out.parquet")
    assert pq.read_table(tmp_path / "out.parquet").to_pylist() == rows


# ----------------------------------------------------------------------------------------------
# Helpers


def test_batches_groups_and_converts() -> None:
    schema = make_input_schema(text.Text).arrow_schema()
    rows = ({"_index_": i, "text": str(i)} for i in range(5))
    out = list(A.batches(rows, 2, schema))
    assert [b.num_rows for b in out] == [2, 2, 1]
    assert all(b.schema.equals(schema, check_metadata=True) for b in out)
    assert out[2].to_pylist() == [{"_index_": 4, "text": "4"}]
    assert list(A.batches([], 2, schema)) == []


def test_batches_is_lazy() -> None:
    read: list[int] = []

    def source() -> Iterator[dict[str, Any]]:
        for i in range(1000):
            read.append(i)
            yield {"_index_": i, "text": "x"}

    schema = make_input_schema(text.Text).arrow_schema()
    first = next(iter(A.batches(source(), 3, schema)))
    assert first.num_rows == 3
    assert len(read) == 3


def test_batches_names_the_row_and_field_of_a_missing_value() -> None:
    schema = make_input_schema(text.Text).arrow_schema()
    rows: list[dict[str, Any]] = [
        {"_index_": 0, "text": "a"},
        {"_index_": 1, "text": "b"},
        {"_index_": 2},
    ]
    with pytest.raises(errors.ValidationError, match=r"row 2: field 'text' is null or missing"):
        list(A.batches(rows, 2, schema))
    spans = make_input_schema(text.TaggedSpans).arrow_schema()
    bad = [{"_index_": 0, "spans": [{"start": 0, "end": 1, "tag": None}]}]
    with pytest.raises(errors.ValidationError, match=r"field 'spans\[\]\.tag' is null"):
        list(A.batches(bad, 2, spans))


def test_batches_wraps_conversion_errors_and_checks_batch_size() -> None:
    schema = make_input_schema(text.Text).arrow_schema()
    with pytest.raises(errors.ValidationError, match=r"rows 0\.\.0 do not fit the schema"):
        list(A.batches([{"_index_": "zero", "text": "a"}], 5, schema))
    with pytest.raises(errors.ValidationError, match="batch_size must be a positive integer"):
        list(A.batches([], 0, schema))


def test_subset_schema() -> None:
    schema = A.arrow_schema(binary.Media)
    assert A.subset_schema(schema, ["mediaType"]).names == ["mediaType"]
    with pytest.raises(errors.ValidationError, match=r"no field 'nope'; its fields are"):
        A.subset_schema(schema, ["nope"])


def test_schema_docstring_describes_nested_fields() -> None:
    doc = A.schema_docstring(A.arrow_schema(text.TaggedSpans))
    assert "spans : list<item: struct" in doc
    assert "    start : int64\n      The index of the first character of the span." in doc


def test_datetimes_are_utc_timestamps() -> None:
    class Event(SchemaModel):
        at: datetime

    schema = A.arrow_schema(Event)
    batch = next(A.batches([{"at": datetime(2024, 1, 2, tzinfo=UTC)}], 1, schema))
    assert batch.column("at").type == pa.timestamp("us", tz="UTC")


# ----------------------------------------------------------------------------------------------
# Public surface and import cost


@pytest.mark.parametrize("module", [dataset, A, text, classification, embedding, binary])
def test_all_is_complete(module: Any) -> None:
    """(ruff's RUF022 keeps it sorted.)"""
    names = module.__all__
    assert all(hasattr(module, name) for name in names)
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and getattr(value, "__module__", module.__name__) == module.__name__
        and (isinstance(value, type) or callable(value))
    }
    assert public <= set(names), public - set(names)


def test_import_does_not_pull_in_pandas() -> None:
    code = "import sys, assay.schema.dataset; assert 'pandas' not in sys.modules, 'pandas imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
