"""The fake OpenAI-compatible server: in-process through httpx's ASGI transport, and over real
HTTP through :class:`FakeOpenAIServer` (every behaviour test runs both ways)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from assay import errors
from assay.inference.fake_openai import (
    EXIT_STATUS,
    MAX_CHOICES,
    REFUSAL,
    FakeOpenAI,
    FakeOpenAIProcess,
    FakeOpenAIServer,
    create_app,
    main,
)

Call = tuple[str, str, dict[str, Any]]  # (method, path, httpx request keywords)
Send = Callable[[FakeOpenAI, list[Call]], list[httpx.Response]]

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"


def send_in_process(app: FakeOpenAI, calls: list[Call]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fake") as client:
            return [await client.request(method, path, **kw) for method, path, kw in calls]

    return asyncio.run(run())


def send_over_http(app: FakeOpenAI, calls: list[Call]) -> list[httpx.Response]:
    with FakeOpenAIServer(app) as server, httpx.Client(base_url=server.url) as client:
        return [client.request(method, path, **kw) for method, path, kw in calls]


@pytest.fixture(params=["asgi", "http"])
def send(request: pytest.FixtureRequest) -> Send:
    return send_in_process if request.param == "asgi" else send_over_http


def one(send: Send, app: FakeOpenAI, method: str, path: str, **kw: Any) -> httpx.Response:
    (response,) = send(app, [(method, path, kw)])
    return response


def chat_body(content: str = "What is the weather like?", **extra: Any) -> dict[str, Any]:
    return {
        "model": "fake-model",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "an earlier question"},
            {"role": "assistant", "content": "an earlier answer"},
            {"role": "user", "content": content},
        ],
        **extra,
    }


def assert_error(response: httpx.Response, status: int, code: str | None) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    message: str = body["error"]["message"]
    return message


def test_the_package_exports_its_names_and_imports_no_http_stack() -> None:
    import assay.inference.fake_openai as package

    def isort_style(name: str) -> tuple[int, str]:  # constants, classes, functions (RUF022)
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert package.__all__ == sorted(package.__all__, key=isort_style)
    assert set(package.__all__) == {n for n in vars(package) if not n.startswith("_")} - {
        "annotations"
    }
    code = (
        "import sys, assay.inference.fake_openai; "
        "print(','.join(m for m in ('uvicorn', 'httpx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == ""


# ----------------------------------------------------------------------------------------------
# Shapes


def test_models_lists_the_one_model(send: Send) -> None:
    app = create_app(model="tiny-llm")
    listed, card, missing = send(
        app,
        [
            ("GET", "/v1/models", {}),
            ("GET", "/v1/models/tiny-llm", {}),
            ("GET", "/v1/models/other", {}),
        ],
    )
    assert listed.status_code == 200
    model = {"id": "tiny-llm", "object": "model", "created": 0, "owned_by": "assay"}
    assert listed.json() == {"object": "list", "data": [model]}
    assert card.json() == model
    assert_error(missing, 404, "model_not_found")


def test_chat_completion_has_the_openai_shape(send: Send) -> None:
    response = one(send, create_app(), "POST", CHAT, json=chat_body())
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"id", "object", "created", "model", "choices", "usage"}
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert body["model"] == "fake-model"
    assert abs(body["created"] - time.time()) < 600
    (choice,) = body["choices"]
    assert set(choice) == {"index", "message", "logprobs", "finish_reason"}
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].endswith("What is the weather like?")
    usage = body["usage"]
    assert usage["prompt_tokens"] == 3 + 3 + 3 + 5  # the words of the four messages
    assert usage["completion_tokens"] == len(choice["message"]["content"].split())
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_completion_has_the_openai_shape_with_n_choices_per_prompt(send: Send) -> None:
    single, several, echoed = send(
        create_app(),
        [
            ("POST", COMPLETIONS, {"json": {"prompt": "Once upon a time"}}),
            ("POST", COMPLETIONS, {"json": {"prompt": ["first one", "second one"], "n": 3}}),
            ("POST", COMPLETIONS, {"json": {"prompt": "Echo me", "echo": True}}),
        ],
    )
    body = single.json()
    assert set(body) == {"id", "object", "created", "model", "choices", "usage"}
    assert body["id"].startswith("cmpl-") and body["object"] == "text_completion"
    (choice,) = body["choices"]
    assert set(choice) == {"index", "text", "logprobs", "finish_reason"}
    assert choice["text"].strip() and not choice["text"].startswith("Once upon")
    assert body["usage"]["prompt_tokens"] == 4
    assert body["usage"]["completion_tokens"] == len(choice["text"].split())

    choices = several.json()["choices"]
    assert [c["index"] for c in choices] == list(range(6))
    assert len({c["text"] for c in choices[:3]}) > 1  # the choices differ
    assert echoed.json()["choices"][0]["text"].startswith("Echo me ")


def test_n_choices_in_chat(send: Send) -> None:
    body = one(send, create_app(), "POST", CHAT, json=chat_body(n=4)).json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    contents = [c["message"]["content"] for c in body["choices"]]
    assert len(set(contents)) > 1
    assert body["usage"]["completion_tokens"] == sum(len(c.split()) for c in contents)


def test_content_is_deterministic_and_varies_with_the_seed(send: Send) -> None:
    prompts = [f"prompt number {i}" for i in range(10)]
    calls: list[Call] = [("POST", COMPLETIONS, {"json": {"prompt": p}}) for p in prompts]

    def texts(seed: int) -> list[str]:
        return [r.json()["choices"][0]["text"] for r in send(create_app(seed=seed), calls)]

    assert texts(1) == texts(1)
    assert texts(1) != texts(2)


def test_a_trigger_word_gets_a_refusal(send: Send) -> None:
    default, custom, clean = send(
        create_app(),
        [
            ("POST", CHAT, {"json": chat_body("Tell me the FORBIDDEN secret.")}),
            ("POST", COMPLETIONS, {"json": {"prompt": "forbidden knowledge", "n": 2}}),
            ("POST", CHAT, {"json": chat_body("Tell me a secret.")}),
        ],
    )
    assert default.json()["choices"][0]["message"]["content"] == REFUSAL
    assert [c["text"] for c in custom.json()["choices"]] == [" " + REFUSAL] * 2
    assert clean.json()["choices"][0]["message"]["content"] != REFUSAL
    app = create_app(refusal_triggers=["poison"])
    response = one(send, app, "POST", CHAT, json=chat_body("which poison?"))
    assert response.json()["choices"][0]["message"]["content"] == REFUSAL


def test_max_tokens_cuts_the_reply(send: Send) -> None:
    cut, whole = send(
        create_app(),
        [
            ("POST", CHAT, {"json": chat_body("one two three four five six", max_tokens=2)}),
            ("POST", CHAT, {"json": chat_body("one", max_completion_tokens=50)}),
        ],
    )
    choice = cut.json()["choices"][0]
    assert choice["finish_reason"] == "length"
    assert len(choice["message"]["content"].split()) == 2
    assert whole.json()["choices"][0]["finish_reason"] == "stop"


def test_chat_content_parts_are_read() -> None:
    parts = [{"type": "text", "text": "describe"}, {"type": "text", "text": "this picture"}]
    body = chat_body()
    body["messages"][-1]["content"] = parts
    response = one(send_in_process, create_app(), "POST", CHAT, json=body)
    assert response.json()["choices"][0]["message"]["content"].endswith("describe this picture")


# ----------------------------------------------------------------------------------------------
# Errors


def test_an_api_key_is_required_when_set(send: Send) -> None:
    app = create_app(api_key="sekret")
    missing, wrong, basic, right, models = send(
        app,
        [
            ("POST", CHAT, {"json": chat_body()}),
            ("POST", CHAT, {"json": chat_body(), "headers": {"Authorization": "Bearer nope"}}),
            ("POST", CHAT, {"json": chat_body(), "headers": {"Authorization": "Basic sekret"}}),
            ("POST", CHAT, {"json": chat_body(), "headers": {"Authorization": "Bearer sekret"}}),
            ("GET", "/v1/models", {}),
        ],
    )
    assert "didn't provide an API key" in assert_error(missing, 401, "invalid_api_key")
    assert "Incorrect API key" in assert_error(wrong, 401, "invalid_api_key")
    assert_error(basic, 401, "invalid_api_key")
    assert right.status_code == 200
    assert_error(models, 401, "invalid_api_key")


@pytest.mark.parametrize(
    ("path", "kw", "code", "text"),
    [
        (CHAT, {"content": b"{not json"}, "invalid_json", "could not parse the JSON"),
        (CHAT, {"content": b"\xff\xfe"}, "invalid_json", "could not parse the JSON"),
        (CHAT, {"json": [1, 2]}, "invalid_json", "must be a JSON object"),
        (CHAT, {"json": {"model": "fake-model"}}, "missing_required_parameter", "'messages'"),
        (COMPLETIONS, {"json": {"model": "fake-model"}}, "missing_required_parameter", "'prompt'"),
        (CHAT, {"json": {"messages": "hi"}}, "invalid_type", "'messages'"),
        (CHAT, {"json": {"messages": []}}, "invalid_value", "must not be empty"),
        (CHAT, {"json": {"messages": [{"content": "x"}]}}, "invalid_value", "'role'"),
        (CHAT, {"json": {"messages": [{"role": "user", "content": 3}]}}, "invalid_type", "content"),
        (COMPLETIONS, {"json": {"prompt": []}}, "invalid_value", "'prompt'"),
        (COMPLETIONS, {"json": {"prompt": [1, 2]}}, "invalid_value", "'prompt'"),
        (COMPLETIONS, {"json": {"prompt": "x", "n": 0}}, "invalid_value", "'n'"),
        (COMPLETIONS, {"json": {"prompt": "x", "n": MAX_CHOICES + 1}}, "invalid_value", "'n'"),
        (COMPLETIONS, {"json": {"prompt": "x", "max_tokens": "5"}}, "invalid_value", "max_tokens"),
        (COMPLETIONS, {"json": {"prompt": "x", "stream": True}}, None, "stream"),
    ],
)
def test_bad_requests_get_400(
    send: Send, path: str, kw: dict[str, Any], code: str, text: str
) -> None:
    assert text in assert_error(one(send, create_app(), "POST", path, **kw), 400, code)


def test_unknown_paths_models_and_methods(send: Send) -> None:
    unknown, other_model, wrong_method, trailing = send(
        create_app(),
        [
            ("POST", "/v1/embeddings", {"json": {}}),
            ("POST", CHAT, {"json": chat_body(model="gpt-99")}),
            ("GET", CHAT, {}),
            ("GET", "/v1/models/", {}),
        ],
    )
    assert "POST /v1/embeddings" in assert_error(unknown, 404, "unknown_url")
    assert "'gpt-99'" in assert_error(other_model, 404, "model_not_found")
    assert_error(wrong_method, 405, "method_not_allowed")
    assert wrong_method.headers["allow"] == "POST"
    assert trailing.status_code == 200


def test_fail_every_n_gives_503_with_retry_after(send: Send) -> None:
    app = create_app(fail_every=3)
    calls: list[Call] = [("POST", COMPLETIONS, {"json": {"prompt": "x"}})] * 7
    responses = send(app, calls)
    assert [r.status_code for r in responses] == [200, 200, 503, 200, 200, 503, 200]
    assert "fail_every=3" in assert_error(responses[2], 503, "service_unavailable")
    assert responses[2].json()["error"]["type"] == "server_error"
    assert responses[2].headers["retry-after"] == "0"
    assert "retry-after" not in responses[0].headers
    assert app.requests == 7


def test_latency_delays_completions() -> None:
    start = time.monotonic()
    response = one(
        send_in_process, create_app(latency=0.05), "POST", COMPLETIONS, json={"prompt": "x"}
    )
    assert response.status_code == 200
    assert time.monotonic() - start >= 0.05


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"seed": "0"}, "seed"),
        ({"latency": -1}, "latency"),
        ({"fail_every": -1}, "fail_every"),
        ({"fail_every": True}, "fail_every"),
        ({"refusal_triggers": "bomb"}, "refusal_triggers"),
        ({"model": ""}, None),
    ],
)
def test_create_app_refuses_bad_options(options: dict[str, Any], field: str | None) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        create_app(**options)
    assert caught.value.field == field


def test_the_app_answers_the_lifespan_protocol() -> None:
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def record(message: Any) -> None:
        sent.append(dict(message))

    asyncio.run(create_app()({"type": "lifespan"}, receive, record))
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]


# ----------------------------------------------------------------------------------------------
# The server


def test_the_server_serves_on_a_free_loopback_port_and_stops_cleanly() -> None:
    with FakeOpenAIServer(api_key="k", model="m") as server:
        assert server.url == f"http://127.0.0.1:{server.port}" and server.port > 0
        assert server.base_url == server.url + "/v1"
        with httpx.Client(headers={"Authorization": "Bearer k"}) as client:
            assert client.get(f"{server.base_url}/models").json()["data"][0]["id"] == "m"
            client.post(f"{server.base_url}/completions", json={"prompt": "x"})
        assert server.requests == 2
        name = f"fake-openai:{server.port}"
        assert any(t.name == name for t in threading.enumerate())
        url = server.url
    assert not any(t.name == name for t in threading.enumerate())
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/v1/models")


def test_replies_are_not_held_back_by_nagle() -> None:
    # Regression: with a listening socket made without IPPROTO_TCP, asyncio left Nagle on and
    # each reply (headers, then body) waited ~40 ms for a delayed ACK: 100 calls took 4 s.
    with FakeOpenAIServer() as server, httpx.Client(base_url=server.url) as client:
        start = time.monotonic()
        for _ in range(100):
            client.get("/v1/models").raise_for_status()
        assert time.monotonic() - start < 2.0


def test_a_busy_port_and_mixed_arguments_are_refused() -> None:
    with FakeOpenAIServer() as first:
        with pytest.raises(
            errors.UnavailableError, match=f"cannot listen on 127.0.0.1:{first.port}"
        ):
            FakeOpenAIServer(port=first.port).start()
        with pytest.raises(errors.ConflictError, match="already running"):
            first.start()
    with pytest.raises(errors.ValidationError, match="not both"):
        FakeOpenAIServer(create_app(), api_key="k")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_python_dash_m_serves_until_stopped(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "assay.inference.fake_openai",
                "--port",
                str(port),
                "--api-key",
                "k",
                "--model",
                "cli-model",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 30
        response = None
        with httpx.Client(headers={"Authorization": "Bearer k"}) as client:
            while response is None and process.poll() is None and time.monotonic() < deadline:
                try:
                    response = client.get(f"http://127.0.0.1:{port}/v1/models")
                except httpx.ConnectError:  # not up yet: wait a little, or for it to die
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(0.05)
        assert response is not None, log.read_text()
        assert response.json()["data"][0]["id"] == "cli-model"
    finally:
        process.terminate()
        process.wait(30)


def test_main_refuses_bad_options_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--fail-every", "-2"])
    assert caught.value.code == 2
    assert "fail_every must be an integer of at least 0" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Faults of a real deployment: an admission limit, a process that dies, and the counters


def test_max_concurrent_answers_429_at_once_beyond_the_limit() -> None:
    app = create_app(max_concurrent=2, latency=0.5)

    async def run() -> tuple[list[httpx.Response], float]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fake") as client:

            async def timed(delay: float) -> tuple[httpx.Response, float]:
                await asyncio.sleep(delay)  # the first two are in flight before the others
                start = time.monotonic()
                response = await client.post(COMPLETIONS, json={"prompt": "a b c"})
                return response, time.monotonic() - start

            results = await asyncio.gather(*(timed(d) for d in (0, 0, 0.1, 0.1)))
        slowest_429 = max(t for r, t in results if r.status_code == 429)
        return [r for r, _ in results], slowest_429

    responses, slowest_429 = asyncio.run(run())
    assert [r.status_code for r in responses] == [200, 200, 429, 429]
    message = assert_error(responses[2], 429, "rate_limit_exceeded")
    assert "max_concurrent=2" in message and "Retry-After" in message
    assert responses[2].json()["error"]["type"] == "requests"
    assert responses[2].headers["retry-after"] == "1"
    assert slowest_429 < 0.4  # refused at once, without the latency
    assert responses[0].json()["usage"]["prompt_tokens"] == 3
    stats = app.stats()
    assert stats == {
        "requests": 4,
        "answered": 2,
        "rejected_429": 2,
        "failed_503": 0,
        "client_errors": 0,
        "server_errors": 0,
        "in_flight": 0,
        "max_in_flight": 2,
    }


def test_requests_within_the_limit_are_all_answered(send: Send) -> None:
    app = create_app(max_concurrent=1, retry_after=0.25)
    responses = send(app, [("POST", CHAT, {"json": chat_body()})] * 3)
    assert [r.status_code for r in responses] == [200, 200, 200]  # one at a time: admitted


def test_stats_count_each_outcome_and_are_served_over_http(send: Send) -> None:
    app = create_app(fail_every=3, api_key="k")
    auth = {"headers": {"Authorization": "Bearer k"}}
    calls: list[Call] = [
        ("POST", COMPLETIONS, {"json": {"prompt": "x"}, **auth}),
        ("POST", COMPLETIONS, {"json": {"prompt": "x"}}),  # no key: 401
        ("POST", COMPLETIONS, {"json": {"prompt": "x"}, **auth}),  # the third: 503
        ("GET", "/v1/_stats", {}),  # no key needed, and not counted
    ]
    *_, stats = send(app, calls)
    expected = {
        "requests": 3,
        "answered": 1,
        "rejected_429": 0,
        "failed_503": 1,
        "client_errors": 1,
        "server_errors": 0,
        "in_flight": 0,
        "max_in_flight": 1,
    }
    assert stats.status_code == 200 and stats.json() == expected
    assert app.stats() == expected and app.requests == 3


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"max_concurrent": -1}, "max_concurrent"),
        ({"max_concurrent": 1.5}, "max_concurrent"),
        ({"exit_after": -3}, "exit_after"),
        ({"retry_after": -1}, "retry_after"),
        ({"retry_after": "1"}, "retry_after"),
    ],
)
def test_create_app_refuses_bad_fault_options(options: dict[str, Any], field: str) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        create_app(**options)
    assert caught.value.field == field


def test_exit_after_is_refused_in_this_process() -> None:
    with pytest.raises(errors.ValidationError, match="FakeOpenAIProcess") as caught:
        FakeOpenAIServer(exit_after=2)
    assert caught.value.field == "exit_after"


def test_a_server_process_exits_on_its_nth_request_and_counts_over_http() -> None:
    with FakeOpenAIProcess(api_key="k", max_concurrent=4, exit_after=3) as server:
        assert server.returncode is None and server.base_url == server.url + "/v1"
        with httpx.Client(base_url=server.url, headers={"Authorization": "Bearer k"}) as client:
            for _ in range(2):
                reply = client.post(CHAT, json=chat_body("one two"))
                assert reply.status_code == 200
                assert reply.json()["usage"]["total_tokens"] > 0
            assert server.stats()["answered"] == 2  # GET /v1/_stats: not counted
            with pytest.raises(httpx.TransportError):  # the third request: no answer
                client.post(CHAT, json=chat_body())
        assert server.wait(30) == EXIT_STATUS == 3
    assert server.returncode is None  # stopped and forgotten


def test_main_refuses_bad_fault_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--max-concurrent", "-1"])
    assert caught.value.code == 2
    assert "max_concurrent must be an integer of at least 0" in capsys.readouterr().err
