"""The protocol's [analysis] table, typed: everything the evaluation computes beyond the attack
columns (randomized defenses, the certified table, margins, sanity thresholds).

The values live in the protocol files (`benchmark/protocols/suites/analysis.toml`, included by
every protocol); these classes only say which settings exist, their types and allowed ranges.
"""
from __future__ import annotations

import dataclasses

from benchmark.core.settings import SEED_MAX, bounded


@dataclasses.dataclass(frozen=True)
class CertifiedSettings:
    """L2-PGD of the certified table (robust accuracy beside each certified radius)."""

    pgd_steps: int = bounded(lo=1, hi=10_000, doc="L2-PGD steps at each certified radius")
    pgd_step_ratio: float = bounded(lo=0, hi=10, open_lo=True, doc="its step size as a fraction of the radius")
    pgd_seed: int = bounded(lo=0, hi=SEED_MAX, doc="its random-start seed")


@dataclasses.dataclass(frozen=True)
class MarginSettings:
    """Logit-margin histograms and the input-margin bisection."""

    logit_low: float = bounded(lo=-1e6, hi=0, doc="lowest histogram edge (outliers go to the end bins)")
    logit_high: float = bounded(lo=0, hi=1e6, open_lo=True, doc="highest histogram edge")
    logit_bins: int = bounded(lo=1, hi=10_000, doc="histogram bins")
    adversarial_steps: int = bounded(lo=1, hi=10_000, doc="steps of the full-budget margin-loss PGD (no early stop) "
                                                          "whose final iterates give the adversarial logit margins")
    adversarial_step_ratio: float = bounded(lo=0, hi=10, open_lo=True, doc="their step size as a fraction of eps")
    adversarial_seed: int = bounded(lo=0, hi=SEED_MAX, doc="their random-start seed")
    fab_iterations: int = bounded(lo=1, hi=10_000,
                                  doc="iterations of FAB, the minimum-norm attack of the input margins")
    fab_seed: int = bounded(lo=0, hi=SEED_MAX, doc="FAB's seed")
    input_steps: int = bounded(lo=1, hi=10_000, doc="CE-PGD steps per round of the bisection (the cross-check of FAB)")
    input_step_ratio: float = bounded(lo=0, hi=10, open_lo=True, doc="their step size as a fraction of eps")
    input_bisections: int = bounded(lo=0, hi=64, doc="bisection rounds after the check at the search limit")
    input_seed: int = bounded(lo=0, hi=SEED_MAX, doc="random-start seed of the bisection's PGD")
    search_factor: float = bounded(lo=1, hi=100, doc="search limit = this x the largest eps (Linf: at most 1)")


@dataclasses.dataclass(frozen=True)
class SanitySettings:
    """What the sanity flags measure and when they fire (leaderboard/flags.py)."""

    probe_points: int = bounded(lo=1, hi=100_000, doc="test points the model probes use (the first ones)")
    probe_passes: int = bounded(lo=2, hi=1_000, doc="eval-mode forward passes compared for stochastic_outputs")
    stochastic_threshold: float = bounded(lo=0, hi=1e6, doc="stochastic_outputs fires above this logit spread")
    range_tolerance: float = bounded(lo=0, hi=1, doc="probability_outputs: slack of the [0, 1] range")
    probability_tolerance: float = bounded(lo=0, hi=1, doc="probability_outputs: slack of the row sums")
    flag_alpha: float = bounded(lo=0, hi=1, open_lo=True, doc="significance level of the counting flags' one-sided "
                                                              "exact tests")
    square_null_rate: float = bounded(lo=0, hi=1, open_lo=True, doc="square_beats_white_box: the rate of points a "
                                                                    "sound white-box ensemble may still miss")
    tpgd_threshold: float = bounded(lo=0, hi=1, doc="tpgd_much_stronger_than_pgd: the smallest accuracy gap that can "
                                                    "fire")
    large_eps_linf: float = bounded(lo=0, hi=1, open_lo=True, doc="not_chance_at_large_eps: the Linf eps "
                                                                  "(L2: this x sqrt(d))")
    chance_margin: float = bounded(lo=0, hi=1, doc="not_chance_at_large_eps: accuracy beyond 1 / classes + this")
    large_eps_pgd_steps: int = bounded(lo=1, hi=10_000, doc="PGD steps at the large eps")
    large_eps_pgd_step_ratio: float = bounded(lo=0, hi=10, open_lo=True, doc="their step size / eps")
    large_eps_pgd_seed: int = bounded(lo=0, hi=SEED_MAX, doc="their random-start seed")


@dataclasses.dataclass(frozen=True)
class AnalysisSettings:
    """The protocol's [analysis] table."""

    votes: int = bounded(lo=1, hi=1_001, doc="forward passes whose majority decides a randomized defense's "
                                             "prediction")
    eot_samples: int = bounded(lo=1, hi=10_000, doc="gradient samples of an attack's randomized variant "
                                                    "(AutoAttack rand: APGD's EOT)")
    certified: CertifiedSettings = bounded(doc="the certified table")
    margins: MarginSettings = bounded(doc="margin statistics")
    sanity: SanitySettings = bounded(doc="sanity flags")
