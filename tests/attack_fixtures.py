"""A hand-made board with attack records (`leaderboard.attack_admission`), for the best-known,
attack-board, export and sentence tests: consistent defense records (`tests.fixtures_records`) and
attack records whose flags break chosen points (`tests.test_attack_records.write_attack`).

At eps 0.3 (the primary eps), beyond the protocol's worst case:
- pgd-at seed 0, the planted entry: `bpda` breaks 5 points, `eot-pgd` 1 of those 5 (5 in all:
  p = 0.5 ** 5 = 1/32, flagged);
- trades seed 0, an honest entry: `eot-pgd` breaks 2 points (p = 1/4, no flag) and
  `multi-targeted` breaks only points the protocol already broke (0 beyond);
- mart seeds 0 and 1: `bpda` breaks 3 points of seed 0 and 2 of seed 1 (5 pooled: flagged);
- standard seed 0: no attack record.
At eps 0.1 and 0.2 nothing is broken beyond the protocol except what is broken at 0.1.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from leaderboard.build import admitted_records
from leaderboard.evidence import worst_flags
from tests.fixtures_records import write_consistent
from tests.test_attack_records import robust_positions, write_attack

PROTOCOL = "mnist5k-cnn"
ENTRIES = {"pgd-at": (0,), "trades": (0,), "mart": (0, 1), "standard": (0,)}


def write_records(records: Path, entries: dict[str, tuple[int, ...]] = ENTRIES) -> dict[tuple[str, int], object]:
    """Consistent records of `entries` (defense -> seeds) under `<records>/mnist5k-cnn/`; returns
    their admitted forms by (defense, seed)."""
    for k, (defense, seeds) in enumerate(sorted(entries.items())):
        for seed in seeds:
            write_consistent(records / PROTOCOL, defense, seed, robust=0.8, flag_seed=10 * k + seed)
    return {(it.record["defense"]["id"], it.record["seed"]): it for it in admitted_records(records, PROTOCOL)}


def broken_already(entry, eps: str, count: int) -> list[int]:
    """`count` positions correct clean that the protocol's worst case already broke at `eps`."""
    clean = entry.flags.flags["clean"]
    return [int(i) for i in np.flatnonzero(clean & ~worst_flags(entry, eps))[:count]]


def write_attacked_board(root: Path) -> tuple[Path, Path, dict]:
    """The fixture board (module docstring) under `root`: returns (records folder, attack records
    folder, the admitted entries by (defense, seed))."""
    records, attacks = root / "records", root / "attack_records"
    entries = write_records(records)
    folder = attacks / PROTOCOL
    planted = entries[("pgd-at", 0)]
    five = robust_positions(planted, "0.3", 5)
    write_attack(folder, planted, "bpda", {"0.3": five})
    write_attack(folder, planted, "eot-pgd", {"0.3": five[:1]})
    honest = entries[("trades", 0)]
    write_attack(folder, honest, "eot-pgd",
                 {"0.3": robust_positions(honest, "0.3", 2) + broken_already(honest, "0.3", 3)})
    write_attack(folder, honest, "multi-targeted", {"0.2": broken_already(honest, "0.2", 4)})
    write_attack(folder, entries[("mart", 0)], "bpda", {"0.3": robust_positions(entries[("mart", 0)], "0.3", 3)})
    write_attack(folder, entries[("mart", 1)], "bpda", {"0.3": robust_positions(entries[("mart", 1)], "0.3", 2)})
    return records, attacks, entries
