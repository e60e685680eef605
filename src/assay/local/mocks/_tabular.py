"""The tabular regression mock: a score that is a known linear function of numeric inputs."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from assay import errors
from assay.local.mocks._base import RandomSource, SingleEndpointMock
from assay.schema.base import SchemaModel

__all__ = ["Regressor", "RegressorOutput"]


class RegressorOutput(SchemaModel):
    """A regression: one score."""

    score: float
    """The predicted value."""


class Regressor(SingleEndpointMock):
    """Simulates a regression model over numeric (tabular) features.

    Endpoints:

        ``predict``
            Input: a JSON object with a number for every feature named in ``weights`` (other
            fields are ignored). Output: one object ``{"score": float}``. Output schema:
            ``make_output_schema(RegressorOutput)``.

    The score is ``bias + sum(weights[f] * request[f])`` plus Gaussian noise of standard
    deviation ``noise``: a model whose dependence on each feature is known, to test what
    measures it (e.g. a pipeline's explainability configs). A feature with weight 0, or not
    named in ``weights``, has no effect at all.

    Options (keyword-only): ``weights`` (feature → weight; default ``{"x": 1.0}``), ``bias``
    (default 0), ``noise`` (default 0: the score is a function of the request alone),
    ``seed`` (with a seed, the noise depends on the seed and the request alone).
    """

    nonblocking = True

    ENDPOINT = "predict"

    def __init__(
        self,
        *,
        weights: Mapping[str, float] | None = None,
        bias: float = 0.0,
        noise: float = 0.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(self.ENDPOINT, RegressorOutput)
        weights = {"x": 1.0} if weights is None else weights
        if not isinstance(weights, Mapping) or not all(
            isinstance(k, str) and k and _is_number(v) for k, v in weights.items()
        ):
            raise errors.ValidationError(
                f"weights must map feature names to numbers, got {weights!r}", field="weights"
            )
        self.weights = {k: float(v) for k, v in weights.items()}
        if not _is_number(bias):
            raise errors.ValidationError(f"bias must be a number, got {bias!r}", field="bias")
        self.bias = float(bias)
        if not _is_number(noise) or noise < 0:
            raise errors.ValidationError(
                f"noise must be a number of at least 0, got {noise!r}", field="noise"
            )
        self.noise = float(noise)
        self._random = RandomSource(seed)

    def answer(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        if not isinstance(request, dict):
            raise errors.ValidationError(
                f"a request must be a JSON object of numeric features, got "
                f"{type(request).__name__}",
                field="request",
            )
        score = self.bias
        for feature, weight in self.weights.items():
            if feature not in request:
                raise errors.ValidationError(
                    f"request has no feature {feature!r} (got keys {sorted(request)}); the "
                    f"model reads {sorted(self.weights)}",
                    field=feature,
                )
            value = request[feature]
            if not _is_number(value):
                raise errors.ValidationError(
                    f"request feature {feature!r} must be a number, got "
                    f"{type(value).__name__} {value!r}",
                    field=feature,
                    value=value,
                )
            score += weight * float(value)
        if self.noise:
            key = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
            rng = self._random.for_request(key)
            score += rng.gauss(0.0, self.noise)
        return [{"score": score}]


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )
