"""CRM-LipLT: the radius loss, the bound on a CRM-trained network (above every measured gradient
norm, below the naive product bound, never beaten by L2-PGD inside a certified radius), that the
loss enlarges certified radii, and the clear error on unsupported architectures."""
import functools

import pytest
import torch
import torch.nn.functional as F

from attacks.pgd import PGD
from benchmark.core.errors import AtbenchError
from benchmark.core.registry import TRACKS
from benchmark.models.architectures import build_model
from benchmark.models.lipschitz import LipschitzBound, linear_layers, pairwise_lipschitz
from benchmark.pipeline.data import load_dataset
from benchmark.pipeline.train import train
from defenses.base import TrainContext
from defenses.crm_liplt import CRMConfig, CRMLipLT, certified_radius, radius_loss
from tests.test_lipschitz import assert_covers, explicit, pair_gradient_norms, spectral

pytestmark = pytest.mark.unit

SHAPE = (1, 28, 28)


def _ctx(step=0):
    return TrainContext(epoch=1, step=step, device=torch.device("cpu"), eps=0.1, attack_steps=3, step_size=0.025,
                        num_classes=10, generator=torch.Generator().manual_seed(0))


@functools.cache
def crm_trained(crm: bool = True, steps: int = 150):
    """cnn-tiny trained on the synthetic set with the CRM loss (or plain CE), seeded."""
    bundle = load_dataset("synthetic")
    torch.manual_seed(0)
    model = build_model("cnn-tiny", 10, bundle.input_shape, bundle.mean, bundle.std)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    defense = CRMLipLT(CRMConfig(r0=3.0))
    g = torch.Generator().manual_seed(0)
    for step in range(steps):
        idx = torch.randint(0, len(bundle.train.y), (64,), generator=g)
        x, y = bundle.train.x[idx], bundle.train.y[idx]
        loss = defense.loss(model, x, y, _ctx(step)) if crm else F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), bundle.test.x[:48], bundle.test.y[:48]


def test_radius_loss_matches_the_formula_on_correct_points_below_r0():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.9], [5.0, 0.0, 4.0], [0.0, 0.0, 9.0]])
    y = torch.tensor([0, 1, 0, 0])  # the last point is misclassified
    L = torch.tensor([[0.0, 2.0, 4.0], [2.0, 0.0, 1.0], [4.0, 1.0, 0.0]])
    cfg = CRMConfig(mu=2.0, r0=0.6, t=5.0)
    # radii: point 0: (3-1)/2 = 1, (3-0)/4 = 0.75 -> min 0.75 >= r0, inactive
    #        point 1: (2-0)/2 = 1, (2-1.9)/1 = 0.1 -> active
    #        point 2: (5-0)/2 = 2.5, (5-4)/4 = 0.25 -> active
    expected = (torch.logsumexp(-5 * torch.tensor([1.0, 0.1]), 0) / 5
                + torch.logsumexp(-5 * torch.tensor([2.5, 0.25]), 0) / 5) * 2.0 / 4
    assert radius_loss(logits, y, L, cfg).item() == pytest.approx(expected.item(), rel=1e-6)


def test_radius_loss_is_differentiable_in_logits_and_bounds():
    logits = torch.randn(16, 10, requires_grad=True)
    lip = (torch.rand(10, 10) + 0.5).requires_grad_(True)
    radius_loss(logits, logits.argmax(1).detach(), lip, CRMConfig(r0=100.0)).backward()
    assert logits.grad.abs().sum() > 0 and lip.grad.abs().sum() > 0


def test_bound_on_a_crm_trained_network_covers_measured_gradients_and_is_below_the_naive_bound():
    model, x, _ = crm_trained()
    L = pairwise_lipschitz(model, SHAPE)
    with torch.no_grad():
        pred = model(x).argmax(1)
    points = [x, torch.rand(48, *SHAPE, generator=torch.Generator().manual_seed(1)),
              PGD(norm="L2", steps=20)(model, x, pred, eps=1.0), PGD(steps=20)(model, x, pred, eps=0.3)]
    for p in points:
        assert_covers(L, pair_gradient_norms(model, p))
    matrices = [explicit(W) for W in linear_layers(model, SHAPE)]
    naive = torch.cdist(matrices[-1], matrices[-1]) * torch.prod(torch.stack([spectral(M) for M in matrices[:-1]]))
    assert (L.double() <= naive * 1.0001).all()


def test_l2_pgd_finds_nothing_inside_a_certified_radius_of_a_crm_model():
    model, x, _ = crm_trained()
    radius = certified_radius(model, x)
    with torch.no_grad():
        pred = model(x).argmax(1)
    assert (radius > 0).all()
    attack = PGD(norm="L2", steps=50, restarts=2)
    for i in range(0, len(x), 4):
        x_adv = attack(model, x[i:i + 1], pred[i:i + 1], eps=0.99 * radius[i].item())
        with torch.no_grad():
            assert model(x_adv).argmax(1).item() == pred[i].item()


def test_the_radius_term_enlarges_certified_radii():
    crm, x, y = crm_trained(crm=True)
    plain, _, _ = crm_trained(crm=False)
    assert certified_radius(crm, x).median() > 1.5 * certified_radius(plain, x).median()


def test_training_bound_is_a_power_iteration_estimate_below_the_converged_bound():
    model, _, _ = crm_trained()
    bound = LipschitzBound(model, SHAPE, seed=3)
    bound.update(5)
    warm = bound.pairwise().detach()
    converged = pairwise_lipschitz(model, SHAPE)
    assert (warm <= converged * (1 + 1e-4) + 1e-6).all() and (warm >= 0.5 * converged).all()


def test_unsupported_architecture_is_a_clear_error(tmp_path):
    assert CRMLipLT.meta.architectures and "preact-resnet18" not in CRMLipLT.meta.architectures
    with pytest.raises(AtbenchError, match="crm-liplt.*does not support architecture 'preact-resnet18'"):
        train(TRACKS.get("cifar10-prn18"), CRMLipLT(), 0, tmp_path)
    assert not any(tmp_path.iterdir())


def test_burn_in_scales_the_reference_start_epoch_to_the_track():
    assert CRMLipLT().overrides(TRACKS.get("mnist5k-cnn"))["burn_in_epochs"] == 1
    assert CRMLipLT().overrides(TRACKS.get("cifar10-cnn"))["burn_in_epochs"] == round(
        TRACKS.get("cifar10-cnn").epochs * 10 / 400)
