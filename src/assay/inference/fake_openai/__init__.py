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

Faults of a real deployment, for tests of what a client does about them:

- ``max_concurrent=N``: an admission limit. A request that arrives while ``N`` are in flight
  gets ``429`` (``code: "rate_limit_exceeded"``) with ``Retry-After: <retry_after>`` (default
  1 s) at once, without the ``latency``;
- ``exit_after=N``: the serving process exits with status 3 (``os._exit``) on its Nth
  request, unanswered — a service that dies. Only :class:`FakeOpenAIProcess` (or ``python -m``)
  takes it: it would end the caller's process.

Every reply has a ``usage`` block (``prompt_tokens``, ``completion_tokens``,
``total_tokens``; a token is a whitespace-separated word). :meth:`FakeOpenAI.stats` counts the
requests by outcome (``answered``, ``rejected_429``, ``failed_503``, ``client_errors``,
``server_errors``) with ``in_flight`` and ``max_in_flight``; ``GET /v1/_stats`` serves the same
counters (not counted itself), for a server in another process.

:class:`FakeOpenAIServer` serves it with uvicorn on loopback in a background thread::

    with FakeOpenAIServer(api_key="secret") as server:
        httpx.post(f"{server.url}/v1/chat/completions", json=..., headers=...)

:class:`FakeOpenAIProcess` serves it in a process of its own (the same options)::

    with FakeOpenAIProcess(exit_after=5) as server:
        ...  # the fifth request ends the process; server.wait() == 3

``python -m assay.inference.fake_openai --port 8000`` serves it in the foreground (every option
has a flag: ``--max-concurrent``, ``--retry-after``, ``--exit-after``, ...; ``--port 0`` picks
a free port, and the first line on stdout says which). uvicorn is imported only by the servers
and :func:`main`.
"""

from __future__ import annotations

from assay.inference.fake_openai._app import (
    EXIT_STATUS,
    MAX_BODY_BYTES,
    MAX_CHOICES,
    REFUSAL,
    STATS_PATH,
    FakeOpenAI,
    create_app,
)
from assay.inference.fake_openai._server import FakeOpenAIProcess, FakeOpenAIServer, main

__all__ = [
    "EXIT_STATUS",
    "MAX_BODY_BYTES",
    "MAX_CHOICES",
    "REFUSAL",
    "STATS_PATH",
    "FakeOpenAI",
    "FakeOpenAIProcess",
    "FakeOpenAIServer",
    "create_app",
    "main",
]
