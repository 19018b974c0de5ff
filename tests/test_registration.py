"""Registration is automatic: a file dropped into defenses/ is a defense, with no list to edit;
the harness refuses a track whose threat model a defense does not declare; PGD-AT trains in the
track's norm (the L2 bug of `defenses/pgd_at.py`)."""
from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmark.core.errors import AtbenchError
from benchmark.core.registry import DEFENSES, TRACKS
from benchmark.pipeline.train import check_supports
from defenses.base import TrainContext

ROOT = Path(__file__).resolve().parent.parent
NEW_DEFENSE = '''"""A defense added by dropping this file into defenses/."""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from defenses.base import Defense, DefenseMeta, TrainContext, register


@dataclasses.dataclass(frozen=True)
class DroppedConfig:
    """Hyperparameters of the dropped-in defense.

    Attributes:
        weight: weight of the adversarial term.
    """

    weight: float = 0.5


@register
class Dropped(Defense):
    """Half clean, half adversarial cross-entropy."""

    name = "dropped-in"
    Config = DroppedConfig
    meta = DefenseMeta(paper="A dropped-in defense", venue="Tests 2026", link="https://example.org/dropped",
                       threat_models=("Linf", "L2"))

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: TrainContext) -> torch.Tensor:
        """Clean and adversarial cross-entropy, mixed by `weight`."""
        x_adv = ctx.adversarial(model, x, y)
        w = self.config.weight
        return (1 - w) * F.cross_entropy(model(x), y) + w * F.cross_entropy(model(x_adv), y)
'''


@pytest.mark.system
def test_a_file_dropped_into_defenses_is_listed_and_validates_with_no_other_edit(tmp_path):
    for package in ("benchmark", "attacks", "defenses", "leaderboard"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "records",
                                                                                            "boards"))
    (tmp_path / "defenses" / "dropped_in.py").write_text(NEW_DEFENSE)

    def atbench(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "benchmark", *argv], cwd=tmp_path, capture_output=True,
                              text=True, timeout=600)

    listed = atbench("ls", "defenses")
    assert listed.returncode == 0 and "dropped-in" in listed.stdout.split(": ", 1)[1].split(", ")
    validated = atbench("validate", "dropped-in", "-q")
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "dropped-in: 7 of 7 checks passed" in validated.stdout
    assert "dropped-in" not in DEFENSES.names()  # this process's tree is untouched


@pytest.mark.unit
def test_a_track_outside_the_defenses_threat_models_is_refused():
    linf_only = DEFENSES.get("dyart")
    l2_track = dataclasses.replace(TRACKS.get("synthetic-tiny"), name="synthetic-tiny-l2", norm="L2", eps=1.0)
    with pytest.raises(AtbenchError, match="not the L2 threat model of track 'synthetic-tiny-l2'"):
        check_supports(linf_only, l2_track)
    check_supports(DEFENSES.get("pgd-at"), l2_track)


@pytest.mark.unit
def test_pgd_at_trains_on_l2_examples_in_the_l2_ball():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    x = torch.rand(32, 1, 8, 8)
    y = torch.randint(0, 10, (32,))
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, inputs):
            seen.append(inputs.detach().clone())
            return model(inputs)

    eps = 1.0
    ctx = TrainContext(epoch=0, step=0, device=torch.device("cpu"), eps=eps, attack_steps=5, step_size=0.25 * eps,
                       num_classes=10, generator=torch.Generator().manual_seed(0), norm="L2")
    loss = DEFENSES.get("pgd-at")().loss(Spy(), x, y, ctx)
    loss.backward()
    x_adv = seen[-1]  # the loss's forward on the adversarial examples
    l2 = (x_adv - x).flatten(1).norm(dim=1)
    linf = (x_adv - x).flatten(1).abs().amax(dim=1)
    assert (l2 <= eps + 1e-5).all() and l2.max() > 0.9 * eps  # in the L2 ball, and using it
    assert linf.max() < eps  # not Linf PGD's corners: those would lie ~sqrt(64) = 8 out in L2
