"""The best-known worst case of a board entry: per point, the worst over the protocol's attacks and
every admitted submitted attack (`leaderboard.attack_admission`), beside the protocol's own worst
case, with a paired test of whether the protocol overstates the entry. Numpy on admitted records
only; the ranking stays the protocol's.

At eps, a point is robust under best known when it is robust under the protocol's worst case
(correct clean and robust under every attack column) and no admitted attack record of the entry
broke it. Best known can only lose points, so the paired comparison's discordant points all lie
one way: b points robust under the protocol and broken by a submitted attack, none the other way.
The one-sided exact McNemar test of "best known is below the protocol's worst case" is then
P(X >= b) for X ~ Binomial(b, 1/2) = 0.5 ** b (`leaderboard.stats.binomial_excess`); when it is
below the board's level (`leaderboard.evidence.ALPHA`) the entry carries `OVERSTATED`.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from benchmark.core.errors import AtbenchError
from leaderboard import stats
from leaderboard.attack_admission import AdmittedAttack
from leaderboard.evidence import ALPHA, Admitted, worst_flags

OVERSTATED = "the protocol's attacks overstate this entry"


@dataclasses.dataclass(frozen=True)
class BestKnown:
    """An entry's best-known worst case at one eps.

    Attributes:
        eps: the eps.
        protocol_acc: the protocol's worst-case robust accuracy.
        best_known_acc: the best-known robust accuracy (at most `protocol_acc`).
        broken_beyond: test-set index (the flags file's `indices`) of every point the protocol
            left robust and a submitted attack broke -> the names of the attacks that broke it.
        p_value: the one-sided exact McNemar p-value of best known < protocol (1.0 when no point
            is broken beyond the protocol).
        flag: `OVERSTATED` when `p_value` < alpha, else None.
    """

    eps: str
    protocol_acc: float
    best_known_acc: float
    broken_beyond: dict[int, tuple[str, ...]]
    p_value: float
    flag: str | None


def _check_same_entry(entry: Admitted, attacks: Sequence[AdmittedAttack]) -> None:
    record = entry.record
    for attack in attacks:
        named = attack.record["entry"]
        if (named["defense"], named["seed"]) != (record["defense"]["id"], record["seed"]):
            raise AtbenchError(f"{attack.path} attacked {named['defense']} seed {named['seed']}, not "
                               f"{record['defense']['id']} seed {record['seed']}",
                               "pass each entry only its own admitted attack records")


def best_known(entry: Admitted, attacks: Sequence[AdmittedAttack], alpha: float = ALPHA) -> dict[str, BestKnown]:
    """Per eps of the entry's protocol, its best-known worst case against the protocol's.

    Args:
        entry: the entry's admitted record (one defense or external model, one seed).
        attacks: the admitted attack records of that entry (any number, none included).
        alpha: the level of the paired test.

    Raises:
        AtbenchError: an attack record of another entry.
    """
    _check_same_entry(entry, attacks)
    out = {}
    for eps in entry.record["protocol"]["eps"]:
        protocol = worst_flags(entry, eps)
        broke = {a.attack: protocol & ~a.robust(eps) for a in attacks}
        best = protocol & ~np.logical_or.reduce([*broke.values(), np.zeros_like(protocol)])
        beyond = {int(entry.flags.indices[i]): tuple(sorted(name for name, b in broke.items() if b[i]))
                  for i in np.flatnonzero(protocol & ~best)}
        only_protocol, only_best = int((protocol & ~best).sum()), int((best & ~protocol).sum())
        test = stats.binomial_excess(only_protocol, only_protocol + only_best, 0.5, alpha)
        out[eps] = BestKnown(eps, float(protocol.mean()), float(best.mean()), beyond, test.p_value,
                             OVERSTATED if test.significant else None)
    return out
