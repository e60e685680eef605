"""Bootstrap confidence intervals that stay cheap on evaluations of millions of rows.

```python
from assay.analysis import stats

est = stats.mean(correct, seed=0)                  # an Estimate: value, low, high, n
diff = stats.paired_difference(correct_a, correct_b, seed=0)
diff.share_above(0.0)                              # share of resamples where a > b
```

Every statistic here is a function of **per-category sums**: each row falls in one category
(``codes``) and may carry values (``values``) that are summed per category. Accuracy, rates,
means, precision/recall/F1, the expected calibration error and the gaps between groups all
have that form, so one resampling engine, :func:`bootstrap`, serves them all. Its cost does not
grow with the number of resamples times the number of rows:

- **Exact multinomial path** (rows are the resampling units, no values, at most
  :data:`MAX_EXACT_CATEGORIES` joint categories). Resampling ``n`` rows with replacement and
  counting them per category *is* a draw from ``Multinomial(n, counts / n)``, so the engine
  draws the category counts directly: the same distribution as the plain bootstrap, at a cost
  of ``resamples x categories`` whatever ``n`` is. 0/1 correctness is the common case.
- **Block path** (continuous values, resampling units such as ``_index_`` when an evaluation
  has replications, or many categories). The units are dealt at random into at most ``blocks``
  blocks (default :data:`DEFAULT_BLOCKS`); the per-category sums of each block are computed
  once (one pass over the rows), and each resample draws ``blocks`` blocks with replacement
  and adds up their sums. With no more units than blocks every unit is its own block and this
  *is* the plain (cluster) bootstrap; beyond that it is a bootstrap of random, exchangeable
  groups of units, whose spread matches the plain bootstrap's for statistics that depend on
  the sums only through ratios (means, rates, precision, ...), as all the built-in metrics do.
  Cost: one pass over the rows plus ``resamples x blocks x categories``.

Intervals are percentile intervals (default 95 %, :data:`DEFAULT_CONFIDENCE`) over
:data:`DEFAULT_RESAMPLES` resamples; resamples where the statistic is undefined (NaN) are left
out. A ``seed`` makes every result reproducible (``numpy.random.default_rng(seed)``).

Design notes: ``docs/design/analysis.md`` (built-in methods).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "DEFAULT_BLOCKS",
    "DEFAULT_CONFIDENCE",
    "DEFAULT_RESAMPLES",
    "MAX_EXACT_CATEGORIES",
    "Estimate",
    "Sample",
    "Statistic",
    "bootstrap",
    "difference",
    "mean",
    "paired_difference",
    "percentile_interval",
]

#: Resamples drawn when none is given.
DEFAULT_RESAMPLES = 1000
#: Confidence level of the intervals when none is given.
DEFAULT_CONFIDENCE = 0.95
#: Most blocks the block path deals the resampling units into.
DEFAULT_BLOCKS = 10_000
#: Most joint categories the exact multinomial path handles.
MAX_EXACT_CATEGORIES = 4096
#: Most distinct values :func:`mean` treats as categories (exact path) rather than as values.
MAX_DISTINCT_VALUES = 256

#: Bound on the floats one step of the engine holds (block sums, a chunk of resamples).
_MAX_CELLS = 1 << 23

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]

#: A statistic: given, for each Sample, its sums of shape ``(resamples, categories, channels)``
#: (channel 0 counts the rows, channel ``1 + j`` sums ``values[:, j]``), the value of each
#: resample: shape ``(resamples,)``, or ``(resamples, q)`` for ``q`` statistics at once.
Statistic = Callable[..., Floats]


@dataclass(frozen=True)
class Estimate:
    """A statistic of the data with its bootstrap interval."""

    value: float
    """The statistic on the data itself; NaN where it is undefined (e.g. no rows)."""
    low: float | None
    """Lower end of the percentile interval; None where no resample was defined."""
    high: float | None
    """Upper end of the percentile interval; None where no resample was defined."""
    n: int
    """Rows the statistic was computed from."""
    confidence: float = DEFAULT_CONFIDENCE
    """Confidence level of the interval."""
    replicates: Floats = field(default_factory=lambda: np.empty(0), repr=False, compare=False)
    """The statistic on each resample (NaN where undefined), in resample order."""

    def share_above(self, threshold: float = 0.0) -> float:
        """The share of the defined resamples whose statistic is above ``threshold`` (for a
        difference ``a - b``, the share of resamples where ``a > b``); NaN if none is."""
        finite = self.replicates[np.isfinite(self.replicates)]
        return float(np.mean(finite > threshold)) if finite.size else math.nan


@dataclass(frozen=True)
class Sample:
    """Rows reduced to what a statistic needs: a category per row and values to sum.

    ``codes[i]`` is the category of row ``i`` (``0 <= codes[i] < categories``); ``values``,
    if given, has shape ``(n, v)`` and is summed per category; ``units``, if given, names the
    resampling unit of each row (e.g. ``_index_`` when an evaluation has several replications
    per instance: the replications of an instance are resampled together). Samples passed to
    one :func:`bootstrap` call are resampled *together*: without units they must have the same
    number of rows, and row ``i`` of each is the same unit (paired data, aligned); with units,
    rows with the same unit id (in any Sample) are the same unit.
    """

    codes: Ints
    """Category of each row."""
    categories: int
    """Number of categories."""
    values: Floats | None = None
    """Values summed per category, shape ``(n, v)``; None for none."""
    units: Ints | None = None
    """Resampling unit of each row (non-negative ids); None: each row is its own unit."""

    def __post_init__(self) -> None:
        codes = np.asarray(self.codes)
        if codes.ndim != 1 or not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"codes must be a 1-d integer array, got {codes.dtype}{codes.shape}")
        if self.categories < 1:
            raise ValueError(f"categories must be at least 1, got {self.categories}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.categories):
            raise ValueError(
                f"codes must lie in [0, {self.categories}), got [{codes.min()}, {codes.max()}]"
            )
        if self.values is not None and (
            self.values.ndim != 2 or self.values.shape[0] != codes.size
        ):
            raise ValueError(f"values must have shape ({codes.size}, v), got {self.values.shape}")
        if self.units is not None and (
            self.units.shape != codes.shape or (self.units.size and self.units.min() < 0)
        ):
            raise ValueError("units must be non-negative ids, one per row")

    @property
    def n(self) -> int:
        """Number of rows."""
        return int(self.codes.size)

    @property
    def channels(self) -> int:
        """Sums per category: the row count, then one per column of ``values``."""
        return 1 + (0 if self.values is None else self.values.shape[1])

    def sums(self, blocks: Ints | None = None, nblocks: int = 1) -> Floats:
        """Per-category sums, shape ``(categories, channels)``; with ``blocks`` (the block of
        each row), per block: ``(nblocks, categories, channels)``."""
        cells = self.categories * nblocks
        key = self.codes if blocks is None else blocks * self.categories + self.codes
        out = np.empty((cells, self.channels))
        out[:, 0] = np.bincount(key, minlength=cells)
        if self.values is not None:
            for j in range(self.values.shape[1]):
                out[:, 1 + j] = np.bincount(key, weights=self.values[:, j], minlength=cells)
        shape = (self.categories, self.channels)
        return out.reshape(shape if blocks is None else (nblocks, *shape))


def percentile_interval(
    replicates: ArrayLike, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[float | None, float | None]:
    """The percentile interval of the finite ``replicates`` at level ``confidence``;
    ``(None, None)`` if none is finite."""
    _check_confidence(confidence)
    r = np.asarray(replicates, dtype=np.float64)
    r = r[np.isfinite(r)]
    if not r.size:
        return None, None
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(r, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap(
    statistic: Statistic,
    *samples: Sample,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int | np.random.SeedSequence | None = None,
    blocks: int = DEFAULT_BLOCKS,
    method: Literal["auto", "multinomial", "blocks"] = "auto",
) -> list[Estimate]:
    """Estimates of ``statistic`` on ``samples`` with percentile bootstrap intervals.

    ``statistic(*sums)`` receives one array per Sample of shape ``(r, categories, channels)``
    and returns ``(r,)`` or ``(r, q)``; it is called on the data (``r = 1``) and on chunks of
    resamples, never per row, with numpy's division warnings silenced (0/0 gives NaN:
    undefined). The result holds one Estimate per statistic (``q`` of them).
    ``method`` forces a path (see the module docstring); ``"multinomial"`` is refused where
    it would not be exact. Cost is bounded whatever the number of rows.
    """
    if not samples:
        raise ValueError("bootstrap needs at least one Sample")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    _check_confidence(confidence)
    rng = np.random.default_rng(seed)
    with_units = [s.units is not None for s in samples]
    if any(with_units) and not all(with_units):
        raise ValueError("either every Sample has units or none has")
    if not any(with_units) and len({s.n for s in samples}) > 1:
        raise ValueError(
            "Samples without units are paired row by row and must have the same number of rows"
        )
    exact = (
        not any(with_units)
        and all(s.values is None for s in samples)
        and math.prod(s.categories for s in samples) <= MAX_EXACT_CATEGORIES
    )
    if method == "multinomial" and not exact:
        raise ValueError(
            "the multinomial path is exact only for Samples without values or units and with "
            f"at most {MAX_EXACT_CATEGORIES} joint categories"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        point = _as_2d(statistic(*(s.sums()[None] for s in samples)))[0]
        if samples[0].n == 0:
            replicates = np.full((resamples, point.size), np.nan)
        elif exact and method != "blocks":
            replicates = _multinomial(statistic, samples, resamples, rng)
        else:
            replicates = _blocks(statistic, samples, resamples, rng, blocks)
    result = []
    for j in range(point.size):
        low, high = percentile_interval(replicates[:, j], confidence)
        value = float(point[j])
        result.append(
            Estimate(
                value=value,
                low=low if math.isfinite(value) else None,
                high=high if math.isfinite(value) else None,
                n=samples[0].n,
                confidence=confidence,
                replicates=replicates[:, j].copy(),
            )
        )
    return result


def mean(
    values: ArrayLike,
    *,
    units: ArrayLike | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int | np.random.SeedSequence | None = None,
    blocks: int = DEFAULT_BLOCKS,
) -> Estimate:
    """The mean of per-row ``values`` (NaN rows left out) with its bootstrap interval.

    Values with few distinct values (0/1 correctness, small counts: at most
    :data:`MAX_DISTINCT_VALUES`) are resampled exactly through the multinomial path; other
    values through the block path. ``units`` groups rows resampled together (see
    :class:`Sample`).
    """
    x = np.asarray(values)
    unit_ids = None if units is None else np.asarray(units, dtype=np.int64)
    if x.dtype != np.bool_:
        x = x.astype(np.float64, copy=False)
        keep = ~np.isnan(x)
        if not keep.all():
            x = x[keep]
            unit_ids = None if unit_ids is None else unit_ids[keep]
    sample, levels = _mean_sample(x, unit_ids)

    def by_values(s: Floats) -> Floats:
        out: Floats = s[:, 0, 1] / s[:, 0, 0]
        return out

    statistic: Statistic = by_values
    if levels is not None:
        weights = levels

        def by_levels(s: Floats) -> Floats:
            out: Floats = (s[..., 0] @ weights) / s[..., 0].sum(axis=-1)
            return out

        statistic = by_levels
    [estimate] = bootstrap(
        statistic,
        sample,
        resamples=resamples,
        confidence=confidence,
        seed=seed,
        blocks=blocks,
    )
    return estimate


def paired_difference(
    a: ArrayLike,
    b: ArrayLike,
    *,
    units: ArrayLike | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int | np.random.SeedSequence | None = None,
    blocks: int = DEFAULT_BLOCKS,
) -> Estimate:
    """``mean(a) - mean(b)`` for paired rows (``a[i]`` and ``b[i]`` are the same instance),
    resampling the same instances on both sides; rows where either is NaN are left out.

    The difference of the means of a resample is the mean of the per-row differences of the
    resample, so this is :func:`mean` of ``a - b`` (exact for 0/1 values, whose differences
    take three values). ``share_above(0)`` of the result is the share of resamples where
    ``a > b``.
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"a and b must be 1-d arrays of one length, got {x.shape} and {y.shape}")
    return mean(
        x - y, units=units, resamples=resamples, confidence=confidence, seed=seed, blocks=blocks
    )


def difference(a: Estimate, b: Estimate) -> Estimate:
    """``a - b`` for two Estimates bootstrapped *independently* (unpaired data, e.g. two
    evaluations of different instances) with the same number of resamples: the interval is
    that of the differences of their replicates."""
    if a.replicates.shape != b.replicates.shape:
        raise ValueError(
            f"a and b must have the same number of resamples, got {a.replicates.size} and "
            f"{b.replicates.size}"
        )
    replicates = a.replicates - b.replicates
    value = a.value - b.value
    low, high = percentile_interval(replicates, a.confidence)
    defined = math.isfinite(value)
    return Estimate(
        value=value,
        low=low if defined else None,
        high=high if defined else None,
        n=a.n + b.n,
        confidence=a.confidence,
        replicates=replicates,
    )


# -- internals -----------------------------------------------------------------------------------


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")


def _as_2d(values: Floats) -> Floats:
    out = np.asarray(values, dtype=np.float64)
    return out[:, None] if out.ndim == 1 else out


def _mean_sample(x: NDArray[np.generic], units: Ints | None) -> tuple[Sample, Floats | None]:
    """A Sample for the mean of ``x``: categories of its distinct values where there are few
    (returned as levels), else one category carrying ``x`` as values."""
    n = x.size
    if x.dtype == np.bool_:
        return Sample(x.astype(np.int64), 2, units=units), np.array([0.0, 1.0])
    if n:
        probe = np.unique(x[:: max(1, n // 4096)])
        if probe.size <= MAX_DISTINCT_VALUES:
            codes = np.minimum(np.searchsorted(probe, x), probe.size - 1)
            if np.array_equal(probe[codes], x):
                return Sample(codes.astype(np.int64), probe.size, units=units), probe
    floats = np.asarray(x, dtype=np.float64).reshape(n, 1)
    return Sample(np.zeros(n, dtype=np.int64), 1, values=floats, units=units), None


def _multinomial(
    statistic: Statistic, samples: Sequence[Sample], resamples: int, rng: np.random.Generator
) -> Floats:
    shape = [s.categories for s in samples]
    joint = np.zeros(samples[0].n, dtype=np.int64)
    for s in samples:
        joint = joint * s.categories + s.codes
    total = math.prod(shape)
    counts = np.bincount(joint, minlength=total)
    present = np.flatnonzero(counts)
    n = int(counts.sum())
    pvals = counts[present] / n
    chunk = max(1, min(resamples, _MAX_CELLS // total))
    parts = []
    for start in range(0, resamples, chunk):
        r = min(chunk, resamples - start)
        draws = np.zeros((r, total))
        draws[:, present] = rng.multinomial(n, pvals, size=r)
        cube = draws.reshape(r, *shape)
        sums = [
            cube.sum(axis=tuple(a + 1 for a in range(len(shape)) if a != i))[..., None]
            for i in range(len(shape))
        ]
        parts.append(_as_2d(statistic(*sums)))
    return np.concatenate(parts)


def _blocks(
    statistic: Statistic,
    samples: Sequence[Sample],
    resamples: int,
    rng: np.random.Generator,
    blocks: int,
) -> Floats:
    width = sum(s.categories * s.channels for s in samples)
    most = max(1, min(blocks, _MAX_CELLS // width))
    assigned = _assign_blocks(samples, most, rng)
    nblocks = int(max(int(b.max()) for b in assigned if b.size) + 1)
    per_block = [
        s.sums(b, nblocks).reshape(nblocks, -1) for s, b in zip(samples, assigned, strict=True)
    ]
    chunk = max(1, min(resamples, _MAX_CELLS // max(nblocks, width)))
    parts = []
    for start in range(0, resamples, chunk):
        r = min(chunk, resamples - start)
        picks = rng.integers(0, nblocks, size=(r, nblocks))
        picks += np.arange(r)[:, None] * nblocks
        weights = np.bincount(picks.ravel(), minlength=r * nblocks).reshape(r, nblocks)
        weights = weights.astype(np.float64)
        sums = [
            (weights @ b).reshape(r, s.categories, s.channels)
            for s, b in zip(samples, per_block, strict=True)
        ]
        parts.append(_as_2d(statistic(*sums)))
    return np.concatenate(parts)


def _assign_blocks(samples: Sequence[Sample], most: int, rng: np.random.Generator) -> list[Ints]:
    """The block of every row of every Sample: each unit its own block where there are at
    most ``most`` units, else units dealt at random into ``most`` blocks."""
    if samples[0].units is None:
        n = samples[0].n
        rows = np.arange(n) if n <= most else rng.integers(0, most, size=n)
        return [rows for _ in samples]
    units = [s.units for s in samples if s.units is not None]
    top = int(max((int(u.max()) for u in units if u.size), default=0)) + 1
    if top <= 4 * sum(u.size for u in units) + most:
        present = np.zeros(top, dtype=bool)
        for u in units:
            present[u] = True
        distinct = int(present.sum())
        if distinct <= most:
            dense = np.cumsum(present) - 1
            return [dense[u] for u in units]
        block_of = rng.integers(0, most, size=top)
        return [block_of[u] for u in units]
    ids, inverse = np.unique(np.concatenate(units), return_inverse=True)
    block_of = np.arange(ids.size) if ids.size <= most else rng.integers(0, most, size=ids.size)
    out, start = [], 0
    for u in units:
        out.append(block_of[inverse[start : start + u.size]])
        start += u.size
    return out
