"""Committed sweep records (`atbench tune`): where a track's per-defense hyperparameters come
from. `leaderboard/sweeps/<track>/<defense>.json` of the installed package holds every setting of the defense's declared
search space, its validation score under the selection rule and the winner; the track's
`defense_configs` are the winners (`sweep_winners`), so a defense's setting on a board always
links to the sweep that chose it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmark.core.sweep_files import read_sweep, sweep_path
from benchmark.core.workspace import shipped_sweeps

#: The sweeps that ship with atbench (read-only); `atbench tune` writes to `--sweeps-dir`
#: (default `leaderboard/sweeps` under the current folder, `benchmark.core.workspace`).
SWEEPS_DIR = shipped_sweeps()
#: Per track, per defense, the sweep its setting came from ("<track>/<defense>"), filled as the
#: tracks read their winners.
SOURCES: dict[str, dict[str, str]] = {}


def sweep_winners(track: str, borrowed: dict[str, str] | None = None, root: Path = SWEEPS_DIR) -> dict[str, Any]:
    """Per defense, the winning setting of its committed sweep on `track` (or, for the
    defenses in `borrowed`, on the track named there: a defense whose training ignores the
    threat model is tuned once and keeps that setting on every track of the recipe)."""
    sources = {p.stem: p for p in sorted((root / track).glob("*.json"))}
    for defense, other in (borrowed or {}).items():
        sources[defense] = sweep_path(other, defense, root)
    found = {defense: path for defense, path in sorted(sources.items()) if path.is_file()}
    SOURCES[track] = {defense: f"{path.parent.name}/{defense}" for defense, path in found.items()}
    return {defense: read_sweep(path)["winner"] for defense, path in found.items()}


def sweep_source(track: str, defense: str) -> str | None:
    """The sweep ("<track>/<defense>") whose winner the track sets for the defense, if any."""
    return SOURCES.get(track, {}).get(defense)
