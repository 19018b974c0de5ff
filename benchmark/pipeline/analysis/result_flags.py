"""The sanity flags read from an evaluation's per-example flags (`benchmark.pipeline.analysis.sanity`
has the flag format and the probes of the model): Square breaking points the gradient-based
attacks missed, robust accuracy rising with eps, and a swept attack (Temperature-PGD) much
stronger than the attack it generalises (PGD). The counting flags are noted on any evidence and
fire only when it is beyond chance at the protocol's number of points (docs/sanity-flags.md).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from benchmark.pipeline.analysis.sanity import flag
from benchmark.pipeline.analysis.settings import SanitySettings
from leaderboard.derive import flag_key
from leaderboard.stats import binomial_excess


@dataclasses.dataclass(frozen=True)
class SweepPair:
    """A swept column group, its member columns and the column of the attack it generalises,
    with their titles (`Attack.title`), e.g. "tpgd" (Temperature-PGD) and "pgd" (PGD)."""

    group: str
    members: tuple[str, ...]
    group_title: str
    baseline: str
    baseline_title: str


def black_box(flags: dict[str, np.ndarray], eps_order: list[str], parts: list[tuple[str, str]],
              settings: SanitySettings) -> dict:
    """`square_beats_white_box`: at the eps where it is largest, the number of points that an
    attack's black-box parts (`parts`: (column, part), AutoAttack's Square) broke after its
    gradient-based parts failed. Noted for any such point; fired when the count exceeds a rate of
    `square_null_rate` (what a sound white-box ensemble still misses) beyond chance."""
    if not parts:
        return flag(0.0, settings.square_null_rate, "skipped: no attack with black-box parts ran")
    n = len(flags["clean"])
    counts = {eps: max(int(flags.get(f"{flag_key(c, eps)}/{p}", np.zeros(1, bool)).sum()) for c, p in parts)
              for eps in eps_order}
    eps = max(counts, key=counts.__getitem__)
    test = binomial_excess(counts[eps], n, settings.square_null_rate, settings.flag_alpha)
    label = " and ".join(sorted({p.capitalize() for _, p in parts}))
    verdict = "beyond chance" if test.significant else "within chance"
    detail = (f"{label} broke {counts[eps]} of {n} points the gradient attacks missed, at eps {eps} (binomial p = "
              f"{test.p_value:.2g} against a rate of {settings.square_null_rate:g}: {verdict})")
    return flag(counts[eps] / n if n else 0.0, settings.square_null_rate, detail, noted=counts[eps] > 0,
                fired=test.significant, p_value=test.p_value)


def rises(robust_acc: dict[str, dict[str, float]], worst_case: dict[str, float], eps_order: list[str]) -> dict:
    """`accuracy_rises_with_eps`: the largest rise of any attack's (or the worst case's) robust
    accuracy from one eps to the next. The evaluation attacks survivors only, so a rise cannot
    come from chance: any rise fires."""
    best, where = 0.0, ""
    for name, series in [*robust_acc.items(), ("worst case", worst_case)]:
        present = [e for e in eps_order if e in series]
        for small, big in zip(present, present[1:]):
            rise = series[big] - series[small]
            if rise > best:
                best, where = rise, f"{name} rises by {rise:.3f} from eps {small} to eps {big}"
    return flag(best, 0.0, where or "robust accuracy never rises with eps")


def sweep_gap(flags: dict[str, np.ndarray], eps_order: list[str], sweeps: list[SweepPair],
              settings: SanitySettings) -> dict:
    """`tpgd_much_stronger_than_pgd`: at the eps of the largest gap, the points robust under the
    baseline attack's column (PGD) but broken by the swept group (any temperature), and the
    reverse. Noted when the group breaks more; fired when the gap exceeds `tpgd_threshold` and an
    exact one-sided McNemar test on those discordant points says it is beyond chance."""
    rows = []
    for pair in sweeps:
        for eps in eps_order:
            base = flags[flag_key(pair.baseline, eps)]
            group = np.logical_and.reduce([flags[flag_key(m, eps)] for m in pair.members])
            only_group_breaks, only_base_breaks = int((base & ~group).sum()), int((group & ~base).sum())
            rows.append(((only_group_breaks - only_base_breaks) / len(base), eps, pair, only_group_breaks,
                         only_base_breaks))
    if not rows:
        return flag(0.0, settings.tpgd_threshold, "skipped: the protocol sweeps no attack beside its baseline's column")
    gap, eps, pair, b, c = max(rows, key=lambda r: r[0])
    test = binomial_excess(b, b + c, 0.5, settings.flag_alpha)
    detail = (f"{pair.baseline_title}'s robust accuracy exceeds {pair.group_title}'s by {gap:.3f} at eps {eps} "
              f"({b} points only {pair.group_title} breaks, {c} only {pair.baseline_title}; McNemar p = "
              f"{test.p_value:.2g})")
    return flag(gap, settings.tpgd_threshold, detail, noted=gap > 0, fired=gap > settings.tpgd_threshold
                and test.significant, p_value=test.p_value)


def result_flags(flags: dict[str, np.ndarray], robust_acc: dict[str, dict[str, float]], worst_case: dict[str, float],
                 eps_order: list[str], black_box_parts: list[tuple[str, str]], sweeps: list[SweepPair],
                 settings: SanitySettings) -> dict[str, dict]:
    """The flags read from the evaluation: `square_beats_white_box`, `accuracy_rises_with_eps`
    and `tpgd_much_stronger_than_pgd` (see each function).

    Args:
        flags: the per-example flags ("clean", "<column>@<eps>" and the attacks' breakdowns).
        robust_acc, worst_case: the accuracies derived from them.
        eps_order: the protocol's eps strings in increasing order.
        black_box_parts: (column, part) of every black-box part of the protocol's attacks.
        sweeps: the swept column groups beside the column of the attack each generalises.
        settings: the protocol's thresholds.
    """
    return {
        "square_beats_white_box": black_box(flags, eps_order, black_box_parts, settings),
        "accuracy_rises_with_eps": rises(robust_acc, worst_case, eps_order),
        "tpgd_much_stronger_than_pgd": sweep_gap(flags, eps_order, sweeps, settings),
    }
