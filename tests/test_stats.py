"""The leaderboard's statistics layer: intervals, paired tests, Holm, bootstraps, the class
homogeneity test and tie-aware ranks, checked against scipy, hand computations and brute force."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from leaderboard.class_stats import class_homogeneity, seed_pooled_homogeneity
from leaderboard.stats import (
    binomial_excess,
    holm,
    mcnemar_exact,
    paired_bootstrap,
    rank_with_ties,
    seed_summary,
    two_level_bootstrap,
    wilson_interval,
)

pytestmark = pytest.mark.unit

FAST = settings(max_examples=60, deadline=None)


def _flags(rng: np.random.Generator, shape, rate: float) -> np.ndarray:
    return rng.random(shape) < rate


def _flip(a: np.ndarray, idx, value: bool) -> np.ndarray:
    b = a.copy()
    b[idx] = value
    return b


# --- Wilson -------------------------------------------------------------------------------------

def test_wilson_matches_hand_computed_value():
    # 8/10 at 95%: center (0.8 + z^2/20) / (1 + z^2/10), half z/(1 + z^2/10) * sqrt(0.016 + z^2/400)
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.49016, abs=1e-5)
    assert high == pytest.approx(0.94332, abs=1e-5)


def test_wilson_width_at_protocol_sample_size_is_about_six_points():
    low, high = wilson_interval(147, 200)
    assert 147 / 200 == 0.735
    assert 0.055 < 147 / 200 - low < 0.067
    assert 0.050 < high - 147 / 200 < 0.062
    assert (high - low) / 2 == pytest.approx(0.06, abs=0.003)


@FAST
@given(n=st.integers(1, 10_000), frac=st.floats(0, 1), level=st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_wilson_contains_estimate_and_stays_in_unit_interval(n, frac, level):
    k = round(frac * n)
    low, high = wilson_interval(k, n, level)
    assert 0.0 <= low <= k / n <= high <= 1.0
    assert low < high
    wider_low, wider_high = wilson_interval(k, n, 0.999)
    assert wider_low <= low + 1e-12 and high <= wider_high + 1e-12


def test_wilson_edge_cases_and_errors():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 50)[0] == 0.0
    assert wilson_interval(50, 50)[1] == 1.0
    assert wilson_interval(0, 50)[1] > 0.0 and wilson_interval(50, 50)[0] < 1.0
    for args in [(-1, 10), (11, 10), (5, 10, 1.0), (5, 10, 0.0)]:
        with pytest.raises(ValueError):
            wilson_interval(*args)


# --- McNemar ------------------------------------------------------------------------------------

@FAST
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 400), rate_a=st.floats(0, 1), rate_b=st.floats(0, 1))
def test_mcnemar_matches_scipy_binomtest_on_discordant_counts(seed, n, rate_a, rate_b):
    rng = np.random.default_rng(seed)
    a, b = _flags(rng, n, rate_a), _flags(rng, n, rate_b)
    result = mcnemar_exact(a, b)
    assert result.a_only == int(np.sum(a & ~b)) and result.b_only == int(np.sum(b & ~a))
    assert result.effect == pytest.approx(a.mean() - b.mean(), abs=1e-12)
    assert result.effect == pytest.approx((result.a_only - result.b_only) / n, abs=1e-12)
    discordant = result.a_only + result.b_only
    expected = scipy_stats.binomtest(result.a_only, discordant, 0.5).pvalue if discordant else 1.0
    assert result.p_value == expected
    swapped = mcnemar_exact(b, a)
    assert (swapped.a_only, swapped.b_only) == (result.b_only, result.a_only)
    assert swapped.p_value == pytest.approx(result.p_value, rel=1e-12)


def test_mcnemar_significance_at_protocol_sample_size():
    rng = np.random.default_rng(0)
    a = _flags(rng, 200, 0.5)
    robust, broken = np.flatnonzero(a), np.flatnonzero(~a)
    small = mcnemar_exact(a, _flip(a, robust[:3], False))
    assert (small.a_only, small.b_only) == (3, 0)
    assert small.p_value > 0.05
    large = mcnemar_exact(_flip(a, broken[:40], True), a)
    assert (large.a_only, large.b_only) == (40, 0)
    assert large.effect == pytest.approx(0.2)
    assert large.p_value < 1e-6


def test_mcnemar_identical_records_and_errors():
    a = np.array([True, False, True])
    assert mcnemar_exact(a, a) == mcnemar_exact(a, a.copy())
    assert mcnemar_exact(a, a).p_value == 1.0 and mcnemar_exact(a, a).effect == 0.0
    with pytest.raises(ValueError, match="200.*199"):
        mcnemar_exact(np.ones(200, bool), np.ones(199, bool))
    with pytest.raises(ValueError, match="bool"):
        mcnemar_exact(np.ones(3), np.ones(3))


# --- Holm ---------------------------------------------------------------------------------------

def _holm_reference(p: list[float]) -> list[float]:
    """Holm by definition: a p-value's adjustment is the largest (m - #smaller) * p_j over the
    p-values p_j not above it, capped at 1 (tied p-values share the first tied position)."""
    m = len(p)
    out = []
    for pi in p:
        worst = max((m - sum(q < pj for q in p)) * pj for pj in p if pj <= pi)
        out.append(min(1.0, worst))
    return out


@FAST
@given(st.lists(st.one_of(st.floats(0, 1), st.sampled_from([0.0, 0.01, 0.02, 0.05, 1.0])), max_size=12))
def test_holm_matches_brute_force_reference(p):
    adjusted = holm(p)
    assert adjusted == pytest.approx(_holm_reference(p), abs=1e-12)
    assert all(raw <= adj + 1e-15 <= 1.0 + 1e-15 for raw, adj in zip(p, adjusted))
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(np.asarray(adjusted)[order]) >= 0)


def test_holm_known_values_and_errors():
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([0.3]) == [0.3]
    assert holm([]) == []
    assert holm([0.6, 0.7]) == [1.0, 1.0]
    for bad in ([1.5], [-0.1], [float("nan")]):
        with pytest.raises(ValueError):
            holm(bad)


# --- bootstraps ---------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 300), (3, 300), (5, 120)])
def test_two_level_bootstrap_is_deterministic_changes_with_seed_and_contains_mean(shape):
    flags = _flags(np.random.default_rng(7), shape, 0.6)
    interval = two_level_bootstrap(flags, replicates=500, seed=3)
    assert interval == two_level_bootstrap(flags.copy(), replicates=500, seed=3)
    assert interval != two_level_bootstrap(flags, replicates=500, seed=4)
    low, high = interval
    assert 0.0 <= low < flags.mean() < high <= 1.0


def test_two_level_bootstrap_with_one_seed_matches_the_wilson_width():
    flags = _flags(np.random.default_rng(1), (1, 2000), 0.7)
    low, high = two_level_bootstrap(flags, replicates=1000)
    w_low, w_high = wilson_interval(int(flags.sum()), flags.size)
    assert low == pytest.approx(w_low, abs=0.006) and high == pytest.approx(w_high, abs=0.006)


def test_two_level_bootstrap_shares_the_point_resample_across_seeds():
    # five identical seeds carry no more information than one: independent point resamples per
    # seed would shrink the interval by about sqrt(5)
    row = _flags(np.random.default_rng(2), (1, 2000), 0.7)
    low, high = two_level_bootstrap(np.repeat(row, 5, axis=0), replicates=1000)
    w_low, w_high = wilson_interval(int(row.sum()), row.size)
    assert (high - low) / (w_high - w_low) == pytest.approx(1.0, abs=0.15)


def test_two_level_bootstrap_resamples_seeds():
    # one seed robust everywhere, one nowhere: the seed resample alone spans [0, 1]
    flags = np.array([[True] * 100, [False] * 100])
    assert two_level_bootstrap(flags, replicates=400) == (0.0, 1.0)


def test_two_level_bootstrap_errors():
    with pytest.raises(ValueError):
        two_level_bootstrap(np.ones(10, bool))
    with pytest.raises(ValueError):
        two_level_bootstrap(np.ones((2, 0), bool))
    with pytest.raises(ValueError):
        two_level_bootstrap(np.ones((2, 10), bool), replicates=0)


@pytest.mark.parametrize("seeds", [(1, 1), (3, 2)])
def test_paired_bootstrap_is_deterministic_changes_with_seed_and_contains_effect(seeds):
    rng = np.random.default_rng(11)
    a, b = _flags(rng, (seeds[0], 400), 0.6), _flags(rng, (seeds[1], 400), 0.5)
    result = paired_bootstrap(a, b, replicates=500, seed=5)
    assert result == paired_bootstrap(a.copy(), b.copy(), replicates=500, seed=5)
    assert result != paired_bootstrap(a, b, replicates=500, seed=6)
    assert result.effect == pytest.approx(a.mean() - b.mean())
    assert result.low < result.effect < result.high
    assert 2 / 501 <= result.p_value <= 1.0


@pytest.mark.parametrize("seeds", [1, 3])
def test_paired_bootstrap_of_identical_records_is_exactly_null(seeds):
    a = np.repeat(_flags(np.random.default_rng(4), (1, 300), 0.5), seeds, axis=0)
    result = paired_bootstrap(a, a.copy(), replicates=300)
    assert (result.effect, result.low, result.high, result.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_paired_bootstrap_is_paired():
    # b differs from a on 10 of 1000 points, all in a's favour: an unpaired interval would be
    # about +-4 points wide and not significant
    a = _flags(np.random.default_rng(9), (1, 1000), 0.5)
    b = a.copy()
    b[0, np.flatnonzero(a[0])[:10]] = False
    result = paired_bootstrap(a, b, replicates=1000)
    assert result.effect == pytest.approx(0.01)
    assert 0.0 <= result.low < 0.01 < result.high < 0.02
    assert result.p_value < 0.01


def test_paired_bootstrap_errors():
    with pytest.raises(ValueError, match="100.*99"):
        paired_bootstrap(np.ones((1, 100), bool), np.ones((1, 99), bool))
    with pytest.raises(ValueError):
        paired_bootstrap(np.ones(100, bool), np.ones(100, bool))


# --- seeds, classes, excess, ranks --------------------------------------------------------------

def test_seed_summary():
    assert seed_summary([0.5]) == (0.5, 0.0)
    mean, std = seed_summary([0.5, 0.6, 0.7])
    assert mean == pytest.approx(0.6) and std == pytest.approx(0.1)
    assert seed_summary([0.4, 0.4]) == (0.4, 0.0)
    with pytest.raises(ValueError):
        seed_summary([])


def _contingency_chi2(flags: np.ndarray, labels: np.ndarray) -> float:
    table = [[np.sum(flags[labels == k]), np.sum(~flags[labels == k])] for k in np.unique(labels)]
    return scipy_stats.chi2_contingency(np.array(table), correction=False).statistic


@FAST
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(20, 300), k=st.integers(2, 12))
def test_class_homogeneity_statistic_matches_scipy(seed, n, k):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    flags = rng.random(n) < rng.random(k)[labels]
    if flags.all() or not flags.any() or len(np.unique(labels)) < 2:
        return
    result = class_homogeneity(flags, labels, k + 2, permutations=50)
    assert result.statistic == pytest.approx(_contingency_chi2(flags, labels), rel=1e-9)
    assert 1 / 51 <= result.p_value <= 1.0


def test_class_homogeneity_detects_class_dependent_robustness():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 500)
    dependent = rng.random(500) < np.linspace(0.2, 0.8, 10)[labels]
    result = class_homogeneity(dependent, labels, 10, permutations=500)
    assert result.p_value == pytest.approx(1 / 501)
    iid = rng.random(500) < 0.5
    assert class_homogeneity(iid, labels, 10, permutations=500).p_value > 0.2


def test_class_homogeneity_p_value_matches_literal_label_permutation():
    # the permutations are drawn as multivariate hypergeometric per-class counts; a literal
    # shuffle of the labels must give the same p-value up to Monte Carlo error
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 4, 120)
    flags = rng.random(120) < np.array([0.4, 0.5, 0.55, 0.65])[labels]
    result = class_homogeneity(flags, labels, 4, permutations=2000, seed=1)
    observed = _contingency_chi2(flags, labels)
    shuffled = [_contingency_chi2(flags, rng.permutation(labels)) for _ in range(1000)]
    literal = (1 + sum(s >= observed - 1e-12 for s in shuffled)) / 1001
    assert 0.05 < literal < 0.5
    assert result.p_value == pytest.approx(literal, abs=0.05)


def test_class_homogeneity_determinism_and_degenerate_tables():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 5, 200)
    flags = rng.random(200) < 0.5
    first = class_homogeneity(flags, labels, 5, permutations=300, seed=2)
    assert first == class_homogeneity(flags.copy(), labels.copy(), 5, permutations=300, seed=2)
    assert first.p_value != class_homogeneity(flags, labels, 5, permutations=300, seed=3).p_value
    for column in (np.ones(200, bool), np.zeros(200, bool)):
        result = class_homogeneity(column, labels, 5, permutations=100)
        assert (result.statistic, result.p_value) == (0.0, 1.0)
    one_class = class_homogeneity(flags, np.full(200, 3), 5, permutations=100)
    assert one_class.statistic == 0.0
    with pytest.raises(ValueError):
        class_homogeneity(flags, labels, 4)
    with pytest.raises(ValueError):
        class_homogeneity(flags, labels[:-1], 5)


def test_seed_pooled_homogeneity_counts_points_not_seed_copies():
    rng = np.random.default_rng(7)
    labels = np.repeat(np.arange(5), 20)
    flags = rng.random(100) < np.repeat([0.2, 0.5, 0.5, 0.6, 0.8], 20)
    one = seed_pooled_homogeneity(flags[None], labels, 5, permutations=400, seed=1)
    assert one == class_homogeneity(flags, labels, 5, permutations=400, seed=1)
    copies = seed_pooled_homogeneity(np.stack([flags] * 3), labels, 5, permutations=4000, seed=1)
    assert copies.statistic == pytest.approx(one.statistic, rel=1e-9)  # not 3x: the points are the same
    assert copies.p_value == pytest.approx(class_homogeneity(flags, labels, 5, permutations=4000).p_value, abs=0.01)
    tiled = class_homogeneity(np.tile(flags, 3), np.tile(labels, 3), 5, permutations=400)
    assert tiled.statistic == pytest.approx(3 * one.statistic)  # what treating seeds as new points would claim
    iid = rng.random((3, 100)) < 0.5
    assert seed_pooled_homogeneity(iid, labels, 5, permutations=400).p_value > 0.05
    with pytest.raises(ValueError):
        seed_pooled_homogeneity(flags, labels, 5)


@FAST
@given(n=st.integers(1, 2000), frac=st.floats(0, 1), rate=st.floats(0.001, 0.999))
def test_binomial_excess_matches_scipy(n, frac, rate):
    count = round(frac * n)
    result = binomial_excess(count, n, rate)
    expected = scipy_stats.binomtest(count, n, rate, alternative="greater").pvalue if count else 1.0
    assert (result.count, result.n, result.p_value) == (count, n, expected)
    assert result.significant == (expected < 0.05)


def test_binomial_excess_known_cases():
    assert binomial_excess(0, 0, 0.1).p_value == 1.0
    assert not binomial_excess(12, 100, 0.1).significant
    assert binomial_excess(25, 100, 0.1).significant
    assert binomial_excess(25, 100, 0.1, alpha=1e-9).significant is False
    with pytest.raises(ValueError):
        binomial_excess(5, 4, 0.1)
    with pytest.raises(ValueError):
        binomial_excess(1, 4, 1.5)


def test_rank_with_ties_chain_of_insignificant_steps_ties_everything():
    scores = [0.50, 0.51, 0.52, 0.53]
    assert rank_with_ties(scores, lambda j, i: False) == [1, 1, 1, 1]
    # only the ends of the chain differ significantly: the worst entry alone drops
    assert rank_with_ties(scores, lambda j, i: (j, i) == (3, 0)) == [2, 1, 1, 1]


@pytest.mark.parametrize("scores", [[0.9, 0.7, 0.5, 0.3], [0.3, 0.9, 0.5, 0.7]])
def test_rank_with_ties_total_order_gives_one_to_n(scores):
    expected = [1 + sum(s > t for s in scores) for t in scores]
    assert sorted(expected) == [1, 2, 3, 4]
    assert rank_with_ties(scores, lambda j, i: scores[j] > scores[i]) == expected
    # a symmetric "differ significantly" predicate ranks the same: only higher scores are asked
    assert rank_with_ties(scores, lambda j, i: True) == expected


def test_rank_with_ties_with_mcnemar_and_holm():
    rng = np.random.default_rng(8)
    base = _flags(rng, 200, 0.5)
    weak = np.flatnonzero(~base)
    records = [base, _flip(base, weak[:2], True), _flip(base, weak[:60], True)]
    scores = [float(r.mean()) for r in records]
    pairs = [(j, i) for j in range(3) for i in range(3) if j != i]
    adjusted = dict(zip(pairs, holm([mcnemar_exact(records[j], records[i]).p_value for j, i in pairs])))
    assert rank_with_ties(scores, lambda j, i: adjusted[j, i] < 0.05) == [2, 2, 1]
    assert math.isclose(scores[2] - scores[0], 0.3)
