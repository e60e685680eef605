"""The text classifier mock and the shape of its outputs."""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from assay import errors
from assay.local.mocks._base import RandomSource, SingleEndpointMock, request_field, words
from assay.schema.base import SchemaModel
from assay.schema.dataset import classification

__all__ = ["Classifier", "ClassifierOutput", "LabelScore"]


class LabelScore(SchemaModel):
    """The score a classifier gives one label."""

    label: str
    """The label."""
    score: float
    """The probability the classifier gives the label (the scores of an output sum to 1)."""


class ClassifierOutput(classification.Label):
    """A classification: the chosen label, and the score of every label."""

    scores: list[LabelScore]
    """The score of every label the classifier knows, in the classifier's label order."""


#: Sentiment words for the default labels.
_SENTIMENT_WORDS = {
    "negative": "bad awful terrible horrible poor worst hate hated boring broken disappointing "
    "disappointed useless rude slow dirty angry sad wrong fail failed",
    "neutral": "okay ok average fine mediocre acceptable ordinary standard usual neutral "
    "moderate typical",
    "positive": "good great excellent wonderful amazing love loved best happy fantastic nice "
    "perfect friendly fast clean helpful delightful brilliant",
}
_SENTIMENT = {word: label for label, text in _SENTIMENT_WORDS.items() for word in text.split()}

#: The weight of a keyword's vote, and of any other word's (hashed) vote.
_KEYWORD_WEIGHT = 2.0
_WORD_WEIGHT = 0.3


class Classifier(SingleEndpointMock):
    """Simulates a text classifier (by default, a sentiment classifier).

    Endpoints:

        ``classify``
            Input ``{"text": str}``. Output: one object
            ``{"label": str, "scores": [{"label": str, "score": float}, ...]}`` with a score
            for every label (the scores sum to 1) and the best-scored label. Output schema:
            ``make_output_schema(ClassifierOutput)``.

    How it decides: each word of the text votes for a label — a keyword (``keywords``, by
    default a small sentiment lexicon for the default labels) strongly for its label, any other
    word weakly for a label picked by a stable hash of the word — and the scores are a softmax
    of the votes plus Gaussian noise of standard deviation ``noise``. The label is a learnable
    function of the words, so audits on data labelled by keyword show non-trivial accuracy.

    Options (keyword-only): ``labels`` (at least two distinct names; default
    ``negative, neutral, positive``), ``keywords`` (word → label), ``noise`` (default 0.5;
    0 makes the output a function of the text alone), ``seed`` (with a seed, the output
    depends on the seed and the text alone; without one, the noise varies between calls).
    """

    nonblocking = True

    ENDPOINT = "classify"
    DEFAULT_LABELS = ("negative", "neutral", "positive")

    def __init__(
        self,
        *,
        labels: Sequence[str] = DEFAULT_LABELS,
        keywords: Mapping[str, str] | None = None,
        noise: float = 0.5,
        seed: int | None = None,
    ) -> None:
        super().__init__(self.ENDPOINT, ClassifierOutput)
        self.labels = _check_labels(labels)
        if keywords is None:
            keywords = {w: label for w, label in _SENTIMENT.items() if label in self.labels}
        unknown = sorted({label for label in keywords.values() if label not in self.labels})
        if unknown:
            raise errors.ValidationError(
                f"keywords map to labels {unknown} that are not among the labels "
                f"{list(self.labels)}; add them to labels or remove those keywords",
                field="keywords",
            )
        self._keywords = {w.lower(): self.labels.index(label) for w, label in keywords.items()}
        if isinstance(noise, bool) or not isinstance(noise, int | float) or noise < 0:
            raise errors.ValidationError(
                f"noise must be a number of at least 0, got {noise!r}", field="noise"
            )
        self.noise = float(noise)
        self._random = RandomSource(seed)

    def answer(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        text: str = request_field(request, "text")
        votes = [0.0] * len(self.labels)
        for word in words(text):
            index = self._keywords.get(word)
            if index is not None:
                votes[index] += _KEYWORD_WEIGHT
            else:
                votes[zlib.crc32(word.encode()) % len(votes)] += _WORD_WEIGHT
        if self.noise:
            rng = self._random.for_request(text)
            votes = [v + rng.gauss(0.0, self.noise) for v in votes]
        top = max(votes)
        weights = [math.exp(v - top) for v in votes]
        total = sum(weights)
        scores = [w / total for w in weights]
        best = max(range(len(scores)), key=scores.__getitem__)
        return [
            {
                "label": self.labels[best],
                "scores": [
                    {"label": label, "score": score}
                    for label, score in zip(self.labels, scores, strict=True)
                ],
            }
        ]


def _check_labels(labels: Sequence[str]) -> tuple[str, ...]:
    if isinstance(labels, str) or not all(isinstance(x, str) and x for x in labels):
        raise errors.ValidationError(
            f"labels must be a list of non-empty strings, got {labels!r}", field="labels"
        )
    result = tuple(labels)
    if len(result) < 2 or len(set(result)) != len(result):
        raise errors.ValidationError(
            f"labels must hold at least two distinct names, got {list(result)}", field="labels"
        )
    return result
