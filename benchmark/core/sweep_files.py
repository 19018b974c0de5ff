"""Reading a committed sweep record (`atbench tune`'s `leaderboard/sweeps/<track>/<defense>.json`):
the one reader that the tracks (their settings) and the boards (the tuning counts) share."""
from __future__ import annotations

import json
from pathlib import Path

from benchmark.core.errors import AtbenchError


def sweep_path(track: str, defense: str, root: Path) -> Path:
    """Where the sweep record of `defense` on `track` lives under `root`."""
    return root / track / f"{defense}.json"


def read_sweep(path: Path) -> dict:
    """A sweep record, checked for the fields its readers use (`winner`, `settings`).

    Raises:
        AtbenchError: the file is not a readable sweep record.
    """
    try:
        record = json.loads(path.read_text())
        winner = record["winner"]
        if not isinstance(winner, dict) or not isinstance(record["settings"], list):
            raise TypeError("winner must be an object and settings a list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AtbenchError(f"sweep record {path} is not readable: {exc}",
                           "restore it from git, or re-run `atbench tune` for that track and defense") from exc
    return record
