"""The output folders of a command lie apart: none is another or lies inside another.

A boards folder inside its records folder puts the board files among the records (every later
build reads its own `<protocol>.json` as a record and fails); a records folder inside a runs
folder, or the other way round, mixes published records with the run folders' own.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Mapping

from benchmark.core.errors import AtbenchError


def check_apart(folders: Mapping[str, str | Path | None]) -> None:
    """Refuse, before any work, two of `folders` (option -> folder; None: not used) where one is
    the other or lies inside it (after resolving `..` and links).

    Raises:
        AtbenchError: naming both options and folders, and the fix.
    """
    given = {option: Path(folder) for option, folder in folders.items() if folder is not None}
    resolved = {option: folder.expanduser().resolve() for option, folder in given.items()}
    for a, b in itertools.combinations(given, 2):
        inner, outer = (a, b) if resolved[a].is_relative_to(resolved[b]) else (b, a)
        if resolved[inner].is_relative_to(resolved[outer]):
            where = "is the same folder as" if resolved[a] == resolved[b] else "lies inside"
            raise AtbenchError(f"{inner} {given[inner]} {where} {outer} {given[outer]}: the files of one would be "
                               "read as the other's",
                               f"give {inner} and {outer} folders apart from each other (the defaults are apart: "
                               "runs, leaderboard/records, leaderboard/boards, leaderboard/sweeps)")
