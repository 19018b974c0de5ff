"""A board's ranks and intervals come from paired tests on the per-example flags: hand-built
flags that differ on a few points share a rank, flags that differ on many do not, the board's
p-values are exact McNemar tests (scipy's binomial test on the discordant counts), and
several seeds give bootstrap intervals that take the seed spread in."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from leaderboard.build import build
from leaderboard.evidence import worst_flags
from tests.fixtures_records import consistent

pytestmark = pytest.mark.unit

EPS = ("0.3",)


def _pair(differ: int):
    """Two single-seed records on 200 points whose worst-case flags differ on `differ` points,
    all in favour of the first."""
    a = consistent("first", robust=1.0, flag_seed=0, eps=EPS, primary="0.3", num_classes=2)
    robust = np.flatnonzero(worst_flags(a, "0.3"))[:differ]
    b = consistent("second", robust=1.0, flag_seed=0, eps=EPS, primary="0.3", num_classes=2,
                   flips={"autoattack@0.3": robust})
    return a, b


@pytest.mark.parametrize("differ, tied", [(3, True), (40, False)])
def test_ranks_tie_unless_the_paired_test_separates_them(differ, tied):
    a, b = _pair(differ)
    _, board = build([a, b])
    ranks = {e["defense"]: e["rank"] for e in board["entries"]}
    assert ranks == ({"first": 1, "second": 1} if tied else {"first": 1, "second": 2})
    (pair,) = board["significance"]
    assert pair["effect"] == pytest.approx(differ / 200)
    assert pair["p_value"] == pytest.approx(scipy.stats.binomtest(differ, differ, 0.5).pvalue, rel=1e-5)
    assert pair["significant"] is (not tied)


def test_holm_correction_over_all_pairs():
    items = [consistent(name, robust=0.7, flag_seed=i) for i, name in enumerate(("a", "b", "c", "d"))]
    _, board = build(items)
    raw = sorted(r["p_value"] for r in board["significance"])
    adjusted = sorted(r["p_adjusted"] for r in board["significance"])
    assert len(raw) == 6 and all(adj >= p - 1e-9 for p, adj in zip(raw, adjusted))
    assert adjusted[0] == pytest.approx(min(1.0, 6 * raw[0]), rel=1e-4)


def test_wilson_interval_on_one_seed_and_bootstrap_on_several():
    one = consistent("one", robust=0.7, flag_seed=0)
    _, board = build([one])
    entry = board["entries"][0]
    k = int(worst_flags(one, "0.3").sum())
    lo, hi = entry["intervals"]["worst_case"]["0.3"]
    ci = scipy.stats.binomtest(k, 300).proportion_ci(0.95, method="wilson")
    assert (lo, hi) == (pytest.approx(ci.low, abs=1e-4), pytest.approx(ci.high, abs=1e-4))
    seeds = [consistent("many", s, robust=r, flag_seed=s) for s, r in enumerate((0.5, 0.7, 0.9))]
    _, board = build(seeds)
    (entry,) = board["entries"]
    lo_many, hi_many = entry["intervals"]["worst_case"]["0.3"]
    assert hi_many - lo_many > hi - lo  # the seeds' spread widens the interval
    assert build(seeds)[1] == board  # the bootstrap is deterministic


def test_several_seeds_never_give_an_interval_narrower_than_the_points_allow():
    """A percentile bootstrap of flags that are all False has zero width; the board's interval
    is at least one seed's Wilson interval at the mean."""
    from leaderboard.evidence import interval

    zeros = np.zeros((3, 20), dtype=bool)
    assert interval(zeros) == [0.0, pytest.approx(scipy.stats.binomtest(0, 20).proportion_ci(
        0.95, method="wilson").high, abs=1e-4)]
    rng = np.random.default_rng(0)
    spread = rng.random((3, 100)) < np.array([[0.3], [0.5], [0.7]])
    low, high = interval(spread)
    wilson = scipy.stats.binomtest(int(round(spread.mean() * 100)), 100).proportion_ci(0.95, method="wilson")
    assert low < wilson.low - 0.02 and high > wilson.high + 0.02  # here the seeds' spread dominates


def test_class_disparity_is_tested_and_reported():
    flat = consistent("flat", robust=0.7, flag_seed=1, num_classes=3)
    skew = consistent("skew", robust=0.9, flag_seed=1, num_classes=3,
                      flips={f"autoattack@{e}": range(0, 100) for e in ("0.1", "0.2", "0.3")})
    md, board = build([flat, skew])
    entry = {e["defense"]: e for e in board["entries"]}
    assert entry["skew"]["class_disparity"]["p_value"] < 0.01 and entry["skew"]["class_disparity"]["real"]
    assert entry["skew"]["worst_class"]["0.3"] == 0
    assert "class disparity real" in md
