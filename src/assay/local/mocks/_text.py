"""The text completion mock."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from assay.local.mocks._base import RandomSource, SingleEndpointMock, check_count, request_field
from assay.schema.dataset import text

__all__ = ["TextCompletion"]

#: Canned continuations; ``{echo}`` is replaced by the last words of the prompt.
_CONTINUATIONS = (
    " And the rest, as they say, is history.",
    " Nobody expected what happened next.",
    " That is all I am able to say about it.",
    " ...or so the old story goes.",
    " Did you really mean {echo}?",
)
#: The one continuation with ``{echo}``, and where it is.
_ECHO_AT = 4
_ECHO = _CONTINUATIONS[_ECHO_AT]
#: Random bytes to continuation numbers, evenly: the bytes past the last whole multiple of
#: the number of continuations are dropped.
_PICK = bytes(b % len(_CONTINUATIONS) for b in range(256))
_UNEVEN = bytes(range(256 - 256 % len(_CONTINUATIONS), 256))


class TextCompletion(SingleEndpointMock):
    """Simulates a "text completion" service.

    Endpoints:

        ``generate``
            Input ``{"text": str}``. Output: ``responses_per_request`` objects
            ``{"text": str}`` (default 2), each the input text followed by a "generated"
            continuation picked from a few canned ones (one of which echoes the last words of
            the input). Output schema: ``make_output_schema(text.Text)``.

    Options (keyword-only):

    - ``responses_per_request``: the number of outputs per request (default 2);
    - ``seed``: with a seed, the continuations depend on the seed and the input text alone;
      without one, they vary from call to call.
    """

    nonblocking = True

    ENDPOINT = "generate"

    def __init__(self, *, responses_per_request: int = 2, seed: int | None = None) -> None:
        super().__init__(self.ENDPOINT, text.Text)
        self.responses_per_request = check_count("responses_per_request", responses_per_request)
        self._random = RandomSource(seed)

    def infer_batch(
        self, endpoint: str, requests: Sequence[dict[str, Any]]
    ) -> list[list[dict[str, Any]]]:
        """As :meth:`infer` on each request, in one pass: without a seed, the continuations of
        the whole batch are drawn at once (with one, each request keeps its own generator,
        so a batch answers exactly as one-by-one calls do)."""
        self.check_endpoint(endpoint)
        if self._random.seed is not None:
            return [self.answer(request) for request in requests]
        prompts = _prompts(requests)
        k = self.responses_per_request
        picks = _picks(self._random.for_request(""), k * len(prompts))
        if k == 2:
            it = iter(picks)
            return [
                [
                    {"text": prompt + (_CONTINUATIONS[a] if a != _ECHO_AT else _echo(prompt))},
                    {"text": prompt + (_CONTINUATIONS[b] if b != _ECHO_AT else _echo(prompt))},
                ]
                for prompt, a, b in zip(prompts, it, it, strict=True)
            ]
        return [
            [
                {"text": prompt + (_CONTINUATIONS[c] if c != _ECHO_AT else _echo(prompt))}
                for c in picks[i * k : (i + 1) * k]
            ]
            for i, prompt in enumerate(prompts)
        ]

    def generate(self, x: dict[str, Any]) -> list[dict[str, Any]]:
        """The ``generate`` endpoint: ``responses_per_request`` objects ``{"text": str}``,
        each ``x["text"]`` followed by a "generated" continuation."""
        return self.answer(x)

    def answer(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        prompt: str = request_field(request, "text")
        rng = self._random.for_request(prompt)
        return [
            {"text": prompt + _continuation(prompt, rng)} for _ in range(self.responses_per_request)
        ]


def _prompts(requests: Sequence[Any]) -> list[str]:
    """The ``text`` of every request: checked all at once when they are plain; one by one,
    naming the first problem, otherwise."""
    try:
        prompts = [request["text"] for request in requests]
        if not (set(map(type, requests)) <= {dict} and set(map(type, prompts)) <= {str}):
            raise TypeError
    except (KeyError, TypeError):
        prompts = [request_field(request, "text") for request in requests]
    return prompts


def _picks(rng: random.Random, n: int) -> bytes:
    """``n`` continuation numbers drawn evenly at once (what ``rng.choice`` draws one by one,
    ~20 times faster)."""
    picks = b""
    while len(picks) < n:
        picks += rng.randbytes(n - len(picks) + 8).translate(_PICK, _UNEVEN)
    return picks[:n]


def _continuation(prompt: str, rng: random.Random) -> str:
    template = rng.choice(_CONTINUATIONS)
    return template if template is not _ECHO else _echo(prompt)


def _echo(prompt: str) -> str:
    """The continuation that echoes the last words of ``prompt``."""
    last = prompt.rsplit(None, 3)[-3:]  # the words of split()[-3:], without splitting it all
    if not last:
        return " Did you mean to say something?"
    return _ECHO.replace("{echo}", " ".join(last).upper())
