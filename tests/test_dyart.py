"""DyART: the Linf hyperplane projection, the boundary search against the closed-form margin of a
linear classifier, and the closed-form margin gradient of the weighted surrogate."""
import numpy as np
import pytest
import torch
from scipy.optimize import linprog
from torch import nn

from defenses.dyart import (
    DyART,
    DyARTConfig,
    boundary_search,
    kkt_aligned,
    margin_weights,
    project_linf_hyperplane,
    soft_margin,
    soft_margin_and_grad,
)

pytestmark = pytest.mark.unit

D = 40


def _linear_problem(n=8, seed=0):
    """A 2-class linear classifier and points of class 0 at closed-form Linf margins
    |w.x + b| / ||w||_1 from 0.03 to 0.15, all within [0.25, 0.75] so the box [0, 1] never binds."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(D, 2)).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(2, D, generator=g, dtype=torch.float64))
        model[1].bias.zero_()
        w = model[1].weight[0] - model[1].weight[1]
        model[1].bias[0] = -0.5 * w.sum()  # w.x + b = 0 at x = 0.5
    centres = 0.5 + 0.05 * (2 * torch.rand(n, D, generator=g, dtype=torch.float64) - 1)
    centres = centres - ((centres - 0.5) @ w / (w @ w))[:, None] * w  # back onto the boundary
    margins = torch.linspace(0.03, 0.15, n, dtype=torch.float64)
    x = centres + margins[:, None] * w.sign()
    assert x.min() > 0.25 and x.max() < 0.75
    return model, x.view(n, 1, 1, D), torch.zeros(n, dtype=torch.long), w.detach()


def test_soft_margin_is_a_lower_bound_of_the_logit_margin():
    logits, y = torch.randn(50, 10), torch.randint(0, 10, (50,))
    margin = logits.gather(1, y[:, None]).squeeze(1) - logits.scatter(1, y[:, None], -1e9).max(1).values
    assert (soft_margin(logits, y, 5.0) <= margin + 1e-6).all()
    two = torch.randn(20, 2)
    assert torch.allclose(soft_margin(two, torch.zeros(20, dtype=torch.long), 5.0), two[:, 0] - two[:, 1])


@pytest.mark.parametrize("seed", range(5))
def test_hyperplane_projection_solves_the_linear_program(seed):
    g = torch.Generator().manual_seed(seed)
    d = 6
    p = torch.rand(3, d, generator=g, dtype=torch.float64)
    w = torch.randn(3, d, generator=g, dtype=torch.float64)
    c = (w * torch.rand(3, d, generator=g, dtype=torch.float64)).sum(1)  # a feasible target in the box
    step = project_linf_hyperplane(p, w, c)
    assert torch.allclose(((p + step) * w).sum(1), c, atol=1e-9)
    assert ((p + step) >= -1e-12).all() and ((p + step) <= 1 + 1e-12).all()
    for i in range(3):  # minimise t subject to |d_j| <= t, w.d = c - w.p, 0 <= p + d <= 1
        cost = np.r_[np.zeros(d), 1.0]
        a_ub = np.r_[np.c_[np.eye(d), -np.ones(d)], np.c_[-np.eye(d), -np.ones(d)]]
        a_eq = np.r_[w[i].numpy(), 0.0][None]
        b_eq = [float(c[i] - w[i] @ p[i])]
        bounds = [(-p[i, j].item(), 1 - p[i, j].item()) for j in range(d)] + [(0, None)]
        best = linprog(cost, A_ub=a_ub, b_ub=np.zeros(2 * d), A_eq=a_eq, b_eq=b_eq, bounds=bounds).fun
        assert step[i].abs().max().item() == pytest.approx(best, rel=1e-6, abs=1e-9)


def test_boundary_search_finds_the_closed_form_linf_margin_within_two_percent():
    model, x, y, w = _linear_problem()
    expected = soft_margin(model(x), y, 5.0).detach() / w.abs().sum()
    assert torch.allclose(expected, torch.linspace(0.03, 0.15, 8, dtype=torch.float64))
    with torch.no_grad():
        x_hat, found = boundary_search(model, x, y, DyARTConfig(), 0.01, torch.Generator().manual_seed(0))
    assert found.all()
    assert (soft_margin(model(x_hat), y, 5.0) < 0).all()
    distance = (x_hat - x).flatten(1).abs().amax(1)
    assert torch.allclose(distance, expected, rtol=0.02)


def test_surrogate_gradient_points_along_the_closed_form_margin_gradient():
    model, x, y, w = _linear_problem()
    cfg = DyARTConfig()
    x_hat, found = boundary_search(model, x, y, cfg, 0.01, torch.Generator().manual_seed(0))
    _, grad = soft_margin_and_grad(model, x_hat, y, cfg.beta)
    weights = margin_weights(x, x_hat, grad, cfg, r0=1.0)
    model.zero_grad()
    (weights * soft_margin(model(x_hat), y, cfg.beta)).sum().backward()
    surrogate = torch.cat([p.grad.flatten() for p in model.parameters()])

    model.zero_grad()
    radius = (x_hat - x).flatten(1).abs().amax(1).detach()
    closed_form = soft_margin(model(x), y, cfg.beta) / (model[1].weight[0] - model[1].weight[1]).abs().sum()
    (torch.exp(-cfg.alpha_r0 / 1.0 * radius) * closed_form).sum().backward()
    exact = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert torch.nn.functional.cosine_similarity(surrogate, exact, dim=0).item() > 0.999
    assert surrogate.norm().item() == pytest.approx(exact.norm().item(), rel=0.02)


def test_margin_weights_vanish_beyond_r0_and_decay_with_radius():
    x = torch.zeros(3, 1, 1, 4)
    x_hat = torch.tensor([0.1, 0.3, 0.7]).view(3, 1, 1, 1).expand(3, 1, 1, 4)
    grad = torch.ones(3, 1, 1, 4)
    w = margin_weights(x, x_hat, grad, DyARTConfig(alpha_r0=1.5), r0=0.5)  # alpha = 1.5 / 0.5 = 3
    assert w[2] == 0 and w[0] > w[1] > 0
    assert w[0].item() == pytest.approx(np.exp(-0.3) / 4, rel=1e-6)


def test_alpha_scales_with_the_radius_as_in_the_reference():
    """The reference's alpha 3 at r0 = 16/255 is the default alpha_r0: at the reference's radii the
    weights equal exp(-3 R); at a track's r0 (here 2 x 0.3) the same decay per unit of r0 applies."""
    x = torch.zeros(2, 1, 1, 4)
    grad = torch.ones(2, 1, 1, 4)
    cfg = DyARTConfig()
    ref_r0 = 16 / 255
    x_hat = torch.tensor([0.25, 0.5]).view(2, 1, 1, 1).expand(2, 1, 1, 4) * ref_r0
    w = margin_weights(x, x_hat, grad, cfg, r0=ref_r0)
    assert w[0].item() * 4 == pytest.approx(np.exp(-3 * 0.25 * ref_r0), rel=1e-6)
    scaled = margin_weights(x, x_hat / ref_r0 * 0.6, grad, cfg, r0=0.6)
    assert torch.allclose(w, scaled)


def test_kkt_filter_accepts_a_projection_and_rejects_a_misaligned_step():
    grad = torch.tensor([[1.0, -2.0, 0.05, 0.0]])
    assert kkt_aligned(-0.1 * grad.sign() * torch.tensor([[1, 1, 0, 0]]), grad).item()
    assert not kkt_aligned(0.1 * grad.sign() * torch.tensor([[1, 1, 0, 0]]), grad).item()


def test_loss_adds_the_margin_term_only_for_found_points():
    import torch.nn.functional as F

    from benchmark.models.architectures import build_model
    from benchmark.pipeline.data import load_dataset
    from defenses.base import TrainContext

    bundle = load_dataset("synthetic")
    torch.manual_seed(0)
    model = build_model("cnn-tiny", 10, bundle.input_shape, bundle.mean, bundle.std)
    x, y = bundle.train.x[:32], bundle.train.y[:32]
    ctx = TrainContext(epoch=0, step=0, device=torch.device("cpu"), eps=0.3, attack_steps=3, step_size=0.075,
                       num_classes=10, generator=torch.Generator().manual_seed(0))
    defense = DyART()
    index, x_hat, weights = defense.boundary_points(model, x, y, ctx)
    with torch.no_grad():
        correct = soft_margin(model(x), y, 5.0) > 1e-9
    assert correct[index].all() and (weights >= 0).all() and not weights.requires_grad
    ctx.generator.manual_seed(0)
    loss = defense.loss(model, x, y, ctx)
    expected = F.cross_entropy(model(x), y) - 1000 * (weights * soft_margin(model(x_hat), y[index], 5.0)).sum() / 32
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
