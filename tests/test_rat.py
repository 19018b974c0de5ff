"""RAT: soft labels, the noisy-weight attack copy and the loss against an independent
computation of its terms."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.models.architectures import build_model
from benchmark.pipeline.data import load_dataset
from defenses.rat import RAT, RATConfig, last_linear, noisy_copy, rat_loss, soft_labels
from defenses.trades import kl_adversarial_examples

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("mass", [0.8, 0.98])
@pytest.mark.parametrize("v", [torch.randn(10, generator=torch.Generator().manual_seed(1)), torch.ones(10),
                               torch.tensor([5.0] + [0.0] * 9), torch.arange(10.0)])
def test_soft_label_rows_sum_to_one_with_diagonal_one_minus_c(v, mass):
    p = soft_labels(v, mass)
    assert p.shape == (10, 10) and (p >= 0).all()
    assert torch.allclose(p.sum(1), torch.ones(10), atol=1e-6)
    assert torch.allclose(p.diagonal(), torch.full((10,), 1 - mass))


def test_soft_labels_follow_the_reference_formula():
    v = torch.tensor([3.0, -1.0, 2.0, 0.5])
    shifted = (v - v.min()) / (v - v.min()).sum()
    p = soft_labels(v, 0.8)
    for i in range(4):
        rest = shifted.sum() - shifted[i]
        for j in range(4):
            if i != j:
                assert p[i, j].item() == pytest.approx(0.8 * shifted[j].item() / rest.item(), rel=1e-6)


def _model():
    bundle = load_dataset("synthetic")
    torch.manual_seed(0)
    model = build_model("cnn-tiny", bundle.num_classes, bundle.input_shape, bundle.mean, bundle.std)
    return model, bundle.train.x[:32], bundle.train.y[:32]


def test_noisy_copy_differs_only_in_conv_weights_by_noise_of_the_configured_scale():
    model, _, _ = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    twin = noisy_copy(model, 1e-2, torch.Generator().manual_seed(0))
    conv_weights = {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert conv_weights
    noise = []
    for key, value in twin.state_dict().items():
        if key in conv_weights:
            diff = value - before[key]
            assert not torch.equal(value, before[key])
            noise.append(diff.flatten())
        else:
            assert torch.equal(value, before[key]), key
    noise = torch.cat(noise)
    assert noise.std().item() == pytest.approx(1e-2, rel=0.1) and abs(noise.mean().item()) < 2e-3
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not any(p.requires_grad for p in twin.parameters()) and all(p.requires_grad for p in model.parameters())


def test_rat_loss_matches_an_independent_computation():
    model, x, y = _model()
    x_adv = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    config = RATConfig()
    weight = last_linear(model).weight
    loss = rat_loss(model(x), model(x_adv), y, weight, config)

    grads = []
    for inputs in (x, x_adv):
        model.zero_grad()
        F.cross_entropy(model(inputs), y).backward()
        grads.append(weight.grad.sum(1).clone())
    model.zero_grad()
    g_nat, g_adv = grads
    out, out_adv = model(x), model(x_adv)
    kl = lambda target, logits: F.kl_div(F.log_softmax(logits, 1), target, reduction="batchmean")
    p1, p1p = soft_labels(g_nat.abs() - g_adv.abs(), 0.8), soft_labels(g_adv.abs() - g_nat.abs(), 0.8)
    p2p = soft_labels(g_adv ** 2 - g_nat ** 2, 0.8)
    first = 0.5 * (kl(p1[y], out_adv) + kl(p1p[y], out))
    second = 0.5 * (kl(p2p[y], out_adv) + kl(p2p[y], out))
    trades = F.kl_div(F.log_softmax(out_adv, 1), F.softmax(out, 1), reduction="batchmean")
    expected = 0.8 * F.cross_entropy(out, y) + 0.2 * first + 0.1 * second + 6 * trades
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_inner_attack_runs_on_the_noisy_copy_and_leaves_the_model_alone():
    from defenses.base import TrainContext

    model, x, y = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ctx = TrainContext(epoch=0, step=0, device=torch.device("cpu"), eps=0.1, attack_steps=3, step_size=0.025,
                       num_classes=10, generator=torch.Generator().manual_seed(5))
    loss = RAT(RATConfig(sigma=0.5)).loss(model, x, y, ctx)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())

    def replay(attacker_of):
        g = torch.Generator().manual_seed(5)
        noisy = noisy_copy(model, 0.5, g)
        replay_ctx = TrainContext(epoch=0, step=0, device=torch.device("cpu"), eps=0.1, attack_steps=3,
                                  step_size=0.025, num_classes=10, generator=g)
        x_adv = kl_adversarial_examples(attacker_of(noisy), x, replay_ctx)
        return rat_loss(model(x), model(x_adv), y, last_linear(model).weight, RATConfig(sigma=0.5)).item()

    assert loss.item() == pytest.approx(replay(lambda noisy: noisy), rel=1e-6)
    assert loss.item() != pytest.approx(replay(lambda noisy: model), rel=1e-6)
