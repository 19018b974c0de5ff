"""Golden records: a few training steps of every registered defense on a tiny seeded CPU run
reproduce a committed loss trajectory to 1e-5.

The trajectories are kept per CPU vendor: MKL's matrix products round differently on Intel and
AMD processors even under `MKL_CBWR=AVX2` (the branch is Intel's; AMD runs MKL's own), and the
sign steps of TRADES' and RAT's inner attack from x + 0.001 N(0, 1) turn those last-bit
differences into different examples. Every other defense gives the same trajectory on both, so a
defense added on one vendor's machine is checked on the other against that trajectory (`_golden`)
until that vendor's file is regenerated; TRADES and RAT need every vendor's own.

Regenerate (only when a change of a loss is intended, and say so in the commit; on every CPU
vendor the file holds, or remove the vendors you cannot regenerate on):
    python -m tests.test_golden
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmark.core.provenance import cpu_vendor
from benchmark.core.registry import DEFENSES
from benchmark.models.architectures import build_model
from benchmark.pipeline.data import load_dataset
from defenses.base import TrainContext

pytestmark = pytest.mark.golden

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


#: Defenses whose trajectory differs between CPU vendors (see the module docstring).
VENDOR_SENSITIVE = {"trades", "rat"}


def _golden() -> dict:
    """This CPU vendor's golden trajectories; a defense the vendor's file lacks, outside
    `VENDOR_SENSITIVE`, takes another vendor's (they agree to 1e-5)."""
    by_vendor = json.loads(GOLDEN.read_text())["trajectories"]
    assert cpu_vendor() in by_vendor, (f"no golden trajectories for CPU vendor {cpu_vendor()} (have: "
                                       f"{', '.join(by_vendor)}): run `python -m tests.test_golden` on this machine "
                                       "kind and commit the file")
    golden = dict(by_vendor[cpu_vendor()])
    for vendor in sorted(by_vendor):
        for name, trajectory in by_vendor[vendor].items():
            if name not in golden and name not in VENDOR_SENSITIVE:
                golden[name] = trajectory
    return golden


def test_every_registered_defense_has_a_golden_trajectory():
    assert set(_golden()) == set(DEFENSES.names())
    by_vendor = json.loads(GOLDEN.read_text())["trajectories"]
    for vendor, trajectories in by_vendor.items():
        assert VENDOR_SENSITIVE <= set(trajectories), f"{vendor} lacks its own TRADES and RAT trajectories"


def test_the_vendors_differ_only_where_the_inner_attack_starts_from_gaussian_noise():
    """The per-vendor files agree to 1e-5 on every defense whose inner attack does not take sign
    steps from x + 0.001 N(0, 1): a vendor file that drifted elsewhere is a changed loss."""
    by_vendor = json.loads(GOLDEN.read_text())["trajectories"]
    for vendor, trajectories in by_vendor.items():
        for other, theirs in by_vendor.items():
            for name in (set(trajectories) & set(theirs)) - VENDOR_SENSITIVE:
                assert trajectories[name] == pytest.approx(theirs[name], abs=1e-5, rel=0), (vendor, other, name)


@pytest.mark.parametrize("name", DEFENSES.names())
def test_loss_trajectory_matches_golden(name):
    golden = _golden()
    assert name in golden, f"no golden trajectory for {name}: run `python -m tests.test_golden`"
    assert loss_trajectory(name) == pytest.approx(golden[name], abs=1e-5, rel=0)


if __name__ == "__main__":
    kept = json.loads(GOLDEN.read_text())["trajectories"] if GOLDEN.is_file() else {}
    kept[cpu_vendor()] = {name: loss_trajectory(name) for name in DEFENSES.names()}
    body = {"command": "python -m tests.test_golden", "steps": STEPS, "batch": BATCH, "eps": EPS,
            "trajectories": kept}
    GOLDEN.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
