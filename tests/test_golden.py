"""Golden records: a few training steps of every registered defense on a tiny seeded CPU run
reproduce a committed loss trajectory to 1e-5.

Regenerate (only when a change of a loss is intended, and say so in the commit):
    python -m tests.test_golden
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmark.core.registry import DEFENSES
from benchmark.models.architectures import build_model
from benchmark.pipeline.data import load_dataset
from defenses.base import TrainContext

GOLDEN = Path(__file__).parent / "golden" / "loss_trajectories.json"
STEPS, BATCH, EPS = 4, 32, 0.1
CLASS_ERROR = tuple(0.05 * (k + 1) for k in range(10))  # a validation per-class robust error (classwise-at)


def loss_trajectory(name: str) -> list[float]:
    """Losses of `STEPS` SGD steps of defense `name` on fixed synthetic batches, seeded."""
    torch.set_num_threads(1)
    bundle = load_dataset("synthetic")
    torch.manual_seed(0)
    model = build_model("cnn-tiny", bundle.num_classes, bundle.input_shape, bundle.mean, bundle.std).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    defense = DEFENSES.get(name)()
    generator = torch.Generator().manual_seed(0)
    losses = []
    for step in range(STEPS):
        x = bundle.train.x[step * BATCH:(step + 1) * BATCH]
        y = bundle.train.y[step * BATCH:(step + 1) * BATCH]
        ctx = TrainContext(epoch=0, step=step, device=torch.device("cpu"), eps=EPS, attack_steps=3,
                           step_size=EPS / 4, num_classes=bundle.num_classes, generator=generator,
                           val_class_error=CLASS_ERROR)
        loss = defense.loss(model, x, y, ctx)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def _golden() -> dict:
    return json.loads(GOLDEN.read_text())["trajectories"]


def test_every_registered_defense_has_a_golden_trajectory():
    assert set(_golden()) == set(DEFENSES.names())


@pytest.mark.golden
@pytest.mark.parametrize("name", DEFENSES.names())
def test_loss_trajectory_matches_golden(name):
    golden = _golden()
    assert name in golden, f"no golden trajectory for {name}: run `python -m tests.test_golden`"
    assert loss_trajectory(name) == pytest.approx(golden[name], abs=1e-5, rel=0)


if __name__ == "__main__":
    body = {"command": "python -m tests.test_golden", "steps": STEPS, "batch": BATCH, "eps": EPS,
            "trajectories": {name: loss_trajectory(name) for name in DEFENSES.names()}}
    GOLDEN.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
