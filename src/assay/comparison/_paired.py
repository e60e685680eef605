"""The statistics of a paired difference: two systems' values on the same instances.

For the per-instance differences ``d_i = a_i - b_i`` of the ``n`` instances both systems
answered:

- ``difference``: their mean, ``mean(a) - mean(b)`` over those instances;
- a **t interval**: ``mean(d) +- t_{n-1} * sd(d) / sqrt(n)`` (``sd`` with ``n - 1``);
- a **bootstrap interval**: the percentile interval of ``mean(d)`` over resamples of the
  instances (:func:`assay.analysis.stats.paired_difference`, seeded: the same numbers every
  time), and the share of resamples where ``a`` is higher;
- the **paired t-test**: ``t = mean(d) / (sd(d) / sqrt(n))`` and its two-sided p-value with
  ``n - 1`` degrees of freedom. With ``sd(d) = 0`` the differences are all equal: ``p = 1``
  when they are 0, ``0`` when not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from assay.analysis import stats
from assay.comparison._student import t_quantile, two_sided_p

__all__ = ["PairedStatistics", "paired_statistics"]


@dataclass(frozen=True)
class PairedStatistics:
    """A paired difference ``a - b`` with its intervals and test."""

    n: int
    """Instances both systems answered."""
    mean_a: float
    """``a``'s mean over those instances."""
    mean_b: float
    """``b``'s mean over those instances."""
    difference: float
    """``mean(a - b)``."""
    t_low: float | None
    """The t interval's lower end (None with fewer than 2 instances)."""
    t_high: float | None
    """The t interval's upper end."""
    bootstrap_low: float | None
    """The bootstrap percentile interval's lower end."""
    bootstrap_high: float | None
    """The bootstrap interval's upper end."""
    share_a_higher: float | None
    """The share of bootstrap resamples where ``a``'s mean is higher than ``b``'s."""
    t: float | None
    """The paired t statistic (None with fewer than 2 instances; inf when the differences
    are all equal and not 0)."""
    p_value: float | None
    """The paired t-test's two-sided p-value."""
    confidence: float
    """The level of both intervals."""
    seed: int
    """The bootstrap's seed."""


def paired_statistics(
    a: np.ndarray[Any, np.dtype[np.float64]],
    b: np.ndarray[Any, np.dtype[np.float64]],
    *,
    confidence: float = stats.DEFAULT_CONFIDENCE,
    seed: int = 0,
    resamples: int = stats.DEFAULT_RESAMPLES,
) -> PairedStatistics:
    """The paired difference of ``a`` and ``b`` (the same instances, in the same order)."""
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-d arrays of one length, got {a.shape} and {b.shape}")
    n = int(a.size)
    d = a - b
    difference = float(d.mean()) if n else math.nan
    t_low = t_high = t = p = None
    if n >= 2:
        sd = float(d.std(ddof=1))
        if sd > 0:
            se = sd / math.sqrt(n)
            half = t_quantile(confidence, n - 1) * se
            t_low, t_high = difference - half, difference + half
            t = difference / se
            p = two_sided_p(t, n - 1)
        else:
            t_low = t_high = difference
            t = 0.0 if difference == 0 else math.copysign(math.inf, difference)
            p = 1.0 if difference == 0 else 0.0
    boot = stats.paired_difference(a, b, confidence=confidence, seed=seed, resamples=resamples)
    share = boot.share_above(0.0) if n else math.nan
    return PairedStatistics(
        n=n,
        mean_a=float(a.mean()) if n else math.nan,
        mean_b=float(b.mean()) if n else math.nan,
        difference=difference,
        t_low=t_low,
        t_high=t_high,
        bootstrap_low=boot.low,
        bootstrap_high=boot.high,
        share_a_higher=None if math.isnan(share) else share,
        t=t,
        p_value=p,
        confidence=confidence,
        seed=seed,
    )
