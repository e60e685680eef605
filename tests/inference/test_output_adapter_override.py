"""``inferencesessions.client(..., output_adapter=...)``: replies are checked as what the
output pipeline in use yields, not against the service's original output schema."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from tests.conftest import ACCOUNT

from assay import errors
from assay.inference.client import InferenceSessionClient, ReplicaCaller
from assay.inference.runners.base import ReplicaHandle
from assay.local import LocalPlatform, mocks
from assay.schema.adapters import Rename, TransformJSON, create_pipeline
from assay.schema.dataschema import DataSchema
from assay.schema.platform import InferenceInterface
from assay.schema.requests import InferenceSessionCreateRequest


def _session(platform: LocalPlatform, mock: type, **kwargs: Any) -> tuple[str, str]:
    service = platform.inferenceservices.create_mock(mock, account=ACCOUNT, kwargs=kwargs)
    created = platform.inferencesessions.create(
        InferenceSessionCreateRequest(account=ACCOUNT, inferenceService=service.id)
    )
    return created.inferencesession.id, created.token


def test_a_renaming_override_passes_and_returns_the_renamed_items(
    platform: LocalPlatform,
) -> None:
    session_id, token = _session(platform, mocks.TextCompletion, seed=1)
    plain = platform.inferencesessions.client(session_id, token).infer({"text": "hello"})
    # the service's outputSchema requires a string "text", which the override renames away
    client = platform.inferencesessions.client(
        session_id, token, output_adapter=Rename({"text": "completion"})
    )
    renamed = client.infer({"text": "hello"})
    assert renamed == [{"completion": r["text"]} for r in plain]
    assert client.infer_many([{"text": "hello"}, {"text": "bye"}])[0] == renamed


def test_an_override_that_breaks_the_original_schema_is_not_refused_by_it(
    platform: LocalPlatform,
) -> None:
    session_id, token = _session(platform, mocks.TextCompletion, seed=1)
    # "text" becomes a list of words and a new field appears: the original schema says
    # "text" is a string, and would refuse every item
    reshape = create_pipeline(
        [
            {
                "kind": "TransformJSON",
                "configuration": {
                    "text": {
                        "$compute": [{"$scalar": "$.text"}, {"$func": "split", "pattern": " "}]
                    },
                    "source": "mock",
                },
            }
        ]
    )
    client = platform.inferencesessions.client(session_id, token, output_adapter=reshape)
    items = client.infer({"text": "hello there"})
    assert len(items) == 2
    assert all(isinstance(i["text"], list) and i["text"][:2] == ["hello", "there"] for i in items)
    assert all(i["source"] == "mock" for i in items)


def test_an_override_that_yields_non_objects_is_refused(platform: LocalPlatform) -> None:
    session_id, token = _session(platform, mocks.TextCompletion, seed=1)

    def texts(stream: Iterable[dict[str, Any]]) -> Iterator[Any]:
        for item in stream:
            yield item["text"]  # a bare string, not a JSON object

    client = platform.inferencesessions.client(session_id, token, output_adapter=texts)
    with pytest.raises(errors.ValidationError) as info:
        client.infer({"text": "hello"})
    assert "response 0 is str" in str(info.value)
    assert "JSON objects" in str(info.value)
    assert info.value.field == "responses[0]"


def test_run_evaluation_with_an_override_keeps_the_reshaped_fields(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    from tests.conftest import ready_dataset

    dataset_id = ready_dataset(platform, tmp_path / "data", rows=4)
    session_id, token = _session(platform, mocks.TextCompletion, seed=2)
    client = platform.inferencesessions.client(
        session_id, token, output_adapter=Rename({"text": "completion"})
    )
    batches = list(client.run_evaluation(platform.datasets.open(dataset_id), id="e" * 32))
    rows = [r for b in batches for r in b.to_pylist()]
    assert len(rows) == 4
    assert all(set(x) == {"completion", "_response_index_"} for r in rows for x in r["responses"])


def test_without_an_override_a_reply_off_the_schema_is_still_refused(
    platform: LocalPlatform,
) -> None:
    session_id, token = _session(platform, mocks.Faulty, malformed_rate=1.0, seed=3)
    client = platform.inferencesessions.client(session_id, token)
    with pytest.raises(errors.ValidationError) as info:
        client.infer({"text": "x"})
    message = str(info.value)
    assert f"InferenceSession {session_id}: response 0" in message
    assert "text" in message or "expected a JSON object" in message


# -- the interface's own pipeline, passed explicitly, is still checked by its schema ------


class _Echo:
    """An in-process service: replies ``reply`` to every request."""

    def __init__(self, reply: Any) -> None:
        self.reply = reply

    def infer(self, endpoint: str, request: dict[str, Any]) -> Any:
        return self.reply


_RENAME = [{"kind": "Rename", "configuration": {"text": "completion"}}]


def _interface() -> InferenceInterface:
    schema = DataSchema.make_output_schema(pa.schema([pa.field("completion", pa.string(), False)]))
    return InferenceInterface(
        endpoint="generate",
        outputSchema=schema,
        outputPipeline=_RENAME,
    )


def _client(reply: Any, **kwargs: Any) -> InferenceSessionClient:
    caller = ReplicaCaller([ReplicaHandle(index=0, style="inprocess", service=_Echo(reply))])
    return InferenceSessionClient.for_interface(caller, _interface(), what="test", **kwargs)


def test_the_interface_pipeline_is_checked_by_the_interface_schema() -> None:
    assert _client({"text": "a"}).infer({}) == [{"completion": "a"}]
    with pytest.raises(errors.ValidationError) as info:
        _client({"text": 3}).infer({})
    assert "'completion'" in str(info.value) and "int" in str(info.value)
    # the same pipeline given as the override: the schema still describes what it yields
    for same in (create_pipeline(_RENAME), Rename({"text": "completion"})):
        with pytest.raises(errors.ValidationError):
            _client({"text": 3}, output_adapter=same).infer({})


def test_a_different_override_is_not_checked_by_the_interface_schema() -> None:
    other = TransformJSON({"completion": "$.text", "n": 1})
    assert _client({"text": 3}, output_adapter=other).infer({}) == [{"completion": 3, "n": 1}]
    # an override of the interface's pipeline by nothing at all: the raw reply, unchecked
    # by a schema that describes the renamed items, but still required to be objects
    assert _client({"text": 3}, output_adapter=create_pipeline([])).infer({}) == [{"text": 3}]
    with pytest.raises(errors.ValidationError) as info:
        _client(["a"], output_adapter=create_pipeline([])).infer({})
    assert "must yield JSON objects" in str(info.value)
