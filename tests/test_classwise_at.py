"""Class-wise AT: class weights from validation robust error, the weighted loss, and the
calibrated logit offsets (which never lower the validation worst-class robust accuracy)."""
import pytest
import torch
import torch.nn.functional as F

from attacks.pgd import pgd_train_examples
from benchmark.models.architectures import build_model
from benchmark.pipeline.data import load_dataset
from defenses.base import TrainContext
from defenses.classwise_at import (
    ClasswiseAT,
    ClasswiseATConfig,
    LogitOffsets,
    attacked_logits,
    class_weights,
    search_offsets,
    summary,
)

pytestmark = pytest.mark.unit


def _ctx(errors=None, eps=0.1, seed=0):
    return TrainContext(epoch=1, step=0, device=torch.device("cpu"), eps=eps, attack_steps=3, step_size=eps / 4,
                        num_classes=10, generator=torch.Generator().manual_seed(seed), val_class_error=errors)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_weights_have_mean_one_and_rank_classes_by_validation_error(gamma):
    errors = torch.tensor([0.1, 0.5, 0.05, 0.3, 0.2, 0.9, 0.15, 0.4, 0.25, 0.35])
    weights = class_weights(errors, gamma, floor=0.0)
    assert weights.mean().item() == pytest.approx(1.0)
    assert torch.equal(weights.argsort(), errors.argsort())
    assert weights[5] / weights[2] == pytest.approx((0.9 / 0.05) ** gamma, rel=1e-6)
    assert torch.equal(class_weights(torch.zeros(10), gamma), torch.ones(10, dtype=torch.float64))


def _tiny():
    bundle = load_dataset("synthetic")
    torch.manual_seed(0)
    model = build_model("cnn-tiny", 10, bundle.input_shape, bundle.mean, bundle.std)
    return model, bundle


def test_loss_weights_each_example_by_its_class_weight():
    model, bundle = _tiny()
    x, y = bundle.train.x[:32], bundle.train.y[:32]
    errors = tuple(float(e) for e in torch.linspace(0.1, 1.0, 10))
    loss = ClasswiseAT().loss(model, x, y, _ctx(errors))
    x_adv = pgd_train_examples(model, x, y, 0.1, 3, 0.025, torch.Generator().manual_seed(0))
    per_example = F.cross_entropy(model(x_adv), y, reduction="none")
    weights = class_weights(torch.tensor(errors), 1.0, 0.5).float()
    assert loss.item() == pytest.approx((weights[y] * per_example).mean().item(), rel=1e-5)
    unweighted = ClasswiseAT(ClasswiseATConfig(reweight=False)).loss(model, x, y, _ctx(errors))
    assert unweighted.item() == pytest.approx(per_example.mean().item(), rel=1e-5)
    assert ClasswiseAT().loss(model, x, y, _ctx(None)).item() == pytest.approx(per_example.mean().item(), rel=1e-5)


def test_offset_search_raises_a_weak_class_within_the_accuracy_budget():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(10).repeat(50)
    clean = torch.randn(500, 10, generator=g) + 3 * F.one_hot(y, 10)
    adv = torch.randn(500, 10, generator=g) + 1.5 * F.one_hot(y, 10)
    adv[y == 3, 3] -= 0.7  # class 3 is the vulnerable one
    cfg = ClasswiseATConfig()
    offsets = search_offsets(clean, adv, y, 10, cfg)
    zero = torch.zeros(10)
    before, after = summary(clean, adv, y, zero, 10), summary(clean, adv, y, offsets, 10)
    assert after[0] > before[0] + 0.05 and after[1] >= before[1] - cfg.max_accuracy_drop
    assert offsets.argmax().item() == 3


def _trained_model():
    """cnn-tiny PGD-trained briefly on sklearn's digits, so robustness differs between classes."""
    bundle = load_dataset("digits")
    torch.manual_seed(0)
    model = build_model("cnn-tiny", 10, bundle.input_shape, bundle.mean, bundle.std)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        idx = torch.randint(0, len(bundle.train.y), (64,), generator=g)
        x, y = bundle.train.x[idx], bundle.train.y[idx]
        x_adv = pgd_train_examples(model, x, y, 0.1, 3, 0.025, g)
        opt.zero_grad()
        F.cross_entropy(model(x_adv), y).backward()
        opt.step()
    return model.eval(), bundle


# At 0.05 and 0.15 the search finds offsets that hold up when the offset model is attacked again;
# at 0.1 it finds none, and at 0.2 its offsets fail the re-attack and are dropped.
@pytest.mark.parametrize("eps, deployed_offsets", [(0.05, True), (0.1, False), (0.15, True), (0.2, False)])
def test_calibrated_offsets_do_not_lower_validation_worst_class_robust_accuracy(eps, deployed_offsets):
    model, bundle = _trained_model()
    val = bundle.val
    batches = lambda: zip(val.x.split(500), val.y.split(500))
    defense = ClasswiseAT()
    defense.calibrate(model, batches, _ctx(eps=eps, seed=7))
    deployed = defense.wrap(model)
    zero = torch.zeros(10)
    before = summary(*attacked_logits(model, batches, _ctx(eps=eps, seed=7)), zero, 10)
    after = summary(*attacked_logits(deployed, batches, _ctx(eps=eps, seed=7)), zero, 10)
    assert after[0] >= before[0] and after[1] >= before[1] - 0.01 - 1e-9
    if deployed_offsets:
        assert isinstance(deployed, LogitOffsets) and after[0] > before[0]
        with torch.no_grad():
            assert torch.allclose(deployed(val.x[:8]), model(val.x[:8]) + defense.offsets)
    else:
        assert deployed is model


def test_offsets_switch_off():
    model, bundle = _tiny()
    val = bundle.val
    defense = ClasswiseAT(ClasswiseATConfig(calibrate_offsets=False))
    defense.calibrate(model, lambda: zip(val.x.split(500), val.y.split(500)), _ctx())
    assert defense.wrap(model) is model


@pytest.mark.parametrize("gamma", [0.5, 2.0, 4.0])
def test_weights_keep_fair_robust_learnings_floor_of_half_the_mean(gamma):
    errors = torch.tensor([0.0, 0.5, 0.05, 0.3, 0.2, 0.9, 0.0, 0.4, 0.25, 0.35])
    weights = class_weights(errors, gamma, floor=0.5)
    assert weights.mean().item() == pytest.approx(1.0)
    assert weights.min().item() == pytest.approx(0.5)  # the zero-error classes: the floor, not 0
    assert weights[0] == weights[6] and torch.equal(weights[1:6].argsort(), errors[1:6].argsort())
    unfloored = class_weights(errors, gamma, floor=0.0)
    torch.testing.assert_close(weights, 0.5 + 0.5 * unfloored)
    assert unfloored[0] == 0.0
    assert ClasswiseATConfig().weight_floor == 0.5


def test_the_record_says_whether_the_offsets_are_deployed():
    defense = ClasswiseAT(ClasswiseATConfig(calibrate_offsets=False))
    assert defense.deployment() == {"logit_offsets": None, "reason": "not calibrated"}
    defense.calibrate(None, None, None)
    assert defense.deployment() == {"logit_offsets": None, "reason": "switched off (calibrate_offsets = false)"}
    defense.offsets, defense.offsets_reason = torch.tensor([0.0, 0.25]), "kept"
    assert defense.deployment() == {"logit_offsets": [0.0, 0.25], "reason": "kept"}
