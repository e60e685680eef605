"""The demo's data: scikit-learn's handwritten digits (1,797 8x8 images that ship inside
scikit-learn: nothing is downloaded), split into a training and a test part, and a perturbed
copy of the test part for the robustness check.

Pixels are scaled from 0..16 to 0..1. The data sets the platform gets have one row per image:
``_index_`` (the image's number in scikit-learn's data), ``pixels`` (64 floats, row by row)
and ``label`` (the digit, a string, as the classification methods compare labels as strings).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

__all__ = [
    "NOISE",
    "NOISE_SEED",
    "SPLIT_SEED",
    "TEST_SHARE",
    "Split",
    "load_split",
    "perturb",
    "table",
    "write_parquet",
]

#: Share of the images held out for the audit, and the seed of the (stratified) split.
TEST_SHARE = 0.3
SPLIT_SEED = 0
#: Standard deviation of the Gaussian pixel noise of the perturbed copy (pixels are 0..1),
#: and its seed.
NOISE = 0.3
NOISE_SEED = 1

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]


@dataclass(frozen=True)
class Split:
    """The digits, split: pixels in 0..1 (one row of 64 per image), digits as integers."""

    train_pixels: Floats
    train_labels: Ints
    test_pixels: Floats
    test_labels: Ints
    test_index: Ints
    """The number of each test image in scikit-learn's data (the data sets' ``_index_``)."""


def load_split(*, test_share: float = TEST_SHARE, seed: int = SPLIT_SEED) -> Split:
    """scikit-learn's digits, split with stratification (the same split for the same seed)."""
    from sklearn.datasets import load_digits  # type: ignore[import-untyped]
    from sklearn.model_selection import train_test_split  # type: ignore[import-untyped]

    pixels, labels = load_digits(return_X_y=True)
    index = np.arange(len(labels), dtype=np.int64)
    train, test = train_test_split(index, test_size=test_share, random_state=seed, stratify=labels)
    train, test = np.sort(train), np.sort(test)
    scaled = np.asarray(pixels, dtype=np.float64) / 16.0
    digits = np.asarray(labels, dtype=np.int64)
    return Split(
        train_pixels=scaled[train],
        train_labels=digits[train],
        test_pixels=scaled[test],
        test_labels=digits[test],
        test_index=test,
    )


def perturb(pixels: Floats, *, noise: float = NOISE, seed: int = NOISE_SEED) -> Floats:
    """``pixels`` with Gaussian noise of standard deviation ``noise`` added, clipped to 0..1
    (seeded: the same noise at every call)."""
    rng = np.random.default_rng(seed)
    noisy: Floats = np.clip(pixels + rng.normal(0.0, noise, size=pixels.shape), 0.0, 1.0)
    return noisy


def table(index: Ints, pixels: Floats, labels: Ints) -> pa.Table:
    """The rows of a data set: ``_index_``, ``pixels`` (list of 64 floats), ``label``."""
    flat = pa.array(np.ascontiguousarray(pixels, dtype=np.float64).ravel())
    return pa.table(
        {
            "_index_": pa.array(index, pa.int64()),
            "pixels": pa.FixedSizeListArray.from_arrays(flat, pixels.shape[1]).cast(
                pa.list_(pa.float64())
            ),
            "label": pa.array([str(int(d)) for d in labels], pa.string()),
        }
    )


def write_parquet(rows: pa.Table, directory: Path) -> Path:
    """Write ``rows`` as the one Parquet file of a data set directory; returns it."""
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(rows, directory / "part-0.parquet")
    return directory
