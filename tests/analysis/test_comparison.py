"""Comparison across systems (``assay.comparison``): the systems x scores table of a Method's
safety cases, paired differences where two systems answered the same instances (checked
against a computation by hand), the reasons a pair is not paired, what a caller may not see,
and the CSV export."""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Iterator

import numpy as np
import pytest
from scipy import stats as scipy_stats  # type: ignore[import-untyped]
from tests.analysis.comparison_world import GAMMA, World, build

from assay import comparison, errors
from assay.analysis import stats
from assay.local import LocalPlatform

# -- the statistics, by hand ---------------------------------------------------------------------


def test_student_t_matches_scipy() -> None:
    for df in (1, 2, 3, 7, 29, 200, 10_000):
        for t in (0.0, 0.3, 1.0, 1.96, 3.5, 12.0):
            expected = 2 * scipy_stats.t.sf(t, df)
            assert comparison.two_sided_p(t, df) == pytest.approx(expected, rel=1e-9, abs=1e-15)
            assert comparison.two_sided_p(-t, df) == pytest.approx(expected, rel=1e-9, abs=1e-15)
        for level in (0.5, 0.9, 0.95, 0.99):
            expected = scipy_stats.t.ppf((1 + level) / 2, df)
            assert comparison.t_quantile(level, df) == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="confidence"):
        comparison.t_quantile(1.0, 3)
    with pytest.raises(ValueError, match="degrees of freedom"):
        comparison.two_sided_p(1.0, 0)


def test_paired_statistics_by_hand() -> None:
    a = np.array([3.0, 5.0, 4.0, 6.0])
    b = np.array([1.0, 4.0, 4.0, 3.0])
    # d = 2, 1, 0, 3: mean 1.5, sd sqrt(5/3), se sd/2, t 1.5/se, df 3, t_0.975(3) = 3.182446...
    s = comparison.paired_statistics(a, b)
    se = math.sqrt(5 / 3) / 2
    assert (s.n, s.mean_a, s.mean_b, s.difference) == (4, 4.5, 3.0, 1.5)
    assert s.t == pytest.approx(1.5 / se)
    assert s.t == pytest.approx(2.3237900077244502)
    assert s.t_low == pytest.approx(1.5 - 3.182446305284263 * se)
    assert s.t_high == pytest.approx(1.5 + 3.182446305284263 * se)
    assert s.p_value == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue, rel=1e-9)
    assert s.p_value == pytest.approx(0.10275, abs=5e-5)
    boot = stats.paired_difference(a, b, seed=0)
    assert (s.bootstrap_low, s.bootstrap_high) == (boot.low, boot.high)
    assert s.share_a_higher == boot.share_above(0.0)
    assert comparison.paired_statistics(a, b) == s  # seeded: the same numbers every time


def test_paired_statistics_edge_cases() -> None:
    same = comparison.paired_statistics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]))
    assert (same.difference, same.t, same.p_value, same.t_low, same.t_high) == (0, 0, 1, 0, 0)
    shifted = comparison.paired_statistics(np.array([2.0, 3.0]), np.array([1.0, 2.0]))
    assert (shifted.t, shifted.p_value) == (math.inf, 0.0)
    one = comparison.paired_statistics(np.array([2.0]), np.array([1.0]))
    assert one.difference == 1.0 and one.t is None and one.p_value is None and one.t_low is None
    none = comparison.paired_statistics(np.array([]), np.array([]))
    assert none.n == 0 and math.isnan(none.difference) and none.share_a_higher is None
    with pytest.raises(ValueError, match="one length"):
        comparison.paired_statistics(np.array([1.0]), np.array([1.0, 2.0]))


# -- a real audit ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def audit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalPlatform, World]]:
    directory = tmp_path_factory.mktemp("comparison")
    with LocalPlatform(storage_root=directory / "platform", account="alice") as platform:
        yield platform, build(platform.core, directory)


def _by_hand(platform: LocalPlatform, measurement: str) -> dict[int, float]:
    """The per-instance mean of ``length`` over the replications, in plain Python."""
    table = platform.measurements.open(measurement).to_table().to_pylist()
    rows: dict[int, list[float]] = {}
    for row in table:
        rows.setdefault(row["_index_"], []).append(float(row["length"]))
    return {i: sum(v) / len(v) for i, v in rows.items()}


def _pair(table: comparison.SystemComparison, a: str, b: str) -> comparison.PairedDifference:
    for pair in table.pairs:
        if {pair.a, pair.b} == {a, b}:
            return pair
    raise AssertionError(f"no pair {a} {b} in {[(p.a, p.b) for p in table.pairs]}")


def test_systems_by_scores(audit: tuple[LocalPlatform, World]) -> None:
    platform, world = audit
    table = comparison.compare_method(platform.core, world.method)
    assert table.method == world.method and table.method_name == "length audit"
    assert [s.name for s in table.specs] == ["mean_length", "max_length"]
    assert table.score == "mean_length"  # the primary score
    labels = {row.analysis: row.label for row in table.rows}
    assert labels == {s.case: name for name, s in world.systems.items()}
    for name, system in world.systems.items():
        row = next(r for r in table.rows if r.analysis == system.case)
        assert (row.inference_service, row.evaluation) == (system.service, system.evaluation)
        published = {s.name: s for s in platform.safetycases.scores(system.case)}
        assert row.scores.keys() == published.keys() == {"mean_length", "max_length"}
        assert row.scores["mean_length"].quantity == published["mean_length"].quantity
        assert row.scores["mean_length"].interval is not None, name
        lengths = list(_by_hand(platform, system.measurement).values())
        assert row.scores["mean_length"].quantity == pytest.approx(statistics.fmean(lengths))
    assert len(table.pairs) == 6 and table.rows_not_paired == 0


def test_a_paired_difference_checked_by_hand(audit: tuple[LocalPlatform, World]) -> None:
    platform, world = audit
    alpha, beta = world.systems["alpha"], world.systems["beta"]
    table = comparison.compare_method(platform.core, world.method)
    pair = _pair(table, alpha.case, beta.case)
    assert pair.paired, pair.why
    assert pair.why.startswith("paired: identical data and methods; 30 instances")
    assert pair.column == "length" and pair.statistics is not None
    # alpha has two replications: its per-instance value is their mean
    va, vb = _by_hand(platform, alpha.measurement), _by_hand(platform, beta.measurement)
    assert len(platform.measurements.open(alpha.measurement).to_table()) == 60
    sign = 1 if pair.a == alpha.case else -1
    d = [sign * (va[i] - vb[i]) for i in sorted(va)]
    n, mean, sd = len(d), statistics.fmean(d), statistics.stdev(d)
    half = scipy_stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    s = pair.statistics
    assert s.n == 30 and s.difference == pytest.approx(mean)
    assert s.t_low == pytest.approx(mean - half) and s.t_high == pytest.approx(mean + half)
    assert s.t == pytest.approx(mean / (sd / math.sqrt(n)))
    first = [va[i] for i in sorted(va)]
    second = [vb[i] for i in sorted(vb)]
    if sign < 0:
        first, second = second, first
    assert s.p_value == pytest.approx(scipy_stats.ttest_rel(first, second).pvalue, rel=1e-8)
    assert s.bootstrap_low is not None and s.bootstrap_high is not None
    assert s.bootstrap_low <= s.difference <= s.bootstrap_high
    # the published scores' difference is the plain one: the same here (every instance answered)
    qa = table.rows[[r.analysis for r in table.rows].index(pair.a)].scores["mean_length"]
    qb = table.rows[[r.analysis for r in table.rows].index(pair.b)].scores["mean_length"]
    assert pair.score_difference == pytest.approx(qa.quantity - qb.quantity)  # type: ignore[operator]
    assert pair.score_difference == pytest.approx(s.difference)
    again = comparison.compare_method(platform.core, world.method)
    assert _pair(again, alpha.case, beta.case).statistics == s  # seeded


def test_another_dataset_is_not_paired_and_says_why(audit: tuple[LocalPlatform, World]) -> None:
    platform, world = audit
    table = comparison.compare_method(platform.core, world.method)
    pair = _pair(table, world.systems["alpha"].case, world.systems[GAMMA].case)
    assert not pair.paired and pair.statistics is None and pair.column is None
    assert pair.why.startswith("not paired: the data differ")
    assert world.d1 in pair.why and world.d2 in pair.why
    assert pair.score_difference is not None


def test_what_the_caller_may_not_see_is_left_out(audit: tuple[LocalPlatform, World]) -> None:
    platform, world = audit
    core = platform.core

    def own(score: comparison.SystemRow | object) -> bool:
        analysis = getattr(score, "analysis", "")
        return str(core.store.require(analysis).doc["account"]) == world.account

    def own_entity(kind: str, account: str, id: str) -> bool:
        return account == world.account

    visibility = comparison.Visibility(score=own, name=own_entity, data=own_entity)
    table = comparison.compare_method(core, world.method, visibility=visibility)
    delta = world.systems["delta"]
    shown = {row.analysis for row in table.rows}
    assert delta.case not in shown and len(shown) == 3
    assert all(delta.case not in (p.a, p.b) for p in table.pairs) and len(table.pairs) == 3
    for text in (comparison.scores_csv(table), comparison.differences_csv(table)):
        assert delta.case not in text and "delta" not in text and delta.service not in text

    # names hidden: the id is shown instead; data unreadable: the pair says so
    hidden = comparison.Visibility(name=lambda *_: False, data=lambda *_: False)
    table = comparison.compare_method(core, world.method, visibility=hidden)
    alpha = world.systems["alpha"]
    row = next(r for r in table.rows if r.analysis == alpha.case)
    assert row.label.startswith(f"InferenceService {alpha.service[:8]}")
    assert row.dataset_name is None
    pair = _pair(table, alpha.case, world.systems["beta"].case)
    assert not pair.paired and "not readable with this token" in pair.why


def test_choices_and_refusals(audit: tuple[LocalPlatform, World]) -> None:
    platform, world = audit
    core = platform.core
    alpha, beta = world.systems["alpha"], world.systems["beta"]
    chosen = comparison.compare_method(
        core, world.method, score="max_length", cases=[alpha.case, beta.case]
    )
    assert chosen.score == "max_length" and len(chosen.rows) == 2
    (pair,) = chosen.pairs
    assert pair.score == "max_length" and pair.paired and pair.column == "length"
    # every row shown, only the rows asked for paired; at most MAX_PAIRED_ROWS of them
    some = comparison.compare_method(core, world.method, pair=[alpha.case, beta.case])
    assert len(some.rows) == 4 and len(some.pairs) == 1
    assert set(some.paired_rows) == {alpha.case, beta.case} and some.rows_not_paired == 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(comparison._table, "MAX_PAIRED_ROWS", 2)
        capped = comparison.compare_method(core, world.method)
    assert len(capped.paired_rows) == 2 and len(capped.pairs) == 1
    assert capped.rows_not_paired == 2
    with pytest.raises(errors.ValidationError, match=r"no score 'median'.*mean_length, max_length"):
        comparison.compare_method(core, world.method, score="median")
    with pytest.raises(errors.ValidationError, match="declares no scores"):
        comparison.compare_method(core, world.measure_method)
    with pytest.raises(errors.NotFoundError):
        comparison.compare_method(core, "0" * 32)
    # scores without provenance are never paired
    bare = [
        s.model_copy(update={"provenance": None})
        for s in core.scores.query(analysis=[alpha.case, beta.case])
    ]
    (pair,) = comparison.compare_scores(core, bare).pairs
    assert not pair.paired and "no provenance" in pair.why


def test_csv_export(audit: tuple[LocalPlatform, World]) -> None:
    platform, world = audit
    table = comparison.compare_method(platform.core, world.method)
    rows = list(csv.DictReader(io.StringIO(comparison.scores_csv(table))))
    assert tuple(rows[0]) == comparison.SCORE_COLUMNS
    assert len(rows) == 8  # 4 systems x 2 scores
    alpha = world.systems["alpha"]
    line = next(r for r in rows if r["safetyCase"] == alpha.case and r["score"] == "mean_length")
    published = next(s for s in platform.safetycases.scores(alpha.case) if s.name == "mean_length")
    assert float(line["quantity"]) == published.quantity
    assert [float(line["low"]), float(line["high"])] == published.interval
    assert line["display"] == published.value_string() and line["system"] == "alpha"
    # a name a spreadsheet would run is written as text
    gamma = [r for r in rows if r["safetyCase"] == world.systems[GAMMA].case]
    assert gamma and all(r["system"] == "'" + GAMMA for r in gamma)
    pairs = list(csv.DictReader(io.StringIO(comparison.differences_csv(table))))
    assert tuple(pairs[0]) == comparison.DIFFERENCE_COLUMNS and len(pairs) == 6
    paired = next(p for p in pairs if {p["a"], p["b"]} == {"alpha", "beta"})
    pair = _pair(table, alpha.case, world.systems["beta"].case)
    assert pair.statistics is not None
    assert paired["paired"] == "true" and float(paired["pValue"]) == pair.statistics.p_value
    assert int(paired["instances"]) == 30 and paired["column"] == "length"
    unpaired = [p for p in pairs if p["paired"] == "false"]
    assert len(unpaired) == 3 and all(p["why"].startswith("not paired") for p in unpaired)
    assert all(p["pValue"] == "" and p["scoreDifference"] for p in unpaired)
