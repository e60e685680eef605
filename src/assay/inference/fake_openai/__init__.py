"""A fake OpenAI-compatible server, for tests and demos of the ``openai`` runner.

:func:`create_app` returns a raw ASGI application (no web framework) that answers like an
OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp):

- ``GET /v1/models`` and ``GET /v1/models/{model}``: the one model it serves;
- ``POST /v1/chat/completions`` (``messages``) and ``POST /v1/completions`` (``prompt``, a
  string or a list of strings), with ``n`` choices per prompt, ``max_tokens`` (a token is a
  word here; a cut reply ends with ``finish_reason: "length"``) and the real response shapes:
  ``id``, ``object``, ``created``, ``model``, ``choices``, ``usage``.

The content is deterministic, derived from the ``seed`` and the prompt: a chat reply echoes
the last user message after a canned prefix, and is the refusal :data:`REFUSAL` when that
message contains one of the ``refusal_triggers`` words. Errors have OpenAI's shape, ``{"error":
{"message", "type", "param", "code"}}``: ``401`` without ``Authorization: Bearer <api_key>``
(when an ``api_key`` is set), ``400`` for a body that is not a JSON object or lacks
``messages``/``prompt``, ``404`` for an unknown path or model, ``405`` for a wrong method, and,
with ``fail_every=N``, ``503`` with ``Retry-After: 0`` for every Nth request.

:class:`FakeOpenAIServer` serves it with uvicorn on loopback in a background thread::

    with FakeOpenAIServer(api_key="secret") as server:
        httpx.post(f"{server.url}/v1/chat/completions", json=..., headers=...)

``python -m assay.inference.fake_openai --port 8000`` serves it in the foreground. uvicorn is
imported only by :class:`FakeOpenAIServer` and :func:`main`.
"""

from __future__ import annotations

from assay.inference.fake_openai._app import (
    MAX_BODY_BYTES,
    MAX_CHOICES,
    REFUSAL,
    FakeOpenAI,
    create_app,
)
from assay.inference.fake_openai._server import FakeOpenAIServer, main

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_CHOICES",
    "REFUSAL",
    "FakeOpenAI",
    "FakeOpenAIServer",
    "create_app",
    "main",
]
