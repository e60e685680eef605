"""Student's t distribution: the two-sided p-value of a t statistic and the quantile of a
t interval, from the regularised incomplete beta function (no scipy needed at run time;
``tests/analysis/test_comparison.py`` checks it against ``scipy.stats.t``).

For ``df`` degrees of freedom, ``P(|T| >= t) = I_x(df / 2, 1 / 2)`` with
``x = df / (df + t^2)``; ``I_x(a, b)`` is evaluated by its continued fraction (modified Lentz
algorithm), through the symmetry ``I_x(a, b) = 1 - I_{1-x}(b, a)`` where that converges
faster.
"""

from __future__ import annotations

import math

__all__ = ["t_quantile", "two_sided_p"]

_TINY = 1e-300
_EPSILON = 1e-15
_MAX_TERMS = 10_000


def _continued_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction of ``I_x(a, b)`` (without its prefactor)."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    result = d
    for m in range(1, _MAX_TERMS):
        # the even step: m (b - m) x / ((a + 2m - 1)(a + 2m))
        numerator = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 + numerator * d
        c = 1.0 + numerator / c
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = c if abs(c) > _TINY else _TINY
        result *= d * c
        # the odd step: -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1))
        numerator = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 + numerator * d
        c = 1.0 + numerator / c
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = c if abs(c) > _TINY else _TINY
        step = d * c
        result *= step
        if abs(step - 1.0) < _EPSILON:
            break
    return result


def _incomplete_beta(x: float, a: float, b: float) -> float:
    """The regularised incomplete beta function ``I_x(a, b)``, ``0 <= x <= 1``."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _continued_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _continued_fraction(1.0 - x, b, a) / b


def two_sided_p(t: float, df: float) -> float:
    """``P(|T| >= |t|)`` for Student's t with ``df`` degrees of freedom (``df > 0``)."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0
    return min(1.0, max(0.0, _incomplete_beta(df / (df + t * t), df / 2.0, 0.5)))


def t_quantile(confidence: float, df: float) -> float:
    """The ``t`` with ``P(|T| <= t) = confidence``: the half-width of a ``confidence`` t
    interval, in standard errors (``1.96...`` for large ``df`` at 0.95)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    alpha = 1.0 - confidence
    low, high = 0.0, 1.0
    while two_sided_p(high, df) > alpha:
        low, high = high, high * 2.0
    for _ in range(200):  # bisection: two_sided_p decreases in t
        middle = (low + high) / 2.0
        if two_sided_p(middle, df) > alpha:
            low = middle
        else:
            high = middle
        if high - low <= 1e-13 * high:
            break
    return (low + high) / 2.0
