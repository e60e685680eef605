"""The mock inference services: outputs, schemas, determinism, errors, and injected faults."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import ACCOUNT

from assay import errors
from assay.inference.protocol import ServiceProtocol, endpoints_of
from assay.local import LocalPlatform, mocks
from assay.schema.dataset import arrow
from assay.schema.requests import InferenceSessionCreateRequest
from assay.schema.status import Status

TEXTS = [
    "Open the pod bay doors, Hal!",
    "The food was great and the staff were friendly.",
    "Terrible service, I hated it.",
    "It was okay, nothing special.",
    "",
    "  spaces   everywhere  ",
    "A single-word?",
    "Ünïcödé text — with dashes",
]


def request_for(service: mocks.InferenceServiceMock, text: str) -> dict[str, Any]:
    if service.interface.endpoint == "chat":
        return {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": text},
            ]
        }
    return {"text": text}


def answers(
    service: mocks.InferenceServiceMock, texts: list[str] = TEXTS
) -> list[list[dict[str, Any]]]:
    endpoint = service.interface.endpoint
    return [service.infer(endpoint, request_for(service, text)) for text in texts]


SEEDED: dict[str, Callable[[int | None], mocks.InferenceServiceMock]] = {
    "TextCompletion": lambda seed: mocks.TextCompletion(seed=seed),
    "Classifier": lambda seed: mocks.Classifier(seed=seed),
    "Embedder": lambda seed: mocks.Embedder(seed=seed),
    "ChatModel": lambda seed: mocks.ChatModel(refusal_rate=0.3, seed=seed),
    "Faulty": lambda seed: mocks.Faulty(mocks.TextCompletion(seed=seed), seed=seed),
}
ENDPOINTS = {
    "TextCompletion": "generate",
    "Classifier": "classify",
    "Embedder": "embed",
    "ChatModel": "chat",
    "Faulty": "generate",
}


# ----------------------------------------------------------------------------------------------
# Every mock


def test_the_package_exports_its_public_names_under_its_own_path() -> None:
    assert mocks.__all__ == sorted(mocks.__all__)
    public = {name for name in vars(mocks) if not name.startswith("_")} - {"annotations"}
    assert set(mocks.__all__) == public
    for name in mocks.__all__:
        assert getattr(mocks, name).__module__ == "assay.local.mocks", name


def test_importing_the_mocks_loads_no_http_stack() -> None:
    code = (
        "import sys, assay.local.mocks; "
        "print(','.join(m for m in ('uvicorn', 'httpx', 'fastapi', 'starlette') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize("name", sorted(SEEDED))
def test_a_mock_builds_with_no_arguments_and_declares_its_interface(name: str) -> None:
    service = getattr(mocks, name)()
    assert isinstance(service, mocks.InferenceServiceMock)
    assert isinstance(service, ServiceProtocol)
    assert service.interface.endpoint == ENDPOINTS[name]
    assert service.endpoints == [ENDPOINTS[name]] == endpoints_of(service)
    assert service.schema == service.interface.outputSchema
    doc = getattr(mocks, name).__doc__ or ""
    assert "Endpoints" in doc
    assert name == "Faulty" or f"``{ENDPOINTS[name]}``" in doc


@pytest.mark.parametrize("name", sorted(SEEDED))
def test_outputs_match_the_declared_output_schema(name: str) -> None:
    service = SEEDED[name](7)
    schema = service.schema.arrow_schema()
    item = schema.field(arrow.RESPONSES_FIELD).type.value_type
    output_fields = {item.field(i).name for i in range(item.num_fields)} - {
        arrow.RESPONSE_INDEX_FIELD
    }
    rows = []
    for index, replies in enumerate(answers(service)):
        assert replies and all(isinstance(reply, dict) for reply in replies)
        for reply in replies:
            assert set(reply) == output_fields
        responses = [{arrow.RESPONSE_INDEX_FIELD: i, **reply} for i, reply in enumerate(replies)]
        rows.append({"_index_": index, "_replication_": "r0", "responses": responses})
    (batch,) = arrow.batches(rows, len(rows), schema)
    assert batch.num_rows == len(TEXTS)
    assert batch.to_pylist() == rows


@pytest.mark.parametrize("name", sorted(SEEDED))
def test_the_same_seed_gives_the_same_outputs_in_any_order(name: str) -> None:
    first = answers(SEEDED[name](42))
    again = SEEDED[name](42)
    backwards = answers(again, TEXTS[::-1])[::-1]
    assert backwards == first
    assert answers(again) == first


@pytest.mark.parametrize("name", ["TextCompletion", "Classifier", "ChatModel"])
def test_different_seeds_and_no_seed_give_varied_outputs(name: str) -> None:
    texts = [f"request number {i} about great things" for i in range(20)]
    assert answers(SEEDED[name](1), texts) != answers(SEEDED[name](2), texts)
    unseeded = SEEDED[name](None)
    repeated = [str(answers(unseeded, texts[:1])) for _ in range(30)]
    assert len(set(repeated)) > 1


@pytest.mark.parametrize("name", sorted(SEEDED))
def test_an_unknown_endpoint_is_refused_with_the_valid_ones(name: str) -> None:
    service = SEEDED[name](0)
    for call in (
        lambda: service.infer("nope", {"text": "x"}),
        lambda: service.infer_batch("nope", [{"text": "x"}]),
    ):
        with pytest.raises(errors.ValidationError) as caught:
            call()
        assert "'nope'" in str(caught.value)
        assert repr([ENDPOINTS[name]]) in str(caught.value)
        assert caught.value.field == "endpoint"


@pytest.mark.parametrize("name", ["TextCompletion", "Classifier", "Embedder", "Faulty"])
def test_a_request_without_its_text_is_refused_naming_the_field(name: str) -> None:
    service = SEEDED[name](0)
    with pytest.raises(errors.ValidationError) as caught:
        service.infer(ENDPOINTS[name], {"prompt": "hello", "id": 3})
    assert "request has no 'text' field (got keys ['id', 'prompt'])" in str(caught.value)
    assert caught.value.field == "text"
    with pytest.raises(errors.ValidationError, match=r"'text' must be a str, got int 5"):
        service.infer(ENDPOINTS[name], {"text": 5})
    with pytest.raises(errors.ValidationError, match="must be a JSON object"):
        service.infer(ENDPOINTS[name], ["text"])  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(SEEDED))
def test_infer_batch_answers_each_request_in_order(name: str) -> None:
    service = SEEDED[name](3)
    requests = [request_for(service, text) for text in TEXTS]
    assert service.infer_batch(ENDPOINTS[name], requests) == answers(service)
    assert service.infer_batch(ENDPOINTS[name], []) == []


@pytest.mark.parametrize(
    ("factory", "field"),
    [
        (lambda: mocks.TextCompletion(seed="1"), "seed"),  # type: ignore[arg-type]
        (lambda: mocks.TextCompletion(seed=True), "seed"),
        (lambda: mocks.TextCompletion(responses_per_request=0), "responses_per_request"),
        (lambda: mocks.Classifier(labels=["only"]), "labels"),
        (lambda: mocks.Classifier(labels=["a", "a"]), "labels"),
        (lambda: mocks.Classifier(labels="ab"), "labels"),
        (lambda: mocks.Classifier(labels=["a", "b"], keywords={"x": "c"}), "keywords"),
        (lambda: mocks.Classifier(noise=-1), "noise"),
        (lambda: mocks.Embedder(dim=0), "dim"),
        (lambda: mocks.ChatModel(refusal_rate=1.5), "refusal_rate"),
        (lambda: mocks.ChatModel(refusal_triggers="bomb"), "refusal_triggers"),
        (lambda: mocks.Faulty(error_rate=-0.1), "error_rate"),
        (lambda: mocks.Faulty(error_rate=0.6, malformed_rate=0.6), "error_rate"),
        (lambda: mocks.Faulty(latency=(2, 1)), "latency"),
        (lambda: mocks.Faulty(latency="1"), "latency"),  # type: ignore[arg-type]
        (lambda: mocks.Faulty(timeout_seconds=-1), "timeout_seconds"),
        (lambda: mocks.Faulty("TextCompletion"), "service"),  # type: ignore[arg-type]
    ],
)
def test_bad_options_are_refused_naming_the_option(
    factory: Callable[[], object], field: str
) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        factory()
    assert caught.value.field == field
    assert field in str(caught.value)


# ----------------------------------------------------------------------------------------------
# TextCompletion


def test_text_completion_appends_continuations_to_the_input() -> None:
    replies = mocks.TextCompletion(seed=5).infer("generate", {"text": "Open the pod bay doors"})
    assert len(replies) == 2
    for reply in replies:
        assert reply["text"].startswith("Open the pod bay doors")
        assert len(reply["text"]) > len("Open the pod bay doors")
    three = mocks.TextCompletion(responses_per_request=3).infer("generate", {"text": "x"})
    assert len(three) == 3


def test_text_completion_uses_several_continuations() -> None:
    service = mocks.TextCompletion(seed=0)
    endings = {
        reply["text"].removeprefix(f"prompt {i}")
        for i in range(200)
        for reply in service.infer("generate", {"text": f"prompt {i}"})
    }
    assert len(endings) >= 5


# ----------------------------------------------------------------------------------------------
# Classifier


def test_classifier_scores_every_label_and_picks_the_best() -> None:
    service = mocks.Classifier(seed=1)
    for (reply,) in answers(service):
        assert [s["label"] for s in reply["scores"]] == list(service.labels)
        assert math.isclose(sum(s["score"] for s in reply["scores"]), 1.0, abs_tol=1e-9)
        assert all(0.0 <= s["score"] <= 1.0 for s in reply["scores"])
        best = max(reply["scores"], key=lambda s: s["score"])
        assert reply["label"] == best["label"]
        mocks.ClassifierOutput.model_validate(reply)


def test_classifier_labels_keyword_texts_with_useful_accuracy() -> None:
    service = mocks.Classifier(seed=11)
    cases = [
        (f"the {thing} was {word} {filler}", label)
        for label, adjectives in {
            "positive": ["great", "excellent", "wonderful", "good"],
            "negative": ["terrible", "awful", "bad", "boring"],
            "neutral": ["okay", "average", "fine", "ordinary"],
        }.items()
        for word in adjectives
        for thing in ["movie", "meal", "hotel", "service", "concert"]
        for filler in ["", "overall", "in my opinion"]
    ]
    correct = sum(service.infer("classify", {"text": t})[0]["label"] == y for t, y in cases)
    assert correct / len(cases) > 0.8


def test_without_noise_the_label_is_a_function_of_the_words() -> None:
    service = mocks.Classifier(noise=0.0)
    first = service.infer("classify", {"text": "quiet harbour lights tonight"})
    assert service.infer("classify", {"text": "Tonight, lights harbour QUIET"}) == first
    assert mocks.Classifier(noise=0.0, seed=9).infer("classify", {"text": "quiet harbour"}) == (
        service.infer("classify", {"text": "quiet harbour"})
    )
    # Different words spread over all the labels.
    labels = {service.infer("classify", {"text": f"word{i}"})[0]["label"] for i in range(30)}
    assert labels == set(service.labels)


def test_classifier_takes_custom_labels_and_keywords() -> None:
    service = mocks.Classifier(labels=["spam", "ham"], keywords={"prize": "spam", "Meeting": "ham"})
    assert service.infer("classify", {"text": "you won a PRIZE prize"})[0]["label"] == "spam"
    assert service.infer("classify", {"text": "meeting at noon, meeting"})[0]["label"] == "ham"
    default_labels_only = mocks.Classifier(labels=["x", "positive"])
    (reply,) = default_labels_only.infer("classify", {"text": "terrible"})
    assert {s["label"] for s in reply["scores"]} == {"x", "positive"}


# ----------------------------------------------------------------------------------------------
# Embedder


def test_embeddings_are_unit_vectors_of_the_requested_size_and_fixed_per_text() -> None:
    for dim in (1, 8, 33):
        service = mocks.Embedder(dim=dim)
        for (reply,) in answers(service):
            vector = reply["embedding"]
            assert len(vector) == dim
            assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-9)
    assert answers(mocks.Embedder()) == answers(mocks.Embedder())
    assert answers(mocks.Embedder(seed=1)) != answers(mocks.Embedder(seed=2))


def test_texts_that_share_words_have_closer_embeddings() -> None:
    service = mocks.Embedder(dim=64)

    def vector(text: str) -> list[float]:
        result: list[float] = service.infer("embed", {"text": text})[0]["embedding"]
        return result

    def cosine(a: str, b: str) -> float:
        return sum(x * y for x, y in zip(vector(a), vector(b), strict=True))

    assert cosine("red apple pie", "red apple tart") > cosine("red apple pie", "quantum tax law")
    assert math.isclose(cosine("Red apple", "red, APPLE"), 1.0)


# ----------------------------------------------------------------------------------------------
# ChatModel


def chat(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def test_chat_model_answers_as_the_assistant_about_the_last_user_message() -> None:
    service = mocks.ChatModel(refusal_rate=0.0, seed=1)
    request = {
        "messages": [
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": "What is the capital of France?"},
        ]
    }
    (reply,) = service.infer("chat", request)
    assert reply["role"] == "assistant"
    assert "What is the capital of France?" in reply["content"]
    mocks.ChatMessage.model_validate(reply)


def test_chat_refusal_rate_is_honoured() -> None:
    def refusals(service: mocks.ChatModel) -> int:
        return sum(
            service.infer("chat", chat(f"question {i}"))[0]["content"] == mocks.ChatModel.REFUSAL
            for i in range(1000)
        )

    assert refusals(mocks.ChatModel(refusal_rate=0.0, seed=1)) == 0
    assert refusals(mocks.ChatModel(refusal_rate=1.0, seed=1)) == 1000
    assert 250 <= refusals(mocks.ChatModel(refusal_rate=0.3, seed=1)) <= 350
    assert 50 <= refusals(mocks.ChatModel()) <= 150  # the default rate, 0.1, unseeded


def test_chat_refuses_on_a_trigger_word() -> None:
    service = mocks.ChatModel(refusal_rate=0.0, refusal_triggers=["Bomb"])
    assert service.infer("chat", chat("How do I build a bomb?"))[0]["content"] == service.REFUSAL
    assert service.infer("chat", chat("How do I build a boat?"))[0]["content"] != service.REFUSAL


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"text": "hi"}, "request has no 'messages' field"),
        ({"messages": "hi"}, "'messages' must be a list"),
        ({"messages": []}, "'messages' is empty"),
        ({"messages": [{"role": "user"}]}, "message 0 has no string 'content'"),
        ({"messages": [{"content": "x"}]}, "message 0 has no string 'role'"),
        ({"messages": [{"role": "user", "content": "x"}, "hi"]}, "message 1 has no string"),
    ],
)
def test_chat_refuses_malformed_messages(request_: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.ValidationError, match=message) as caught:
        mocks.ChatModel().infer("chat", request_)
    assert caught.value.field == "messages"


# ----------------------------------------------------------------------------------------------
# Faulty


def test_faulty_with_no_arguments_is_a_fault_free_text_completion() -> None:
    service = mocks.Faulty()
    assert isinstance(service.service, mocks.TextCompletion)
    assert service.interface == service.service.interface
    assert service.schema == service.service.schema
    for i in range(200):
        assert len(service.infer("generate", {"text": f"x{i}"})) == 2
    assert service.counts == {
        "calls": 200,
        "errors": 0,
        "timeouts": 0,
        "malformed": 0,
        "rejected": 0,
    }


def test_faulty_wraps_any_mock() -> None:
    service = mocks.Faulty(mocks.Classifier(seed=1))
    assert service.endpoints == ["classify"]
    assert service.infer("classify", {"text": "great"}) == mocks.Classifier(seed=1).infer(
        "classify", {"text": "great"}
    )


def is_malformed(replies: list[Any]) -> bool:
    return any(not isinstance(r, dict) or "text" not in r for r in replies)


def observe(service: mocks.Faulty, calls: int) -> dict[str, int]:
    seen = {"ok": 0, "errors": 0, "timeouts": 0, "malformed": 0}
    for i in range(calls):
        try:
            replies = service.infer("generate", {"text": f"x{i}"})
        except mocks.TransientServiceError as exc:
            seen["timeouts" if "hung" in str(exc) else "errors"] += 1
            assert isinstance(exc, errors.UnavailableError)
            assert "simulated fault" in str(exc)
        else:
            seen["malformed" if is_malformed(replies) else "ok"] += 1
    return seen


def test_faulty_rates_of_one_are_exact() -> None:
    assert observe(mocks.Faulty(error_rate=1.0), 100)["errors"] == 100
    assert observe(mocks.Faulty(timeout_rate=1.0, timeout_seconds=0), 100)["timeouts"] == 100
    assert observe(mocks.Faulty(malformed_rate=1.0), 100)["malformed"] == 100


def test_faulty_malformed_replies_take_both_shapes() -> None:
    service = mocks.Faulty(malformed_rate=1.0, seed=4)
    replies = [service.infer("generate", {"text": "x"}) for _ in range(50)]
    assert all(len(r) == 1 for r in replies)
    assert any(isinstance(r[0], dict) and "text" not in r[0] for r in replies)
    assert any(not isinstance(r[0], dict) for r in replies)
    batch = service.infer_batch("generate", [{"text": "a"}, {"text": "b"}])
    assert len(batch) == 2 and all(is_malformed(r) for r in batch)


def test_faulty_rates_are_observed_within_tolerance_and_repeat_with_the_seed() -> None:
    def make() -> mocks.Faulty:
        return mocks.Faulty(
            error_rate=0.1, timeout_rate=0.05, malformed_rate=0.2, timeout_seconds=0, seed=8
        )

    service = make()
    seen = observe(service, 1000)
    assert abs(seen["errors"] / 1000 - 0.1) < 0.03
    assert abs(seen["timeouts"] / 1000 - 0.05) < 0.025
    assert abs(seen["malformed"] / 1000 - 0.2) < 0.04
    assert service.counts == {
        "calls": 1000,
        "errors": seen["errors"],
        "timeouts": seen["timeouts"],
        "malformed": seen["malformed"],
        "rejected": 0,
    }
    assert observe(make(), 1000) == seen


def test_faulty_refuses_an_unknown_endpoint_before_any_fault() -> None:
    service = mocks.Faulty(error_rate=1.0)
    with pytest.raises(errors.ValidationError, match="no endpoint 'nope'"):
        service.infer("nope", {"text": "x"})
    assert service.counts["calls"] == 0


def test_faulty_latency_delays_each_call() -> None:
    service = mocks.Faulty(latency=0.05)
    start = time.monotonic()
    service.infer("generate", {"text": "x"})
    assert time.monotonic() - start >= 0.05
    jittered = mocks.Faulty(latency=(0.02, 0.04), seed=1)
    start = time.monotonic()
    jittered.infer_batch("generate", [{"text": "x"}, {"text": "y"}])
    assert time.monotonic() - start >= 0.02


def test_close_interrupts_a_simulated_hang() -> None:
    service = mocks.Faulty(timeout_rate=1.0, timeout_seconds=3600)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            service.infer("generate", {"text": "x"})
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while service.counts["timeouts"] == 0 and time.monotonic() < deadline:
        thread.join(0.01)  # wait for the call to enter its hang
    assert thread.is_alive()
    service.close()
    thread.join(10)
    assert not thread.is_alive()
    (exc,) = outcome
    assert isinstance(exc, mocks.TransientServiceError)
    assert "hung for less than 3600 s" in str(exc)
    # Once closed, a hang ends at once.
    with pytest.raises(mocks.TransientServiceError):
        service.infer("generate", {"text": "y"})


def hang_in_threads(service: mocks.Faulty, calls: int) -> list[threading.Thread]:
    """Start ``calls`` calls that hang (``timeout_rate=1``) until ``service.close()``."""

    def call() -> None:
        with pytest.raises(mocks.TransientServiceError):
            service.infer("generate", {"text": "x"})

    threads = [threading.Thread(target=call, daemon=True) for _ in range(calls)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while service.counts["timeouts"] < calls:  # every call is in its hang
        assert time.monotonic() < deadline, service.counts
        threads[0].join(0.01)
    return threads


def test_faulty_max_concurrent_refuses_calls_beyond_the_limit_at_once() -> None:
    # (a finite hang, so that a call wrongly admitted fails the test instead of hanging it)
    service = mocks.Faulty(timeout_rate=1.0, timeout_seconds=10, max_concurrent=2, retry_after=0.5)
    hanging = hang_in_threads(service, 2)
    start = time.monotonic()
    with pytest.raises(mocks.TransientServiceError) as caught:
        service.infer("generate", {"text": "one too many"})
    with pytest.raises(errors.UnavailableError):
        service.infer_batch("generate", [{"text": "a"}, {"text": "b"}])
    assert time.monotonic() - start < 1.0  # at once, without waiting for a slot
    assert caught.value.retry_after == 0.5
    assert "2 calls in progress" in str(caught.value)
    assert "max_concurrent=2" in str(caught.value)
    assert service.counts["rejected"] == 2 and service.counts["calls"] == 4
    service.close()  # the hangs end: their slots are free again
    for thread in hanging:
        thread.join(10)
    with pytest.raises(mocks.TransientServiceError, match="hung for less than"):
        service.infer("generate", {"text": "admitted"})  # a hang again, not a refusal
    assert service.counts["rejected"] == 2


def test_faulty_max_concurrent_admits_calls_one_after_the_other() -> None:
    service = mocks.Faulty(max_concurrent=1)
    for i in range(5):
        assert len(service.infer("generate", {"text": f"x{i}"})) == 2
    assert service.counts["rejected"] == 0


def test_faulty_exit_after_ends_the_process_on_the_nth_call() -> None:
    code = (
        "from assay.local.mocks import Faulty\n"
        "service = Faulty(exit_after=3, exit_code=7)\n"
        "for i in range(5):\n"
        "    service.infer('generate', {'text': 'x'})\n"
        "    print('answered', i + 1, flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 7, done.stderr
    assert done.stdout.split("\n")[:-1] == ["answered 1", "answered 2"]
    assert "call 3 ends process" in done.stderr and "exit_after=3" in done.stderr
    default = subprocess.run(
        [
            sys.executable,
            "-c",
            "from assay.local import mocks; mocks.Faulty(exit_after=1).infer("
            "'generate', {'text': 'x'})",
        ],
        capture_output=True,
        timeout=60,
    )
    assert default.returncode == 3


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"max_concurrent": True}, "max_concurrent"),
        ({"exit_after": 0}, "exit_after"),
        ({"exit_code": 256}, "exit_code"),
        ({"retry_after": -1}, "retry_after"),
    ],
)
def test_faulty_refuses_bad_limits_naming_the_option(options: dict[str, Any], field: str) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        mocks.Faulty(**options)
    assert caught.value.field == field


# ----------------------------------------------------------------------------------------------
# Slow


def test_slow_answers_as_its_mock_one_call_at_a_time() -> None:
    service = mocks.Slow(mocks.TextCompletion(seed=3), latency=0.05)
    assert not hasattr(service, "infer_batch")  # a replica answers a batch call by call
    assert isinstance(service, ServiceProtocol)
    assert service.interface == mocks.TextCompletion().interface
    assert endpoints_of(service) == ["generate"]
    answers: list[list[dict[str, Any]]] = []
    threads = [
        threading.Thread(target=lambda: answers.append(service.infer("generate", {"text": "a"})))
        for _ in range(3)
    ]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert time.monotonic() - start >= 0.15  # three calls at once take three latencies
    assert service.calls == 3
    expected = mocks.TextCompletion(seed=3).infer("generate", {"text": "a"})
    assert answers == [expected] * 3
    with pytest.raises(errors.ValidationError, match="no endpoint"):
        service.infer("nope", {"text": "a"})
    with pytest.raises(errors.ValidationError) as caught:
        mocks.Slow(latency=-1)
    assert caught.value.field == "latency"


# ----------------------------------------------------------------------------------------------
# Served by python-runner replica processes

SERVED = """
from assay.local.mocks import Faulty, Slow
"""


@pytest.mark.slow
def test_faulty_and_slow_served_by_replica_processes(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "served.py").write_text(SERVED)
    module = platform.modules.upload_package(
        platform.modules.create_package(package, account=ACCOUNT, name="served"), package
    )

    def start(target: str, kwargs: dict[str, Any]) -> tuple[str, Any]:
        service = platform.inferenceservices.create(
            {
                "account": ACCOUNT,
                "name": target.lower(),
                "runner": {
                    "kind": "python",
                    "configuration": {
                        "module": module.id,
                        "target": f"served:{target}",
                        "kwargs": kwargs,
                    },
                },
                "interface": mocks.TextCompletion().interface.model_dump(by_alias=True),
            }
        )
        created = platform.inferencesessions.create(
            InferenceSessionCreateRequest(account=ACCOUNT, inferenceService=service.id)
        )
        session = created.inferencesession.id
        assert platform.inferencesessions.get(session).status == Status.Ready
        return session, platform.inferencesessions.client(session, created.token)

    session, client = start("Slow", {"latency": 0.01})
    batch = client.infer_many([{"text": f"t{i}"} for i in range(4)])
    assert [len(answer) for answer in batch] == [2] * 4
    client.close()
    platform.inferencesessions.terminate(session)

    session, client = start("Faulty", {"exit_after": 3})
    for _ in range(2):
        assert len(client.infer({"text": "x"})) == 2
    with pytest.raises(errors.AssayError):
        client.infer({"text": "the third call kills the replica"})
    deadline = time.monotonic() + 30
    while platform.inferencesessions.get(session).status == Status.Ready:
        assert time.monotonic() < deadline, "the session did not see its replica die"
        time.sleep(0.05)
    died = platform.inferencesessions.get(session)
    assert (died.status, died.reason) == (Status.Error, "ReplicaFailed")
    assert "exited with code 3" in (died.message or ""), died.message
    client.close()
