"""Where atbench reads and writes: one rule for every command.

Every command writes under the folder it is run from (the workspace), never into the installed
package: runs, published records, boards, sweeps and attack records each have one default root
there, and each command's `--runs-dir`, `--records-dir`, `--boards-dir`, `--sweeps-dir`,
`--attack-records-dir` or `--data-dir` replaces it. Data sets are read from `$ATBENCH_DATA_DIR` when it is set. Inside an atbench
checkout the workspace defaults are the checkout's committed folders, so the main job rewrites
the committed records and boards.

The records that ship with atbench (the official entries of every board) are read-only package
data (`official_records`); `--with-official` admits them beside the workspace's own. The official
entries' checkpoints ship beside them (`official_checkpoints`), so a submitted attack can run
against every official entry without training it again.
"""
from __future__ import annotations

from pathlib import Path

#: Default folder of each kind of output, relative to the current folder.
DEFAULTS = {
    "runs": "runs",
    "records": "leaderboard/records",
    "boards": "leaderboard/boards",
    "sweeps": "leaderboard/sweeps",
    "attack_records": "leaderboard/attack_records",
    "data": "data",
}


def default(kind: str) -> str:
    """The default folder of `kind` ("runs", "records", "boards", "sweeps", "attack_records",
    "data"), relative to the current folder."""
    return DEFAULTS[kind]


def package_root() -> Path:
    """The folder atbench's packages are installed in (the checkout, for an editable install)."""
    return Path(__file__).resolve().parents[2]


def installed_tree() -> Path | None:
    """The folder atbench is installed in when it runs as an installed package, None when it runs
    from a checkout (an editable install or `python -m benchmark` there): a checkout has its
    `pyproject.toml` beside the packages, an installed wheel has none."""
    root = package_root()
    return None if (root / "pyproject.toml").is_file() else root


def inside_installed_tree(folder: str | Path) -> bool:
    """Whether `folder` lies inside the installed package's folder (`installed_tree`): read there,
    never write, whoever owns the files."""
    tree = installed_tree()
    return tree is not None and Path(folder).resolve().is_relative_to(tree)


def official_records() -> Path:
    """The records that ship with atbench: `leaderboard/records/<protocol>/` of the installed
    package (read-only)."""
    return package_root() / "leaderboard" / "records"


def official_checkpoints() -> Path:
    """The checkpoints of the official entries that ship with atbench:
    `leaderboard/checkpoints/<protocol>/<defense>-seed<k>.pt` of the installed package
    (read-only; each has its record's `provenance.checkpoint_sha256`)."""
    return package_root() / "leaderboard" / "checkpoints"


def shipped_sweeps() -> Path:
    """The sweeps that ship with atbench, whose winners the tracks' settings are (read-only)."""
    return package_root() / "leaderboard" / "sweeps"
