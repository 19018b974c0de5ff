"""GloRo: the global product bound (a valid bound, never below LipLT, equal to the independently
computed ||w_i - w_j|| prod ||W_l||), the bottom logit against a loop, certification of points
whose margin exceeds eps K, that training certifies more points, the eps it trains at, and its
metadata (validate's checks, L2 tracks only)."""
import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from benchmark.commands.validate import Workbench, check_config, check_metadata, check_training, checked_track
from benchmark.core.registry import DEFENSES, TRACKS
from benchmark.models.lipschitz import LipschitzBound
from benchmark.pipeline.train import supports
from benchmark.pipeline.tune import TUNING_BUDGET
from defenses.base import TrainContext
from defenses.crm_liplt import CRMLipLT
from defenses.gloro import GloRo, GloroConfig, bottom_logit, certified_radius, gloro_logits, gloro_loss
from tests.test_lipschitz import PROPERTY, assert_covers, pair_gradient_norms, random_plain


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(9, 7), nn.ReLU(), nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 4))


def _exact(model: nn.Module, shape) -> tuple[torch.Tensor, torch.Tensor]:
    """(global bound, LipLT bound), both from exact spectral norms of a float64 copy."""
    wide = LipschitzBound(copy.deepcopy(model).double(), shape)
    norms = wide.exact_product_norms()
    with torch.no_grad():
        return wide.global_pairwise(norms), wide.pairwise(norms)


def _ctx(eps: float, step: int = 0) -> TrainContext:
    return TrainContext(epoch=1, step=step, device=torch.device("cpu"), eps=eps, attack_steps=0, step_size=0.0,
                        num_classes=3, generator=torch.Generator().manual_seed(0), norm="L2")


@pytest.mark.unit
@PROPERTY
@given(seed=st.integers(0, 1000), kind=st.sampled_from(["cnn", "mlp"]))
def test_global_bound_is_above_liplt_and_every_measured_gradient(seed, kind):
    model, shape = random_plain(seed, kind)
    glob, liplt = _exact(model, shape)
    assert (glob >= liplt * (1 - 1e-12)).all()
    x = torch.rand(16, *shape, generator=torch.Generator().manual_seed(seed))
    assert_covers(glob.float(), pair_gradient_norms(model, x))


@pytest.mark.unit
def test_global_bound_equals_row_distances_times_layer_spectral_norms():
    model, shape = _mlp(), (1, 3, 3)
    W1, W2, W3 = (model[i].weight.detach().double() for i in (1, 3, 5))
    expected = torch.cdist(W3, W3) * torch.linalg.matrix_norm(W1, ord=2) * torch.linalg.matrix_norm(W2, ord=2)
    glob, _ = _exact(model, shape)
    torch.testing.assert_close(glob, expected, rtol=1e-10, atol=1e-12)
    bound = LipschitzBound(model, shape, seed=1)
    bound.update(5)
    warm = bound.global_pairwise().detach().double()
    assert (warm <= expected * (1 + 1e-5)).all() and (warm >= 0.5 * expected).all()  # power iteration: from below
    bound.update(500)
    converged = bound.global_pairwise()
    torch.testing.assert_close(converged.detach().double(), expected, rtol=1e-4, atol=1e-6)
    converged.sum().backward()
    assert all(model[i].weight.grad.abs().sum() > 0 for i in (1, 3, 5))


@pytest.mark.unit
def test_bottom_logit_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 5, generator=g)
    lip = torch.rand(5, 5, generator=g)
    lip = (lip + lip.T) * (1 - torch.eye(5))
    eps = 0.7
    expected = []
    for z in logits:
        j = int(z.argmax())
        expected.append(max(float(z[i] + eps * lip[j, i]) for i in range(5) if i != j))
    torch.testing.assert_close(bottom_logit(logits, lip, eps), torch.tensor(expected))
    augmented = gloro_logits(logits, lip, eps)
    assert augmented.shape == (8, 6) and torch.equal(augmented[:, :5], logits)


@pytest.mark.unit
def test_a_margin_above_eps_times_k_is_certified_and_predicted_below_it_is_bottom():
    model, shape = _mlp(3).double(), (1, 3, 3)
    glob, _ = _exact(model, shape)
    x = torch.rand(12, *shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        z = model(x)
    pred = z.argmax(1)
    radius = certified_radius(model, x, shape, L=glob)
    for i in range(len(x)):
        eps = 0.9 * radius[i].item()
        margin = z[i, pred[i]] - z[i]
        others = torch.arange(4) != pred[i]
        assert (margin[others] > eps * glob[pred[i]][others]).all()
        assert gloro_logits(z[i:i + 1], glob, eps).argmax(1).item() == pred[i].item()
        assert certified_radius(model, x[i:i + 1], shape, L=glob).item() >= eps
        assert gloro_logits(z[i:i + 1], glob, 1.1 * radius[i].item()).argmax(1).item() == 4  # bottom


def _blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 1.7]])
    y = torch.randint(0, 3, (n,), generator=g)
    return centres[y] + 0.25 * torch.randn(n, 2, generator=g), y


def _certified_fraction(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> float:
    glob, _ = _exact(model, (2,))
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    return (correct & (certified_radius(model, x, (2,), L=glob.float()) >= eps)).float().mean().item()


@pytest.mark.unit
def test_loss_is_finite_differentiable_and_training_certifies_more_points():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
    x, y = _blobs(256, 0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):  # clean pre-training: accurate, few points certified at eps
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    eps, defense = 0.5, GloRo(GloroConfig(eps_train_factor=1.0))
    before = _certified_fraction(model, x, y, eps)
    defense.on_epoch_start(model, _ctx(eps))
    for step in range(60):
        loss = defense.loss(model, x, y, _ctx(eps, step))
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        assert sum(p.grad.abs().sum() for p in model.parameters()) > 0
        optimizer.step()
    after = _certified_fraction(model, x, y, eps)
    assert after > before + 0.5, (before, after)  # about 0.10 -> 0.9


@pytest.mark.unit
def test_loss_trains_at_the_factor_times_the_ramped_eps_with_the_global_bound():
    model, _ = random_plain(0, "cnn")
    x, y = torch.rand(4, 1, 6, 6), torch.tensor([0, 1, 2, 0])
    for eps in (0.2, 0.5):
        defense = GloRo(GloroConfig(eps_train_factor=1.5))
        got = defense.loss(model, x, y, _ctx(eps))
        bound = LipschitzBound(model, (1, 6, 6), seed=0)
        bound.update(50)
        bound.update(5)
        torch.testing.assert_close(got, gloro_loss(model(x), y, bound.global_pairwise(), 1.5 * eps))


@pytest.mark.unit
def test_every_norm_plain_architectures_and_the_tuning_budget():
    assert DEFENSES.get("gloro") is GloRo
    for track in ("mnist5k-cnn", "mnist5k-cnn-l2", "smoke"):
        assert supports(GloRo, TRACKS.get(track))
    meta = GloRo.meta
    assert (meta.threat_models, meta.any_track_norm, meta.selection) == (("L2",), True, "certified-l2")
    assert meta.architectures == CRMLipLT.meta.architectures
    assert len(meta.search_space) == TUNING_BUDGET
    assert {"eps_train_factor": GloroConfig().eps_train_factor} in meta.search_space
    assert GloRo().overrides(TRACKS.get("mnist5k-cnn-l2")) == {"optimizer": "adam", "lr": 1e-3}


@pytest.mark.system
def test_validate_trains_it_on_the_validation_track_and_an_l2_only_defense_on_its_l2_copy():
    class L2Only(GloRo):
        meta = dataclasses.replace(GloRo.meta, any_track_norm=False)

    assert (checked_track(L2Only).name, checked_track(L2Only).norm) == ("synthetic-tiny-l2", "L2")
    bench = Workbench("gloro")
    assert bench.track.name == Workbench("pgd-at").track.name == Workbench("crm-liplt").track.name == "synthetic-tiny"
    assert "Globally-Robust Neural Networks" in check_metadata(bench)
    check_config(bench)
    assert "changed" in check_training(bench)


@pytest.mark.unit
def test_on_a_linf_track_it_trains_for_l2_per_linf_times_the_eps():
    model, _ = random_plain(0, "cnn")
    x, y = torch.rand(4, 1, 6, 6), torch.tensor([0, 1, 2, 0])
    linf = dataclasses.replace(_ctx(0.3), norm="Linf")
    defense = GloRo(GloroConfig(eps_train_factor=1.0))
    assert defense.l2_radius(linf) == pytest.approx(1.5) and defense.l2_radius(_ctx(0.3)) == 0.3
    bound = LipschitzBound(model, (1, 6, 6), seed=0)
    bound.update(50)
    bound.update(5)
    torch.testing.assert_close(defense.loss(model, x, y, linf), gloro_loss(model(x), y, bound.global_pairwise(), 1.5))
