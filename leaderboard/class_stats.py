"""Class-wise statistics of the leaderboard: whether robustness is the same for every class
(a permutation test on the class x robust table; for several training seeds, on the points'
seed means). Input checks come from `leaderboard.stats`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leaderboard.stats import check_positive, flag_array


@dataclass(frozen=True)
class Homogeneity:
    """A permutation test of whether robustness is the same for every class.

    Attributes:
        statistic: chi-square statistic of the (class x robust/not robust) table.
        p_value: permutation p-value of the statistic.
    """

    statistic: float
    p_value: float


def _chi_square(robust: np.ndarray, sizes: np.ndarray, total_robust: int) -> np.ndarray:
    """Chi-square statistic of (class x robust/not robust) tables given per-class robust counts
    (last axis: the classes with points), their sizes and the table's robust total; 0 when a
    column of the table is all zero.

    In the form sum_k (N r_k - n_k R)^2 / (n_k R (N - R)), whose deviations are exact integers, so
    a table matching its expectation gives exactly 0 and equal tables equal statistics.
    """
    total = int(sizes.sum())
    if total_robust in (0, total):
        return np.zeros(robust.shape[:-1])
    deviation = (total * robust - sizes * total_robust).astype(float)
    return np.sum(deviation**2 / (sizes * float(total_robust) * (total - total_robust)), axis=-1)


def class_homogeneity(flags: np.ndarray, labels: np.ndarray, num_classes: int, permutations: int = 2000,
                      seed: int = 0) -> Homogeneity:
    """A permutation test of whether robustness is the same for every class.

    The statistic is the chi-square statistic of the (class x robust/not robust) table, classes
    without points dropped. Its permutation distribution is drawn directly: under a random
    permutation of the labels the per-class robust counts are multivariate hypergeometric (the
    class sizes and the robust total fixed), so each permutation costs O(classes), not O(points).

    Args:
        flags: bool robust flags, one per test point.
        labels: integer labels in [0, num_classes) of the same points.
        num_classes: number of classes.
        permutations: number of label permutations.
        seed: seed of the random generator (the result is a function of the inputs and seed).

    Returns:
        The statistic and the p-value (1 + #{permuted statistic >= observed - 1e-12}) / (1 + permutations).

    Raises:
        ValueError: flags not a non-empty 1-d bool array, labels of another shape or outside
            [0, num_classes), or permutations < 1.
    """
    flags = flag_array(flags, "flags", 1)
    labels = np.asarray(labels)
    if labels.shape != flags.shape:
        raise ValueError(f"labels must cover the flags' points: flags has {len(flags)}, labels has {labels.size}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must be integers in [0, {num_classes}), got {labels.dtype} in "
                         f"[{labels.min()}, {labels.max()}]")
    check_positive(permutations, "permutations")
    sizes = np.bincount(labels, minlength=num_classes)
    robust = np.bincount(labels, weights=flags, minlength=num_classes).astype(np.int64)
    present = sizes > 0
    total_robust = int(flags.sum())
    observed = float(_chi_square(robust[present], sizes[present], total_robust))
    rng = np.random.default_rng(seed)
    permuted = rng.multivariate_hypergeometric(sizes[present], total_robust, size=permutations)
    exceed = int(np.sum(_chi_square(permuted, sizes[present], total_robust) >= observed - 1e-12))
    return Homogeneity(observed, (1 + exceed) / (1 + permutations))


def _between_classes(values: np.ndarray, onehot: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """sum_k n_k (m_k - m)^2 / (m (1 - m)) of per-point values in [0, 1] (last axis: points) with
    the classes `onehot` (points x classes with points): the chi-square statistic when the values
    are 0/1, and 0 when the overall mean is 0 or 1."""
    mean = values.mean(axis=-1, keepdims=True)
    class_means = (values @ onehot) / sizes
    scale = mean * (1.0 - mean)
    between = np.sum(sizes * (class_means - mean) ** 2, axis=-1)
    return np.where(scale[..., 0] > 0, between / np.where(scale[..., 0] > 0, scale[..., 0], 1.0), 0.0)


def seed_pooled_homogeneity(flags: np.ndarray, labels: np.ndarray, num_classes: int, permutations: int = 2000,
                            seed: int = 0) -> Homogeneity:
    """`class_homogeneity` for a (seeds, points) flag matrix: every seed was evaluated on the
    same points, so the seeds are not independent samples of points. One seed: the exact
    table test above. Several: the statistic of the points' seed means (`_between_classes`,
    which is the chi-square statistic for one seed), against literal permutations of the
    labels; `seeds` copies of one seed give that seed's statistic, not `seeds` times it.

    Raises:
        ValueError: as `class_homogeneity`, for a matrix of other than 2 dimensions.
    """
    flags = flag_array(flags, "flags", 2)
    if flags.shape[0] == 1:
        return class_homogeneity(flags[0], labels, num_classes, permutations, seed)
    class_homogeneity(flags[0], labels, num_classes, 1, seed)  # the same checks of labels and points
    check_positive(permutations, "permutations")
    labels = np.asarray(labels)
    sizes = np.bincount(labels, minlength=num_classes)
    present = sizes > 0
    onehot = (labels[:, None] == np.flatnonzero(present)[None, :]).astype(float)
    values = flags.mean(axis=0)
    observed = float(_between_classes(values, onehot, sizes[present]))
    rng = np.random.default_rng(seed)
    permuted = rng.permuted(np.tile(values, (permutations, 1)), axis=1)
    exceed = int(np.sum(_between_classes(permuted, onehot, sizes[present]) >= observed - 1e-12))
    return Homogeneity(observed, (1 + exceed) / (1 + permutations))
