"""The text completion mock."""

from __future__ import annotations

import random
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

    ENDPOINT = "generate"

    def __init__(self, *, responses_per_request: int = 2, seed: int | None = None) -> None:
        super().__init__(self.ENDPOINT, text.Text)
        self.responses_per_request = check_count("responses_per_request", responses_per_request)
        self._random = RandomSource(seed)

    def answer(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        prompt: str = request_field(request, "text")
        rng = self._random.for_request(prompt)
        return [
            {"text": prompt + _continuation(prompt, rng)} for _ in range(self.responses_per_request)
        ]


def _continuation(prompt: str, rng: random.Random) -> str:
    template = rng.choice(_CONTINUATIONS)
    if "{echo}" not in template:
        return template
    last = prompt.split()[-3:]
    if not last:
        return " Did you mean to say something?"
    return template.format(echo=" ".join(word.upper() for word in last))
