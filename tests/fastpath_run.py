"""The fast path end to end through the CLI, and fast-path training runs, shared by
tests/test_fastpath_end_to_end.py (the fast path forced on the CPU), tests/test_fastpath.py and
tests/test_gpu.py (on CUDA): train and evaluate one defense on synthetic-tiny with
`benchmark.commands.cli.main`, then check what it wrote."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from benchmark.commands.cli import main
from benchmark.core.io import load_checkpoint
from benchmark.core.registry import TRACKS
from benchmark.pipeline.fastpath import FastPath
from benchmark.pipeline.train import TrainResult, train
from leaderboard.admission import admit
from leaderboard.record import load_record

TRACK, DEFENSE = "synthetic-tiny", "pgd-at"
BF16_MARK = "[bf16 search, fp32 check]"
#: synthetic-tiny's protocol cut to what runs in seconds on a CPU: no AutoAttack (40 s there)
#: and short analysis budgets; the GPU tests use the track's own protocol.
QUICK_PROTOCOL = """\
id = "synthetic-tiny-quick"
version = 1
include = ["suites/analysis.toml"]
dataset = "synthetic"
norm = "Linf"
eps = ["0.05", "0.1", "0.2"]
primary_eps = "0.1"

[test_subset]
n = 40
seed = 0

[[attacks]]
name = "pgd"
steps = 5
restarts = 1
step_ratio = 0.25
seed = 0

[[attacks]]
name = "cw"
steps = 5
restarts = 1
step_ratio = 0.25
kappa = 0.0
seed = 0

[analysis.margins]
adversarial_steps = 5
fab_iterations = 10
input_steps = 5
input_bisections = 3

[analysis.certified]
pgd_steps = 5

[analysis.sanity]
large_eps_pgd_steps = 5
"""


def cli(tmp_path: Path, command: str, *options: str) -> int:
    """`atbench COMMAND --track synthetic-tiny --defense pgd-at OPTIONS` (one job in this
    process, quiet), writing under `tmp_path`; returns the exit code."""
    folders = ["--runs-dir", str(tmp_path / "runs"), "--records-dir", str(tmp_path / "records"),
               "--boards-dir", str(tmp_path / "boards")]
    return main([command, "--track", TRACK, "--defense", DEFENSE, "--jobs", "1", "-q", *folders, *options])


def quick_protocol(tmp_path: Path) -> str:
    """Write `QUICK_PROTOCOL` into `tmp_path`; returns its path."""
    path = tmp_path / "quick.toml"
    path.write_text(QUICK_PROTOCOL)
    return str(path)


def train_json(tmp_path: Path) -> dict:
    """The run's train.json."""
    return json.loads((tmp_path / "runs" / TRACK / DEFENSE / "seed0" / "train.json").read_text())


def admitted_record(tmp_path: Path, protocol_id: str) -> dict:
    """The published record, loaded (validated) and admitted against its flags file."""
    path = tmp_path / "records" / protocol_id / f"{DEFENSE}-seed0.json"
    record = load_record(path)
    admit(record, path)
    return record


def check_sane_accuracy(record: dict) -> None:
    """Clean accuracy well above chance; every robust accuracy at most the clean one, and the
    worst case at most every column."""
    chance = 1 / record["num_classes"]
    assert record["clean_acc"] >= max(0.6, 3 * chance), record["clean_acc"]
    for column, by_eps in record["robust_acc"].items():
        for eps, acc in by_eps.items():
            assert acc <= record["clean_acc"], (column, eps)
            assert record["worst_case"][eps] <= acc, (column, eps)


def check_fast_path_record(record: dict, training: list[str]) -> None:
    """The record says it was trained with `training` on and evaluated in the fast path's
    layout, with every attack's search in bf16 re-checked in fp32."""
    assert record["provenance"]["fast_path"] == {"training": training, "evaluation": ["channels_last"]}
    assert record["attacks"] and all(text.endswith(BF16_MARK) for text in record["attacks"].values())


def trained_weights(tmp_path: Path, name: str, fast: FastPath, device: str = "cpu",
                    augmentation: str | None = None) -> tuple[TrainResult, dict[str, torch.Tensor]]:
    """Train pgd-at on synthetic-tiny (with `augmentation` instead of the track's, if given)
    into `tmp_path/name` with `fast` on `device`; the result and the checkpoint's weights
    (loaded onto the CPU)."""
    track = TRACKS.get(TRACK)
    if augmentation is not None:
        track = track.with_overrides({"augmentation": augmentation})
    result = train(track, track.defense(DEFENSE), 0, tmp_path / name, device=device, progress=False, fast=fast)
    return result, load_checkpoint(result.checkpoint, result.checkpoint_sha256)["model"]
