"""The AutoAttack adapter gives exactly pyautoattack's results, is never weaker than its first
attack alone, keeps pyautoattack quiet, and reports which sub-attack broke each point."""
from __future__ import annotations

import logging
import sys

import pytest
import torch
from pyautoattack import AutoAttack
from torch import nn

from attacks.autoattack import AutoAttackAdapter
from tests.helpers import tiny_mlp

pytestmark = pytest.mark.unit

EPS = 0.05  # the tiny model keeps some but not all points robust at this Linf eps
BATCH = 16  # below the number of points, so AutoAttack's batching is exercised


@pytest.fixture(scope="module")
def tiny():
    return tiny_mlp(32, eval_layers=False)


@pytest.fixture(scope="module")
def adapter_run(tiny):
    """The adapter's adversarial examples on the tiny model and its sub-attack breakdown."""
    model, x, y = tiny
    adapter = AutoAttackAdapter(seed=7, batch_size=BATCH)
    return adapter(model, x, y, EPS), adapter.last_breakdown


@pytest.fixture(scope="module")
def adapter_adv(adapter_run):
    return adapter_run[0]


class Quantised(nn.Module):
    """Gradient masking: the input is rounded to multiples of 1/4 before the model, so the
    input gradient is zero almost everywhere."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(torch.round(x * 4) / 4)


def robust(model, x_adv, y):
    with torch.no_grad():
        return model(x_adv).argmax(dim=1) == y


def test_matches_pyautoattack_called_directly(tiny, adapter_adv):
    model, x, y = tiny
    direct = AutoAttack(model, device=x.device, eps=EPS, norm="Linf", seed=7, version="standard")
    direct_adv, _ = direct.run_standard_evaluation(x, y, batch_size=BATCH)
    assert torch.equal(adapter_adv, direct_adv)
    flags = robust(model, adapter_adv, y)
    assert 0 < flags.sum() < robust(model, x, y).sum()  # the comparison is not vacuous


def test_never_leaves_robust_a_point_that_apgd_ce_alone_breaks(tiny, adapter_adv):
    model, x, y = tiny
    apgd_ce = AutoAttack(model, attacks=["apgd-ce"], eps=EPS, norm="Linf", seed=7, version="custom")
    apgd_ce.apgd.n_restarts = 1  # as in the standard version
    ce_adv, _ = apgd_ce.run_standard_evaluation(x, y, batch_size=BATCH)
    ce_flags, aa_flags = robust(model, ce_adv, y), robust(model, adapter_adv, y)
    assert not (aa_flags & ~ce_flags).any()
    assert aa_flags.sum() < ce_flags.sum()  # the later attacks add something here


def test_quiet_and_restores_logging_and_tracing(tiny, caplog, capsys):
    model, x, y = tiny
    probabilities = nn.Sequential(model, nn.Softmax(dim=1)).eval()  # triggers AutoAttack's output check
    logger = logging.getLogger("auto-attack")
    level = logger.level
    logger.setLevel(logging.INFO)

    def tracer(frame, event, arg):
        return None

    sys.settrace(tracer)  # pyautoattack's dynamic-defense check resets the trace function
    try:
        with caplog.at_level(logging.DEBUG):
            AutoAttackAdapter()(probabilities, x[:8], y[:8], 0.3)
        assert sys.gettrace() is tracer and logger.level == logging.INFO
    finally:
        sys.settrace(None)
        logger.setLevel(level)
    assert not [r for r in caplog.records if r.name == "auto-attack"]
    assert capsys.readouterr() == ("", "")
    with caplog.at_level(logging.WARNING, logger="auto-attack"):
        AutoAttack(probabilities, eps=0.3, seed=0).run_standard_evaluation(x[:8], y[:8], batch_size=8)
    assert any("probability" in r.getMessage() for r in caplog.records)  # it would have spoken


def test_seed_is_explicit():
    assert AutoAttackAdapter().config.seed == 0
    assert "seed=0" in repr(AutoAttackAdapter())


def assert_partition(breakdown, model, x, y, x_adv):
    """The sub-attack sets are disjoint bool masks whose union is clean-correct & not robust."""
    assert list(breakdown) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    masks = torch.stack(list(breakdown.values()))
    assert masks.dtype == torch.bool and masks.shape == (4, len(y))
    assert (masks.sum(dim=0) <= 1).all()
    assert torch.equal(masks.any(dim=0), robust(model, x, y) & ~robust(model, x_adv, y))


def test_breakdown_partitions_the_broken_points(tiny, adapter_run):
    model, x, y = tiny
    x_adv, breakdown = adapter_run
    assert_partition(breakdown, model, x, y, x_adv)
    assert breakdown["apgd-ce"].any()


def test_breakdown_blames_square_on_a_gradient_masking_model(tiny):
    model, x, y = tiny
    masked = Quantised(model).eval()
    adapter = AutoAttackAdapter(seed=7, batch_size=BATCH)
    x_adv = adapter(masked, x, y, 0.15)
    breakdown = adapter.last_breakdown
    assert_partition(breakdown, masked, x, y, x_adv)
    square = breakdown["square"].sum()
    assert square > sum(v.sum() for k, v in breakdown.items() if k != "square")


def test_breakdown_of_an_empty_batch(tiny):
    model, x, y = tiny
    adapter = AutoAttackAdapter()
    assert adapter(model, x[:0], y[:0], EPS).shape == x[:0].shape
    assert {k: v.shape for k, v in adapter.last_breakdown.items()} == dict.fromkeys(
        ["apgd-ce", "apgd-t", "fab-t", "square"], torch.Size([0]))
