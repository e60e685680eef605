"""The dispatchers' fast paths, unit by unit: the responder's column-wise check, column-wise
answers, request bodies made by Arrow, and the HTTP dispatcher against a small replica."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pyarrow as pa
import pytest

from assay.evaluation.bodies import RowBodies, rows_json
from assay.evaluation.dispatch import HTTPDispatcher, InProcessDispatcher
from assay.evaluation.outcomes import (
    Answers,
    Columns,
    FatalError,
    Outcome,
    Requester,
    Responder,
    RetryPolicy,
    TransientError,
)
from assay.evaluation.sending import _submitter
from assay.inference.runners.base import ReplicaHandle
from assay.schema.adapters import create_pipeline

ITEM = pa.schema(
    [
        pa.field("text", pa.string(), nullable=False),
        pa.field("score", pa.float64()),
        pa.field("label", pa.int64()),
        pa.field("ok", pa.bool_()),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("when", pa.timestamp("s")),  # not checked by type (as check_reply does)
    ]
)


@pytest.fixture
def responder() -> Responder:
    return Responder(None, ITEM, "test")


# -- Responder.many -----------------------------------------------------------------------------


def test_many_takes_valid_replies_apart_column_wise(responder: Responder) -> None:
    replies: list[Any] = [
        [{"text": "a", "score": 1, "label": 2, "ok": True, "tags": ["x"], "extra": 0}],
        [],
        [{"text": "b", "score": 0.5, "when": "2024-01-01"}, {"text": "c", "label": None}],
    ]
    columns = responder.many(replies)
    assert isinstance(columns, Columns)
    assert columns.replies is replies and columns.lengths == [1, 0, 2]
    assert columns.values == {
        "text": ["a", "b", "c"],
        "score": [1, 0.5, None],  # an int is a float's value, as check_reply allows
        "label": [2, None, None],
        "ok": [True, None, None],
        "tags": [["x"], None, None],
        "when": [None, "2024-01-01", None],
    }
    for reply in replies:  # what many accepts, the one-by-one path accepts too
        assert [
            {k: v for k, v in r.items() if k != "_response_index_"} for r in responder(reply)
        ] == reply
    assert responder.many([]) == Columns([], [], {name: [] for name in ITEM.names})


@pytest.mark.parametrize(
    ("replies", "refused"),
    [
        ([[{"text": "a"}], {"text": "b"}], False),  # a reply that is an object, not a list
        ([[{"text": "a"}, "b"]], True),  # an item that is not an object
        ([[{"text": 1}]], True),  # the wrong type
        ([[{"text": "a", "label": True}]], True),  # a bool is not an int here
        ([[{"text": "a", "label": 1.5}]], True),  # nor a float
        ([[{"text": "a", "ok": 1}]], True),  # nor an int a bool
        ([[{"text": "a", "tags": "x"}]], True),  # a string is not a list
        ([[{"label": 1}]], True),  # a field that may not be missing
        ([[{"text": None}]], True),  # nor null
    ],
    ids=[
        "object",
        "not-object",
        "str",
        "bool-int",
        "float-int",
        "int-bool",
        "str-list",
        "missing",
        "null",
    ],
)
def test_many_leaves_anything_doubtful_to_the_one_by_one_path(
    responder: Responder, replies: list[Any], refused: bool
) -> None:
    assert responder.many(replies) is None
    problems = []
    for reply in replies:  # that path decides, and names the problem where it refuses
        try:
            responder(reply)
        except TransientError as exc:
            problems.append(str(exc))
    assert bool(problems) == refused
    assert all(p.startswith("malformed reply: ") for p in problems)


def test_many_needs_a_schema_and_no_output_pipeline() -> None:
    assert Responder(None, None, "test").many([[{"text": "a"}]]) is None
    pipeline = create_pipeline([{"kind": "Rename", "configuration": {"t": "text"}}])
    with_pipeline = Responder(pipeline, ITEM, "test")
    assert with_pipeline.many([[{"text": "a"}]]) is None
    assert with_pipeline([{"t": "a"}]) == [{"text": "a", "_response_index_": 0}]


# -- Answers ------------------------------------------------------------------------------------


def _columns(texts: list[str]) -> Columns:
    return Columns([[{"text": t}] for t in texts], [1] * len(texts), {"text": list(texts)})


def test_answers_keep_consecutive_runs_column_wise() -> None:
    answers = Answers([[]] * 6, {})
    answers.answer([3, 4, 5], _columns(["d", "e", "f"]))
    assert answers.all_columns() is None  # 0-2 not answered yet
    answers.answer([0, 1, 2], _columns(["a", "b", "c"]))
    runs = answers.all_columns()
    assert runs is not None and [r.values["text"] for r in runs] == [
        ["a", "b", "c"],
        ["d", "e", "f"],
    ]
    assert [items[0]["text"] for items in answers.responses] == list("abcdef")
    outcomes = answers.outcomes()
    assert outcomes[0].responses == [{"text": "a", "_response_index_": 0}]


def test_answers_not_in_one_run_are_only_kept_row_wise() -> None:
    answers = Answers([[]] * 4, {})
    answers.answer([0, 2], _columns(["a", "c"]))  # not consecutive (a batch resent in pieces)
    answers.answer([1, 3], _columns(["b", "d"]))
    assert answers.all_columns() is None and answers.columns == {}
    assert [items[0]["text"] for items in answers.responses] == list("abcd")
    failed = Answers([[]] * 2, {})
    failed.answer([0, 1], _columns(["a", "b"]))
    assert failed.all_columns() is not None
    failed.failed[1] = failed.outcomes()[1]
    assert failed.all_columns() is None  # an instance that failed has no responses


# -- request bodies made by Arrow ---------------------------------------------------------------


ODD_TEXTS = ["plain", 'a "quote"', "back\\slash", "new\nline\ttab\x01", "é ü 日本 🙂", "", None]


def _odd_batch() -> pa.RecordBatch:
    n = len(ODD_TEXTS)
    return pa.record_batch(
        {
            "_index_": pa.array(range(-2, n - 2), pa.int64()),
            "text": pa.array(ODD_TEXTS, pa.string()),
            "big": pa.array([2**64 - 1, 0, 1, 2, 3, None, 5], pa.uint64()),
            "ok": pa.array([True, False, None, True, True, False, True]),
            "nothing": pa.nulls(n),
            "wide": pa.array(ODD_TEXTS, pa.large_string()),
        }
    )


def test_rows_json_reads_back_as_the_rows() -> None:
    batch = _odd_batch()
    texts = rows_json(batch)
    assert texts is not None
    assert [json.loads(t) for t in texts.to_pylist()] == batch.to_pylist()
    sliced = batch.slice(2, 3)
    texts = rows_json(sliced, end=",")
    assert texts is not None and all(t.endswith("},") for t in texts.to_pylist())
    assert [json.loads(t[:-1]) for t in texts.to_pylist()] == sliced.to_pylist()


@pytest.mark.parametrize(
    "column",
    [
        pa.array([1.0, 2.5]),  # Arrow writes 1.0 as 1
        pa.array([[1], [2]]),
        pa.array([{"a": 1}, {"a": 2}]),
        pa.array([b"x", b"y"]),
        pa.array(["x", "y"]).dictionary_encode(),
    ],
    ids=["float", "list", "struct", "binary", "dictionary"],
)
def test_rows_json_leaves_other_types_to_the_one_by_one_path(column: pa.Array) -> None:
    batch = pa.record_batch({"_index_": pa.array([0, 1], pa.int64()), "x": column})
    assert rows_json(batch) is None
    assert RowBodies.of(batch, 32) is None
    assert rows_json(pa.record_batch({"_index_": pa.array([0], pa.int64())}).select([])) is None


@pytest.mark.parametrize("size", [1, 2, 3, 7, 100])
def test_row_bodies_cut_the_rows_into_requests(size: int) -> None:
    batch = _odd_batch().slice(1)
    bodies = RowBodies.of(batch, size)
    assert bodies is not None and len(bodies) == batch.num_rows == 6
    rows = batch.to_pylist()
    if size == 1:
        assert [json.loads(b) for b in bodies.batches] == rows
    else:
        assert [json.loads(b) for b in bodies.batches] == [
            rows[i : i + size] for i in range(0, len(rows), size)
        ]
    assert [json.loads(bodies.one(i)) for i in range(len(bodies))] == rows


def test_row_bodies_of_no_rows() -> None:
    bodies = RowBodies.of(_odd_batch().slice(0, 0), 32)
    assert bodies is not None and len(bodies) == 0 and bodies.batches == []


# -- the in-process dispatcher ------------------------------------------------------------------


class _Upper:
    """Answers each request with its text in capitals; ``infer_batch`` refuses a batch
    holding "fail" (so that the dispatcher answers that batch one by one)."""

    def infer(self, endpoint: str, request: dict[str, Any]) -> list[dict[str, Any]]:
        if request["text"] == "bad":
            raise ValueError("no bad texts")
        return [{"text": request["text"].upper()}]

    def infer_batch(self, endpoint: str, requests: list[dict[str, Any]]) -> list[Any]:
        if any(r["text"] == "fail" for r in requests):
            raise RuntimeError("this batch fails")
        return [
            [{"text": r["text"].upper()}] if r["text"] != "odd" else [{"t": 1}] for r in requests
        ]


def _in_process(service: object) -> InProcessDispatcher:
    handle = ReplicaHandle(index=0, style="inprocess", service=service)
    schema = pa.schema([pa.field("text", pa.string(), nullable=False)])
    return InProcessDispatcher(
        [handle], "echo", Responder(None, schema, "test"), RetryPolicy(0, 0.01)
    )


def test_in_process_answers_a_part_column_wise_in_one_call() -> None:
    answers = _in_process(_Upper()).answer([{"text": "a"}, {"text": "b"}])
    runs = answers.all_columns()
    assert runs is not None and runs[0].values == {"text": ["A", "B"]}


def test_in_process_answers_what_the_batch_cannot_one_by_one() -> None:
    dispatcher = _in_process(_Upper())
    answers = dispatcher.answer([{"text": "a"}, {"text": "odd"}])  # a malformed reply
    assert answers.all_columns() is None and answers.responses[0] == [
        {"text": "A", "_response_index_": 0}
    ]
    answers = dispatcher.answer([{"text": "fail"}, {"text": "bad"}, {"text": "c"}])
    assert answers.responses[2] == [{"text": "C", "_response_index_": 0}]
    assert answers.responses[0] == [{"text": "FAIL", "_response_index_": 0}]
    assert answers.failed[1].kind == "BadRequest" and "no bad texts" in (
        answers.failed[1].error or ""
    )


# -- the HTTP dispatcher against a small replica ------------------------------------------------


class _Replica:
    """A replica-protocol server on loopback (aiohttp, in a thread of its own) that records
    every body it gets. It refuses (400) any request holding the text "refuse", answers 503
    the first time it sees "flaky", and answers "odd" with an item that lacks ``text``."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, Any]] = []
        self._seen: set[str] = set()
        self._hiccups = 0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._started.wait(10)

    def _run(self) -> None:
        from aiohttp import web

        async def answer(request: web.Request) -> web.Response:
            body = json.loads(await request.read())
            kind = request.match_info["kind"]
            self.bodies.append((kind, body))
            rows = body if kind == "batch" else [body]
            texts = [r["text"] for r in rows]
            if "refuse" in texts:
                return web.json_response({"detail": "refused"}, status=400)
            if "crash" in texts:  # a bug the service has for this input
                return web.json_response({"detail": "ZeroDivisionError: boom"}, status=500)
            if "hiccup" in texts and self._hiccups < 2:  # fails twice, then works
                self._hiccups += 1
                return web.json_response({"detail": "RuntimeError: hiccup"}, status=500)
            if "flaky" in texts and "flaky" not in self._seen:
                self._seen.add("flaky")
                return web.json_response(
                    {"detail": "busy"}, status=503, headers={"Retry-After": "0"}
                )
            replies = [[{"text": t.upper()}] if t != "odd" else [{"other": 1}] for t in texts]
            return web.json_response(replies if kind == "batch" else replies[0])

        async def start() -> None:
            app = web.Application()
            app.router.add_post("/{kind}/echo", answer)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = self._runner.addresses[0][1]

        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(start())
        self._started.set()
        self._loop.run_forever()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def replica() -> Iterator[_Replica]:
    server = _Replica()
    try:
        yield server
    finally:
        server.close()


def _http(replica: _Replica, batch_size: int) -> HTTPDispatcher:
    handle = ReplicaHandle(
        index=0, style="replica", url=f"http://127.0.0.1:{replica.port}", batching=True
    )
    schema = pa.schema([pa.field("text", pa.string(), nullable=False)])
    return HTTPDispatcher(
        [handle],
        "echo",
        Responder(None, schema, "test"),
        RetryPolicy(3, 0.05),
        concurrency=2,
        request_timeout=10,
        batch_size=batch_size,
    )


def _texts(texts: list[str]) -> pa.RecordBatch:
    return pa.record_batch({"_index_": pa.array(range(len(texts)), pa.int64()), "text": texts})


def test_rows_are_sent_in_the_usual_cut_and_answered_column_wise(replica: _Replica) -> None:
    dispatcher = _http(replica, 3)
    try:
        batch = _texts([f"t{i}" for i in range(8)])
        future = dispatcher.submit_rows(batch)
        assert future is not None
        answers = future.result(10)
    finally:
        dispatcher.close()
    rows = batch.to_pylist()
    assert sorted(replica.bodies, key=lambda b: b[1][0]["_index_"]) == [
        ("batch", rows[0:3]),
        ("batch", rows[3:6]),
        ("batch", rows[6:8]),
    ]
    runs = answers.all_columns()
    assert runs is not None and [t for r in runs for t in r.values["text"]] == [
        f"T{i}" for i in range(8)
    ]
    assert not answers.failed and not answers.attempts


def test_a_refused_batch_is_resent_one_row_at_a_time(replica: _Replica) -> None:
    dispatcher = _http(replica, 4)
    try:
        batch = _texts(["a", "refuse", "odd", "d", "flaky"])
        future = dispatcher.submit_rows(batch)
        assert future is not None
        answers = future.result(10)
    finally:
        dispatcher.close()
    rows = batch.to_pylist()
    singles = [body for kind, body in replica.bodies if kind == "infer"]
    # The refused batch's rows went alone, each body the row itself; "odd" was answered
    # with an item that does not fit, which is retried until the attempts run out.
    others = sorted((r for r in singles if r["text"] != "odd"), key=lambda r: r["_index_"])
    assert others == [rows[0], rows[1], rows[3]]
    assert [r for r in singles if r["text"] == "odd"] == [rows[2]] * 4  # 1 + 3 retries
    assert answers.failed[1].kind == "BadRequest" and "refused" in (answers.failed[1].error or "")
    assert answers.failed[2].kind == "Transient" and "malformed" in (answers.failed[2].error or "")
    # (those sent alone come numbered; the batch's as the replica sent them)
    assert [answers.responses[i] for i in (0, 3, 4)] == [
        [{"text": "A", "_response_index_": 0}],
        [{"text": "D", "_response_index_": 0}],
        [{"text": "FLAKY"}],
    ]
    assert answers.attempts == {4: 2}  # its batch was answered 503 once
    assert answers.all_columns() is None


def test_a_service_error_that_repeats_is_a_failed_instance_not_a_long_retry(
    replica: _Replica,
) -> None:
    """HTTP 500 with the same detail again: the batch is split to find the instance, which
    fails as a ServiceError after 3 identical answers — not after the retry limit (120 by
    default, minutes of back-off); a 500 that goes away is retried as before."""
    handle = ReplicaHandle(
        index=0, style="replica", url=f"http://127.0.0.1:{replica.port}", batching=True
    )
    dispatcher = HTTPDispatcher(
        [handle],
        "echo",
        Responder(None, pa.schema([pa.field("text", pa.string(), nullable=False)]), "test"),
        RetryPolicy(120, 30.0),
        concurrency=2,
        request_timeout=10,
        batch_size=4,
    )
    try:
        future = dispatcher.submit_rows(_texts(["a", "crash", "b", "hiccup"]))
        assert future is not None
        answers = future.result(30)
    finally:
        dispatcher.close()
    failed = answers.failed[1]
    assert failed.kind == "ServiceError" and failed.attempts == 3
    assert "failed 3 times in a row the same way (HTTP 500: ZeroDivisionError: boom)" in (
        failed.error or ""
    )
    assert sorted(answers.failed) == [1]
    assert [answers.responses[i] for i in (0, 2)] == [
        [{"text": "A", "_response_index_": 0}],
        [{"text": "B", "_response_index_": 0}],
    ]
    assert answers.responses[3] == [{"text": "HICCUP", "_response_index_": 0}]
    crashes = [b for kind, b in replica.bodies if kind == "infer" and b["text"] == "crash"]
    assert len(crashes) == 3


def test_an_in_process_service_that_fails_the_same_way_fails_the_instance() -> None:
    class Service:
        calls = 0

        def infer(self, endpoint: str, request: dict[str, Any]) -> list[dict[str, Any]]:
            Service.calls += 1
            if request["text"] == "crash":
                raise ZeroDivisionError("boom")
            return [{"text": request["text"].upper()}]

    schema = pa.schema([pa.field("text", pa.string(), nullable=False)])
    handle = ReplicaHandle(index=0, style="inprocess", service=Service())
    dispatcher = InProcessDispatcher(
        [handle], "echo", Responder(None, schema, "test"), RetryPolicy(120, 30.0)
    )
    answers = dispatcher.answer([{"text": "a"}, {"text": "crash"}])
    assert answers.failed[1].kind == "ServiceError" and answers.failed[1].attempts == 3
    assert "ZeroDivisionError: boom" in (answers.failed[1].error or "")
    assert answers.responses[0] == [{"text": "A", "_response_index_": 0}]


def test_rows_of_other_types_are_not_sent_by_submit_rows(replica: _Replica) -> None:
    dispatcher = _http(replica, 3)
    try:
        batch = pa.record_batch({"_index_": pa.array([0], pa.int64()), "x": pa.array([0.5])})
        assert dispatcher.submit_rows(batch) is None
        answers = dispatcher.submit_answers([{"_index_": 0, "text": "x", "x": 0.5}]).result(10)
    finally:
        dispatcher.close()
    assert replica.bodies == [("batch", [{"_index_": 0, "text": "x", "x": 0.5}])]
    assert answers.responses == [[{"text": "X"}]]


# -- how the workflow picks a dispatcher's way in -----------------------------------------------


class _Recording:
    """A dispatcher that answers nothing but records which of its ways a part came in by."""

    def __init__(self, *, rows: bool, answers: bool) -> None:
        self.calls: list[tuple[str, Any]] = []
        if rows:
            self.submit_rows = self._rows
        if answers:
            self.submit_answers = self._answers

    def _rows(self, batch: pa.RecordBatch) -> Future[Answers] | None:
        self.calls.append(("rows", batch.num_rows))
        if batch.schema.field("text").type != pa.string():
            return None  # declined: the workflow must make the requests itself
        return _done(Answers([[]] * batch.num_rows, {}))

    def _answers(self, requests: list[Any]) -> Future[Answers]:
        self.calls.append(("answers", requests))
        return _done(Answers([[]] * len(requests), {}))

    def submit(self, requests: list[Any]) -> Future[list[Outcome]]:
        self.calls.append(("submit", requests))
        future: Future[list[Outcome]] = Future()
        future.set_result([Outcome(responses=[{"text": "x"}]) for _ in requests])
        return future


def _done(answers: Answers) -> Future[Answers]:
    future: Future[Answers] = Future()
    future.set_result(answers)
    return future


def test_the_workflow_sends_rows_as_they_are_only_where_it_can() -> None:
    strings = pa.record_batch({"_index_": pa.array([0, 1], pa.int64()), "text": ["a", "b"]})
    large = strings.cast(pa.schema([("_index_", pa.int64()), ("text", pa.large_string())]))
    as_they_are, renamed = (
        Requester([]),
        Requester([create_pipeline([{"kind": "Rename", "configuration": {"text": "prompt"}}])]),
    )
    both = _Recording(rows=True, answers=True)
    submit = _submitter(both, as_they_are)
    submit(strings, 0).result()
    submit(large, 0).result()  # declined by the dispatcher: made into requests
    assert both.calls == [("rows", 2), ("rows", 2), ("answers", large.to_pylist())]
    piped = _Recording(rows=True, answers=True)
    _submitter(piped, renamed)(strings, 0).result()  # a pipeline: never the rows themselves
    assert piped.calls == [
        ("answers", [{"_index_": 0, "prompt": "a"}, {"_index_": 1, "prompt": "b"}])
    ]
    plain = _Recording(rows=False, answers=False)
    answers = _submitter(plain, as_they_are)(strings, 0).result()
    assert plain.calls == [("submit", strings.to_pylist())]
    assert answers.responses == [[{"text": "x"}], [{"text": "x"}]] and not answers.failed


def test_a_service_that_refuses_every_connection_fails_as_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Refused connections with no answer for DOWN_AFTER seconds end the run (not the retry
    limit's hour of back-offs), saying the service is down and what to do."""
    from assay.evaluation import lanes

    monkeypatch.setattr(lanes, "DOWN_AFTER", 0.5)
    with socket.socket() as probe:  # a loopback port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    handle = ReplicaHandle(index=0, style="plain", url=f"http://127.0.0.1:{port}")
    dispatcher = HTTPDispatcher(
        [handle],
        "generate",
        Responder(None, pa.schema([pa.field("text", pa.string())]), "test"),
        RetryPolicy(10_000, 0.1),
        request_timeout=5,
    )
    try:
        with pytest.raises(FatalError) as info:
            dispatcher.submit_answers([{"text": "a"}, {"text": "b"}]).result(30)
    finally:
        dispatcher.close()
    message = str(info.value)
    assert "refuses connections" in message and "start it" in message, message
