"""LipLT pairwise Lipschitz bounds: linear maps, power iteration, the recursion, certified radii.

The bound is checked against quantities computed without `benchmark.models.lipschitz`: autograd
gradients of z_k - z_j at random and PGD-perturbed inputs and of the network with its ReLUs
replaced by arbitrary fixed masks (every such Jacobian is covered by the slope-[0, 1] argument),
spectral norms of explicit matrices, the hand-expanded recursion for three layers, and L2-PGD.
"""
from __future__ import annotations

import copy
import functools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from attacks.pgd import PGD
from benchmark.core.errors import AtbenchError
from benchmark.models.architectures import Normalize, build_model, plain_cnn
from benchmark.models.lipschitz import (
    LipschitzBound,
    certified_lipschitz,
    certified_radius,
    linear_layers,
    pairwise_lipschitz,
)
from benchmark.pipeline.data import load_dataset

pytestmark = pytest.mark.unit

REL = 1e-4  # power-iteration slack allowed when comparing with exact quantities
PROPERTY = settings(max_examples=20, deadline=None, derandomize=True, database=None)


def random_plain(seed: int, kind: str) -> tuple[nn.Sequential, tuple[int, int, int]]:
    """A small random plain CNN or MLP with non-trivial Normalize statistics."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    channels = 1 + seed % 2
    shape = (channels, 6 + seed % 3, 6 + seed % 3)
    mean = torch.rand(channels, generator=g).tolist()
    std = (0.2 + torch.rand(channels, generator=g)).tolist()
    classes = 3 + seed % 3
    if kind == "cnn":
        widths = (3, 4)[: 1 + seed % 2]
        model = plain_cnn(channels, shape[1:], widths, (5,) * (seed % 2), classes, mean, std,
                          strides=(1, 2)[: len(widths)])
    else:
        features = channels * shape[1] * shape[2]
        model = nn.Sequential(Normalize(mean, std), nn.Flatten(), nn.Linear(features, 12), nn.ReLU(),
                              nn.Linear(12, 7), nn.ReLU(), nn.Linear(7, classes))
    return model, shape


def pair_gradient_norms(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(K, K): the largest ||grad_x (z_k - z_j)||_2 over the batch `x`, by autograd."""
    x = x.clone().requires_grad_(True)
    z = model(x)
    rows = [torch.autograd.grad(z[:, k].sum(), x, retain_graph=True)[0].flatten(1) for k in range(z.shape[1])]
    jac = torch.stack(rows, dim=1)  # (B, K, d)
    return torch.cdist(jac, jac).amax(dim=0)


def masked_jacobian_norms(model: nn.Sequential, shape, masks: list[torch.Tensor]) -> torch.Tensor:
    """(K, K) ||(e_k - e_j)^T J|| for J the Jacobian of `model` with its i-th ReLU replaced by a
    multiplication with masks[i] (slopes in [0, 1]), by autograd through the model's own modules."""
    x = torch.rand(1, *shape, requires_grad=True)
    h, relus = x, iter(masks)
    for module in model:
        h = h * next(relus) if isinstance(module, nn.ReLU) else module(h)
    rows = [torch.autograd.grad(h[0, k], x, retain_graph=True)[0].flatten() for k in range(h.shape[1])]
    jac = torch.stack(rows)
    return torch.cdist(jac, jac)


def relu_shapes(model: nn.Sequential, shape) -> list[torch.Size]:
    """Shapes of the inputs of the model's ReLUs for a batch of one."""
    shapes, h = [], torch.zeros(1, *shape)
    for module in model:
        if isinstance(module, nn.ReLU):
            shapes.append(h.shape)
        h = module(h)
    return shapes


def explicit(linear_map) -> torch.Tensor:
    """The explicit (out, in) float64 matrix of a `LinearMap` (applied to the identity basis)."""
    with torch.no_grad():
        return linear_map(torch.eye(linear_map.in_features)).T.double()


def spectral(matrix: torch.Tensor) -> torch.Tensor:
    return torch.linalg.matrix_norm(matrix, ord=2)


def assert_covers(L: torch.Tensor, measured: torch.Tensor) -> None:
    """bound >= measured for every pair, up to the power-iteration slack."""
    excess = measured - L * (1 + REL) - 1e-6
    assert (excess <= 0).all(), f"bound below a measured gradient norm by {excess.max().item():.3g}"


# ----------------------------------------------------------------------------- linear maps


CONVS = [  # in, out, kernel, stride, padding, dilation, groups, H, W
    (1, 3, 3, 1, 1, 1, 1, 4, 4),
    (2, 4, 4, 2, 1, 1, 2, 5, 5),
    (3, 2, 3, 2, 0, 1, 1, 7, 6),
    (2, 2, 3, 3, 2, 2, 1, 6, 6),
    (1, 2, 2, 2, 0, 1, 1, 5, 5),
]


@pytest.mark.parametrize("cin, cout, k, s, p, d, groups, h, w", CONVS)
def test_conv_linear_map_matches_module_adjoint_and_explicit_norm(cin, cout, k, s, p, d, groups, h, w):
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, k, s, p, d, groups)
    out_numel = conv(torch.zeros(1, cin, h, w)).numel()
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(out_numel, 2))
    W = linear_layers(model, (cin, h, w))[0]
    x = torch.randn(3, cin, h, w)
    with torch.no_grad():
        torch.testing.assert_close(W(x.flatten(1)), (conv(x) - conv(torch.zeros_like(x))).flatten(1),
                                   rtol=1e-5, atol=1e-5)
        y = torch.randn(3, W.out_features)
        torch.testing.assert_close((W(x.flatten(1)) * y).sum(1), (x.flatten(1) * W.adjoint(y)).sum(1),
                                   rtol=1e-5, atol=1e-5)
    matrix = explicit(W)
    torch.testing.assert_close(W.adjoint(torch.eye(W.out_features)).double(), matrix, rtol=1e-6, atol=1e-6)
    lip = LipschitzBound(model, (cin, h, w))
    lip.bound(tol=1e-9, max_iterations=3000)
    estimate = lip.product_norms()[0, 0].item()
    assert estimate == pytest.approx(spectral(matrix).item(), rel=REL)


@pytest.mark.parametrize("seed", [0, 1])
def test_default_bound_converges_on_a_full_size_conv_layer(seed):
    torch.manual_seed(seed)
    model = build_model("cnn-tiny", 10, (1, 28, 28), (0.13,), (0.31,))
    lip = LipschitzBound(model, (1, 28, 28))
    L = lip.bound()
    assert lip.product_norms()[0, 0].item() == pytest.approx(spectral(explicit(lip.maps[0])).item(), rel=REL)
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(certified_radius(model, x), certified_radius(model, x, (1, 28, 28), L))


@pytest.mark.parametrize("kind", ["cnn", "mlp"])
def test_linear_maps_compose_to_the_network_with_normalize_folded(kind):
    model, shape = random_plain(1, kind)
    maps = linear_layers(model, shape)
    product = explicit(maps[0])
    for W in maps[1:]:
        product = explicit(W) @ product
    masks = [torch.ones(s) for s in relu_shapes(model, shape)]
    x = torch.rand(1, *shape, requires_grad=True)
    h = x
    for module in model:
        h = h * masks.pop(0) if isinstance(module, nn.ReLU) else module(h)
    jac = torch.stack([torch.autograd.grad(h[0, k], x, retain_graph=True)[0].flatten() for k in range(h.shape[1])])
    torch.testing.assert_close(product, jac.double(), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- the bound


@PROPERTY
@given(seed=st.integers(0, 1000), kind=st.sampled_from(["cnn", "mlp"]))
def test_bound_covers_gradients_at_random_pgd_and_masked_points(seed, kind):
    model, shape = random_plain(seed, kind)
    L = pairwise_lipschitz(model, shape)
    assert torch.equal(L, L.T) and (L.diagonal() == 0).all() and (L + torch.eye(len(L)) > 0).all()
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(32, *shape, generator=g)
    with torch.no_grad():
        pred = model(x).argmax(1)
    x_l2 = PGD(norm="L2", steps=10, seed=seed)(model, x, pred, eps=1.0)
    x_linf = PGD(steps=10, seed=seed)(model, x, pred, eps=0.3)
    measured = [pair_gradient_norms(model, points) for points in (x, x_l2, x_linf)]
    assert measured[0].max() > 0
    shapes = relu_shapes(model, shape)
    for density in (1.0, 1.0, 0.9, 0.5, None):
        masks = [torch.rand(s, generator=g) if density is None else (torch.rand(s, generator=g) < density).float()
                 for s in shapes]
        measured.append(masked_jacobian_norms(model, shape, masks))
    for norms in measured:
        assert_covers(L, norms)


@pytest.mark.parametrize("seed, kind", [(0, "cnn"), (1, "cnn"), (2, "mlp"), (3, "mlp")])
def test_bound_lies_below_the_naive_product_bound(seed, kind):
    model, shape = random_plain(seed, kind)
    L = pairwise_lipschitz(model, shape).double()
    matrices = [explicit(W) for W in linear_layers(model, shape)]
    rows = matrices[-1]
    naive = torch.cdist(rows, rows) * torch.prod(torch.stack([spectral(M) for M in matrices[:-1]]))
    assert (L <= naive * (1 + REL)).all()
    assert (L < naive).any()  # LipLT is strictly tighter here


def test_three_layer_bound_matches_the_hand_expanded_recursion():
    torch.manual_seed(3)
    model = nn.Sequential(Normalize((0.3, 0.6), (0.5, 0.25)), nn.Conv2d(2, 3, 3, 2, 1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 4))
    W1, W2, W3 = (explicit(W) for W in linear_layers(model, (2, 4, 4)))
    m1 = spectral(W1)
    m2 = spectral(W2 @ W1) / 2 + spectral(W2) * m1 / 2
    expected = torch.zeros(4, 4, dtype=torch.float64)
    for k in range(4):
        for j in range(4):
            if k != j:
                c = W3[k] - W3[j]
                expected[k, j] = ((c @ W2 @ W1).norm() / 4 + (c @ W2).norm() * m1 / 4 + c.norm() * m2 / 2)
    torch.testing.assert_close(pairwise_lipschitz(model, (2, 4, 4)).double(), expected, rtol=REL, atol=1e-7)


def test_single_linear_layer_bound_is_exact():
    torch.manual_seed(0)
    std = torch.tensor([0.5, 2.0])
    model = nn.Sequential(Normalize((0.1, 0.2), std.tolist()), nn.Flatten(), nn.Linear(18, 5))
    L = pairwise_lipschitz(model, (2, 3, 3))
    rows = model[2].weight.detach() / std.repeat_interleave(9)
    torch.testing.assert_close(L, torch.cdist(rows, rows) * (1 - torch.eye(5)), rtol=1e-5, atol=1e-6)
    x = torch.rand(16, 2, 3, 3)
    radius = certified_radius(model, x, L=L)
    with torch.no_grad():
        z = model(x)
        pred = z.argmax(1)
        margins = (z.gather(1, pred[:, None]) - z) / L[pred]
        margins[torch.arange(16), pred] = float("inf")
        worst = margins.argmin(1)
        step = -(rows[pred] - rows[worst]) / (rows[pred] - rows[worst]).norm(dim=1, keepdim=True)
        for factor, same in ((0.999, True), (1.001, False)):
            moved = x + (factor * radius[:, None] * step).view_as(x)  # the exact decision boundary (no box)
            assert ((model(moved).argmax(1) == pred) == same).all()


def test_update_warm_starts_detached_vectors_and_norms_are_differentiable():
    model, shape = random_plain(5, "cnn")
    a, b = LipschitzBound(model, shape), LipschitzBound(model, shape)
    a.update(5)
    first = a.product_norms().detach()
    a.update(5)
    b.update(10)
    for va, vb in zip(a.vectors, b.vectors):
        assert not va.requires_grad
        torch.testing.assert_close(va, vb)
    assert (a.product_norms().detach() >= first * (1 - 1e-6)).all()  # power iteration only climbs
    a.pairwise().sum().backward()
    grads = [p.grad for p in model.parameters() if p.dim() > 1]
    assert all(gr is not None and gr.isfinite().all() and gr.abs().sum() > 0 for gr in grads)


def test_converged_bound_gradient_matches_finite_differences():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)).double()
    lip = LipschitzBound(model, (6,))
    lip.bound(tol=1e-13, max_iterations=5000)
    lip.pairwise().sum().backward()
    weight = model[2].weight
    direction = torch.randn_like(weight)
    h = 1e-6
    with torch.no_grad():
        values = []
        for sign in (1, -1):
            weight += sign * h * direction
            values.append(pairwise_lipschitz(model, (6,)).sum())
            weight -= sign * h * direction
    numeric = (values[0] - values[1]) / (2 * h)
    assert (weight.grad * direction).sum().item() == pytest.approx(numeric.item(), rel=1e-4)


# ----------------------------------------------------------------------------- certificates


@functools.cache
def trained_plain_cnn() -> tuple[nn.Module, torch.Tensor]:
    """A small plain CNN trained for a few epochs on the synthetic data, and 24 test images."""
    bundle = load_dataset("synthetic")
    torch.manual_seed(0)
    model = plain_cnn(1, (28, 28), (8, 16), 32, bundle.num_classes, bundle.mean, bundle.std, strides=(2, 2))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(3):
        for idx in torch.randperm(len(bundle.train.y)).split(50):
            opt.zero_grad()
            F.cross_entropy(model(bundle.train.x[idx]), bundle.train.y[idx]).backward()
            opt.step()
    return model.eval(), bundle.test.x[:24], bundle.test.y[:24]


def test_l2_pgd_finds_nothing_inside_the_certified_radius():
    model, x, y = trained_plain_cnn()
    L = pairwise_lipschitz(model, (1, 28, 28))
    radius = certified_radius(model, x, L=L)
    with torch.no_grad():
        pred = model(x).argmax(1)
    assert (pred == y).float().mean() > 0.8 and (radius > 0).all()
    attack = PGD(norm="L2", steps=50, restarts=3)
    for i in range(len(x)):
        x_adv = attack(model, x[i:i + 1], pred[i:i + 1], eps=0.99 * radius[i].item())
        with torch.no_grad():
            assert model(x_adv).argmax(1).item() == pred[i].item()
    x_far = PGD(norm="L2", steps=50)(model, x, pred, eps=20 * radius.max().item())
    with torch.no_grad():
        assert (model(x_far).argmax(1) != pred).any()  # the attack does work further out


def test_certified_norms_are_exact_and_never_below_power_iteration(monkeypatch):
    """Power iteration approaches each product's norm from below, which would inflate certified
    radii: certification uses the exact norms (float64 Gram matrices), rounded up; a product
    larger than EXACT_LIMIT, or too wide to form (EXACT_ENTRIES), falls back to power iteration
    and says so."""
    from benchmark.models import lipschitz

    model, shape = random_plain(4, "cnn")
    exact = LipschitzBound(copy.deepcopy(model).double(), shape)
    norms = exact.exact_product_norms()
    maps = [explicit(W) for W in linear_layers(model, shape)]
    for b in range(len(maps) - 1):
        for a in range(b + 1):
            chain = maps[a]
            for M in maps[a + 1:b + 1]:
                chain = M @ chain
            assert norms[b, a].item() == pytest.approx(torch.linalg.matrix_norm(chain, ord=2).item(), rel=1e-6)
    L, method = certified_lipschitz(model, shape)
    assert method == lipschitz.EXACT and L.dtype == torch.float32
    assert (L.double() >= exact.pairwise(norms)).all()  # rounded up, never down
    power = LipschitzBound(model, shape)
    power.update(3)
    assert (power.pairwise().detach() <= L * (1 + 1e-6)).all()
    monkeypatch.setattr(lipschitz, "EXACT_ENTRIES", 2 * shape[0] * shape[1] * shape[2])
    assert certified_lipschitz(model, shape)[1] == lipschitz.POWER_ITERATION  # too wide to form
    monkeypatch.setattr(lipschitz, "EXACT_ENTRIES", 2 ** 27)
    monkeypatch.setattr(lipschitz, "EXACT_LIMIT", 2)
    assert certified_lipschitz(model, shape)[1] == lipschitz.POWER_ITERATION


# ----------------------------------------------------------------------------- errors


def test_non_plain_models_raise_a_clear_error():
    resnet = build_model("preact-resnet18", 10, (3, 32, 32), (0.5,) * 3, (0.25,) * 3)
    with pytest.raises(AtbenchError, match="(?s)PreActResNet.*no skip connections, no BatchNorm"):
        pairwise_lipschitz(resnet, (3, 32, 32))
    bn = nn.Sequential(Normalize((0.5,), (0.25,)), nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                       nn.Linear(8, 3))
    with pytest.raises(AtbenchError, match="layer 2 of the model, a BatchNorm2d"):
        linear_layers(bn, (1, 4, 4))
    trailing = nn.Sequential(nn.Flatten(), nn.Linear(16, 3), nn.ReLU())
    with pytest.raises(AtbenchError, match="ends with a ReLU"):
        linear_layers(trailing, (1, 4, 4))
    circular = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular"), nn.ReLU(), nn.Flatten(),
                             nn.Linear(32, 3))
    with pytest.raises(AtbenchError, match="padding_mode 'circular'"):
        linear_layers(circular, (1, 4, 4))
