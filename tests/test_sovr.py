"""SOVR: the switch picks exactly the smallest-margin round(M * B) examples, and the OVR loss is
the summed binary cross-entropy against the one-hot target."""
import pytest
import torch
import torch.nn.functional as F

from attacks.cw import margin as logit_margins
from defenses.sovr import SOVRConfig, ovr_loss, sovr_loss, switched_indices

pytestmark = pytest.mark.unit


def _batch(b=25, k=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, k, generator=g) * 3, torch.randint(0, k, (b,), generator=g)


def test_ovr_loss_is_summed_binary_cross_entropy_against_one_hot():
    logits, y = _batch()
    expected = F.binary_cross_entropy_with_logits(logits, F.one_hot(y, 10).float(), reduction="none").sum(1)
    assert torch.allclose(ovr_loss(logits, y), expected, atol=1e-6)


def test_margins_are_true_logit_minus_best_other():
    logits, y = _batch()
    for i in range(len(y)):
        others = [logits[i, k] for k in range(10) if k != y[i]]
        assert logit_margins(logits, y)[i].item() == pytest.approx((logits[i, y[i]] - max(others)).item())


@pytest.mark.parametrize("fraction", [0.0, 0.4, 0.5, 1.0])
def test_exactly_round_m_b_smallest_margin_examples_switch(fraction):
    logits, y = _batch(b=25)
    chosen = switched_indices(logit_margins(logits, y), fraction)
    assert len(chosen) == round(fraction * 25) == len(set(chosen.tolist()))
    margins = logit_margins(logits, y)
    rest = [i for i in range(25) if i not in set(chosen.tolist())]
    if len(chosen) and rest:
        assert margins[chosen].max() <= margins[rest].min()


def test_sovr_loss_mixes_ovr_and_ce_per_example():
    logits, y = _batch(b=20)
    chosen = set(switched_indices(logit_margins(logits, y), 0.4).tolist())
    ce, ovr = F.cross_entropy(logits, y, reduction="none"), ovr_loss(logits, y)
    expected = sum(ovr[i] if i in chosen else ce[i] for i in range(20)) / 20
    assert sovr_loss(logits, y, 0.4).item() == pytest.approx(expected.item(), rel=1e-6)
    assert sovr_loss(logits, y, 0.0).item() == pytest.approx(ce.mean().item(), rel=1e-6)
    assert sovr_loss(logits, y, 1.0).item() == pytest.approx(ovr.mean().item(), rel=1e-6)


def test_sovr_loss_gradient_reaches_every_example():
    logits, y = _batch(b=10)
    logits.requires_grad_(True)
    sovr_loss(logits, y, 0.4).backward()
    assert (logits.grad.abs().sum(1) > 0).all()


def test_fraction_outside_unit_interval_is_rejected():
    with pytest.raises(ValueError, match="switch_fraction"):
        SOVRConfig(switch_fraction=1.5)
