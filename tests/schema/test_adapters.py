"""Schema adapters: every kind, composition, streaming, and the errors of bad configurations."""

from __future__ import annotations

import base64
import copy
import itertools
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from assay import errors
from assay.schema import adapters
from assay.schema.adapters import (
    FILE_UPLOAD_KEY,
    Drop,
    EmbedIndex,
    ExplodeCollections,
    FileUpload,
    FileUploadSpec,
    FlattenHierarchy,
    JSONPath,
    Map,
    Pipeline,
    Rename,
    Select,
    TransformJSON,
    _expressions,
    as_file_upload,
    create_adapter,
    create_pipeline,
    flatten_object,
    known_adapters,
    map_structure,
)


def run(adapter: Any, *items: dict[str, Any]) -> list[dict[str, Any]]:
    return list(adapter(list(items)))


OPENAI_COMPLETION = {
    "id": "cmpl-1",
    "object": "text_completion",
    "model": "gpt-x",
    "choices": [
        {"text": " Paris.", "index": 0, "finish_reason": "stop"},
        {"text": " Lyon?", "index": 1, "finish_reason": "length"},
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 3},
}


# ----------------------------------------------------------------------------------------------
# TransformJSON


def test_openai_completion_to_text_items() -> None:
    pipeline = create_pipeline(
        [
            {
                "kind": "TransformJSON",
                "configuration": {"text": {"$compute": {"$list": "$.choices[*].text"}}},
            },
            {
                "kind": "ExplodeCollections",
                "configuration": {"collections": ["text"], "index": {"_response_index_": None}},
            },
        ]
    )
    assert run(pipeline, OPENAI_COMPLETION) == [
        {"text": " Paris.", "_response_index_": 0},
        {"text": " Lyon?", "_response_index_": 1},
    ]


def test_input_pipeline_builds_an_openai_request() -> None:
    adapter = TransformJSON(
        {
            "model": "gpt-x",
            "prompt": "$.text",
            "max_tokens": 16,
            "stop": ["\n"],
            "logprobs": None,
            "echo": False,
            "metadata": {"item": "$._index_"},
        }
    )
    assert run(adapter, {"_index_": 3, "text": "Capital of France?"}) == [
        {
            "model": "gpt-x",
            "prompt": "Capital of France?",
            "max_tokens": 16,
            "stop": ["\n"],
            "logprobs": None,
            "echo": False,
            "metadata": {"item": 3},
        }
    ]


def test_nested_templates_and_lists() -> None:
    adapter = TransformJSON(
        {
            "first": "$.choices[0].text",
            "last": "$.choices[-1].finish_reason",
            "pair": ["$.usage.prompt_tokens", "$.usage.completion_tokens", 7],
            "usage": "$.usage",
            "whole": {"id": "$.id", "object": "$['object']"},
        }
    )
    assert run(adapter, OPENAI_COMPLETION) == [
        {
            "first": " Paris.",
            "last": "length",
            "pair": [5, 3, 7],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3},
            "whole": {"id": "cmpl-1", "object": "text_completion"},
        }
    ]


def test_dollar_dollar_escapes_a_literal_dollar_in_values_and_keys() -> None:
    adapter = TransformJSON({"env": "$$PATH", "$$key": "$$$.x", "plain": "a$b"})
    assert run(adapter, {"x": 1}) == [{"env": "$PATH", "$key": "$$.x", "plain": "a$b"}]


def test_scalar_query_errors_name_the_field_and_query() -> None:
    adapter = TransformJSON({"answer": "$.choices[5].text"})
    with pytest.raises(errors.ValidationError, match="TransformJSON") as info:
        run(adapter, OPENAI_COMPLETION)
    assert "answer" in str(info.value) and "$.choices[5].text" in str(info.value)
    assert "matched nothing" in str(info.value)
    several = TransformJSON({"texts": "$.choices[*].text"})
    with pytest.raises(errors.ValidationError, match=r"matched 2 values.*\$list"):
        run(several, OPENAI_COMPLETION)


def test_compute_functions() -> None:
    adapter = TransformJSON(
        {
            "letters": {
                "$compute": [
                    {"$scalar": "$.id"},
                    {"$func": "sub", "pattern": "[0-9]", "repl": ""},
                    {"$func": "list"},
                ]
            },
            "digits": {"$compute": [{"$scalar": "$.id"}, {"$func": "findall", "pattern": r"\d"}]},
            "joined": {
                "$compute": [{"$list": "$.choices[*].text"}, {"$func": "join", "separator": "|"}]
            },
            "total": {"$compute": [{"$list": "$.n[*]"}, {"$func": "reduce"}]},
            "word": {
                "$compute": [
                    {"$scalar": "$.sentence"},
                    {"$func": "search", "pattern": r"(\w+) (\w+)", "group": 2},
                ]
            },
            "missing": {
                "$compute": [
                    {"$scalar": "$.sentence"},
                    {"$func": "search", "pattern": "zzz", "default": "none"},
                ]
            },
            "words": {
                "$compute": [
                    {"$scalar": "$.sentence"},
                    {"$func": "split", "pattern": " ", "maxsplit": 1},
                ]
            },
            "literal": {"$compute": {"$literal": "$.not.a.query"}},
            "listed": {"$compute": {"$list": [{"$scalar": "$.id"}, {"$literal": [1]}]}},
            "none": {"$compute": {"$list": "$.nothing"}},
        }
    )
    item = {
        "id": "ab12c",
        "choices": [{"text": "x"}, {"text": "y"}],
        "n": [1, 2, 3],
        "sentence": "the quick brown fox",
    }
    assert run(adapter, item) == [
        {
            "letters": ["a", "b", "c"],
            "digits": ["1", "2"],
            "joined": "x|y",
            "total": 6,
            "word": "quick",
            "missing": "none",
            "words": ["the", "quick brown fox"],
            "literal": "$.not.a.query",
            "listed": ["ab12c", [1]],
            "none": [],
        }
    ]


def test_compute_errors_on_bad_input_name_the_step() -> None:
    adapter = TransformJSON(
        {"x": {"$compute": [{"$scalar": "$.n"}, {"$func": "findall", "pattern": "a"}]}}
    )
    with pytest.raises(
        errors.ValidationError, match=r"x\.\$compute\[1\]: \$func 'findall' expects a string"
    ):
        run(adapter, {"n": 3})
    empty = TransformJSON({"x": {"$compute": [{"$list": "$.n[*]"}, {"$func": "reduce"}]}})
    with pytest.raises(errors.ValidationError, match="'reduce' failed"):
        run(empty, {"n": []})


def test_queries_are_compiled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = TransformJSON(
        {"a": "$.x", "b": "$.l[*]", "c": {"$compute": {"$list": "$.l[?(@ > 1)]"}}}
    )

    def no_parsing() -> Any:
        raise AssertionError("a query was parsed while transforming")

    monkeypatch.setattr(_expressions, "_jsonpath_parse", no_parsing)
    items = ({"x": i, "l": [i]} for i in range(100))
    assert len(list(adapter(items))) == 100


@pytest.mark.parametrize(
    "query",
    [
        "$",
        "$.a",
        "$.a.b",
        "$.a[0]",
        "$.a[-1]",
        "$.a[7]",
        "$['with space']",
        "$.s[0]",
        "$.n.x",
        "$.missing.x",
        "$.a[0].c",
        "a.b",
        "$.a[*]",
        "$.a[*].c",
        "$.a[*].missing",
        "$.*",
        "$[*]",
        "$.b.*",
        "$.b[*].d",
        "$.s[*]",
        "$.a[*][0]",
        "$.a[*].*",
        "$..c",
        "$.a[0:1]",
        "$.a[?(@.c == 1)]",
    ],
)
def test_jsonpath_matches_jsonpath_ng(query: str) -> None:
    from jsonpath_ng.ext.parser import parse

    data = {
        "a": [{"c": 1}, {"c": 2}],
        "s": "text",
        "n": None,
        "with space": 3,
        "b": {"c": {"d": 1}},
    }
    expected = [match.value for match in parse(query).find(data)]
    assert JSONPath(query).find(data) == expected


def test_bad_jsonpath_is_a_configuration_error() -> None:
    with pytest.raises(errors.ValidationError) as info:
        TransformJSON({"x": {"y": "$.a[("}})
    assert "TransformJSON adapter: configuration key 'x.y'" in str(info.value)
    assert "invalid JSONPath" in str(info.value)


# ----------------------------------------------------------------------------------------------
# ExplodeCollections and EmbedIndex


def test_explode_zips_lists_and_copies_other_fields() -> None:
    adapter = ExplodeCollections({"collections": ["numbers", "squares"]})
    out = run(
        adapter,
        {"numbers": [1, 2, 3], "squares": [1, 4, 9], "scalar": "foo"},
        {"numbers": [4, 5], "squares": [16, 25], "scalar": "bar"},
        {"numbers": [], "squares": [], "scalar": "none"},
    )
    assert out == [
        {"scalar": "foo", "numbers": 1, "squares": 1},
        {"scalar": "foo", "numbers": 2, "squares": 4},
        {"scalar": "foo", "numbers": 3, "squares": 9},
        {"scalar": "bar", "numbers": 4, "squares": 16},
        {"scalar": "bar", "numbers": 5, "squares": 25},
    ]


def test_explode_index_fields() -> None:
    adapter = ExplodeCollections(
        {
            "collections": ["choices"],
            "index": {"collection/index": None, "collection/rank": "$.choices[*].meta.rank"},
        }
    )
    item = {
        "choices": [{"label": "foo", "meta": {"rank": 1}}, {"label": "bar", "meta": {"rank": 0}}]
    }
    assert run(adapter, item) == [
        {"choices": item["choices"][0], "collection/index": 0, "collection/rank": 1},
        {"choices": item["choices"][1], "collection/index": 1, "collection/rank": 0},
    ]


def test_explode_errors_name_fields_and_lengths() -> None:
    adapter = ExplodeCollections({"collections": ["a", "b"]})
    with pytest.raises(errors.ValidationError, match=r"equal lengths, got a=2, b=3"):
        run(adapter, {"a": [1, 2], "b": [1, 2, 3]})
    with pytest.raises(
        errors.ValidationError, match=r"no field 'b'; the item's fields are \['a'\]"
    ):
        run(adapter, {"a": [1]})
    with pytest.raises(errors.ValidationError, match="'b' is a str, not a list"):
        run(adapter, {"a": [1], "b": "x"})
    ranked = ExplodeCollections({"collections": ["a"], "index": {"r": "$.ranks[*]"}})
    with pytest.raises(errors.ValidationError, match="gave 1 values for collections of length 2"):
        run(ranked, {"a": [1, 2], "ranks": [0]})


def test_embed_index() -> None:
    adapter = EmbedIndex(
        {"collections": ["choices"], "index": {"outputOrder": None, "rankOrder": "$.ranks[*]"}}
    )
    out = run(adapter, {"choices": [{"label": "foo"}, {"label": "bar"}], "ranks": [1, 0]})
    assert out == [
        {
            "choices": [
                {"label": "foo", "outputOrder": 0, "rankOrder": 1},
                {"label": "bar", "outputOrder": 1, "rankOrder": 0},
            ],
            "ranks": [1, 0],
        }
    ]
    with pytest.raises(errors.ValidationError, match=r"choices\[0\] is a int"):
        run(adapter, {"choices": [1, 2], "ranks": [1, 0]})


# ----------------------------------------------------------------------------------------------
# Field adapters


def test_select_drop() -> None:
    item = {"a": 1, "b": 2, "c": 3}
    assert run(Select({"fields": ["c", "a"]}), item) == [{"c": 3, "a": 1}]
    assert run(Drop({"fields": ["b", "absent"]}), item) == [{"a": 1, "c": 3}]
    with pytest.raises(errors.ValidationError, match="Select adapter: the item has no field 'z'"):
        run(Select({"fields": ["z"]}), item)


def test_rename_keeps_positions_and_swaps() -> None:
    item = {"a": 1, "b": 2, "c": 3}
    assert list(run(Rename({"b": "beta"}), item)[0].items()) == [("a", 1), ("beta", 2), ("c", 3)]
    assert run(Rename({"a": "b", "b": "a"}), item) == [{"b": 1, "a": 2, "c": 3}]
    with pytest.raises(errors.ValidationError, match="no field 'z' to rename"):
        run(Rename({"z": "y"}), item)
    with pytest.raises(errors.ValidationError, match="already has a field 'c'"):
        run(Rename({"a": "c"}), item)


def test_flatten_hierarchy() -> None:
    item = {"choices": {"label": "foo", "metadata": {"value": 42}}, "scores": {"top1": 0.9}}
    assert run(FlattenHierarchy(), item) == [
        {"choices.label": "foo", "choices.metadata.value": 42, "scores.top1": 0.9}
    ]
    assert run(FlattenHierarchy({"fields": ["choices"], "depth": 1}), item) == [
        {"choices.label": "foo", "choices.metadata": {"value": 42}, "scores": {"top1": 0.9}}
    ]
    # addPrefix defaults to true even when other keys are given (the reference's does not).
    assert run(FlattenHierarchy({"depth": 0}), item) == [item]
    assert run(FlattenHierarchy({"addPrefix": False}), {"a": {"b": [{"c": 1}]}}) == [
        {"b": [{"c": 1}]}
    ]


def test_flatten_position_and_collisions() -> None:
    item = {"first": 0, "nested": {"x": 1}, "last": 2}
    out = run(FlattenHierarchy({"fields": ["nested"]}), item)[0]
    assert list(out) == ["first", "nested.x", "last"]
    with pytest.raises(errors.ValidationError, match="FlattenHierarchy adapter: flattening gives"):
        run(FlattenHierarchy({"addPrefix": False}), {"a": {"x": 1}, "b": {"x": 2}})
    with pytest.raises(errors.ValidationError, match="which the item already has"):
        run(FlattenHierarchy({"fields": ["a"], "addPrefix": False}), {"a": {"x": 1}, "x": 2})


def test_helpers() -> None:
    assert flatten_object({"a": {"b": {"c": 1}}, "d": []}) == {"a.b.c": 1, "d": []}
    assert flatten_object({"a": {"b": {"c": 1}}}, max_depth=1) == {"a.b": {"c": 1}}
    assert flatten_object({"a": {"b": 1}}, add_prefix=False) == {"b": 1}
    with pytest.raises(errors.ValidationError, match="max_depth"):
        flatten_object({}, max_depth=-1)
    assert map_structure(lambda v: v * 2, {"a": [1, {"b": 2}], "c": 3}) == {
        "a": [2, {"b": 4}],
        "c": 6,
    }


# ----------------------------------------------------------------------------------------------
# Map and Pipeline


def test_map_applies_an_adapter_inside_nested_lists() -> None:
    adapter = Map(
        {
            "collections": ["choices"],
            "adapter": {"kind": "TransformJSON", "configuration": {"answer": "$.text"}},
        }
    )
    out = run(adapter, OPENAI_COMPLETION)[0]
    assert out["choices"] == [{"answer": " Paris."}, {"answer": " Lyon?"}]
    assert out["usage"] == OPENAI_COMPLETION["usage"]


def test_map_with_a_pipeline_may_change_lengths() -> None:
    adapter = Map(
        {
            "collections": ["docs"],
            "adapter": [
                {"kind": "ExplodeCollections", "configuration": {"collections": ["words"]}},
                {"kind": "Select", "configuration": {"fields": ["words"]}},
            ],
        }
    )
    item = {"docs": [{"words": ["a", "b"], "id": 1}, {"words": ["c"], "id": 2}]}
    assert run(adapter, item) == [{"docs": [{"words": "a"}, {"words": "b"}, {"words": "c"}]}]
    with pytest.raises(errors.ValidationError, match="'docs' must be a list of objects"):
        run(adapter, {"docs": [1, 2]})


def test_pipeline_applies_adapters_in_order() -> None:
    item = {"a": 1, "b": 2}
    rename_then_select = Pipeline([Rename({"a": "x"}), Select({"fields": ["x"]})])
    assert run(rename_then_select, item) == [{"x": 1}]
    select_then_rename = Pipeline([Select({"fields": ["a"]}), Rename({"a": "x"})])
    assert run(select_then_rename, item) == [{"x": 1}]
    wrong_order = Pipeline([Select({"fields": ["x"]}), Rename({"a": "x"})])
    with pytest.raises(errors.ValidationError, match="Select adapter"):
        run(wrong_order, item)
    assert run(Pipeline([]), item) == [item]
    assert run(create_pipeline(None), item) == [item]


def test_pipeline_spec_round_trip() -> None:
    pipeline = create_pipeline(
        [
            {"kind": "Drop", "configuration": {"fields": ["b"]}},
            {"kind": "Pipeline", "configuration": {"adapters": [{"kind": "FlattenHierarchy"}]}},
        ]
    )
    spec = pipeline.to_spec()
    assert spec == {
        "kind": "Pipeline",
        "configuration": {
            "adapters": [
                {"kind": "Drop", "configuration": {"fields": ["b"]}},
                {"kind": "Pipeline", "configuration": {"adapters": [{"kind": "FlattenHierarchy"}]}},
            ]
        },
    }
    again = create_adapter(spec)
    item = {"a": {"x": 1}, "b": 2}
    assert run(again, item) == run(pipeline, item) == [{"a.x": 1}]


def test_create_adapter_accepts_objects_with_kind_and_configuration() -> None:
    @dataclass
    class SchemaAdapter:
        kind: str
        configuration: dict[str, Any] | None = None

    adapter = create_adapter(SchemaAdapter("Drop", {"fields": ["a"]}))
    assert isinstance(adapter, Drop)
    assert isinstance(create_pipeline([SchemaAdapter("FlattenHierarchy")]), Pipeline)


@pytest.mark.parametrize(
    "adapter",
    [
        TransformJSON({"i": "$.i"}),
        ExplodeCollections({"collections": ["l"]}),
        EmbedIndex({"collections": ["o"], "index": {"k": None}}),
        FlattenHierarchy(),
        Rename({"i": "j"}),
        Drop({"fields": ["l"]}),
        Select({"fields": ["i"]}),
        Map({"collections": ["o"], "adapter": {"kind": "Drop", "configuration": {"fields": []}}}),
        FileUpload({"field": "$.s", "encoding": "utf-8"}),
        Pipeline([Rename({"i": "j"}), Drop({"fields": ["l"]})]),
    ],
    ids=lambda a: a.kind,
)
def test_every_adapter_streams_and_leaves_its_input_alone(adapter: Any) -> None:
    given: list[dict[str, Any]] = []
    snapshots: list[dict[str, Any]] = []

    def source() -> Iterator[dict[str, Any]]:
        for i in range(1000):
            item = {"i": i, "l": [i, i], "o": [{"v": i}], "s": "x"}
            given.append(item)
            snapshots.append(copy.deepcopy(item))
            yield item

    out = list(itertools.islice(adapter(source()), 3))
    assert len(out) == 3
    assert len(given) <= 3  # read no further ahead than the outputs needed
    assert given == snapshots  # and changed nothing it read


def test_inputs_are_not_mutated() -> None:
    item = copy.deepcopy(OPENAI_COMPLETION)
    pipeline = create_pipeline(
        [
            {
                "kind": "EmbedIndex",
                "configuration": {"collections": ["choices"], "index": {"k": None}},
            },
            {
                "kind": "Map",
                "configuration": {
                    "collections": ["choices"],
                    "adapter": {"kind": "Rename", "configuration": {"text": "t"}},
                },
            },
            {"kind": "FlattenHierarchy", "configuration": {"fields": ["usage"]}},
            {"kind": "Rename", "configuration": {"id": "ident"}},
        ]
    )
    out = run(pipeline, item)
    assert item == OPENAI_COMPLETION
    assert out[0]["choices"][0] == {"t": " Paris.", "index": 0, "finish_reason": "stop", "k": 0}


# ----------------------------------------------------------------------------------------------
# FileUpload


def test_file_upload_envelope() -> None:
    adapter = FileUpload(
        {
            "field": "$.image.data",
            "contentType": "$.image.mediaType",
            "filename": "image.png",
            "formFields": {"model": "$.model", "n": "$.n", "flag": "$$literal"},
        }
    )
    item = {
        "model": "m",
        "n": 2,
        "image": {"data": base64.b64encode(b"hello").decode(), "mediaType": "image/png"},
    }
    (envelope,) = run(adapter, item)
    assert list(envelope) == [FILE_UPLOAD_KEY]
    assert as_file_upload(envelope) == FileUploadSpec(
        name="file",
        filename="image.png",
        content_type="image/png",
        content=b"hello",
        form_fields={"model": "m", "n": "2", "flag": "$literal"},
    )
    assert as_file_upload({"text": "x"}) is None


@pytest.mark.parametrize(
    ("encoding", "value", "content"),
    [
        ("base64", base64.b64encode(b"\x00\x01").decode(), b"\x00\x01"),
        ("base64", b"raw", b"raw"),
        ("binary", b"raw", b"raw"),
        ("utf-8", "héllo", "héllo".encode()),
        ("json", {"a": [1]}, b'{"a": [1]}'),
    ],
)
def test_file_upload_encodings(encoding: str, value: Any, content: bytes) -> None:
    adapter = FileUpload({"field": "$.v", "encoding": encoding, "name": "doc"})
    spec = as_file_upload(run(adapter, {"v": value})[0])
    assert spec is not None
    assert spec.content == content and spec.name == "doc"


def test_file_upload_bad_values() -> None:
    with pytest.raises(errors.ValidationError, match="encoding 'binary' expects bytes"):
        run(FileUpload({"field": "$.v", "encoding": "binary"}), {"v": "text"})
    with pytest.raises(errors.ValidationError, match="not valid base64"):
        run(FileUpload({"field": "$.v"}), {"v": "***"})
    with pytest.raises(errors.ValidationError, match=r"formFields\.x must be a string or a number"):
        run(FileUpload({"field": "$.v", "formFields": {"x": "$.o"}}), {"v": "", "o": {}})
    with pytest.raises(errors.ValidationError, match="malformed"):
        as_file_upload({FILE_UPLOAD_KEY: {"name": "file"}})


def test_file_upload_must_come_last() -> None:
    upload = {"kind": "FileUpload", "configuration": {"field": "$.data"}}
    drop = {"kind": "Drop", "configuration": {"fields": []}}
    assert isinstance(create_pipeline([drop, upload]).adapters[-1], FileUpload)
    with pytest.raises(errors.ValidationError, match=r"adapter \[0\] of 2 is a FileUpload"):
        create_pipeline([upload, drop])
    nested = {"kind": "Pipeline", "configuration": {"adapters": [drop, upload]}}
    with pytest.raises(errors.ValidationError, match="must be the last adapter"):
        create_pipeline([nested, drop])
    with pytest.raises(errors.ValidationError, match="only be used in an input pipeline"):
        create_pipeline([drop, upload], allow_file_upload=False)
    with pytest.raises(errors.ValidationError, match="FileUpload cannot be applied inside Map"):
        create_adapter({"kind": "Map", "configuration": {"collections": ["x"], "adapter": upload}})


# ----------------------------------------------------------------------------------------------
# Specs and configuration errors


def test_known_adapters() -> None:
    kinds = known_adapters()
    assert sorted(kinds) == [
        "Drop",
        "EmbedIndex",
        "ExplodeCollections",
        "FileUpload",
        "FlattenHierarchy",
        "Map",
        "Pipeline",
        "Rename",
        "Select",
        "TransformJSON",
    ]
    assert all(cls.kind == name for name, cls in kinds.items())
    kinds.clear()
    assert known_adapters()


def test_unknown_kind_lists_the_known_kinds() -> None:
    with pytest.raises(errors.ValidationError) as info:
        create_adapter({"kind": "Transform", "configuration": {}})
    assert "unknown adapter kind 'Transform'" in str(info.value)
    assert "'TransformJSON'" in str(info.value) and "'ExplodeCollections'" in str(info.value)
    with pytest.raises(errors.ValidationError, match=r"adapter \[1\]: unknown adapter kind"):
        create_pipeline([{"kind": "Drop", "configuration": {"fields": []}}, {"kind": "Nope"}])
    with pytest.raises(errors.ValidationError, match="an adapter spec is"):
        create_adapter({"kind": "Drop", "config": {}})


BAD_CONFIGURATIONS: list[tuple[str, Any, str]] = [
    ("Drop", None, "configuration"),
    ("Drop", {}, "fields"),
    ("Drop", {"fields": "a"}, "fields"),
    ("Drop", {"fields": ["a"], "extra": 1}, "extra"),
    ("Select", {"fields": [1]}, "fields[0]"),
    ("Rename", {"a": 1}, "a"),
    ("Rename", {"a": "x", "b": "x"}, "b"),
    ("FlattenHierarchy", {"depth": -1}, "depth"),
    ("FlattenHierarchy", {"addPrefix": "maybe"}, "addPrefix"),
    ("FlattenHierarchy", {"field": ["a"]}, "field"),
    ("ExplodeCollections", {}, "collections"),
    ("ExplodeCollections", {"collections": []}, "collections"),
    ("ExplodeCollections", {"collections": ["a", "a"]}, "collections"),
    ("ExplodeCollections", {"collections": ["a"], "index": {"i": "$.x[("}}, "index.i"),
    ("ExplodeCollections", {"collections": ["a"], "index": {"a": None}}, "index.a"),
    ("EmbedIndex", {"collections": ["a"]}, "index"),
    ("Map", {"collections": ["a"]}, "adapter"),
    ("Map", {"collections": ["a"], "adapter": {"kind": "Nope"}}, "adapter"),
    ("Map", {"collections": ["a"], "adapter": {"kind": "Drop", "configuration": {}}}, "adapter"),
    ("FileUpload", {}, "field"),
    ("FileUpload", {"field": "$.x", "encoding": "utf-16"}, "encoding"),
    ("FileUpload", {"field": "$.x", "formFields": []}, "formFields"),
    ("FileUpload", {"field": "$.x", "filename": "$.a[("}, "filename"),
    ("Pipeline", {"adapters": [{"kind": "Nope"}]}, "adapters"),
    ("Pipeline", {"stages": []}, "stages"),
    ("TransformJSON", None, "configuration"),
    ("TransformJSON", {}, ""),
    ("TransformJSON", {"$compute": {"$literal": 1}}, "$compute"),
    ("TransformJSON", {"$key": 1}, "$key"),
    ("TransformJSON", {"a": {"$compute": 1, "b": 2}}, "a"),
    ("TransformJSON", {"a": {"$compute": []}}, "a.$compute"),
    ("TransformJSON", {"a": {"$compute": {"$func": "upper"}}}, "a.$compute[0].$func"),
    ("TransformJSON", {"a": {"$compute": {"$func": "sub", "pattern": "x"}}}, "a.$compute[0].repl"),
    ("TransformJSON", {"a": {"$compute": {"$func": "join", "sep": ","}}}, "a.$compute[0].sep"),
    (
        "TransformJSON",
        {"a": {"$compute": {"$func": "search", "pattern": "(x)", "group": 2}}},
        "a.$compute[0].group",
    ),
    ("TransformJSON", {"a": {"$compute": {"$scalar": "x"}}}, "a.$compute[0].$scalar"),
    ("TransformJSON", {"a": {"$compute": {"$scalar": "$.x", "$literal": 1}}}, "a.$compute[0]"),
    ("TransformJSON", {"a": {"$compute": {"$list": [1]}}}, "a.$compute[0].$list[0]"),
    ("TransformJSON", {"a": {"$compute": "$.x"}}, "a.$compute"),
    ("TransformJSON", {"a": {1, 2}}, "a"),
]


@pytest.mark.parametrize(("kind", "configuration", "key"), BAD_CONFIGURATIONS)
def test_bad_configuration_names_the_kind_and_the_key(
    kind: str, configuration: Any, key: str
) -> None:
    spec: dict[str, Any] = {"kind": kind}
    if configuration is not None:
        spec["configuration"] = configuration
    with pytest.raises(errors.ValidationError) as info:
        create_adapter(spec)
    message = str(info.value)
    assert message.startswith(f"{kind} adapter: "), message
    if key == "configuration":
        assert "a configuration is required" in message
    elif key:
        assert f"configuration key {key!r}" in message, message
    assert info.value.entity is not None


def test_configuration_is_copied() -> None:
    configuration = {"fields": ["a"]}
    adapter = Drop(configuration)
    configuration["fields"].append("b")
    assert run(adapter, {"a": 1, "b": 2}) == [{"b": 2}]
    assert adapter.to_spec() == {"kind": "Drop", "configuration": {"fields": ["a"]}}


# ----------------------------------------------------------------------------------------------
# Public surface and import cost


def test_all_is_complete() -> None:
    """(ruff's RUF022 keeps it sorted.)"""
    names = adapters.__all__
    assert all(hasattr(adapters, name) for name in names)
    assert set(known_adapters()) <= set(names)
    helpers = {"create_adapter", "create_pipeline", "flatten_object", "map_structure"}
    assert helpers | {"as_file_upload", "FileUploadSpec", "FILE_UPLOAD_KEY"} <= set(names)


def test_import_is_light() -> None:
    code = (
        "import sys, assay.schema.adapters; "
        "heavy = [m for m in ('pyarrow', 'pandas', 'numpy', 'jsonpath_ng') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
