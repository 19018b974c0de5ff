"""Selection that masking cannot win: the harness's checkpoint selection and `atbench tune`'s
choice score a model by its worst case over CE-PGD and CW-PGD on the validation split. A
planted masked model (logits scaled by 1e4: the cross-entropy's input gradient underflows to zero,
the margin loss still works) scores near-perfectly under CE-PGD alone, and loses to an honest
adversarially trained model under the selection rule, both as a checkpoint and as a tuned setting."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.core.registry import TRACKS
from benchmark.models.architectures import build_model
from benchmark.pipeline.data import load_dataset
from benchmark.pipeline.selection import selection_flags, validate
from benchmark.pipeline.train import train
from benchmark.pipeline.tune import sweep_record
from defenses.base import Defense, DefenseMeta, TrainContext

TRACK = dataclasses.replace(TRACKS.get("synthetic-tiny"), eps=0.15, val_attack_steps=10, step_ratio=0.25, epochs=4)
MASKED_EPOCH = 3  # 1-based: the epoch whose checkpoint is planted as masked


class Scaled(nn.Module):
    """A model whose logits are multiplied by `scale` (1e4 saturates the softmax)."""

    def __init__(self, model: nn.Module, scale: float):
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, x):
        return self.model(x) * self.scale


def _trained(adversarial: bool, epochs: int = 6) -> nn.Module:
    bundle = load_dataset("synthetic")
    torch.manual_seed(0)
    model = build_model("cnn-tiny", bundle.num_classes, bundle.input_shape, bundle.mean, bundle.std)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    ctx = TrainContext(epoch=0, step=0, device=torch.device("cpu"), eps=TRACK.eps, attack_steps=5,
                       step_size=0.0375, num_classes=10, generator=torch.Generator().manual_seed(0))
    for _ in range(epochs):
        for xb, yb in zip(bundle.train.x.split(64), bundle.train.y.split(64)):
            inputs = ctx.adversarial(model, xb, yb) if adversarial else xb
            loss = F.cross_entropy(model(inputs), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@pytest.mark.unit
def test_a_masked_model_wins_under_ce_pgd_alone_and_loses_under_the_selection_rule():
    val = load_dataset("synthetic").val
    honest = _trained(adversarial=True)
    masked = Scaled(_trained(adversarial=False), 1e4)
    scores = {name: validate(model, val, TRACK, torch.device("cpu"), 0, 10)
              for name, model in (("honest", honest), ("masked", masked))}
    assert scores["masked"].ce_robust > scores["honest"].ce_robust  # the old, CE-only rule picks the masked one
    assert scores["masked"].ce_robust > scores["masked"].clean - 0.05  # CE-PGD cannot move it at all
    assert scores["honest"].robust > scores["masked"].robust + 0.2  # the rule picks the honest one
    rows = [{"config": {"setting": name}, "score": s.robust, "val_robust_acc": s.robust, "val_clean_acc": s.clean,
             "best_epoch": 1, "checkpoint_sha256": "0" * 64} for name, s in scores.items()]
    job = _job()
    assert sweep_record(job, rows)["winner"] == {"setting": "honest"}  # and so does tuning
    _, ce_only, worst = selection_flags(masked, val.x[:100], val.y[:100], TRACK, 0)
    assert bool((worst <= ce_only).all())  # the worst case is never above one attack


def _job():
    from benchmark.pipeline.job import Job
    from benchmark.pipeline.protocol import load_protocol

    return Job(TRACK, load_protocol("synthetic-tiny"), "pgd-at", 0, "cpu")


@dataclasses.dataclass(frozen=True)
class PlantedConfig:
    """Nothing to set."""


class PlantedMasking(Defense):
    """PGD-AT whose model is planted as masked for one epoch: at the start of that epoch its last
    layer is scaled by 1e4 (so that epoch's checkpoint saturates the softmax), at the next
    epoch's start it is scaled back."""

    name = "planted-masking"
    Config = PlantedConfig
    meta = DefenseMeta(paper="planted", venue="tests", link="https://example.org", threat_models=("Linf",))

    def on_epoch_start(self, model: nn.Module, ctx: TrainContext) -> None:
        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        factor = {MASKED_EPOCH - 1: 1e4, MASKED_EPOCH: 1e-4}.get(ctx.epoch)
        if factor is not None:
            with torch.no_grad():
                last.weight.mul_(factor)
                last.bias.mul_(factor)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: TrainContext) -> torch.Tensor:
        return F.cross_entropy(model(ctx.adversarial(model, x, y)), y)


@pytest.mark.system
def test_the_harness_never_selects_the_planted_masked_checkpoint(tmp_path):
    import json

    result = train(TRACK, PlantedMasking(), 0, tmp_path, progress=False)
    history = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    ce = [h["val_ce_robust_acc"] for h in history]
    worst = [h["val_robust_acc"] for h in history]
    assert max(range(len(ce)), key=ce.__getitem__) + 1 == MASKED_EPOCH  # CE-PGD alone would pick it
    assert worst[MASKED_EPOCH - 1] < ce[MASKED_EPOCH - 1] - 0.2  # CW-PGD breaks what CE-PGD cannot
    assert result.best_epoch != MASKED_EPOCH


@pytest.mark.unit
def test_certified_accuracy_is_the_mean_over_radii_of_correct_points_certified_that_far():
    from benchmark.models.lipschitz import certified_radius, pairwise_lipschitz
    from benchmark.pipeline.selection import certified_accuracy

    bundle = load_dataset("synthetic")
    torch.manual_seed(0)
    model = build_model("cnn-tiny", bundle.num_classes, bundle.input_shape, bundle.mean, bundle.std).eval()
    x, y = bundle.val.x[:64], bundle.val.y[:64]
    with torch.no_grad():
        correct = model(x).argmax(1) == y
        radius = certified_radius(model, x, L=pairwise_lipschitz(model, tuple(x.shape[1:])))
    radii = (0.0, float(radius.median()), float(radius.max()) + 1)
    want = sum(float(((radius >= r) & correct).double().mean()) for r in radii) / 3
    assert certified_accuracy(model, x, y, radii) == pytest.approx(want, abs=1e-12)
    assert certified_accuracy(model, x, y, radii[-1:]) == 0.0  # no point is certified beyond its largest radius


class CertifiedSelection(PlantedMasking):
    """The planted masking defense, selected by certified accuracy instead."""

    name = "planted-certified"
    meta = dataclasses.replace(PlantedMasking.meta, selection="certified-l2")


@pytest.mark.system
def test_a_certified_method_is_selected_by_its_validation_certified_accuracy(tmp_path):
    import json

    result = train(TRACK, CertifiedSelection(), 0, tmp_path, progress=False)
    history = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    scores = [(h["val_certified_acc"], h["val_robust_acc"], h["val_clean_acc"]) for h in history]
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    assert result.best_epoch == best + 1
    assert result.best_val_certified_acc == scores[best][0]
    assert all("val_certified_acc" not in h for h in map(json.loads, _robust_history(tmp_path / "robust")))


def _robust_history(run_dir):
    train(TRACK, PlantedMasking(), 0, run_dir, progress=False)
    return (run_dir / "train_log.jsonl").read_text().splitlines()
