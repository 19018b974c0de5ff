"""Margins: closed-form checks of the PGD bisection on linear models, consistency with the
PGD attack, and the bookkeeping of histograms, summaries and confusion matrices."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import nn

from attacks.pgd import PGD
from benchmark.pipeline.data import load_dataset
from benchmark.pipeline.analysis.margins import (
    confusion_matrix,
    histogram,
    input_margins,
    logit_margins,
    margin_edges,
    margin_summary,
)
from tests.helpers import tiny_standard_model

pytestmark = pytest.mark.unit

MARGIN_BINS = margin_edges(-20.0, 20.0, 40)  # the shipped protocols' bins ([analysis.margins])

EPS_MAX = 0.05
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None)


class Linear(nn.Module):
    """Logits W x + b of a flattened 1x4x4 image."""

    def __init__(self, num_classes: int, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.fc(x.flatten(1))


def linear_points(model: Linear, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Points in [0.3, 0.7]^16, far enough from the box that no eps <= 0.3 hits it,
    labelled with the model's prediction; the bias is centred so that many margins are small."""
    x = 0.3 + 0.4 * torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        scores = model(x)
        model.fc.bias -= scores.median(dim=0).values
        return x, model(x).argmax(dim=1)


def exact_margin(model: Linear, x: torch.Tensor, y: torch.Tensor, dual: float = 1) -> np.ndarray:
    """Distance to the decision boundary when the box does not bind: min over k != y of
    (z_y - z_k) / ||w_y - w_k||_dual (dual norm 1 for Linf balls, 2 for L2 balls)."""
    with torch.no_grad():
        w, z = model.fc.weight.double(), model(x).double()
        gaps = z.gather(1, y[:, None]) - z
        norms = (w[y][:, None, :] - w[None]).norm(p=dual, dim=2)
        ratio = gaps / norms
        ratio[torch.arange(len(y)), y] = float("inf")
        return ratio.min(dim=1).values.numpy()


@pytest.fixture(scope="module")
def binary():
    model = Linear(2, seed=0).eval()
    x, y = linear_points(model, 24, seed=1)
    return model, x, y


# Linf PGD reaches the optimal corner; L2 PGD's projections only approach the optimal
# direction, so its estimate may exceed the margin by a little more than the resolution.
@pytest.mark.parametrize("norm, dual, rel_tol", [("Linf", 1, 0.0), ("L2", 2, 0.02)])
def test_bisection_matches_the_closed_form_on_a_binary_linear_model(binary, norm, dual, rel_tol):
    model, x, y = binary
    exact = exact_margin(model, x, y, dual)
    resolution = EPS_MAX / 2**8
    inside = exact < EPS_MAX - resolution
    assert inside.sum() >= 8 and (exact > EPS_MAX).any()
    est = input_margins(model, x, y, eps_max=EPS_MAX, norm=norm, bisections=8)
    # The estimate is the first grid point above the margin PGD finds, never below the exact one.
    assert np.all(est[inside] >= exact[inside] - 1e-6)
    assert np.all(est[inside] <= exact[inside] * (1 + rel_tol) + resolution + 1e-6)
    assert np.all(est[exact > EPS_MAX + 1e-6] == EPS_MAX)


def test_estimate_is_broken_just_above_and_robust_just_below(binary):
    model, x, y = binary
    resolution = EPS_MAX / 2**6
    est = input_margins(model, x, y, eps_max=EPS_MAX, bisections=6)
    attack = PGD(steps=20)
    for i in np.flatnonzero(est < EPS_MAX)[:4]:
        xi, yi = x[i : i + 1], y[i : i + 1]
        assert model(attack(model, xi, yi, est[i] + resolution)).argmax(1).item() != yi.item()
        assert model(attack(model, xi, yi, max(est[i] - resolution - 1e-4, 0.0))).argmax(1).item() == yi.item()


def test_more_bisections_refine_the_estimate_within_the_coarser_resolution(binary):
    model, x, y = binary
    coarse = input_margins(model, x, y, eps_max=EPS_MAX, bisections=4)
    fine = input_margins(model, x, y, eps_max=EPS_MAX, bisections=8)
    assert np.all(fine <= coarse + 1e-12)
    assert np.all(coarse - fine <= EPS_MAX / 2**4 + 1e-12)


def test_estimate_never_falls_below_the_exact_margin_of_a_multiclass_linear_model():
    model = Linear(5, seed=3).eval()
    x, y = linear_points(model, 20, seed=4)
    y[:3] = (y[:3] + 1) % 5  # misclassified points
    exact = exact_margin(model, x, y)
    est = input_margins(model, x, y, eps_max=EPS_MAX, bisections=6)
    assert np.all(est[:3] == 0.0)
    assert np.all((est >= 0) & (est <= EPS_MAX))
    # No attack can break a point inside its exact margin.
    assert np.all(est[3:] >= np.minimum(exact[3:], EPS_MAX) - 1e-6)


@pytest.fixture(scope="module")
def synthetic_batch():
    bundle = load_dataset("synthetic")
    return tiny_standard_model(), bundle.test.x[:16], bundle.test.y[:16].clone()


def assert_pgd_agrees(model, x, y, est, *, eps_max, resolution, steps, seed, norm="Linf"):
    """PGD with the same seed, run on the whole batch at one eps, breaks each uncensored point
    at its estimate and not at the eps one resolution below (the bisection tried both)."""
    predictions = {}
    for eps in np.unique(np.concatenate([est, est - resolution])):
        if resolution / 2 < eps < eps_max:
            with torch.no_grad():
                predictions[eps] = model(PGD(steps=steps, seed=seed, norm=norm)(model, x, y, float(eps))).argmax(1)
    checked = 0
    for i in np.flatnonzero((est > 0) & (est < eps_max)):
        assert predictions[est[i]][i] != y[i]
        if est[i] > resolution * 1.5:
            assert predictions[est[i] - resolution][i] == y[i]
            checked += 1
    assert checked >= 3


@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_estimates_reproduce_pgd_with_the_same_seed_on_a_linear_model(binary, norm):
    model, x, y = binary  # 3 steps: PGD is far from exact, so its start and step size matter
    est = input_margins(model, x, y, eps_max=2 * EPS_MAX, norm=norm, steps=3, bisections=6, seed=5, batch_size=10)
    assert_pgd_agrees(model, x, y, est, eps_max=2 * EPS_MAX, resolution=2 * EPS_MAX / 2**6, steps=3, seed=5,
                      norm=norm)


def test_estimates_reproduce_pgd_with_the_same_seed_on_a_cnn(synthetic_batch):
    model, x, y = synthetic_batch
    est = input_margins(model, x, y, eps_max=0.2, steps=10, bisections=5, seed=3, batch_size=7)
    assert_pgd_agrees(model, x, y, est, eps_max=0.2, resolution=0.2 / 2**5, steps=10, seed=3)


class NarrowBand(nn.Module):
    """Two classes on one-pixel images t: class 1 wins only on |t - 0.6| < 0.01, a band
    narrower than PGD's steps, so the ascent overshoots it and only keep-first-fooling holds
    on to an iterate that lands inside."""

    def forward(self, x):
        t = x.flatten(1).mean(1)
        band = 1 - 1e4 * (t - 0.6) ** 2
        return torch.stack([torch.zeros_like(band), band], dim=1)


def test_estimates_keep_the_first_fooling_iterate():
    model, x = NarrowBand(), torch.linspace(0.3, 0.5, 64).view(-1, 1, 1, 1)
    y = torch.zeros(64, dtype=torch.long)
    est = input_margins(model, x, y, eps_max=0.4, steps=10, bisections=6, seed=2)
    assert_pgd_agrees(model, x, y, est, eps_max=0.4, resolution=0.4 / 2**6, steps=10, seed=2)


def test_input_margins_leave_the_model_untouched_and_zero_misclassified_points(synthetic_batch):
    model, x, y = synthetic_batch
    y = y.clone()
    y[0] = (y[0] + 1) % 10
    model.train()
    params = {name: p.detach().clone() for name, p in model.named_parameters()}
    grads = {name: None if p.grad is None else p.grad.clone() for name, p in model.named_parameters()}
    est = input_margins(model, x, y, eps_max=0.1, steps=5, bisections=3)
    assert model.training and all(p.requires_grad for p in model.parameters())
    model.eval()
    for name, p in model.named_parameters():
        assert torch.equal(p, params[name])
        assert (p.grad is None and grads[name] is None) or torch.equal(p.grad, grads[name])
    assert est.dtype == np.float64 and est.shape == (16,)
    with torch.no_grad():
        clean_correct = (model(x).argmax(1) == y).numpy()
    assert np.array_equal(est == 0.0, ~clean_correct) and np.all(est <= 0.1)


def test_logit_margins_match_the_logits(synthetic_batch):
    model, x, y = synthetic_batch
    margins = logit_margins(model, x, y, "cpu", batch_size=5)
    with torch.no_grad():
        logits = model.eval()(x).double()
    assert margins.dtype == np.float64 and margins.shape == (16,)
    for i in range(16):
        others = torch.cat([logits[i, : y[i]], logits[i, y[i] + 1 :]])
        # batches of 5 and of 16 go through different GEMM blockings: equal up to float32 rounding
        assert margins[i] == pytest.approx((logits[i, y[i]] - others.max()).item(), rel=1e-6, abs=1e-6)
    assert np.array_equal(margins > 0, (logits.argmax(1) == y).numpy())


def test_logit_margins_run_in_eval_mode_and_restore_the_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(16, 3)).train()
    x, y = torch.rand(8, 1, 4, 4), torch.arange(8) % 3
    first, second = logit_margins(model, x, y, "cpu"), logit_margins(model, x, y, "cpu")
    assert model.training and np.array_equal(first, second)
    assert np.allclose(first, logit_margins(model.eval(), x, y, "cpu"))


@PROPERTY
@given(hnp.arrays(np.float64, st.integers(0, 50), elements=st.floats(-1e3, 1e3)))
def test_histogram_counts_every_value_and_clips_outliers(values):
    hist = histogram(values, MARGIN_BINS)
    assert hist["edges"] == MARGIN_BINS.tolist()
    assert len(hist["counts"]) == len(MARGIN_BINS) - 1
    assert sum(hist["counts"]) == len(values)
    assert hist["counts"][0] >= int((values < MARGIN_BINS[0]).sum())
    assert hist["counts"][-1] >= int((values > MARGIN_BINS[-1]).sum())


def test_histogram_places_values_in_their_bins():
    hist = histogram(np.array([-100.0, -20.0, -0.5, 0.0, 0.5, 19.5, 20.0, np.inf]), MARGIN_BINS)
    counts = np.array(hist["counts"])
    assert counts[0] == 2 and counts[19] == 1 and counts[20] == 2 and counts[-1] == 3
    assert counts.sum() == 8
    with pytest.raises(ValueError):
        histogram(np.array([np.nan]), MARGIN_BINS)


@PROPERTY
@given(st.integers(1, 40).flatmap(lambda n: st.tuples(
    hnp.arrays(np.float64, n, elements=st.floats(0, 1)), hnp.arrays(np.int64, n, elements=st.integers(0, 3)))),
    st.floats(0.01, 1.0))
def test_margin_summary_matches_numpy(data, primary_eps):
    margins, labels = data
    summary = margin_summary(margins, labels, 5, primary_eps)
    assert summary["median"] == pytest.approx(np.median(margins))
    assert summary["frac_below_half_primary"] == pytest.approx(np.mean(margins < primary_eps / 2))
    for k in range(5):
        members = margins[labels == k]
        median = np.median(members) if len(members) else 0.0
        frac = np.mean(members < primary_eps / 2) if len(members) else 0.0
        assert summary["per_class"]["median"][k] == pytest.approx(median)
        assert summary["per_class"]["frac_below_half_primary"][k] == pytest.approx(frac)
    assert summary["per_class"]["median"][4] == 0.0  # class 4 never drawn


def test_margin_summary_by_hand():
    summary = margin_summary(np.array([0.0, 0.01, 0.03, 0.2]), np.array([0, 0, 1, 1]), 3, primary_eps=0.05)
    assert summary == {
        "median": pytest.approx(0.02),
        "frac_below_half_primary": 0.5,
        "per_class": {"median": [pytest.approx(0.005), pytest.approx(0.115), 0.0],
                      "frac_below_half_primary": [1.0, 0.0, 0.0]},
    }


@PROPERTY
@given(st.integers(0, 60).flatmap(lambda n: st.tuples(
    hnp.arrays(np.int64, n, elements=st.integers(0, 3)), hnp.arrays(np.int64, n, elements=st.integers(0, 3)))))
def test_confusion_matrix_rows_are_class_counts_and_diagonal_is_correct_counts(data):
    labels, predictions = data
    matrix = np.array(confusion_matrix(labels, predictions, 4))
    assert matrix.shape == (4, 4)
    assert matrix.sum(axis=1).tolist() == [int((labels == k).sum()) for k in range(4)]
    assert matrix.sum(axis=0).tolist() == [int((predictions == k).sum()) for k in range(4)]
    assert np.diag(matrix).tolist() == [int(((labels == k) & (predictions == k)).sum()) for k in range(4)]


def test_confusion_matrix_orientation_and_bad_input():
    assert confusion_matrix(np.array([0, 0, 1]), np.array([1, 1, 1]), 2) == [[0, 2], [0, 1]]
    with pytest.raises(ValueError):
        confusion_matrix(np.array([0, 2]), np.array([0, 0]), 2)
    with pytest.raises(ValueError):
        confusion_matrix(np.array([0]), np.array([0, 0]), 2)
