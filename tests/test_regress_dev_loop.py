"""`atbench regress` in a development loop, run as a user runs it (the console script, a fresh
process per step) on synthetic-tiny with a defense file: run the reference, regress, edit the
defense file, regress again. Each re-run must reflect the edited code (the runs cache is keyed
on the defense's source), replace regress's own earlier results in its scratch folders under
--runs-dir, and write nothing into the published leaderboard folders."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import white_box_protocol

pytestmark = pytest.mark.system

ATBENCH = [str(Path(sys.executable).with_name("atbench"))] if Path(sys.executable).with_name("atbench").exists() \
    else [sys.executable, "-m", "benchmark"]
DEFENSE = """
import dataclasses

import torch.nn.functional as F

from defenses.base import Defense, DefenseMeta, register


@dataclasses.dataclass(frozen=True)
class NoConfig:
    pass


@register
class LoopDefense(Defense):
    name = "loop-def"
    Config = NoConfig
    meta = DefenseMeta(paper="p", venue="v", link="https://example.org")

    def loss(self, model, x, y, ctx):
        return F.cross_entropy(model(x), {target})
{wrap}"""
NEGATED = """
    def wrap(self, model):
        import torch

        class Negated(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, x):
                return -self.inner(x)

        return Negated(model)
"""


def atbench(cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([*ATBENCH, *argv], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_regress_reruns_after_each_edit_of_the_defense_file(tmp_path):
    white_box_protocol(tmp_path)  # synthetic-tiny without AutoAttack: seconds per evaluation
    defense = tmp_path / "loop_def.py"
    defense.write_text(DEFENSE.format(target="y", wrap=""))
    common = ["--track", "synthetic-tiny", "--protocol", "white-box.toml", "--defense-file", defense.name,
              "--seed", "0", "--jobs", "1", "-q", "--runs-dir", "work"]
    made = atbench(tmp_path, "run", *common, "--defense", "loop-def", "--records-dir", "ref",
                   "--boards-dir", "ref-boards")
    assert made.returncode == 0, made.stderr
    regress = [*common, "--against", "ref/synthetic-tiny-white-box"]
    run_dir = tmp_path / "work" / "synthetic-tiny" / "loop-def" / "seed0"
    scratch = tmp_path / "work" / "regress" / "records" / "synthetic-tiny-white-box" / "loop-def-seed0.json"

    def step() -> tuple[subprocess.CompletedProcess, dict, str]:
        proc = atbench(tmp_path, "regress", *regress)
        return proc, json.loads((run_dir / "train.json").read_text()), (run_dir / "eval_key.txt").read_text()

    same, trained, eval_key = step()
    assert same.returncode == 0, same.stdout + same.stderr
    assert "0 changed" in same.stdout and "seeds compared for loop-def: 0; left out: none" in same.stdout
    assert scratch.is_file() and (tmp_path / "work" / "regress" / "boards" / "synthetic-tiny-white-box.md").is_file()
    assert not (tmp_path / "leaderboard").exists() and not (tmp_path / "runs").exists()

    # only the inference-time wrapper changes: the weights are the same, the results are not
    defense.write_text(DEFENSE.format(target="y", wrap=NEGATED))
    wrapped, retrained, wrapped_key = step()
    assert wrapped.returncode == 1, wrapped.stdout + wrapped.stderr
    assert "| loop-def | clean |" in wrapped.stdout and "REGRESSION" in wrapped.stdout
    assert retrained["train_key"] != trained["train_key"]
    assert retrained["checkpoint_sha256"] == trained["checkpoint_sha256"] and wrapped_key != eval_key

    # the loss changes: new weights, published over regress's own earlier record (no exit 2)
    defense.write_text(DEFENSE.format(target="(y + 1) % ctx.num_classes", wrap=""))
    broken, changed, _ = step()
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "REGRESSION" in broken.stdout and "already holds" not in broken.stderr
    assert changed["checkpoint_sha256"] != trained["checkpoint_sha256"]
    assert json.loads(scratch.read_text())["provenance"]["checkpoint_sha256"] == changed["checkpoint_sha256"]
