"""evaluations.import_data, evaluations.local_evaluation, and the response cache."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.conftest import ACCOUNT, ready_dataset

from assay import errors
from assay.evaluation.cache import CachedDispatcher, ResponseCache, request_key
from assay.evaluation.outcomes import Answers, BadRequest, Outcome
from assay.local import LocalPlatform, mocks
from assay.schema.requests import InferenceSessionCreateRequest
from assay.schema.status import Status

RESPONSES = pa.list_(
    pa.struct([pa.field("_response_index_", pa.int64()), pa.field("text", pa.string())])
)


def _outputs(directory: Path, pairs: list[tuple[int, str]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "_index_": pa.array([i for i, _ in pairs], pa.int64()),
            "_replication_": pa.array([r for _, r in pairs], pa.string()),
            "responses": pa.array(
                [[{"_response_index_": 0, "text": f"answer {i}"}] for i, _ in pairs], RESPONSES
            ),
        }
    )
    pq.write_table(table, directory / "outputs.parquet")
    return directory


def test_import_data_registers_complete_evaluation(platform: LocalPlatform, tmp_path: Path) -> None:
    directory = _outputs(
        tmp_path / "out", [(i, "r0") for i in range(10)] + [(i, "r1") for i in range(10)]
    )
    evaluation = platform.evaluations.import_data(directory)
    assert evaluation.status == Status.Complete
    assert evaluation.message == "imported 20 rows from 1 file"
    assert evaluation.account == ACCOUNT
    assert platform.evaluations.open(evaluation.id).count_rows() == 20
    integrity = json.loads(evaluation.annotations[0].value)
    assert integrity["ok"] and integrity["answered"] == 20


def test_import_data_with_its_request_and_id(platform: LocalPlatform, tmp_path: Path) -> None:
    dataset = ready_dataset(platform, tmp_path / "data", rows=3)
    service = platform.inferenceservices.create_mock(mocks.TextCompletion, account=ACCOUNT)
    directory = _outputs(tmp_path / "out", [(i, "r0") for i in range(3)])
    request = {
        "account": ACCOUNT,
        "dataset": dataset,
        "inferenceSession": {"inferenceService": service.id},
    }
    evaluation = platform.evaluations.import_data(
        directory, id="e" * 32, evaluation_request=request
    )
    assert evaluation.id == "e" * 32 and evaluation.dataset == dataset
    assert [e.id for e in platform.evaluations.query(dataset=dataset)] == ["e" * 32]


def test_import_data_refuses_bad_outputs_and_writes_nothing(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    duplicated = _outputs(tmp_path / "dup", [(1, "r0"), (1, "r0")])
    with pytest.raises(errors.DataIntegrityError) as info:
        platform.evaluations.import_data(duplicated)
    assert "more than once" in str(info.value)
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    pq.write_table(pa.table({"_index_": [1], "text": ["x"]}), wrong / "x.parquet")
    with pytest.raises(errors.ValidationError) as refused:
        platform.evaluations.import_data(wrong)
    assert "_replication_" in str(refused.value)
    assert platform.evaluations.query() == []


def test_local_evaluation_uses_a_running_session(platform: LocalPlatform, tmp_path: Path) -> None:
    dataset = ready_dataset(platform, tmp_path / "data", rows=12)
    service = platform.inferenceservices.create_mock(mocks.TextCompletion, account=ACCOUNT)
    session = platform.inferencesessions.create(
        InferenceSessionCreateRequest(account=ACCOUNT, inferenceService=service.id)
    ).inferencesession
    evaluation_id = platform.evaluations.local_evaluation(
        dataset=dataset, inferencesession=session.id
    )
    evaluation = platform.evaluations.get(evaluation_id)
    assert evaluation.status == Status.Complete, evaluation.message
    assert evaluation.inferenceSessionReference == session.id
    assert platform.evaluations.open(evaluation_id).count_rows() == 12


class _Counting:
    """A dispatcher that answers at once, upper-casing, and records what it was sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, object]] = []
        self.answered = 0

    def submit_answers(
        self,
        requests: list[dict[str, object] | BadRequest],
        on_answer: Callable[[list[int], list[list[dict[str, object]]]], None] | None = None,
    ) -> Future[Answers]:
        future: Future[Answers] = Future()
        outcomes = []
        for request in requests:
            if isinstance(request, BadRequest):  # as the real dispatchers do
                outcomes.append(Outcome(error=str(request), kind="BadRequest", attempts=0))
                continue
            self.sent.append(request)
            outcomes.append(
                Outcome(error="refused", kind="BadRequest")
                if request["text"] == "bad"
                else Outcome(
                    responses=[{"text": str(request["text"]).upper(), "_response_index_": 0}]
                )
            )
        answers = Answers.from_outcomes(outcomes)
        done = [i for i, o in enumerate(outcomes) if o.responses is not None]
        if on_answer is not None and done:
            on_answer(done, [answers.responses[i] for i in done])
        self.answered += len(requests)
        future.set_result(answers)
        return future

    def close(self) -> None:
        pass


def test_cached_dispatcher_sends_each_request_once(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "cache.db")
    inner = _Counting()
    dispatcher = CachedDispatcher(inner, cache, scope="service/generate")
    first = dispatcher.submit_part([{"text": "a"}, {"text": "b"}, {"text": "bad"}], 0)
    outcomes = first.result().outcomes()
    assert [o.responses for o in outcomes][:2] == [
        [{"text": "A", "_response_index_": 0}],
        [{"text": "B", "_response_index_": 0}],
    ]
    assert outcomes[2].error == "refused"
    dispatcher.flush()
    second = dispatcher.submit_part(
        [{"text": "b"}, {"text": "c"}, {"text": "bad"}, BadRequest("no text")], 0
    )
    again = second.result().outcomes()
    assert [r["text"] for r in inner.sent] == [
        "a",
        "b",
        "bad",
        "c",
        "bad",
    ]  # failures are not cached
    assert again[0].responses == [{"text": "B", "_response_index_": 0}] and again[0].attempts == 0
    assert again[3].kind == "BadRequest"
    assert dispatcher.hits == 1
    dispatcher.flush()
    assert len(cache) == 3
    assert dispatcher.answered == 1 + inner.answered
    # another replication of the same request is a different answer: sent again
    dispatcher.submit_part([{"text": "a"}], 1).result()
    assert inner.sent[-1] == {"text": "a"}
    other_scope = CachedDispatcher(inner, cache, scope="other/generate")
    other_scope.submit_part([{"text": "a"}], 0).result()
    assert len(inner.sent) == 7
    dispatcher.close()
    other_scope.close()
    assert request_key("s", {"a": 1, "b": 2}) == request_key("s", {"b": 2, "a": 1})
    cache.close()


def test_a_rerun_with_the_cache_answers_from_it(platform: LocalPlatform, tmp_path: Path) -> None:
    dataset = ready_dataset(platform, tmp_path / "data", rows=30)
    service = platform.inferenceservices.create_mock(
        mocks.TextCompletion, account=ACCOUNT
    )  # unseeded

    def run() -> tuple[str, dict[int, list[str]]]:
        evaluation = platform.evaluations.create(
            {
                "account": ACCOUNT,
                "dataset": dataset,
                "inferenceSession": {"inferenceService": service.id},
                "client": {"cache": True},
            }
        )
        assert evaluation.status == Status.Complete, evaluation.message
        rows = platform.evaluations.open(evaluation.id).to_table().to_pylist()
        return evaluation.message or "", {
            r["_index_"]: [x["text"] for x in r["responses"]] for r in rows
        }

    first_message, first = run()
    assert "response cache" not in first_message
    second_message, second = run()
    assert second == first
    assert "30 answers from the response cache" in second_message
