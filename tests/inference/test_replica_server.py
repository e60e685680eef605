"""The replica ASGI app in-process (httpx's ASGI transport): readiness, infer, batch, every
error code of the replica protocol, the secret check, and the target resolution."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import MutableMapping
from typing import Any

import httpx
import pytest

from assay.errors import UnavailableError, ValidationError
from assay.inference.protocol import REPLICA_SECRET_ENV
from assay.inference.replica_server import (
    ReplicaApp,
    TargetImportError,
    create_app,
    main,
    resolve_target,
)

SECRET = "s3cret-for-tests"
AUTH = {"Authorization": f"Bearer {SECRET}"}


class Echo:
    endpoints = ["echo", "shout"]

    def infer(self, endpoint: str, request: dict[str, Any]) -> list[dict[str, Any]]:
        text = str(request.get("text", ""))
        return [{"text": text.upper() if endpoint == "shout" else text}]


class Batching(Echo):
    def __init__(self) -> None:
        self.batches = 0

    def infer_batch(
        self, endpoint: str, requests: list[dict[str, Any]]
    ) -> list[list[dict[str, Any]]]:
        self.batches += 1
        return [self.infer(endpoint, r) for r in requests]


class Raising:
    """Raises what the request's ``raise`` field names; answers whatever ``reply`` holds."""

    def infer(self, endpoint: str, request: dict[str, Any]) -> Any:
        kind = request.get("raise")
        if kind == "ValueError":
            raise ValueError("text must not be empty")
        if kind == "KeyError":
            raise KeyError("text")
        if kind == "TypeError":
            raise TypeError("text must be a string")
        if kind == "ValidationError":
            raise ValidationError("field 'text' is required")
        if kind == "Unavailable":
            raise UnavailableError("warming up", retry_after=request.get("after"))
        if kind == "RuntimeError":
            raise RuntimeError("boom")
        if kind == "SystemExit":
            raise SystemExit(1)
        return request["reply"]


def ready_app(service: object, **kwargs: Any) -> ReplicaApp:
    app = create_app(lambda: service, secret=SECRET, **kwargs)
    app.start_loading()
    assert app.wait_loaded(5)
    return app


async def _request(
    app: ReplicaApp,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://replica") as client:
        return await client.request(
            method, path, headers=AUTH if headers is None else headers, **kwargs
        )


def call(
    app: ReplicaApp,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    return asyncio.run(_request(app, method, path, headers=headers, **kwargs))


# -- readiness -------------------------------------------------------------------------------


def test_ready_answers_503_while_loading_and_200_once_loaded() -> None:
    release = threading.Event()

    def load() -> Echo:
        assert release.wait(10)
        return Echo()

    app = create_app(load, secret=SECRET)
    not_yet = call(app, "GET", "/ready")  # the first request starts the loading (no lifespan)
    assert not_yet.status_code == 503
    assert not_yet.headers["retry-after"] == "1"
    assert not_yet.json() == {"detail": "the service is still loading"}
    infer = call(app, "POST", "/infer/echo", json={"text": "a"})
    assert infer.status_code == 503
    release.set()
    assert app.wait_loaded(5)
    ready = call(app, "GET", "/ready")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
    assert ready.json()["batch"] is False  # Echo has no infer_batch
    assert ready.json()["threads"] >= 1
    assert call(app, "POST", "/infer/echo", json={"text": "a"}).json() == [{"text": "a"}]


def test_lifespan_startup_starts_loading() -> None:
    loaded = threading.Event()

    def load() -> Echo:
        loaded.set()
        return Echo()

    app = create_app(load, secret=SECRET)

    async def lifespan() -> list[str]:
        incoming: list[MutableMapping[str, Any]] = [
            {"type": "lifespan.startup"},
            {"type": "lifespan.shutdown"},
        ]
        sent: list[str] = []

        async def receive() -> MutableMapping[str, Any]:
            return incoming.pop(0)

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message["type"])

        await app({"type": "lifespan"}, receive, send)
        return sent

    assert asyncio.run(lifespan()) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert loaded.wait(5)
    assert app.wait_loaded(5)
    assert app.load_error is None


def test_a_failed_load_is_reported_by_ready_and_infer() -> None:
    reported: list[tuple[BaseException, str]] = []

    def load() -> Echo:
        raise RuntimeError("no weights in /models/x")

    app = create_app(
        load, secret=SECRET, on_load_error=lambda exc, text: reported.append((exc, text))
    )
    app.start_loading()
    assert app.wait_loaded(5)
    ready = call(app, "GET", "/ready")
    assert ready.status_code == 500
    assert ready.json() == {"ready": False, "detail": "RuntimeError: no weights in /models/x"}
    infer = call(app, "POST", "/infer/echo", json={})
    assert infer.status_code == 500
    assert infer.json()["detail"] == (
        "the service failed to load: RuntimeError: no weights in /models/x"
    )
    [(exc, text)] = reported
    assert isinstance(exc, RuntimeError)
    assert "Traceback" in text and "no weights" in text


# -- infer and batch -------------------------------------------------------------------------


def test_infer_answers_the_services_list() -> None:
    app = ready_app(Echo())
    reply = call(app, "POST", "/infer/shout", json={"text": "héllo"})
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == [{"text": "HÉLLO"}]


def test_batch_uses_infer_batch_when_the_service_has_it() -> None:
    service = Batching()
    app = ready_app(service)
    requests = [{"text": f"t{i}"} for i in range(32)]
    reply = call(app, "POST", "/batch/echo", json=requests)
    assert reply.status_code == 200
    assert reply.json() == [[{"text": f"t{i}"}] for i in range(32)]
    assert service.batches == 1


def test_batch_falls_back_to_infer_one_request_at_a_time() -> None:
    app = ready_app(Echo())
    reply = call(app, "POST", "/batch/shout", json=[{"text": "a"}, {"text": "b"}])
    assert reply.json() == [[{"text": "A"}], [{"text": "B"}]]
    assert call(app, "POST", "/batch/shout", json=[]).json() == []


def test_the_event_loop_answers_while_a_call_runs() -> None:
    entered, release = threading.Event(), threading.Event()

    class Blocking(Echo):
        def infer(self, endpoint: str, request: dict[str, Any]) -> list[dict[str, Any]]:
            entered.set()
            assert release.wait(10)
            return super().infer(endpoint, request)

    app = ready_app(Blocking())

    async def scenario() -> tuple[int, int]:
        infer = asyncio.create_task(_request(app, "POST", "/infer/echo", json={"text": "x"}))
        assert await asyncio.to_thread(entered.wait, 10)
        ready = await _request(app, "GET", "/ready")  # answered while infer is blocked
        release.set()
        return ready.status_code, (await infer).status_code

    assert asyncio.run(scenario()) == (200, 200)


# -- errors ----------------------------------------------------------------------------------


def test_unknown_endpoint_is_404_listing_the_endpoints() -> None:
    app = ready_app(Echo())
    for path in ("/infer/whisper", "/batch/whisper"):
        body: Any = {} if path.startswith("/infer") else []
        reply = call(app, "POST", path, json=body)
        assert reply.status_code == 404
        assert reply.json() == {
            "detail": "unknown endpoint 'whisper': the endpoints are ['echo', 'shout']"
        }


def test_a_service_without_declared_endpoints_accepts_any_endpoint() -> None:
    app = ready_app(Raising())
    reply = call(app, "POST", "/infer/any/thing", json={"reply": [{"ok": True}]})
    assert reply.json() == [{"ok": True}]


@pytest.mark.parametrize(
    ("kind", "detail"),
    [
        ("ValueError", "ValueError: text must not be empty"),
        ("KeyError", "KeyError: 'text'"),
        ("TypeError", "TypeError: text must be a string"),
        ("ValidationError", "field 'text' is required"),
    ],
)
def test_a_rejected_request_is_400_with_the_message(kind: str, detail: str) -> None:
    app = ready_app(Raising())
    for path, body in (("/infer/x", {"raise": kind}), ("/batch/x", [{"raise": kind}])):
        reply = call(app, "POST", path, json=body)
        assert (reply.status_code, reply.json()) == (400, {"detail": detail})


def test_unavailable_is_503_with_retry_after() -> None:
    app = ready_app(Raising())
    reply = call(app, "POST", "/infer/x", json={"raise": "Unavailable", "after": 2.5})
    assert (reply.status_code, reply.headers["retry-after"]) == (503, "3")
    assert reply.json() == {"detail": "warming up"}
    default = call(app, "POST", "/infer/x", json={"raise": "Unavailable"})
    assert (default.status_code, default.headers["retry-after"]) == (503, "1")


def test_other_failures_are_500_with_the_exception_type(
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = ready_app(Raising())
    reply = call(app, "POST", "/infer/x", json={"raise": "RuntimeError"})
    assert (reply.status_code, reply.json()) == (500, {"detail": "RuntimeError: boom"})
    assert "Traceback" in capsys.readouterr().err  # the supervisor's log tail shows it
    exiting = call(app, "POST", "/infer/x", json={"raise": "SystemExit"})
    assert exiting.status_code == 500
    assert exiting.json() == {"detail": "RuntimeError: the service raised SystemExit: 1"}
    assert call(app, "GET", "/ready").status_code == 200  # the replica lives on


@pytest.mark.parametrize(
    ("reply", "detail"),
    [
        ("text", "the service's infer('x', request) returned str; expected a list of JSON"),
        ({"text": "a"}, "the service's infer('x', request) returned dict; expected a list"),
        (["a"], "the service's infer('x', request) returned a list holding str; expected"),
    ],
)
def test_a_reply_that_is_not_a_list_of_objects_is_500(reply: Any, detail: str) -> None:
    app = ready_app(Raising())
    answer = call(app, "POST", "/infer/x", json={"reply": reply})
    assert answer.status_code == 500
    assert answer.json()["detail"].startswith(detail)
    batch = call(app, "POST", "/batch/x", json=[{"reply": reply}])
    assert (batch.status_code, batch.json()) == (500, answer.json())


def test_a_batch_with_the_wrong_number_of_results_is_500() -> None:
    class Short(Echo):
        def infer_batch(self, endpoint: str, requests: list[dict[str, Any]]) -> Any:
            return [[{"text": "only one"}]]

    reply = call(ready_app(Short()), "POST", "/batch/echo", json=[{}, {}])
    assert reply.status_code == 500
    assert reply.json()["detail"] == (
        "the service's infer_batch('echo', requests) returned a list of 1 results for 2 "
        "requests; expected one list of outputs per request, in order"
    )


def test_a_reply_that_is_not_json_is_500() -> None:
    class Odd:
        def infer(self, endpoint: str, request: dict[str, Any]) -> Any:
            return [{"value": float("nan")}] if request.get("nan") else [{"value": object()}]

    app = ready_app(Odd())
    for body in ({"nan": True}, {}):
        reply = call(app, "POST", "/infer/x", json=body)
        assert reply.status_code == 500
        assert reply.json()["detail"].startswith("the service's reply cannot be written as JSON")


@pytest.mark.parametrize(
    ("path", "content", "detail"),
    [
        ("/infer/echo", b"{not json", "the body is not valid JSON: "),
        (
            "/infer/echo",
            b"[]",
            "the body of POST /infer/echo must be a JSON object, got a JSON array",
        ),
        (
            "/batch/echo",
            b"{}",
            "the body of POST /batch/echo must be a JSON array of objects, got a JSON object",
        ),
        (
            "/batch/echo",
            b"[1]",
            "the body of POST /batch/echo must be a JSON array of objects, got a JSON array with",
        ),
    ],
)
def test_a_malformed_body_is_400(path: str, content: bytes, detail: str) -> None:
    reply = call(ready_app(Echo()), "POST", path, content=content)
    assert reply.status_code == 400
    assert reply.json()["detail"].startswith(detail)


def test_wrong_method_is_405_and_unknown_route_is_404() -> None:
    app = ready_app(Echo())
    assert call(app, "POST", "/ready").status_code == 405
    assert call(app, "GET", "/infer/echo").status_code == 405
    missing = call(app, "GET", "/metrics")
    assert missing.status_code == 404
    assert missing.json()["detail"].startswith("no route GET /metrics")


# -- the secret ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": SECRET}],
    ids=["missing", "wrong", "no-bearer"],
)
def test_every_route_needs_the_secret(headers: dict[str, str]) -> None:
    app = ready_app(Echo())
    for method, path in (
        ("GET", "/ready"),
        ("POST", "/infer/echo"),
        ("POST", "/batch/echo"),
        ("GET", "/elsewhere"),
    ):
        reply = call(app, method, path, headers=headers, json={})
        assert reply.status_code == 401, (method, path)
        assert reply.json() == {"detail": "missing or wrong replica secret"}


def test_the_secret_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REPLICA_SECRET_ENV, "from-env")
    app = create_app(Echo)
    assert call(app, "GET", "/ready", headers={"Authorization": "Bearer from-env"}).status_code in (
        200,
        503,
    )
    assert call(app, "GET", "/ready").status_code == 401
    monkeypatch.delenv(REPLICA_SECRET_ENV)
    with pytest.raises(ValidationError, match=REPLICA_SECRET_ENV):
        create_app(Echo)


# -- the command line ------------------------------------------------------------------------


def test_resolve_target_names_module_class_and_paths() -> None:
    assert resolve_target("json:JSONDecoder", []).__name__ == "JSONDecoder"
    with pytest.raises(TargetImportError) as missing:
        resolve_target("assay_no_such_module:Model", ["/srv/modules/m1"])
    message = str(missing.value)
    assert "'assay_no_such_module'" in message and "'Model'" in message
    assert "/srv/modules/m1" in message
    with pytest.raises(TargetImportError, match=r"has no class 'Nope'.*'JSONDecoder'"):
        resolve_target("json:Nope", [])
    with pytest.raises(TargetImportError, match=r"module\.path:ClassName"):
        resolve_target("json", [])
    with pytest.raises(TargetImportError, match="not a class"):
        resolve_target("json:__name__", [])


def test_main_refuses_to_run_without_a_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(REPLICA_SECRET_ENV, raising=False)
    assert main(["--target", "json:JSONDecoder"]) == 2
    assert REPLICA_SECRET_ENV in capsys.readouterr().err


def test_main_rejects_an_arg_that_is_not_json() -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--target", "json:JSONDecoder", "--arg", "prefix=not json"])
    assert exit_.value.code == 2
