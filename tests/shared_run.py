"""One finished synthetic-tiny run of standard and PGD-AT (seed 0, one worker), trained once
per test session and read by the modules that need a finished run (test_runner_cli,
test_executor, test_ray_executor) instead of each training its own.

Under xdist the run lives in the session's temporary folder that every worker shares: the
first worker to ask trains it under a folder lock, the others wait for the lock and read it.
A `done` file, written last, lists the board files the run wrote; a run that failed has none
and is resumed by the next test that asks."""
from __future__ import annotations

import json
import os
from pathlib import Path

from benchmark.core.lock import folder_lock
from tests.helpers import run_track

TRACK = "synthetic-tiny"
DEFENSES = ["standard", "pgd-at"]


def shared_tiny_run(tmp_path_factory) -> tuple[Path, list[Path]]:
    """The shared run's root (`runs/`, `records/`, `boards/` inside, as `run_track` writes them
    with one worker) and its board files. Read it, never write into it: copy it first."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's folder, above each worker's own
    root = base / "shared-tiny-run"
    done = root / "done"
    with folder_lock(root):
        if not done.is_file():
            outcome = run_track(TRACK, DEFENSES, (0,), runs_dir=root / "runs", records_dir=root / "records",
                                boards_dir=root / "boards", jobs=1)
            done.write_text(json.dumps([str(Path(p).relative_to(root)) for p in outcome.boards]))
    return root, [root / name for name in json.loads(done.read_text())]
