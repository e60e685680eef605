"""The bootstrap engine: exact multinomial path, block path, pairing, units, seeds, bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from assay.analysis import stats

Floats = NDArray[np.float64]


def _plain_bootstrap_means(x: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """The textbook bootstrap: resample rows with replacement, one resample at a time."""
    rng = np.random.default_rng(seed)
    return np.array([x[rng.integers(0, x.size, x.size)].mean() for _ in range(resamples)])


def test_mean_of_zero_one_values() -> None:
    x = np.array([1, 1, 1, 0, 0, 1, 0, 1], dtype=bool)  # 5 of 8
    est = stats.mean(x, seed=0)
    assert est.value == pytest.approx(5 / 8)
    assert est.n == 8
    assert est.low is not None and est.high is not None
    assert est.low <= est.value <= est.high
    assert est.replicates.shape == (stats.DEFAULT_RESAMPLES,)
    assert est.confidence == 0.95


def test_multinomial_path_matches_plain_resampling_in_distribution() -> None:
    rng = np.random.default_rng(1)
    x = (rng.random(400) < 0.3).astype(np.float64)
    exact = stats.mean(x, resamples=4000, seed=2).replicates
    plain = _plain_bootstrap_means(x, 4000, seed=3)
    p = x.mean()
    se = math.sqrt(p * (1 - p) / x.size)  # the bootstrap's standard error, in theory
    assert exact.mean() == pytest.approx(p, abs=se / 10)
    assert plain.mean() == pytest.approx(p, abs=se / 10)
    assert exact.std() == pytest.approx(se, rel=0.07)
    assert plain.std() == pytest.approx(se, rel=0.07)
    assert np.percentile(exact, 2.5) == pytest.approx(np.percentile(plain, 2.5), abs=se / 2)
    assert np.percentile(exact, 97.5) == pytest.approx(np.percentile(plain, 97.5), abs=se / 2)
    # the forced block path with one row per block is the plain bootstrap as well
    blocks = stats.bootstrap(
        lambda s: s[:, 1, 0] / s[:, :, 0].sum(axis=1),
        stats.Sample(x.astype(np.int64), 2),
        resamples=4000,
        seed=4,
        method="blocks",
    )[0].replicates
    assert blocks.std() == pytest.approx(se, rel=0.07)


def test_block_path_with_a_row_per_block_is_the_plain_bootstrap_draw_for_draw() -> None:
    x = np.random.default_rng(5).normal(size=300)  # continuous: block path, 300 <= blocks
    est = stats.mean(x, resamples=200, seed=9)
    rng = np.random.default_rng(9)
    picks = rng.integers(0, x.size, size=(200, x.size))
    np.testing.assert_allclose(est.replicates, x[picks].mean(axis=1))
    assert est.value == pytest.approx(x.mean())


def test_block_path_with_grouped_rows_keeps_the_spread() -> None:
    x = np.random.default_rng(6).random(50_000)
    est = stats.mean(x, resamples=2000, seed=7, blocks=1000)  # 50 rows per block
    se = x.std() / math.sqrt(x.size)
    assert est.replicates.std() == pytest.approx(se, rel=0.1)
    assert est.low is not None and est.high is not None
    assert est.high - est.low == pytest.approx(2 * 1.96 * se, rel=0.12)


def test_few_distinct_values_take_the_exact_path() -> None:
    x = np.array([0.0, 2.0, 2.0, 5.0, 5.0, 5.0])
    calls: list[int] = []

    def statistic(s: Floats) -> Floats:
        calls.append(s.shape[0])
        out: Floats = (s[..., 0] @ np.array([0.0, 2.0, 5.0])) / s[..., 0].sum(axis=-1)
        return out

    codes = np.array([0, 1, 1, 2, 2, 2])
    [direct] = stats.bootstrap(statistic, stats.Sample(codes, 3), seed=3, method="multinomial")
    assert stats.mean(x, seed=3).replicates == pytest.approx(direct.replicates)
    assert direct.value == pytest.approx(19 / 6)  # (0 + 2 + 2 + 5 + 5 + 5) / 6
    assert calls[0] == 1  # the data itself, then resamples in chunks


def test_interval_shrinks_with_n() -> None:
    rng = np.random.default_rng(8)
    small = stats.mean(rng.random(100) < 0.5, seed=0)
    large = stats.mean(rng.random(10_000) < 0.5, seed=0)
    assert small.low is not None and small.high is not None
    assert large.low is not None and large.high is not None
    width_small, width_large = small.high - small.low, large.high - large.low
    assert width_large < width_small / 5  # ~ 1/sqrt(100) = 1/10 in theory
    assert large.low <= large.value <= large.high


def test_seed_makes_results_reproducible() -> None:
    x = np.random.default_rng(0).random(1000)
    a, b, c = stats.mean(x, seed=11), stats.mean(x, seed=11), stats.mean(x, seed=12)
    assert np.array_equal(a.replicates, b.replicates)
    assert (a.low, a.high) == (b.low, b.high)
    assert not np.array_equal(a.replicates, c.replicates)


def test_confidence_level_widens_the_interval() -> None:
    x = np.random.default_rng(0).random(500) < 0.4
    narrow, wide = stats.mean(x, seed=1, confidence=0.5), stats.mean(x, seed=1, confidence=0.99)
    assert narrow.low is not None and narrow.high is not None
    assert wide.low is not None and wide.high is not None
    assert wide.low < narrow.low < narrow.high < wide.high


def test_paired_difference_resamples_the_same_instances() -> None:
    rng = np.random.default_rng(3)
    a = rng.random(2000) < 0.7
    b = a.copy()
    b[np.flatnonzero(a)[:20]] = False  # b is a with 20 right answers turned wrong: -0.01
    paired = stats.paired_difference(a, b, seed=0)
    assert paired.value == pytest.approx((a.sum() - b.sum()) / 2000)
    assert paired.low is not None and paired.low >= 0.0  # b is never better on any instance
    assert paired.share_above(0.0) == 1.0
    unpaired = stats.difference(stats.mean(a, seed=1), stats.mean(b, seed=2))
    assert unpaired.low is not None and unpaired.low < 0.0
    assert paired.high is not None and unpaired.high is not None
    assert paired.high - paired.low < (unpaired.high - unpaired.low) / 3


def test_paired_difference_leaves_out_nan_rows() -> None:
    a = np.array([1.0, 0.0, np.nan, 1.0])
    b = np.array([0.0, 0.0, 1.0, 1.0])
    assert stats.paired_difference(a, b, seed=0).value == pytest.approx(1 / 3)  # (1+0+0)/3
    with pytest.raises(ValueError, match="one length"):
        stats.paired_difference(a, b[:3])


def test_generic_bootstrap_of_f1_with_several_outputs() -> None:
    # binary confusion cells: code = truth * 2 + prediction
    truth = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    prediction = np.array([1, 1, 1, 0, 1, 0, 0, 0, 0, 0])
    # tp = 3, fn = 1, fp = 1: precision 3/4, recall 3/4, F1 = 0.75

    def statistic(s: Floats) -> Floats:
        c = s[..., 0]
        tp, fp, fn = c[:, 3], c[:, 1], c[:, 2]
        return np.column_stack([tp / (tp + fp), 2 * tp / (2 * tp + fp + fn)])

    precision, f1 = stats.bootstrap(statistic, stats.Sample(truth * 2 + prediction, 4), seed=0)
    assert precision.value == pytest.approx(0.75)
    assert f1.value == pytest.approx(0.75)
    assert f1.low is not None and f1.high is not None
    assert f1.low <= 0.75 <= f1.high


def test_two_samples_paired_by_row_share_resamples() -> None:
    a = np.array([1, 1, 0, 1, 0, 1, 1, 0])
    same = stats.bootstrap(
        lambda sa, sb: sa[:, 1, 0] - sb[:, 1, 0],
        stats.Sample(a, 2),
        stats.Sample(a.copy(), 2),
        seed=0,
    )[0]
    assert np.all(same.replicates == 0)  # the same rows on both sides, every time
    with pytest.raises(ValueError, match="same number of rows"):
        stats.bootstrap(lambda sa, sb: sa[:, 0, 0], stats.Sample(a, 2), stats.Sample(a[:3], 2))


def test_units_resample_replications_together() -> None:
    rng = np.random.default_rng(4)
    instances = rng.random(400) < 0.5
    rows = np.repeat(instances, 5)  # five identical replications of each instance
    units = np.repeat(np.arange(400), 5)
    alone = stats.mean(instances, seed=0)
    clustered = stats.mean(rows, units=units, seed=0)
    naive = stats.mean(rows, seed=0)
    assert clustered.value == pytest.approx(alone.value)
    assert clustered.n == 2000
    assert clustered.replicates.std() == pytest.approx(alone.replicates.std(), rel=0.15)
    assert naive.replicates.std() < alone.replicates.std() / 1.8  # too narrow: ~1/sqrt(5)


def test_units_beyond_the_blocks_are_grouped_at_random() -> None:
    rng = np.random.default_rng(5)
    instances = rng.random(20_000) < 0.5
    units = np.repeat(np.arange(20_000) * 7 + 3, 2)  # sparse ids, two rows each
    est = stats.mean(np.repeat(instances, 2), units=units, seed=0, blocks=500)
    se = math.sqrt(0.25 / 20_000)
    assert est.replicates.std() == pytest.approx(se, rel=0.15)


def test_cost_does_not_grow_with_rows_times_resamples() -> None:
    x = np.random.default_rng(0).random(1_000_000) < 0.5
    shapes: list[tuple[int, ...]] = []

    def statistic(s: Floats) -> Floats:
        shapes.append(s.shape)
        out: Floats = s[:, 1, 0] / s[:, :, 0].sum(axis=1)
        return out

    stats.bootstrap(statistic, stats.Sample(x.astype(np.int64), 2), seed=0)
    assert shapes == [(1, 2, 1), (1000, 2, 1)]  # the data, then all resamples in one call
    shapes.clear()

    def mean(s: Floats) -> Floats:
        shapes.append(s.shape)
        out: Floats = s[:, 0, 1] / s[:, 0, 0]
        return out

    values = np.random.default_rng(1).random((1_000_000, 1))
    stats.bootstrap(mean, stats.Sample(np.zeros(1_000_000, dtype=np.int64), 1, values), seed=0)
    assert len(shapes) <= 4  # the data, then resamples in a few chunks over 10,000 blocks
    assert sum(shape[0] for shape in shapes[1:]) == 1000


def test_undefined_statistics_are_left_out_of_the_interval() -> None:
    assert stats.percentile_interval([np.nan, 1.0, 2.0, 3.0], 0.5) == (1.5, 2.5)
    assert stats.percentile_interval([np.nan, np.nan]) == (None, None)
    empty = stats.mean(np.array([], dtype=bool), seed=0)
    assert math.isnan(empty.value)
    assert (empty.low, empty.high) == (None, None)
    assert math.isnan(empty.share_above(0.0))


def test_difference_needs_equal_resamples() -> None:
    a = stats.mean(np.array([1.0, 0.0]), resamples=10, seed=0)
    b = stats.mean(np.array([1.0, 0.0]), resamples=20, seed=0)
    with pytest.raises(ValueError, match="same number of resamples"):
        stats.difference(a, b)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"confidence": 1.0}, "confidence"),
        ({"confidence": 0.0}, "confidence"),
        ({"resamples": 0}, "resamples"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        stats.mean(np.array([1.0, 0.0]), **kwargs)  # type: ignore[arg-type]


def test_bad_samples_are_refused() -> None:
    with pytest.raises(ValueError, match="codes must lie"):
        stats.Sample(np.array([0, 3]), 3)
    with pytest.raises(ValueError, match="values must have shape"):
        stats.Sample(np.array([0, 1]), 2, np.zeros((3, 1)))
    with pytest.raises(ValueError, match="units"):
        stats.Sample(np.array([0, 1]), 2, units=np.array([0, -1]))
    with pytest.raises(ValueError, match="multinomial path"):
        stats.bootstrap(
            lambda s: s[:, 0, 1],
            stats.Sample(np.array([0, 0]), 1, np.ones((2, 1))),
            method="multinomial",
        )
    with pytest.raises(ValueError, match="every Sample has units or none"):
        stats.bootstrap(
            lambda a, b: a[:, 0, 0],
            stats.Sample(np.array([0]), 1, units=np.array([0])),
            stats.Sample(np.array([0]), 1),
        )
