"""Class-wise statistics of the leaderboard: whether robustness is the same for every class
(a permutation test on the class x robust table). Input checks come from
`leaderboard.stats`."""
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
        per_class: accuracy of each class (0.0 for a class without points).
    """

    statistic: float
    p_value: float
    per_class: list[float]



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
        The statistic, the p-value (1 + #{permuted statistic >= observed - 1e-12}) / (1 + permutations)
        and the per-class accuracies (0.0 for a class without points).

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
    per_class = [float(r / s) if s else 0.0 for r, s in zip(robust, sizes)]
    present = sizes > 0
    total_robust = int(flags.sum())
    observed = float(_chi_square(robust[present], sizes[present], total_robust))
    rng = np.random.default_rng(seed)
    permuted = rng.multivariate_hypergeometric(sizes[present], total_robust, size=permutations)
    exceed = int(np.sum(_chi_square(permuted, sizes[present], total_robust) >= observed - 1e-12))
    return Homogeneity(observed, (1 + exceed) / (1 + permutations), per_class)
