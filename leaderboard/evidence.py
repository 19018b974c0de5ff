"""The evidence behind every number on a board, from the records' per-example flags: a 95%
interval on every accuracy, the seed spread, paired comparisons of every pair of defenses with
tied ranks, the class-disparity test and where the strongest attack gains over PGD.

One seed: Wilson intervals over the test points, exact McNemar tests on the paired worst-case
flags. Several seeds: a two-level bootstrap (seeds, then points) and a paired bootstrap, with a
fixed seed. p-values of the comparisons are Holm-corrected over all pairs. docs/statistics.md
says why.
"""
from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from benchmark.core.errors import AtbenchError
from leaderboard import class_stats, stats
from leaderboard.admission import FlagsFile
from leaderboard.derive import flag_key

#: The significance level of every test on a board.
ALPHA = 0.05
#: Bootstrap replicates and seed (several training seeds). The p-values of the pairwise
#: bootstrap comparisons use `pair_replicates`: more with more pairs, so that the smallest
#: attainable p-value survives the Holm correction.
REPLICATES, BOOTSTRAP_SEED = 2000, 0
#: The share of the classes (the weakest ones under PGD) the attack-gain concentration looks at:
#: 3 of 10 classes.
WEAKEST_SHARE = 0.3


@dataclasses.dataclass(frozen=True)
class Admitted:
    """A record admitted to a board (`leaderboard.admission.admit`) and its flags."""

    record: dict
    flags: FlagsFile


def check_same_points(admitted: list[Admitted]) -> None:
    """Records of one protocol must share their test points (indices and labels).

    Raises:
        AtbenchError: naming a record whose points differ from the first one's.
    """
    first = admitted[0]
    for item in admitted[1:]:
        if not (np.array_equal(item.flags.indices, first.flags.indices)
                and np.array_equal(item.flags.labels, first.flags.labels)):
            r, f = item.record, first.record
            raise AtbenchError(f"{r['defense']['id']} seed {r['seed']} was evaluated on other test points than "
                               f"{f['defense']['id']} seed {f['seed']} under protocol {r['protocol']['id']}: paired "
                               "comparisons need the same points", "re-run both under the protocol as shipped")


def worst_flags(item: Admitted, eps: str) -> np.ndarray:
    """Per point: correct clean and robust under every attack column at `eps`."""
    columns = [flag_key(c, eps) for c in item.record["attacks"]]
    return np.logical_and.reduce([item.flags.flags["clean"]] + [item.flags.flags[c] for c in columns])


def column_flags(item: Admitted, column: str, eps: str) -> np.ndarray:
    """Per point, robust under an attack column or (a group) under every member at `eps`."""
    members = item.record["attack_groups"].get(column, [column])
    return np.logical_and.reduce([item.flags.flags[flag_key(m, eps)] for m in members])


def pair_replicates(pairs: int) -> int:
    """Bootstrap replicates for the p-values of `pairs` comparisons: at least `REPLICATES`, and
    enough that the smallest bootstrap p-value, 2 / (1 + replicates), is a tenth of ALPHA after
    Holm multiplies it by the number of pairs."""
    return max(REPLICATES, math.ceil(20 * pairs / ALPHA))


def interval(matrix: np.ndarray, level: float = 0.95) -> list[float]:
    """The `level` interval of the mean of a (seeds, points) flag matrix, widened outwards to 4
    decimals: Wilson for one seed; for several, the two-level bootstrap widened to at least the Wilson
    interval of one seed's worth of points at the mean (a percentile bootstrap cannot see
    variance it never draws: flags all equal would give it zero width)."""
    points = matrix.shape[1]
    low, high = stats.wilson_interval(int(round(matrix.mean() * points)), points, level)
    if matrix.shape[0] > 1:
        boot_low, boot_high = stats.two_level_bootstrap(matrix, REPLICATES, BOOTSTRAP_SEED, level)
        low, high = min(low, boot_low), max(high, boot_high)
    return [math.floor(low * 1e4 + 1e-9) / 1e4, math.ceil(high * 1e4 - 1e-9) / 1e4]


def worst_class_interval(matrix: np.ndarray, labels: np.ndarray, num_classes: int) -> list[float]:
    """A 95% interval of the lowest class accuracy of a (seeds, points) flag matrix, simultaneous
    over the classes: each class with points gets its interval at level 1 - ALPHA / K (Bonferroni,
    K classes), so with 95% confidence every class accuracy lies in its interval at once, and
    the lowest class accuracy lies between the lowest lower bound and the lowest upper bound.
    (The lowest of K estimates is biased low; this interval covers the true lowest accuracy.)"""
    present = [k for k in range(num_classes) if (labels == k).any()]
    bounds = [interval(matrix[:, labels == k], 1 - ALPHA / len(present)) for k in present]
    return [min(b[0] for b in bounds), min(b[1] for b in bounds)]


def tied_worst_classes(class_means: np.ndarray) -> list[int]:
    """Every class at the lowest accuracy (NaN classes, without points, left out), in index order."""
    lowest = np.nanmin(class_means)
    return [int(k) for k in np.flatnonzero(np.isclose(class_means, lowest, rtol=0.0, atol=1e-12))]


def _sig(p: float) -> float:
    """A p-value to 6 significant digits (so small ones keep their size in the JSON)."""
    return float(f"{p:.6g}")


def _sd(values: list[float]) -> float:
    return round(stats.seed_summary(values)[1], 4)


def seed_class_means(matrix: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per class, the mean of a (seeds, points) flag matrix over the class's points and the
    seeds; NaN for a class without points."""
    return np.array([matrix[:, labels == k].mean() if (labels == k).any() else np.nan for k in range(num_classes)])


def entry_evidence(items: list[Admitted], eps: list[str], primary: str, attacks: list[str],
                   num_classes: int) -> dict:
    """One defense's intervals, seed spread, worst class (among the classes with points),
    class-disparity test (at the primary eps) and attack gain."""
    labels = items[0].flags.labels
    stack = lambda fn: np.stack([fn(item) for item in items])
    worst = {e: stack(lambda it, e=e: worst_flags(it, e)) for e in eps}
    worst_classes = {e: tied_worst_classes(seed_class_means(worst[e], labels, num_classes)) for e in eps}
    return {
        "intervals": {
            "clean_acc": interval(stack(lambda it: it.flags.flags["clean"])),
            "robust_acc": {a: {e: interval(stack(lambda it, a=a, e=e: column_flags(it, a, e))) for e in eps}
                           for a in attacks},
            "worst_case": {e: interval(worst[e]) for e in eps},
            "worst_class_robust_acc": {e: worst_class_interval(worst[e], labels, num_classes) for e in eps},
        },
        "seed_sd": {"clean_acc": _sd([float(it.flags.flags["clean"].mean()) for it in items]),
                    "worst_case": {e: _sd(list(worst[e].mean(axis=1))) for e in eps}},
        "worst_class": {e: classes[0] for e, classes in worst_classes.items()},
        "worst_classes": worst_classes,
        "class_disparity": disparity(worst[primary], labels, num_classes),
    }


def disparity(worst: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    """Is the worst-case robustness the same for every class? A permutation test of the
    class x robust table (`class_stats.seed_pooled_homogeneity`: several seeds as the points'
    seed means, not as more points)."""
    test = class_stats.seed_pooled_homogeneity(worst, labels, num_classes, permutations=REPLICATES,
                                               seed=BOOTSTRAP_SEED)
    return {"statistic": round(test.statistic, 4), "p_value": _sig(test.p_value), "real": test.p_value < ALPHA}


def attack_gain(items: list[Admitted], primary: str, baseline: str, attacks: list[str], num_classes: int) -> dict:
    """Where the strongest attack at the primary eps (the lowest robust accuracy, the baseline
    `pgd` excluded) gains over the baseline: the points robust under the baseline that it breaks,
    per class, and whether they fall on the baseline's weakest classes (`WEAKEST_SHARE` of them)
    beyond those classes' share of baseline-robust points (a one-sided binomial test). With
    several seeds a point counts by its seed mean (counts rounded), so the seeds do not multiply
    the points."""
    labels = items[0].flags.labels
    others = [a for a in attacks if a != baseline]
    if baseline not in attacks or not others:
        return {"attack": None}
    base = np.stack([column_flags(it, baseline, primary) for it in items])
    strongest = min(others, key=lambda a: (np.mean([column_flags(it, a, primary).mean() for it in items]), a))
    strong = np.stack([column_flags(it, strongest, primary) for it in items])
    gained, base_mean = (base & ~strong).mean(axis=0), base.mean(axis=0)
    gain = np.array([round(gained[labels == k].sum()) for k in range(num_classes)], dtype=float)
    base_acc = seed_class_means(base, labels, num_classes)
    present = [k for k in range(num_classes) if (labels == k).any()]
    weakest = sorted(present, key=lambda k: (base_acc[k], k))[:max(1, round(WEAKEST_SHARE * len(present)))]
    robust_in_weak = sum(base_mean[labels == k].sum() for k in weakest)
    expected = robust_in_weak / max(1.0, base_mean.sum())
    on_weak = int(sum(gain[k] for k in weakest))
    test = stats.binomial_excess(on_weak, int(gain.sum()), min(1.0, max(expected, 1e-9)), ALPHA)
    return {"attack": strongest, "points": int(gain.sum()), "per_class": [int(g) for g in gain],
            "weakest_classes": weakest, "share_on_weakest": round(on_weak / gain.sum(), 4) if gain.sum() else 0.0,
            "expected_share": round(expected, 4), "p_value": _sig(test.p_value),
            "concentrated": test.significant}


def _paired(a: list[Admitted], b: list[Admitted], flags_of, replicates: int) -> tuple[stats.PairedBootstrap, float]:
    """The paired bootstrap of two defenses' flags `flags_of(item)` and the comparison's raw
    p-value (exact McNemar for one seed each, the bootstrap's otherwise)."""
    ma, mb = np.stack([flags_of(it) for it in a]), np.stack([flags_of(it) for it in b])
    one_seed = len(a) == len(b) == 1
    boot = stats.paired_bootstrap(ma, mb, REPLICATES if one_seed else replicates, BOOTSTRAP_SEED)
    return boot, stats.mcnemar_exact(ma[0], mb[0]).p_value if one_seed else boot.p_value


def compare(a: list[Admitted], b: list[Admitted], flags_of) -> dict:
    """The paired comparison of two defenses on flags `flags_of(item)`: the effect
    mean(a) - mean(b), its 95% interval (paired bootstrap) and the p-value (exact McNemar for one
    seed each, the paired bootstrap's otherwise)."""
    boot, p = _paired(a, b, flags_of, REPLICATES)
    return {"effect": round(boot.effect, 4), "low": round(boot.low, 4), "high": round(boot.high, 4),
            "p_value": _sig(p)}


def significance(groups: dict[str, list[Admitted]], order: list[str], primary: str) -> list[dict]:
    """Every pair of defenses (in board order) compared on the worst-case flags at the primary
    eps, Holm-corrected over all pairs (on the unrounded p-values); `significant` when the
    adjusted p is below ALPHA."""
    pairs = list(itertools.combinations(order, 2))
    replicates = pair_replicates(len(pairs))
    tests = [_paired(groups[x], groups[y], lambda it: worst_flags(it, primary), replicates) for x, y in pairs]
    rows = []
    for (x, y), (boot, p), adjusted in zip(pairs, tests, stats.holm([p for _, p in tests])):
        rows.append({"a": x, "b": y, "effect": round(boot.effect, 4), "low": round(boot.low, 4),
                     "high": round(boot.high, 4), "p_value": _sig(p), "p_adjusted": _sig(adjusted),
                     "significant": adjusted < ALPHA})
    return rows


def tied_ranks(order: list[str], scores: list[float], pairs: list[dict]) -> dict[str, int]:
    """Rank = 1 + the number of defenses significantly better (`stats.rank_with_ties`; ties
    share a rank). `scores` are the defenses' worst-case accuracies in `order`."""
    significant = {frozenset((r["a"], r["b"])) for r in pairs if r["significant"]}
    ranks = stats.rank_with_ties(scores, lambda j, i: frozenset((order[j], order[i])) in significant)
    return dict(zip(order, ranks))
