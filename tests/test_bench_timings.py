"""pytest-benchmark timings of the hot paths, each against a reference doing the same work in
the same run: a case is one test per side (`side`: ours or reference) in one benchmark group,
and `tools/bench_ratios.py` prints ours/reference per group from the JSON `tox -e bench`
writes. Elsewhere (--benchmark-disable, the default) each side runs once, for its checks.
Timings are measured, never asserted."""
from __future__ import annotations

import copy

import pytest
import torch

from attacks.autoattack import AutoAttackAdapter
from attacks.pgd import PGD
from benchmark.commands.bench_cases.evaluation import each_eps_from_scratch, pyautoattack_direct, torchattacks_pgd
from benchmark.commands.bench_cases.training import plain_pgd_at_step
from benchmark.core.registry import TRACKS
from benchmark.models.architectures import build_model
from benchmark.pipeline.data import load_dataset
from benchmark.pipeline.evaluate import run_protocol
from benchmark.pipeline.fastpath import FastPath
from benchmark.pipeline.train import apply_step, harness_loss, seeded_generator
from defenses.base import TrainContext
from defenses.pgd_at import PGDAT

pytestmark = pytest.mark.benchmark

SIDES = ("ours", "reference")
#: PGD's steps and step size (a fraction of eps) on both sides of the PGD case.
PGD_STEPS, PGD_STEP_RATIO, PGD_EPS = 50, 0.25, 0.13




def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def assert_adversarial(model, x, y, x_adv, eps):
    """`x_adv` is finite, in [0, 1] and in the Linf ball of `eps` around `x`, and leaves the
    model's accuracy below its clean accuracy (the attack broke points)."""
    assert x_adv.shape == x.shape and torch.isfinite(x_adv).all()
    assert 0 <= x_adv.min() and x_adv.max() <= 1 and (x_adv - x).abs().max() <= eps + 1e-6
    assert accuracy(model, x_adv, y) < accuracy(model, x, y)


@pytest.mark.parametrize("side", SIDES)
def test_multi_eps_evaluation(benchmark, workload, side):
    """The protocol's multi-eps evaluation against each eps run from scratch on all points."""
    benchmark.group = "multi-eps evaluation"
    work = workload
    if side == "ours":
        def run():
            return run_protocol(work.model, work.protocol, work.x, work.y, work.device, progress=False).flags
    else:
        def run():
            return each_eps_from_scratch(work)
    flags = benchmark.pedantic(run, rounds=5, iterations=1)
    attacked = [name for name in flags if "@" in name]
    assert len(attacked) == len(work.protocol.columns) * len(work.protocol.eps)
    for name in attacked:  # a point robust under an attack is a clean-correct one
        assert not (flags[name] & ~flags["clean"]).any(), name
    assert flags[f"pgd@{work.protocol.eps[-1]}"].mean() < flags["clean"].mean()


@pytest.mark.parametrize("side", SIDES)
def test_pgd_attack(benchmark, workload, side):
    """Our PGD-50 against torchattacks' PGD-50 (same eps, steps and step size, random starts)."""
    benchmark.group = "PGD-50"
    work = workload
    if side == "ours":
        attack = PGD(steps=PGD_STEPS, step_ratio=PGD_STEP_RATIO, seed=0)

        def run():
            return attack(work.model, work.x, work.y, PGD_EPS)
    else:
        theirs = torchattacks_pgd(work.model, PGD_EPS, PGD_STEPS, PGD_STEP_RATIO, True)

        def run():
            return theirs(work.x, work.y)
    x_adv = benchmark.pedantic(run, rounds=10, warmup_rounds=1, iterations=1)
    assert_adversarial(work.model, work.x, work.y, x_adv, PGD_EPS)


@pytest.mark.parametrize("side", SIDES)
def test_pgd_at_step(benchmark, side):
    """One PGD-AT step (PGD-3, batch 64, synthetic-tiny's model and budget): the harness's
    step against the plain fp32 loop, each from the same seeded model."""
    benchmark.group = "PGD-AT step"
    bundle, track = load_dataset("synthetic"), TRACKS.get("synthetic-tiny")
    torch.manual_seed(0)
    model = build_model(track.model, bundle.num_classes, bundle.input_shape, bundle.mean, bundle.std)
    start = copy.deepcopy(model.state_dict())
    optimizer = torch.optim.Adam(model.parameters(), lr=track.lr)
    step_size = track.step_ratio * track.eps
    x, y = bundle.train.x[: track.batch_size], bundle.train.y[: track.batch_size]
    if side == "ours":
        ctx = TrainContext(epoch=0, step=0, device=torch.device("cpu"), eps=track.eps,
                           attack_steps=track.attack_steps, step_size=step_size, num_classes=bundle.num_classes,
                           generator=seeded_generator(0))

        def step():
            loss = harness_loss(model, PGDAT(), x, y, ctx, FastPath())
            apply_step(model, optimizer, loss, 0.0)
            return loss.detach()

        loss = benchmark.pedantic(step, rounds=20, warmup_rounds=1, iterations=1)
        assert loss.ndim == 0 and torch.isfinite(loss)
    else:
        def step():
            return plain_pgd_at_step(model, optimizer, x, y, track.eps, step_size, track.attack_steps)

        x_adv = benchmark.pedantic(step, rounds=20, warmup_rounds=1, iterations=1)
        assert torch.isfinite(x_adv).all() and 0 <= x_adv.min() and x_adv.max() <= 1
        assert (x_adv - x).abs().max() <= track.eps + 1e-6
    trained = model.state_dict()
    assert all(torch.isfinite(w).all() for w in trained.values())
    assert any(not torch.equal(start[k], trained[k]) for k in start)  # the steps trained the model


@pytest.mark.parametrize("side", SIDES)
def test_autoattack(benchmark, ten_class_workload, side):
    """Our AutoAttack adapter (standard) against pyautoattack called directly with its settings."""
    benchmark.group = "AutoAttack standard"
    work = ten_class_workload
    adapter = AutoAttackAdapter()
    eps = 0.05
    if side == "ours":
        def run():
            return adapter(work.model, work.x, work.y, eps)
    else:
        def run():
            return pyautoattack_direct(work.model, work.x, work.y, eps, adapter.config)
    x_adv = benchmark.pedantic(run, rounds=3, iterations=1)
    assert_adversarial(work.model, work.x, work.y, x_adv, eps)
