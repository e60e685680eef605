"""The text built-ins against values worked out by hand."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from assay import errors
from assay.analysis.builtin import text
from assay.local import LocalPlatform

#   row  text                                  reference
#   0    "Paris"                               "Paris"
#   1    " paris "                             "Paris"
#   2    "I'm sorry, I can't help with that."  "Rome"
#   3    "The answer is Rome"                  "Rome"
#   4    (no response)                         "Oslo"
TEXTS: list[str | None] = [
    "Paris",
    " paris ",
    "I'm sorry, I can't help with that.",
    "The answer is Rome",
    None,
]
REFERENCES = ["Paris", "Paris", "Rome", "Rome", "Oslo"]


def evaluation(texts: list[str | None] = TEXTS, copies: int = 1) -> ds.Dataset:
    n = len(texts)
    return ds.dataset(
        pa.table(
            {
                "_index_": pa.array(range(n * copies), pa.int64()),
                "_replication_": ["r0"] * (n * copies),
                "responses": [
                    [] if t is None else [{"_response_index_": 0, "text": t}]
                    for t in texts * copies
                ],
            }
        )
    )


def dataset(references: list[str] = REFERENCES, copies: int = 1) -> ds.Dataset:
    n = len(references)
    return ds.dataset(
        pa.table(
            {"_index_": pa.array(range(n * copies), pa.int64()), "reference": references * copies}
        )
    )


def column(table: pa.Table, name: str) -> list[Any]:
    values: list[Any] = table.sort_by("_index_").column(name).to_pylist()
    return values


def by_metric(table: pa.Table) -> dict[str, dict[str, Any]]:
    return {r["metric"]: r for r in table.to_pylist()}


def test_exact_match() -> None:
    out = text.exact_match({}, evaluation=evaluation(), dataset=dataset())
    assert out.schema.equals(text.EXACT_MATCH.schema, check_metadata=True)
    # stripped, case kept: only row 0; the unanswered row 4 does not match
    assert column(out, "exact_match") == [True, False, False, False, False]
    out = text.exact_match({"ignore_case": "true"}, evaluation=evaluation(), dataset=dataset())
    assert column(out, "exact_match") == [True, True, False, False, False]
    args = {"ignore_case": "yes", "strip": "false"}
    out = text.exact_match(args, evaluation=evaluation(), dataset=dataset())
    assert column(out, "exact_match") == [True, False, False, False, False]  # " paris " != "paris"


def test_exact_match_with_null_reference_and_other_column() -> None:
    data = ds.dataset(
        pa.table({"_index_": pa.array([0, 1], pa.int64()), "answer": ["Paris", None]})
    )
    ev = evaluation(["Paris", "x"])
    out = text.exact_match({"reference_field": "answer"}, evaluation=ev, dataset=data)
    assert column(out, "exact_match") == [True, None]


def test_contains() -> None:
    args = {"substrings": '["Rome", "Paris"]'}
    out = text.contains(args, evaluation=evaluation())
    assert out.schema.equals(text.CONTAINS.schema, check_metadata=True)
    assert column(out, "contains") == [True, False, False, True, None]
    out = text.contains({**args, "ignore_case": "true"}, evaluation=evaluation())
    assert column(out, "contains") == [True, True, False, True, None]
    out = text.contains({**args, "mode": "all"}, evaluation=evaluation())
    assert column(out, "contains") == [False, False, False, False, None]
    out = text.contains({"substrings": "sorry"}, evaluation=evaluation())  # one plain string
    assert column(out, "contains") == [False, False, True, False, None]


def test_regex() -> None:
    out = text.regex({"pattern": "^[A-Z]"}, evaluation=evaluation())
    assert out.schema.equals(text.REGEX.schema, check_metadata=True)
    assert column(out, "matches") == [True, False, True, True, None]
    out = text.regex({"pattern": "^paris$", "ignore_case": "true"}, evaluation=evaluation())
    assert column(out, "matches") == [True, False, False, False, None]


def test_refused() -> None:
    out = text.refused({}, evaluation=evaluation())
    assert out.schema.equals(text.REFUSED.schema, check_metadata=True)
    assert column(out, "refused") == [False, False, True, False, None]
    shouting = evaluation(["I CANNOT DO THAT", "As An Ai model", "Sure: 4", "I can\u2019t"])
    assert column(text.refused({}, evaluation=shouting), "refused") == [True, True, False, True]
    out = text.refused({"phrases": '["answer is"]'}, evaluation=evaluation())
    assert column(out, "refused") == [False, False, False, True, None]


def test_length() -> None:
    out = text.length({}, evaluation=evaluation())
    assert out.schema.equals(text.LENGTH.schema, check_metadata=True)
    # "I'm sorry, I can't help with that.": 3+1+6+1+1+1+5+1+4+1+4+1+5 = 34 characters, 7 words
    assert column(out, "characters") == [5, 7, 34, 18, None]
    assert column(out, "words") == [1, 1, 7, 4, None]
    unicode = evaluation(["h\u00e9llo  w\u00f6rld", "", "a\u00a0b\tc\n"])
    out = text.length({}, evaluation=unicode)
    assert column(out, "characters") == [12, 0, 6]  # code points, not bytes
    assert column(out, "words") == [2, 0, 3]  # a no-break space separates words too


def test_metrics_by_hand() -> None:
    args = {"substrings": '["Rome", "Paris"]', "pattern": "^[A-Z]", "resamples": "500"}
    out = text.metrics(args, evaluation=evaluation(), dataset=dataset())
    assert out.schema.equals(text.METRICS.schema, check_metadata=True)
    assert out.column("metric").to_pylist() == list(text.TEXT_METRICS)
    m = by_metric(out)
    expected = {
        "exact_match_rate": (1 / 5, 5),  # row 0 of 5 (the unanswered row counts, as wrong)
        "contains_rate": (2 / 4, 4),  # rows 0 and 3 of the 4 answered
        "regex_match_rate": (3 / 4, 4),  # rows 0, 2, 3
        "refusal_rate": (1 / 4, 4),  # row 2
        "mean_characters": ((5 + 7 + 34 + 18) / 4, 4),  # 16
        "mean_words": ((1 + 1 + 7 + 4) / 4, 4),  # 3.25
    }
    for name, (value, n) in expected.items():
        assert m[name]["value"] == pytest.approx(value), name
        assert m[name]["n"] == n, name
        assert m[name]["group"] is None
        assert m[name]["low"] <= value <= m[name]["high"], name
    assert m["mean_characters"]["low"] >= 5 and m["mean_characters"]["high"] <= 34


def test_metrics_only_what_was_asked() -> None:
    no_reference = ds.dataset(pa.table({"_index_": pa.array(range(5), pa.int64())}))
    out = text.metrics({}, evaluation=evaluation(), dataset=no_reference)
    assert out.column("metric").to_pylist() == ["refusal_rate", "mean_characters", "mean_words"]
    with pytest.raises(errors.ValidationError, match="set the argument reference_field"):
        text.metrics({"reference_field": "gold"}, evaluation=evaluation(), dataset=no_reference)


def test_metric_intervals_shrink_and_reproduce() -> None:
    def refusal(copies: int, seed: str) -> dict[str, Any]:
        ev, data = evaluation(copies=copies), dataset(copies=copies)
        return by_metric(text.metrics({"seed": seed}, evaluation=ev, dataset=data))["refusal_rate"]

    small, large = refusal(20, "3"), refusal(2000, "3")
    assert small["value"] == pytest.approx(0.25) == large["value"]
    assert large["high"] - large["low"] < (small["high"] - small["low"]) / 5
    assert refusal(20, "3") == small


@pytest.mark.parametrize(
    ("function", "args", "fragment"),
    [
        (text.contains, {}, "the argument substrings is required"),
        (text.contains, {"substrings": "[1, 2]"}, "JSON array of non-empty strings"),
        (text.contains, {"substrings": "x", "mode": "some"}, "mode must be one of any, all"),
        (text.regex, {}, "the argument pattern is required"),
        (text.regex, {"pattern": "(unclosed"}, "pattern is not a valid regular expression"),
        (text.refused, {"phrases": "[]"}, "must not be an empty list"),
        (text.length, {"text_field": "answer"}, "have no field 'answer' (their fields"),
        (text.length, {"pattern": "x"}, "unknown argument 'pattern'"),
    ],
)
def test_bad_arguments(function: Any, args: dict[str, str], fragment: str) -> None:
    with pytest.raises(errors.ValidationError) as info:
        function(args, evaluation=evaluation())
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"text.{function.__name__}: ")


def test_bad_inputs() -> None:
    numbers = ds.dataset(
        pa.table({"_index_": pa.array([0], pa.int64()), "responses": [[{"text": 3}]]})
    )
    with pytest.raises(errors.ValidationError, match="'text' must hold text, got int64"):
        text.length({}, evaluation=numbers)
    with pytest.raises(errors.ValidationError, match="has no column 'reference'"):
        text.exact_match({}, evaluation=evaluation(), dataset=evaluation())
    with pytest.raises(errors.ValidationError, match="unknown input 'dataset'"):
        text.refused({}, evaluation=evaluation(), dataset=dataset())


def test_registration_with_a_local_platform(platform: LocalPlatform) -> None:
    calls = [
        (text.EXACT_MATCH, {}, {"evaluation": evaluation(), "dataset": dataset()}),
        (text.CONTAINS, {"substrings": "a"}, {"evaluation": evaluation()}),
        (text.REGEX, {"pattern": "a"}, {"evaluation": evaluation()}),
        (text.REFUSED, {}, {"evaluation": evaluation()}),
        (text.LENGTH, {}, {"evaluation": evaluation()}),
        (text.METRICS, {}, {"evaluation": evaluation(), "dataset": dataset()}),
    ]
    for builtin, args, inputs in calls:
        method = builtin.register(platform, account="tester")
        assert method.output.measurement is not None
        assert [i.keyword for i in method.inputs] == list(inputs)
        produced = builtin.function(args, **inputs)
        declared = method.output.measurement.schema_.arrow_schema()
        assert produced.schema.equals(declared, check_metadata=True), builtin.name
