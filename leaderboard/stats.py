"""The leaderboard's statistics: intervals, paired tests, multiple-testing correction and
bootstraps over the per-example robust flags of records (numpy and scipy only, no torch).

Every accuracy is the mean of boolean per-example flags, one per test point, and every defense of
one protocol is evaluated on the same points, so comparisons between defenses are paired. A
claim made on a board carries evidence at the protocol's sample size: a confidence interval, a
p-value or a rank that only counts differences that are significant.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
from scipy import stats as _scipy

# Bootstraps draw their replicates in blocks of about this many resampled points, so memory
# stays bounded (tens of MB) at 10,000 points and thousands of replicates.
_BLOCK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class McNemar:
    """An exact McNemar test of two paired flag arrays.

    Attributes:
        a_only: points robust under a but not under b.
        b_only: points robust under b but not under a.
        effect: mean(a) - mean(b).
        p_value: two-sided exact binomial p-value of the discordant counts (1.0 when there are none).
    """

    a_only: int
    b_only: int
    effect: float
    p_value: float


@dataclass(frozen=True)
class PairedBootstrap:
    """A paired bootstrap of the difference mean(a) - mean(b).

    Attributes:
        effect: the observed difference.
        low: lower end of the percentile interval.
        high: upper end of the percentile interval.
        p_value: two-sided bootstrap p-value of "no difference".
    """

    effect: float
    low: float
    high: float
    p_value: float


@dataclass(frozen=True)
class Excess:
    """A one-sided exact binomial test of whether `count` events in `n` exceed a null rate.

    Attributes:
        count: the number of events.
        n: the number of trials.
        p_value: P(X >= count) for X ~ Binomial(n, null_rate) (1.0 when count == 0).
        significant: p_value < alpha.
    """

    count: int
    n: int
    p_value: float
    significant: bool


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def check_positive(value: int, name: str) -> None:
    """Raise ValueError unless `value` (a count named `name`) is at least 1."""
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")


def flag_array(x: np.ndarray, name: str, ndim: int) -> np.ndarray:
    """`x` as a bool array of `ndim` dimensions with at least one element on every axis."""
    x = np.asarray(x)
    if x.dtype != np.bool_:
        raise ValueError(f"{name} must be a bool array of per-example flags, got dtype {x.dtype}")
    if x.ndim != ndim or 0 in x.shape:
        raise ValueError(f"{name} must be a non-empty {ndim}-d array, got shape {x.shape}")
    return x


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def _blocks(replicates: int, points: int) -> Iterator[int]:
    """Block sizes summing to `replicates`, each about `_BLOCK_ELEMENTS / points` replicates."""
    size = max(1, _BLOCK_ELEMENTS // points)
    for start in range(0, replicates, size):
        yield min(size, replicates - start)


def _resampled_means(rng: np.random.Generator, flags: np.ndarray, points: np.ndarray) -> np.ndarray:
    """One mean per row of `points` (replicates x resampled point indices) over a resample of the
    seeds (rows of `flags`) drawn here, with replacement, independently for every replicate.

    Integer arithmetic keeps equal resamples bit-identical (a paired difference of 0 is exactly 0).
    """
    seeds, num_points = flags.shape
    draws = rng.integers(0, seeds, size=(points.shape[0], seeds))
    counts = (draws[:, :, None] == np.arange(seeds)).sum(axis=1)
    per_point = counts @ flags.astype(np.int64)
    totals = np.take_along_axis(per_point, points, axis=1).sum(axis=1)
    return totals / (seeds * num_points)


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion.

    Args:
        successes: number of successes (e.g. robust points), 0 <= successes <= n.
        n: number of trials (test points).
        level: confidence level in (0, 1).

    Returns:
        (low, high), clipped to [0, 1]; (0.0, 1.0) when n == 0.

    Raises:
        ValueError: successes outside [0, n], or level outside (0, 1).
    """
    _check_level(level)
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n={n}], got {successes}")
    if n == 0:
        return 0.0, 1.0
    z = float(_scipy.norm.ppf(0.5 + level / 2.0))
    p = successes / n
    shrink = 1.0 + z * z / n
    center = (p + z * z / (2 * n)) / shrink
    half = z / shrink * np.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, float(center - half))
    high = 1.0 if successes == n else min(1.0, float(center + half))
    return low, high


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> McNemar:
    """The exact McNemar test of two defenses' robust flags on the same points.

    Args:
        a: bool flags of defense a, one per test point.
        b: bool flags of defense b on the same points, in the same order.

    Returns:
        The discordant counts, the effect mean(a) - mean(b) and the two-sided exact binomial
        p-value of the discordant counts (1.0 when no point is discordant).

    Raises:
        ValueError: the arrays are not non-empty 1-d bool arrays of the same length.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"paired flags must cover the same points: a has {a.size}, b has {b.size}")
    a, b = flag_array(a, "a", 1), flag_array(b, "b", 1)
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    discordant = a_only + b_only
    p_value = float(_scipy.binomtest(a_only, discordant, 0.5).pvalue) if discordant else 1.0
    return McNemar(a_only, b_only, float(a.mean() - b.mean()), p_value)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down; family-wise error control).

    Args:
        p_values: raw p-values in [0, 1].

    Returns:
        The adjusted p-values in the input order: in ascending order of the raw p-values, the
        running maximum of (m - i) * p_(i), capped at 1.

    Raises:
        ValueError: a p-value outside [0, 1] (or NaN).
    """
    p = np.asarray(p_values, dtype=float)
    if not np.all((p >= 0.0) & (p <= 1.0)):
        raise ValueError(f"p-values must be in [0, 1], got {list(p_values)}")
    order = np.argsort(p, kind="stable")
    m = len(p)
    stepped = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = stepped
    return adjusted.tolist()


def two_level_bootstrap(flags: np.ndarray, replicates: int = 2000, seed: int = 0,
                        level: float = 0.95) -> tuple[float, float]:
    """A percentile interval of the mean accuracy over training seeds and test points.

    Each replicate resamples the seeds with replacement and the points with replacement (one
    point resample shared by the replicate's seeds, since every seed is evaluated on the same
    points) and takes the mean. With one seed it is a plain bootstrap over points.

    Args:
        flags: bool array of shape (seeds, points).
        replicates: number of bootstrap replicates.
        seed: seed of the random generator (the result is a function of the inputs and seed).
        level: confidence level in (0, 1).

    Returns:
        (low, high) of the percentile interval.

    Raises:
        ValueError: flags not a non-empty 2-d bool array, replicates < 1, or level outside (0, 1).
    """
    flags = flag_array(flags, "flags", 2)
    check_positive(replicates, "replicates")
    _check_level(level)
    rng = np.random.default_rng(seed)
    num_points = flags.shape[1]
    means = []
    for size in _blocks(replicates, num_points):
        points = rng.integers(0, num_points, size=(size, num_points))
        means.append(_resampled_means(rng, flags, points))
    return _percentiles(np.concatenate(means), level)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, replicates: int = 2000, seed: int = 0,
                     level: float = 0.95) -> PairedBootstrap:
    """A paired two-level bootstrap of the difference in accuracy of two defenses.

    Each replicate resamples the points once, shared by both defenses (the comparison is paired),
    and each defense's seeds independently with replacement; its statistic is mean(a) - mean(b).

    Args:
        a: bool flags of defense a, shape (seeds_a, points).
        b: bool flags of defense b, shape (seeds_b, points), on the same points in the same order.
        replicates: number of bootstrap replicates.
        seed: seed of the random generator (the result is a function of the inputs and seed).
        level: confidence level in (0, 1).

    Returns:
        The observed effect, the percentile interval and the two-sided p-value
        min(1, 2 * min(1 + #{d <= 0}, 1 + #{d >= 0}) / (1 + replicates)) over the replicates d, so
        it is at least 2 / (1 + replicates) and exactly 1 when every replicate is 0.

    Raises:
        ValueError: the arrays are not non-empty 2-d bool arrays with the same number of points,
            replicates < 1, or level outside (0, 1).
    """
    a, b = flag_array(a, "a", 2), flag_array(b, "b", 2)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"paired flags must cover the same points: a has {a.shape[1]}, b has {b.shape[1]}")
    check_positive(replicates, "replicates")
    _check_level(level)
    rng = np.random.default_rng(seed)
    num_points = a.shape[1]
    diffs = []
    for size in _blocks(replicates, num_points):
        points = rng.integers(0, num_points, size=(size, num_points))
        diffs.append(_resampled_means(rng, a, points) - _resampled_means(rng, b, points))
    d = np.concatenate(diffs)
    tail = min(np.sum(d <= 0), np.sum(d >= 0))
    p_value = min(1.0, 2.0 * (1 + tail) / (1 + replicates))
    low, high = _percentiles(d, level)
    return PairedBootstrap(float(a.mean() - b.mean()), low, high, float(p_value))


def seed_summary(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation of a metric over training seeds.

    Args:
        values: one value per seed.

    Returns:
        (mean, standard deviation with ddof=1); the deviation is 0.0 for one value.

    Raises:
        ValueError: no values.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("seed_summary needs at least one value")
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else 0.0


def binomial_excess(count: int, n: int, null_rate: float, alpha: float = 0.05) -> Excess:
    """A one-sided exact binomial test of whether `count` events in `n` exceed a rate `null_rate`.

    Args:
        count: number of events, 0 <= count <= n.
        n: number of trials.
        null_rate: the event rate under the null hypothesis, in [0, 1].
        alpha: significance threshold.

    Returns:
        The counts, p = P(X >= count) for X ~ Binomial(n, null_rate) (1.0 when count == 0) and
        whether p < alpha.

    Raises:
        ValueError: count outside [0, n] or null_rate outside [0, 1].
    """
    if not 0 <= count <= n:
        raise ValueError(f"count must be in [0, n={n}], got {count}")
    if not 0.0 <= null_rate <= 1.0:
        raise ValueError(f"null_rate must be in [0, 1], got {null_rate}")
    p_value = float(_scipy.binomtest(count, n, null_rate, alternative="greater").pvalue) if count else 1.0
    return Excess(count, n, p_value, p_value < alpha)


def rank_with_ties(scores: Sequence[float], better: Callable[[int, int], bool]) -> list[int]:
    """Ranks that only separate entries whose difference is significant.

    Args:
        scores: the entries' scores (higher is better).
        better: better(j, i) is True when entry j is significantly better than entry i. It is
            asked only for pairs with scores[j] > scores[i], so a symmetric test (e.g. "the
            McNemar p-value of i and j is below alpha") can be passed as is.

    Returns:
        Per entry, 1 + the number of entries with a higher score that are significantly better.
    """
    n = len(scores)
    return [1 + sum(1 for j in range(n) if scores[j] > scores[i] and better(j, i)) for i in range(n)]
