"""The cut of an evaluation into parts, and the column-wise output builder, unit by unit."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assay import errors
from assay.evaluation import parts
from assay.evaluation.outcomes import Columns, Responder
from assay.evaluation.parts import (
    Part,
    PartSizer,
    PartWriter,
    cut_parts,
    done_batches,
    drop_unfinished,
    output_batch,
    read_runs,
    read_units,
)
from assay.inference.client import _item_schema, _output_schema
from assay.schema.ids import generate_entity_id
from assay.storage import LocalStorage

REPLICATION = "0123456789abcdef0123456789abcdef"


def _schema(*fields: pa.Field) -> pa.Schema:
    schema = _output_schema(pa.schema(list(fields)))
    assert schema is not None
    return schema


TEXT = _schema(pa.field("text", pa.string()))
WIDE = _schema(
    pa.field("text", pa.string()),
    pa.field("score", pa.float64()),
    pa.field("label", pa.int32(), nullable=False),
)


def _by_rows(
    indices: pa.Array, responses: list[list[dict[str, Any]]], schema: pa.Schema
) -> pa.RecordBatch:
    """The output built one dict per row: what the column-wise builder must equal."""
    return pa.RecordBatch.from_pylist(
        [
            {
                "_index_": index,
                "_replication_": REPLICATION,
                "responses": [{**item, "_response_index_": k} for k, item in enumerate(items)],
            }
            for index, items in zip(indices.to_pylist(), responses, strict=True)
        ],
        schema=schema,
    )


# -- the output builder -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "responses",
    [
        [[{"text": f"t{i}"}] for i in range(5)],  # one each
        [[{"text": f"a{i}"}, {"text": f"b{i}"}] for i in range(4)],  # as many each
        [[], [{"text": "x"}], [{"text": "y"}, {"text": "z"}, {"text": None}], []],  # uneven
        [[] for _ in range(3)],  # none at all
        [],  # an empty part
    ],
    ids=["one-each", "two-each", "uneven", "none", "empty"],
)
def test_the_column_wise_output_equals_the_row_wise_one(
    responses: list[list[dict[str, Any]]],
) -> None:
    indices = pa.array(range(10, 10 + len(responses)), pa.int64())
    built = output_batch(indices, REPLICATION, responses, TEXT)
    expected = _by_rows(indices, responses, TEXT)
    assert built.schema == TEXT
    assert built.equals(expected)
    positions = [[r["_response_index_"] for r in row["responses"]] for row in built.to_pylist()]
    assert positions == [list(range(len(items))) for items in responses]


def test_missing_fields_are_null_and_extra_keys_ignored() -> None:
    responses: list[list[dict[str, Any]]] = [
        [{"text": "a", "score": 0.5, "label": 1, "extra": [1, 2]}],
        [{"label": 2}, {"text": "b", "label": 3, "score": 2}],
    ]
    indices = pa.array([0, 1], pa.int32())  # cast to the schema's int64
    built = output_batch(indices, REPLICATION, responses, WIDE)
    assert built.equals(_by_rows(indices.cast(pa.int64()), responses, WIDE))
    assert built.column("_index_").type == pa.int64()
    second = built.to_pylist()[1]["responses"]
    assert second[0] == {"_response_index_": 0, "text": None, "score": None, "label": 2}
    assert second[1]["score"] == 2.0


def test_the_columns_taken_apart_by_the_responder_give_the_same_output() -> None:
    responder = Responder(None, _item_schema(WIDE), "test")
    replies = [
        [{"text": f"t{i}", "score": i / 2, "label": i, "extra": True} for _ in range(i % 3)]
        for i in range(12)
    ]
    runs = [responder.many(replies[a:b]) for a, b in ((0, 5), (5, 6), (6, 12))]
    assert all(isinstance(run, Columns) for run in runs)
    indices = pa.array(range(12), pa.int64())
    from_columns = output_batch(indices, REPLICATION, replies, WIDE, runs)  # type: ignore[arg-type]
    assert from_columns.equals(output_batch(indices, REPLICATION, replies, WIDE))
    assert from_columns.equals(_by_rows(indices, replies, WIDE))
    # The builder reads the values from the columns, not from the items.
    shifted = [
        Columns(run.replies, run.lengths, {**run.values, "text": ["X"] * len(run.values["text"])})
        for run in runs
        if run is not None
    ]
    texts = output_batch(indices, REPLICATION, replies, WIDE, shifted).column("responses")
    assert {r["text"] for row in texts.to_pylist() for r in row} == {"X"}


def test_a_value_arrow_refuses_goes_the_row_wise_way_and_fails_there() -> None:
    indices = pa.array([0], pa.int64())
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        output_batch(indices, REPLICATION, [[{"label": "not a number"}]], WIDE)
    with pytest.raises(ValueError):
        output_batch(pa.array([0, 1], pa.int64()), REPLICATION, [[]], TEXT)


def test_without_a_schema_the_rows_make_their_own() -> None:
    built = output_batch(pa.array([3], pa.int64()), REPLICATION, [[{"n": 1}]], None)
    assert built.to_pylist() == [
        {"_index_": 3, "_replication_": REPLICATION, "responses": [{"n": 1, "_response_index_": 0}]}
    ]


# -- parts and their names ----------------------------------------------------------------------


def test_part_names_say_which_batches_they_hold() -> None:
    one, run = Part(1, 2, 3), Part(0, 12, 100, 16)
    assert one.name == "part-001-0002-000003.parquet"  # the one-batch form of earlier runs
    assert run.name == "part-000-0012-000100-000115.parquet"
    assert run.path == "data/" + run.name and run.errors_path == ".assay/errors/" + run.name
    for part in (one, run, Part(1234, 56789, 1234567, 2)):
        assert Part.parse(part.name) == part
    assert list(Part(2, 1, 7, 3).batches()) == [(2, 1, 7), (2, 1, 8), (2, 1, 9)]
    for other in (
        "part-import-0000.parquet",
        "part-1-2.parquet",
        "x.parquet",
        "part-1-2-5-4.parquet",
    ):
        assert Part.parse(other) is None


def test_errors_of_parts_never_finished_are_dropped(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    entity = generate_entity_id()
    finished, unfinished = Part(0, 0, 0, 2), Part(0, 0, 2, 4)
    for path in (finished.errors_path, finished.path, unfinished.errors_path):
        storage.put_bytes(entity, path, b"")
    assert drop_unfinished(storage, entity) == 1
    assert [i.path for i in storage.list(entity)] == [finished.errors_path, finished.path]
    assert drop_unfinished(storage, entity) == 0


def test_done_batches_are_read_from_the_part_names(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    entity = generate_entity_id()
    assert done_batches(storage, entity) == set()
    for part in (Part(0, 0, 0), Part(0, 0, 1, 3), Part(1, 2, 5, 2)):
        storage.put_bytes(entity, part.path, b"")
    storage.put_bytes(entity, "data/part-import-0000.parquet", b"")
    storage.put_bytes(entity, Part(0, 0, 9).errors_path, b"")  # errors alone do not count
    assert done_batches(storage, entity) == {
        (0, 0, 0),
        (0, 0, 1),
        (0, 0, 2),
        (0, 0, 3),
        (1, 2, 5),
        (1, 2, 6),
    }


def _rows(n: int) -> pa.RecordBatch:
    return pa.record_batch({"_index_": pa.array(range(n), pa.int64())})


def test_cut_parts_groups_batches_not_done_and_skips_the_others() -> None:
    rows = _rows(95)  # batches of 10: nine whole ones and a short one
    done = {(0, 3, 102), (0, 3, 103), (0, 3, 107), (1, 3, 100)}
    sizes = iter([4, 4, 4, 4])
    cut = list(cut_parts(0, 3, 100, rows, 10, done, lambda: next(sizes)))
    assert [(p.batch, p.count) if p else None for p, _ in cut] == [
        (100, 2),  # stopped by a done batch
        None,
        None,
        (104, 3),  # likewise
        None,
        (108, 2),  # the end of the run
    ]
    assert [b.column(0)[0].as_py() for _, b in cut] == [0, 20, 30, 40, 70, 80]
    assert [b.num_rows for _, b in cut] == [20, 10, 10, 30, 10, 15]
    covered = [b for p, _ in cut if p for b in p.batches()]
    assert sorted(covered + sorted(d for d in done if d[0] == 0)) == [
        (0, 3, b) for b in range(100, 110)
    ]


def test_cut_parts_asks_the_size_part_by_part() -> None:
    asked = itertools.count(1)
    cut = list(cut_parts(0, 0, 0, _rows(100), 10, set(), lambda: next(asked)))
    assert [(p.batch, p.count) for p, _ in cut if p] == [(0, 1), (1, 2), (3, 3), (6, 4)]
    first, _ = next(cut_parts(0, 0, 0, _rows(20), 10, set(), lambda: 0))
    assert first == Part(0, 0, 0, 1)  # one batch at least


def test_the_sizer_follows_the_rate_of_the_last_part_within_bounds() -> None:
    now = [100.0]
    sizer = PartSizer(1000, seconds=0.5, most_rows=16_384, clock=lambda: now[0])
    assert sizer.next() == 1
    sizer.answered(1000)  # not sent yet: no rate
    assert sizer.next() == 1
    sizer.sent()
    now[0] += 0.01
    sizer.answered(1000)  # 100,000/s: 50 batches wanted, four times the last at most
    assert sizer.next() == 4
    now[0] += 0.04
    sizer.answered(4000)
    assert sizer.next() == 16  # 16,384 // 1000
    now[0] += 0.16
    sizer.answered(16_000)
    assert sizer.next() == 16
    now[0] += 160.0  # the service slowed down to 100/s: one batch at once
    sizer.answered(16_000)
    assert sizer.next() == 1
    now[0] += 0.2  # 5,000/s: 2.5 batches
    sizer.answered(1000)
    assert sizer.next() == 2
    sizer.answered(2000)  # no time at all: as fast as it gets
    assert sizer.next() == 8
    big = PartSizer(50_000, seconds=0.5, most_rows=16_384)
    assert big._most == 1  # a batch larger than the most rows is a part of its own


def test_the_sizer_follows_the_module_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parts, "PART_ROWS", 150)
    monkeypatch.setattr(parts, "IN_PROCESS_PART_ROWS", 100)
    assert PartSizer(50)._most == 3
    assert PartSizer(50, in_process=True)._most == 2


def test_runs_and_units_make_the_same_cut_across_row_groups(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    entity = generate_entity_id()
    for name, n in (("b.parquet", 23), ("a.parquet", 250_000)):
        path = tmp_path / name
        pq.write_table(
            pa.table({"_index_": pa.array(range(n), pa.int64())}), path, row_group_size=7_777
        )
        storage.put_file(entity, f"data/{name}", path)
    paths = ["data/b.parquet", "data/a.parquet"]
    units = [
        (f, b, u.column(0)[0].as_py(), u.num_rows)
        for f, b, u in read_units(storage, entity, paths, 1000)
    ]
    assert units[0] == (0, 0, 0, 1000) and units[249] == (0, 249, 249_000, 1000)
    assert units[250] == (1, 0, 0, 23) and len(units) == 251  # sorted paths: a, then b
    cut = [
        (f, first + k, run.column(0)[k * 1000].as_py())
        for f, first, run in read_runs(storage, entity, paths, 1000)
        for k in range(-(-run.num_rows // 1000))
    ]
    assert cut == [(f, b, start) for f, b, start, _ in units]


# -- writing parts ------------------------------------------------------------------------------


def test_the_part_writer_stores_each_writes_files_in_order(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    entity = generate_entity_id()
    stored: list[str] = []
    put = storage.put_bytes

    def record(id: str, path: str, data: bytes) -> Any:
        stored.append(path)
        return put(id, path, data)

    storage.put_bytes = record  # type: ignore[method-assign]
    table = pa.table({"_index_": pa.array([1, 2], pa.int64())})
    with PartWriter(storage, entity, threads=1, in_flight=1) as writer:
        for k in range(3):
            writer.write((f"errors/{k}.parquet", table), (f"data/{k}.parquet", table))
    assert stored == [f"{d}/{k}.parquet" for k in range(3) for d in ("errors", "data")]
    assert pq.read_table(storage.local_path(entity, "data/2.parquet")).equals(table)


def test_a_failed_store_is_raised_by_the_writer(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    entity = generate_entity_id()
    table = pa.table({"_index_": pa.array([1], pa.int64())})
    writer = PartWriter(storage, entity)
    with pytest.raises(errors.ValidationError, match="not a valid artifact path"), writer:
        writer.write(("data/../escape.parquet", table))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # a later write, or the end, raises it
            writer.write(("data/ok.parquet", table))
    assert not (tmp_path / "escape.parquet").exists()
