"""The demo's served model class: a digit classifier that answers from numpy arrays.

This file is copied as it is into each model's Module (as ``digit_classifier/__init__.py``,
beside the model's ``weights.npz``), and the ``python`` runner serves
``digit_classifier:DigitClassifier`` from it in replica processes. It imports nothing but
numpy, so a replica starts quickly and needs neither scikit-learn nor Assay: it is what
wrapping your own model looks like.

The weights are the trained scikit-learn model exported to plain arrays
(:mod:`assay.demo.classifiers`): a logistic regression (``kind = "logistic"``: ``coef``,
``intercept``) or a random forest (``kind = "forest"``: every tree's ``feature``,
``threshold``, ``left``, ``right`` and leaf class shares ``value``, padded to one size).
:meth:`DigitClassifier.probabilities` reproduces scikit-learn's ``predict_proba``.

Endpoint ``classify``: request ``{"pixels": [64 floats in 0..1]}`` (an 8x8 image, row by
row); reply one ``{"label": "7", "scores": [{"label": "0", "score": 0.01}, ...]}``, the shape of
:class:`assay.local.mocks.ClassifierOutput`, so the built-in classification methods read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["ENDPOINT", "PIXELS", "DigitClassifier"]

#: The one endpoint.
ENDPOINT = "classify"
#: Pixels of an image (8 x 8).
PIXELS = 64

Floats = NDArray[np.float64]


class DigitClassifier:
    """A trained digit classifier, loaded from ``weights`` (a ``.npz`` file; a relative path
    is relative to this file's directory)."""

    endpoints = [ENDPOINT]

    def __init__(self, weights: str = "weights.npz") -> None:
        path = Path(weights)
        if not path.is_absolute():
            path = Path(__file__).with_name(weights)
        with np.load(path, allow_pickle=False) as arrays:
            self.kind = str(arrays["kind"])
            self.labels = [str(label) for label in arrays["labels"]]
            self._arrays = {name: arrays[name] for name in arrays.files}
        if self.kind not in ("logistic", "forest"):
            raise ValueError(f"{path}: unknown model kind {self.kind!r} (logistic or forest)")

    def probabilities(self, pixels: Floats) -> Floats:
        """The probability of each label (columns, in :attr:`labels` order) for each image
        (rows of ``pixels``, shape ``(n, 64)``)."""
        a = self._arrays
        if self.kind == "logistic":
            # a product and a sum rather than a matrix product (whose rounding depends on the
            # batch's size): an image gets the same answer in whatever batch it comes
            logits = (pixels[:, None, :] * a["coef"][None, :, :]).sum(axis=2) + a["intercept"]
            logits -= logits.max(axis=1, keepdims=True)
            weights = np.exp(logits)
            result: Floats = weights / weights.sum(axis=1, keepdims=True)
            return result
        # Every tree at once: walk each (tree, image) pair down until it reaches a leaf
        # (left = -1). scikit-learn compares float32 pixels with the thresholds.
        x = pixels.astype(np.float32).astype(np.float64)
        feature, threshold, left, right = a["feature"], a["threshold"], a["left"], a["right"]
        trees, images = feature.shape[0], x.shape[0]
        tree = np.arange(trees)[:, None]
        node = np.zeros((trees, images), dtype=np.int64)
        image = np.arange(images)[None, :]
        for _ in range(int(a["depth"])):
            inner = left[tree, node] >= 0
            go_left = x[image, np.maximum(feature[tree, node], 0)] <= threshold[tree, node]
            step = np.where(go_left, left[tree, node], right[tree, node])
            node = np.where(inner, step, node)
        shares: Floats = a["value"][tree, node].mean(axis=0)
        return shares

    def _pixels(self, requests: Sequence[dict[str, Any]]) -> Floats:
        rows = []
        for i, request in enumerate(requests):
            values = request.get("pixels") if isinstance(request, dict) else None
            if not isinstance(values, list) or len(values) != PIXELS:
                raise ValueError(
                    f"request {i}: send {{'pixels': [{PIXELS} numbers]}} (an 8x8 image, row by "
                    f"row), got {str(request)[:80]}"
                )
            rows.append(values)
        try:
            return np.asarray(rows, dtype=np.float64).reshape(len(rows), PIXELS)
        except (TypeError, ValueError):
            raise ValueError("every pixel must be a number") from None

    def infer_batch(
        self, endpoint: str, requests: Sequence[dict[str, Any]]
    ) -> list[list[dict[str, Any]]]:
        """One classification per request, computed for the whole batch at once."""
        if endpoint != ENDPOINT:
            raise ValueError(f"unknown endpoint {endpoint!r}; the endpoint is {ENDPOINT!r}")
        if not requests:
            return []
        probabilities = self.probabilities(self._pixels(requests))
        best = probabilities.argmax(axis=1)
        return [
            [
                {
                    "label": self.labels[int(b)],
                    "scores": [
                        {"label": label, "score": float(p)}
                        for label, p in zip(self.labels, row, strict=True)
                    ],
                }
            ]
            for b, row in zip(best, probabilities, strict=True)
        ]

    def infer(self, endpoint: str, request: dict[str, Any]) -> list[dict[str, Any]]:
        """The classification of one image."""
        return self.infer_batch(endpoint, [request])[0]
