"""Ship the official entries' checkpoints beside their records (maintainers, after publishing).

For every record of a trained defense under `<records-dir>/<protocol>/`, the run of RUNS_DIR whose
`train.json` names a checkpoint with the record's `provenance.checkpoint_sha256` is copied,
atomically, to `<checkpoints-dir>/<protocol>/<defense>-seed<k>.pt`, where `atbench attack` finds
it (`benchmark.core.workspace.official_checkpoints`); a checkpoint there of no record is removed.
External models' records are skipped (their code is not atbench's). A record whose checkpoint is
in no run of RUNS_DIR, nor already shipped, is an error, and nothing is written.

    python tools/official_checkpoints.py RUNS_DIR --protocol mnist5k-cnn \
        [--records-dir leaderboard/records] [--checkpoints-dir leaderboard/checkpoints]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmark.core.io import atomic_write_bytes
from benchmark.pipeline.attack_targets import shipped_checkpoint, trained_checkpoint, verified_shipped_checkpoint
from leaderboard.records import find_records


def _source(record: dict, runs_dir: Path, checkpoints_dir: Path) -> Path:
    """The file holding the record's checkpoint: its run in `runs_dir`, else the one already shipped."""
    found = trained_checkpoint(runs_dir, record) or verified_shipped_checkpoint(checkpoints_dir, record)
    if found is None:
        raise SystemExit(f"{record['defense']['id']} seed {record['seed']}: no run in {runs_dir} with, and no "
                         f"shipped, checkpoint of sha256 {record['provenance']['checkpoint_sha256'][:12]}...; pass "
                         "the runs folder its record was made from")
    return Path(found)


def ship(runs_dir: Path, protocol: str, records_dir: Path, checkpoints_dir: Path) -> list[Path]:
    """Copy each trained record's checkpoint into `<checkpoints_dir>/<protocol>/`, remove the ones
    of no record; returns the shipped paths."""
    folder = checkpoints_dir / protocol
    plan = {}
    for _, record in find_records(records_dir, protocol):
        if not record["defense"]["external"]:
            shipped = shipped_checkpoint(checkpoints_dir, record)
            plan[shipped] = _source(record, runs_dir, checkpoints_dir)
    for shipped, source in plan.items():
        if source != shipped:
            atomic_write_bytes(shipped, source.read_bytes())
    for stale in sorted(folder.glob("*.pt")) if folder.is_dir() else []:
        if stale not in plan:
            stale.unlink()
    return sorted(plan)


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and ship the checkpoints of one protocol's records."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_dir", type=Path)
    parser.add_argument("--protocol", required=True)
    parser.add_argument("--records-dir", type=Path, default=Path("leaderboard/records"))
    parser.add_argument("--checkpoints-dir", type=Path, default=Path("leaderboard/checkpoints"))
    args = parser.parse_args(argv)
    for path in ship(args.runs_dir, args.protocol, args.records_dir, args.checkpoints_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
