"""Input margins consistent with the protocol's attacks.

A record's per-point input margin (FAB's smallest perturbation, `input_margin` in its flags file)
is a search result: on a model whose gradients vanish, the search may fail and report its cap,
although an attack of the protocol broke the point at a smaller eps. An adversarial example at
that eps exists, so the point's true margin is at most that eps. The board reports, per point,
the smaller of the two, and counts the points where the attacks corrected the search.
"""
from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np

from leaderboard.evidence import Admitted, worst_flags


@dataclasses.dataclass(frozen=True)
class ConsistentMargins:
    """Per point: the input margin bounded by the attacks (`margins`), and `corrected`, the points
    whose searched margin was above the smallest eps at which an attack of the protocol broke
    them (the search failed there; their margin is that eps)."""

    margins: np.ndarray
    corrected: np.ndarray


def smallest_breaking_eps(item: Admitted, eps: list[str]) -> np.ndarray:
    """Per point, the smallest protocol eps at which the point is not robust in the worst case
    (some attack column broke it), or +inf where it survives every eps. Misclassified points are
    broken at every eps; their margin is 0 anyway."""
    found = np.full(len(item.flags.labels), np.inf)
    for e in sorted(eps, key=Fraction, reverse=True):
        found[~worst_flags(item, e)] = float(Fraction(e))
    return found


def consistent_margins(item: Admitted, eps: list[str]) -> ConsistentMargins:
    """The record's FAB input margins, each at most the smallest eps at which an attack of the
    protocol broke the point (`smallest_breaking_eps`)."""
    searched = np.asarray(item.flags.values["input_margin"], dtype=float)
    bound = smallest_breaking_eps(item, eps)
    return ConsistentMargins(margins=np.minimum(searched, bound), corrected=searched > bound)
