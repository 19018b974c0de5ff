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

`best_known` gives one record (one seed); `entry_best_known` gives a board entry's `best_known`
block (its seeds pooled), which `leaderboard.build` puts beside the entry's worst case.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from benchmark.core.errors import AtbenchError
from leaderboard import stats
from leaderboard.attack_admission import AdmittedAttack
from leaderboard.evidence import ALPHA, Admitted, worst_flags
from leaderboard.formats import DIGITS

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


def _mean(values: list[float]) -> float:
    """The board's mean over seeds (order-free, rounded to the board's digits)."""
    return round(math.fsum(values) / len(values), DIGITS)


def _seed_of(attack: AdmittedAttack) -> int:
    return attack.record["entry"]["seed"]


def entry_best_known(items: Sequence[Admitted], attacks: Sequence[AdmittedAttack],
                     alpha: float = ALPHA) -> dict[str, dict] | None:
    """The board's `best_known` block of one entry: per eps of its protocol, its best-known worst
    case beside the protocol's, from the admitted attack records of its seeds; None when no
    submitted attack was run against any of its seeds.

    Per eps: `best_known` and `protocol` (the mean over the entry's seeds, as every board number;
    a seed no attack record names keeps the protocol's worst case), `attacks` (seed -> the
    submitted attacks run against it), `best_known_attacks` (seed -> every point the protocol
    left robust and a submitted attack broke: its test index and the attacks' names, by index),
    `points_beyond` (those points, summed over the seeds), `p_value` and `flag` (`OVERSTATED`
    when `p_value` < alpha, else None).

    The paired test pools the seeds by concatenating their points (as the board's exact McNemar
    tests do for one seed): a (seed, point) pair is one paired observation, so b = the points
    broken beyond the protocol summed over the seeds, and p = 0.5 ** b (`best_known` per seed).
    Seeds are not bootstrapped here: best known only loses points, and a point broken by an
    adversarial example is broken whatever the seed's spread.

    Args:
        items: the entry's admitted records, one per seed.
        attacks: the admitted attack records of those seeds (any number).
        alpha: the level of the paired test.

    Raises:
        AtbenchError: an attack record of another entry or of a seed not among `items`.
    """
    if not attacks:
        return None
    items = sorted(items, key=lambda it: it.record["seed"])
    seeds = {it.record["seed"]: it for it in items}
    for attack in attacks:
        _check_same_entry(seeds.get(_seed_of(attack), items[0]), [attack])
    attacked = sorted({_seed_of(a) for a in attacks})
    per_seed = {seed: best_known(item, [a for a in attacks if _seed_of(a) == seed], alpha)
                for seed, item in seeds.items()}
    out = {}
    for eps in items[0].record["protocol"]["eps"]:
        beyond = {str(seed): [{"index": index, "attacks": list(names)}
                              for index, names in sorted(per_seed[seed][eps].broken_beyond.items())]
                  for seed in attacked}
        points = sum(len(v) for v in beyond.values())
        test = stats.binomial_excess(points, points, 0.5, alpha)
        out[eps] = {
            "best_known": _mean([r[eps].best_known_acc for r in per_seed.values()]),
            "protocol": _mean([r[eps].protocol_acc for r in per_seed.values()]),
            "attacks": {str(seed): sorted({a.attack for a in attacks if _seed_of(a) == seed}) for seed in attacked},
            "best_known_attacks": beyond,
            "points_beyond": points,
            "p_value": float(f"{test.p_value:.6g}"),
            "flag": OVERSTATED if test.significant else None,
        }
    return out
