"""The fake OpenAI-compatible ASGI application (no web framework, no dependencies)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from assay import errors

__all__ = [
    "EXIT_STATUS",
    "MAX_BODY_BYTES",
    "MAX_CHOICES",
    "REFUSAL",
    "STATS_PATH",
    "FakeOpenAI",
    "create_app",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: The reply to a prompt that contains a refusal trigger word.
REFUSAL = "I can't help with that."
#: The most choices (``n``) one request may ask for, and the largest body it may send.
MAX_CHOICES = 128
MAX_BODY_BYTES = 16 * 1024 * 1024
#: The exit status of a server process that ``exit_after`` ends.
EXIT_STATUS = 3
#: Where the request counters are served (``GET``): not an OpenAI path, and not counted.
STATS_PATH = "/v1/_stats"

_CHAT_PREFIXES = ("You said: ", "Echo: ", "I heard you say: ", "Noted: ")
_COMPLETION_PREFIXES = (" ...and then ", " To continue: ", " In other words, ", " Indeed, ")
_ROUTES = {
    "/v1/models": "GET",
    "/v1/chat/completions": "POST",
    "/v1/completions": "POST",
}


class _HTTPError(Exception):
    """An error reply in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type, "param": param, "code": code}}
        self.headers = list(headers)


class FakeOpenAI:
    """The ASGI application; make one with :func:`create_app`."""

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None,
        seed: int,
        latency: float,
        fail_every: int,
        refusal_triggers: Sequence[str],
        max_concurrent: int = 0,
        retry_after: float = 1.0,
        exit_after: int = 0,
    ) -> None:
        self.model = model
        self.api_key = api_key
        self.seed = seed
        self.latency = latency
        self.fail_every = fail_every
        self.refusal_triggers = frozenset(word.lower() for word in refusal_triggers)
        self.max_concurrent = max_concurrent
        self.retry_after = retry_after
        self.exit_after = exit_after
        #: The number of HTTP requests received so far (``GET /v1/_stats`` not counted).
        self.requests = 0
        self._in_flight = 0
        self._counts = dict.fromkeys(_OUTCOMES, 0)
        self._peak = 0

    def stats(self) -> dict[str, int]:
        """The request counters (also served at ``GET /v1/_stats``): ``requests`` received,
        each one's outcome — ``answered`` (200), ``rejected_429`` (over ``max_concurrent``),
        ``failed_503`` (``fail_every``), ``client_errors`` (any other 4xx),
        ``server_errors`` (any other 5xx) — and ``in_flight``, the admitted requests being
        answered now, and ``max_in_flight``, the most at once so far."""
        return {
            "requests": self.requests,
            **self._counts,
            "in_flight": self._in_flight,
            "max_in_flight": self._peak,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":  # websockets: not served
            return
        if (scope["path"].rstrip("/") or "/") == STATS_PATH and scope["method"] == "GET":
            await _send_json(send, 200, self.stats(), [])
            return
        self.requests += 1
        number = self.requests
        if self.exit_after and number >= self.exit_after:
            _exit(number, self.exit_after)
        # the version the service says it is, as a deployed model server would
        headers: list[tuple[str, str]] = [("x-model-version", f"{self.model}-seed{self.seed}")]
        try:
            status, body = 200, await self._handle(scope, receive, number)
        except _HTTPError as exc:
            status, body, headers = exc.status, exc.body, exc.headers
        self._counts[_outcome(status)] += 1
        await _send_json(send, status, body, headers)

    async def _handle(self, scope: Scope, receive: Receive, number: int) -> dict[str, Any]:
        method: str = scope["method"]
        path: str = scope["path"].rstrip("/") or "/"
        model_path = path.startswith("/v1/models/")
        allowed = "GET" if model_path else _ROUTES.get(path)
        if allowed is None:
            raise _HTTPError(
                404,
                f"Invalid URL ({method} {path}); this server serves GET /v1/models, "
                "POST /v1/chat/completions and POST /v1/completions",
                code="unknown_url",
            )
        if method != allowed:
            raise _HTTPError(
                405,
                f"{method} is not allowed on {path}; use {allowed}",
                code="method_not_allowed",
                headers=[("allow", allowed)],
            )
        self._authenticate(scope)
        if self.max_concurrent and self._in_flight >= self.max_concurrent:
            raise _HTTPError(
                429,
                f"Rate limit reached: {self._in_flight} requests in flight, the most this "
                f"server admits at once (max_concurrent={self.max_concurrent}); retry after "
                f"{self.retry_after:g} s (Retry-After), or send fewer requests at once",
                type="requests",
                code="rate_limit_exceeded",
                headers=[("retry-after", f"{self.retry_after:g}")],
            )
        if self.fail_every and number % self.fail_every == 0:
            raise _HTTPError(
                503,
                f"simulated overload: request {number} fails (fail_every={self.fail_every}); "
                "retry the request",
                type="server_error",
                code="service_unavailable",
                headers=[("retry-after", "0")],
            )
        self._in_flight += 1  # admitted
        self._peak = max(self._peak, self._in_flight)
        try:
            return await self._answer(path, receive, number)
        finally:
            self._in_flight -= 1

    async def _answer(self, path: str, receive: Receive, number: int) -> dict[str, Any]:
        model_path = path.startswith("/v1/models/")
        if model_path:
            self._check_model(path.removeprefix("/v1/models/"))
            return self._model_card()
        if path == "/v1/models":
            return {"object": "list", "data": [self._model_card()]}
        request = await _read_json(receive)
        if "model" in request:
            self._check_model(request["model"])
        if request.get("stream"):
            raise _HTTPError(
                400, "this fake server does not stream; send stream: false", param="stream"
            )
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        if path == "/v1/chat/completions":
            return self._chat(request, number)
        return self._completions(request, number)

    def _authenticate(self, scope: Scope) -> None:
        if self.api_key is None:
            return
        given = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = given.partition(" ")
        if not given:
            message = (
                "You didn't provide an API key; send it in the header "
                "'Authorization: Bearer <api key>'"
            )
        elif scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self.api_key.encode()
        ):
            message = "Incorrect API key provided; check the key you send as 'Bearer <api key>'"
        else:
            return
        raise _HTTPError(
            401, message, code="invalid_api_key", headers=[("www-authenticate", "Bearer")]
        )

    def _check_model(self, model: Any) -> None:
        if model != self.model:
            raise _HTTPError(
                404,
                f"The model {model!r} does not exist; this server serves {self.model!r}",
                code="model_not_found",
                param="model",
            )

    def _model_card(self) -> dict[str, Any]:
        return {"id": self.model, "object": "model", "created": 0, "owned_by": "assay"}

    def _chat(self, request: dict[str, Any], number: int) -> dict[str, Any]:
        messages = _required(request, "messages", list)
        if not messages:
            raise _HTTPError(400, "'messages' must not be empty", code="invalid_value")
        texts = [_message_text(i, message) for i, message in enumerate(messages)]
        users = [t for t, m in zip(texts, messages, strict=True) if m["role"] == "user"]
        last = (users or texts)[-1]
        n, max_tokens = _n(request), _max_tokens(request)
        choices: list[dict[str, Any]] = []
        generated: list[str] = []
        for i in range(n):
            content = REFUSAL if self._refuses(last) else self._pick(_CHAT_PREFIXES, last, i) + last
            content, finish = _truncate(content, max_tokens)
            generated.append(content)
            choices.append(
                {
                    "index": i,
                    "message": {"role": "assistant", "content": content},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            )
        return self._reply("chatcmpl", "chat.completion", number, choices, texts, generated)

    def _completions(self, request: dict[str, Any], number: int) -> dict[str, Any]:
        prompt = _required(request, "prompt", (str, list))
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise _HTTPError(
                400,
                "'prompt' must be a string or a non-empty list of strings",
                code="invalid_value",
                param="prompt",
            )
        n, max_tokens = _n(request), _max_tokens(request)
        echo = request.get("echo") is True
        choices: list[dict[str, Any]] = []
        generated: list[str] = []
        for p, text in enumerate(prompts):
            tail = " ".join(text.split()[-5:])
            for i in range(n):
                if self._refuses(text):
                    completion = " " + REFUSAL
                else:
                    completion = self._pick(_COMPLETION_PREFIXES, text, i) + tail
                completion, finish = _truncate(completion, max_tokens)
                generated.append(completion)
                choices.append(
                    {
                        "index": p * n + i,
                        "text": text + completion if echo else completion,
                        "logprobs": None,
                        "finish_reason": finish,
                    }
                )
        return self._reply("cmpl", "text_completion", number, choices, prompts, generated)

    def _reply(
        self,
        prefix: str,
        kind: str,
        number: int,
        choices: list[dict[str, Any]],
        prompts: list[str],
        generated: list[str],
    ) -> dict[str, Any]:
        """The response body; a token is a word here."""
        prompt_tokens = sum(len(text.split()) for text in prompts)
        completion_tokens = sum(len(text.split()) for text in generated)
        return {
            "id": f"{prefix}-{_digest(f'{self.seed}:{number}')[:24]}",
            "object": kind,
            "created": int(time.time()),
            "model": self.model,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _refuses(self, text: str) -> bool:
        return any(
            word.strip(".,;:!?\"'()").lower() in self.refusal_triggers for word in text.split()
        )

    def _pick(self, options: Sequence[str], prompt: str, choice: int) -> str:
        return options[int(_digest(f"{self.seed}\x00{choice}\x00{prompt}")[:8], 16) % len(options)]


def create_app(
    *,
    model: str = "fake-model",
    api_key: str | None = None,
    seed: int = 0,
    latency: float = 0.0,
    fail_every: int = 0,
    refusal_triggers: Sequence[str] = ("forbidden",),
    max_concurrent: int = 0,
    retry_after: float = 1.0,
    exit_after: int = 0,
) -> FakeOpenAI:
    """A fake OpenAI-compatible ASGI application (see the module docstring).

    :param model: the one model it serves (a request that names another gets ``404``).
    :param api_key: when set, requests must send ``Authorization: Bearer <api_key>``.
    :param seed: varies the canned prefixes; the same seed gives the same content.
    :param latency: seconds to wait before answering a completion request.
    :param fail_every: when ``N > 0``, every Nth request gets ``503`` with ``Retry-After: 0``.
    :param refusal_triggers: words that make it answer :data:`REFUSAL` (case-insensitive).
    :param max_concurrent: when ``N > 0``, a request that arrives while ``N`` are in flight
        gets ``429`` (``code: "rate_limit_exceeded"``) with ``Retry-After: <retry_after>`` at
        once, without the latency: an admission limit, as a rate-limited API or a full vLLM
        queue.
    :param retry_after: the seconds its ``429`` replies ask the client to wait (default 1).
    :param exit_after: when ``N > 0``, the process that serves the app exits with status
        :data:`EXIT_STATUS` (``os._exit``) on receiving its ``N``-th request, unanswered: a
        service that dies. Serve it as its own process (:class:`FakeOpenAIProcess`, or
        ``python -m assay.inference.fake_openai --exit-after N``), never in the caller's.
    """
    if not isinstance(model, str) or not model:
        raise errors.ValidationError(f"model must be a non-empty string, got {model!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise errors.ValidationError(f"seed must be an integer, got {seed!r}", field="seed")
    if isinstance(latency, bool) or not isinstance(latency, int | float) or latency < 0:
        raise errors.ValidationError(
            f"latency must be a number of seconds of at least 0, got {latency!r}",
            field="latency",
        )
    if isinstance(fail_every, bool) or not isinstance(fail_every, int) or fail_every < 0:
        raise errors.ValidationError(
            f"fail_every must be an integer of at least 0 (0: never fail), got {fail_every!r}",
            field="fail_every",
        )
    for name, value in (("max_concurrent", max_concurrent), ("exit_after", exit_after)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise errors.ValidationError(
                f"{name} must be an integer of at least 0 (0: no limit), got {value!r}",
                field=name,
            )
    if (
        isinstance(retry_after, bool)
        or not isinstance(retry_after, int | float)
        or not 0 <= retry_after < 86_400
    ):
        raise errors.ValidationError(
            f"retry_after must be a number of seconds from 0 to 86400, got {retry_after!r}",
            field="retry_after",
        )
    if isinstance(refusal_triggers, str):
        raise errors.ValidationError(
            f"refusal_triggers must be a list of words, got the string {refusal_triggers!r}",
            field="refusal_triggers",
        )
    return FakeOpenAI(
        model=model,
        api_key=api_key,
        seed=seed,
        latency=float(latency),
        fail_every=fail_every,
        refusal_triggers=refusal_triggers,
        max_concurrent=max_concurrent,
        retry_after=float(retry_after),
        exit_after=exit_after,
    )


# ----------------------------------------------------------------------------------------------
# Requests and replies

_OUTCOMES = ("answered", "rejected_429", "failed_503", "client_errors", "server_errors")


def _outcome(status: int) -> str:
    if status < 400:
        return "answered"
    if status == 429:
        return "rejected_429"
    if status == 503:
        return "failed_503"
    return "client_errors" if status < 500 else "server_errors"


def _exit(number: int, exit_after: int) -> None:
    """End the serving process at once, as a crash would (no reply, no clean-up)."""
    os.write(
        2,
        f"fake OpenAI server: exiting with status {EXIT_STATUS} on request {number} "
        f"(exit_after={exit_after})\n".encode(),
    )
    os._exit(EXIT_STATUS)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _read_json(receive: Receive) -> dict[str, Any]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _HTTPError(400, "the client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _HTTPError(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    try:
        request = json.loads(b"".join(chunks))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _HTTPError(
            400, f"We could not parse the JSON body of your request ({exc})", code="invalid_json"
        ) from None
    if not isinstance(request, dict):
        raise _HTTPError(
            400,
            f"the request body must be a JSON object, got {type(request).__name__}",
            code="invalid_json",
        )
    return request


def _required(request: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in request:
        raise _HTTPError(
            400,
            f"Missing required parameter: {name!r}",
            code="missing_required_parameter",
            param=name,
        )
    value = request[name]
    if not isinstance(value, kind):
        raise _HTTPError(
            400,
            f"Invalid type for {name!r}: got {type(value).__name__}",
            code="invalid_type",
            param=name,
        )
    return value


def _message_text(i: int, message: Any) -> str:
    """The text of one chat message (``content`` a string, text parts, or null)."""
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise _HTTPError(
            400,
            f"messages[{i}] must be an object with a string 'role'",
            code="invalid_value",
            param=f"messages.[{i}]",
        )
    content = message.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list) and all(isinstance(part, dict) for part in content):
        return " ".join(str(part.get("text", "")) for part in content if part.get("type") == "text")
    raise _HTTPError(
        400,
        f"messages[{i}].content must be a string or a list of content parts",
        code="invalid_type",
        param=f"messages.[{i}].content",
    )


def _integer(request: dict[str, Any], name: str, low: int, high: int | None) -> int | None:
    value = request.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _HTTPError(
            400,
            f"Invalid value for {name!r}: expected an integer of at least {low}, got {value!r}",
            code="invalid_value",
            param=name,
        )
    if high is not None and value > high:
        raise _HTTPError(
            400,
            f"Invalid value for {name!r}: at most {high}, got {value!r}",
            code="invalid_value",
            param=name,
        )
    return value


def _n(request: dict[str, Any]) -> int:
    return _integer(request, "n", 1, MAX_CHOICES) or 1


def _max_tokens(request: dict[str, Any]) -> int | None:
    limit = _integer(request, "max_completion_tokens", 1, None)
    return limit if limit is not None else _integer(request, "max_tokens", 1, None)


def _truncate(text: str, max_tokens: int | None) -> tuple[str, str]:
    """``(text cut to max_tokens words, finish_reason)``."""
    if max_tokens is None:
        return text, "stop"
    tokens = text.split(" ")
    if len([t for t in tokens if t]) <= max_tokens:
        return text, "stop"
    kept: list[str] = []
    count = 0
    for token in tokens:
        if token:
            if count == max_tokens:
                break
            count += 1
        kept.append(token)
    return " ".join(kept), "length"


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: Sequence[tuple[str, str]]
) -> None:
    payload = json.dumps(body).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *((name.encode(), value.encode()) for name, value in headers),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})
