"""The text embedding mock."""

from __future__ import annotations

import functools
import math
import random
from typing import Any

from assay.local.mocks._base import (
    SingleEndpointMock,
    check_count,
    check_seed,
    request_field,
    words,
)
from assay.schema.dataset import embedding

__all__ = ["Embedder"]


class Embedder(SingleEndpointMock):
    """Simulates a text embedding service.

    Endpoints:

        ``embed``
            Input ``{"text": str}``. Output: one object ``{"embedding": [float] * dim}``, a
            unit-length vector. Output schema: ``make_output_schema(embedding.Embedding)``.

    The vector is the normalised sum of one pseudo-random vector per word (derived from a
    hash of the word), so it is the same every time for the same text, and texts that share
    words lie closer together than texts that do not.

    Options (keyword-only): ``dim`` (the vector length, default 8), ``seed`` (picks another,
    equally deterministic, embedding space; ``None`` is the same as 0).
    """

    nonblocking = True

    ENDPOINT = "embed"

    def __init__(self, *, dim: int = 8, seed: int | None = None) -> None:
        super().__init__(self.ENDPOINT, embedding.Embedding)
        self.dim = check_count("dim", dim)
        self.seed = check_seed(seed) or 0

    def answer(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        text: str = request_field(request, "text")
        vector = [0.0] * self.dim
        for word in words(text) or [""]:
            for i, x in enumerate(_word_vector(self.seed, self.dim, word)):
                vector[i] += x
        norm = math.sqrt(sum(x * x for x in vector))
        if norm == 0.0:  # words whose vectors cancel out exactly; vanishingly rare
            return [{"embedding": [1.0] + [0.0] * (self.dim - 1)}]
        return [{"embedding": [x / norm for x in vector]}]


@functools.lru_cache(maxsize=65536)
def _word_vector(seed: int, dim: int, word: str) -> tuple[float, ...]:
    rng = random.Random(f"{seed}\x00{word}")
    return tuple(rng.gauss(0.0, 1.0) for _ in range(dim))
