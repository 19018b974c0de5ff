"""Margin statistics of a trained model: logit margins (clean and after a full-budget margin
attack), the PGD-bisection estimate of input-space margins, histograms, percentiles, class-wise
summaries and the confusion matrix.

A logit margin is z_y - max_{k != y} z_k (negative exactly when the point is misclassified).
An input-space margin is the smallest perturbation size eps at which an attack breaks a point:
the records' primary column comes from FAB, a minimum-norm attack (`benchmark.pipeline.analysis.min_norm`);
`input_margins` here is the second, cross-checked column, a bisection over eps with PGD.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from attacks.base import check_inputs, eval_mode, frozen_eval
from attacks.cw import margin
from attacks.pgd import (
    ExampleNoise,
    check_norm,
    cross_entropy,
    per_example,
    require,
    sign_ascent,
)


def margin_edges(low: float, high: float, bins: int) -> np.ndarray:
    """Fixed histogram edges for logit margins: `bins` equal bins over [low, high] (the
    protocol's [analysis.margins]). Margins outside the range are counted in the first or last
    bin (`histogram` clips them), so histograms of different models share their bins and lose
    no point."""
    return np.linspace(low, high, bins + 1)


@torch.no_grad()
def logit_margins(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device, batch_size: int = 500) -> np.ndarray:
    """Per-point logit margin z_y - max_{k != y} z_k (float64, shape (N,)), computed in eval
    mode without gradients, `batch_size` points at a time on `device` (where `model` lives).
    Each module's training flag is restored afterwards."""
    out = [np.zeros(0)]
    with eval_mode(model):
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            logits = model(xb.to(device))
            out.append(margin(logits.double(), yb.to(device)).cpu().numpy())
    return np.concatenate(out).astype(np.float64)


def histogram(values: np.ndarray, edges) -> dict:
    """Histogram of `values` over the bins `edges` (increasing), as
    `{"edges": [floats], "counts": [ints]}` with `len(edges) - 1` counts.

    Values are first clipped into [edges[0], edges[-1]], so outliers land in the first or
    last bin and `sum(counts) == len(values)`.

    Raises:
        ValueError: a value is NaN (it belongs to no bin).
    """
    values = np.asarray(values, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    if np.isnan(values).any():
        raise ValueError("cannot histogram NaN values: the model produced NaN outputs")
    counts, _ = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def _pgd_breaks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, offsets: torch.Tensor,
                eps: torch.Tensor, norm: str, steps: int, step_ratio: float) -> torch.Tensor:
    """Whether CE-PGD with per-example radius `eps` (B,) fools the model on each point.

    `sign_ascent` runs with eps and step size as (B, 1, ..., 1) tensors (its projection
    clamps against them), from the start x + eps * offsets, and keeps per example the
    first iterate that fools the model."""
    if len(y) == 0:
        return torch.zeros(0, dtype=torch.bool, device=y.device)
    radius = per_example(eps.to(x.dtype), x)
    start = (x + offsets * radius).clamp(0.0, 1.0)
    x_adv = sign_ascent(model, x, cross_entropy(y), radius, steps, step_ratio * radius,
                        x_init=start, norm=norm, y=y)
    with torch.no_grad():
        return model(x_adv).argmax(dim=1) != y


def _bisect_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, offsets: torch.Tensor,
                  eps_max: float, norm: str, steps: int, bisections: int, step_ratio: float) -> np.ndarray:
    """`input_margins` for one batch already on the model's device."""
    with torch.no_grad():
        correct = model(x).argmax(dim=1) == y
    margins = torch.zeros(len(y), dtype=torch.float64, device=x.device)
    margins[correct] = eps_max
    idx = correct.nonzero().squeeze(1)
    hi = torch.full((len(idx),), eps_max, dtype=torch.float64, device=x.device)
    broken = _pgd_breaks(model, x[idx], y[idx], offsets[idx], hi, norm, steps, step_ratio)
    idx, hi = idx[broken], hi[broken]
    x, y, offsets = x[idx], y[idx], offsets[idx]
    lo = torch.zeros_like(hi)
    for _ in range(bisections):
        mid = (lo + hi) / 2
        broken = _pgd_breaks(model, x, y, offsets, mid, norm, steps, step_ratio)
        hi = torch.where(broken, mid, hi)
        lo = torch.where(broken, lo, mid)
    margins[idx] = hi
    return margins.cpu().numpy()


def input_margins(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps_max: float, norm: str = "Linf",
                  steps: int = 20, bisections: int = 8, seed: int = 0, step_ratio: float = 0.25, device="cpu",
                  batch_size: int = 500) -> np.ndarray:
    """Estimate each point's input-space margin: the smallest eps at which PGD breaks it.

    Per example, a bisection over eps in [0, eps_max], vectorised over the batch: after a
    check at eps_max, every round runs CE-PGD (`steps` steps of `step_ratio` x eps, keeping the
    first fooling iterate) at each example's own midpoint and keeps the lower half of its
    interval if PGD broke the point there, else the upper half. Each point's random start is its first
    draw of `attacks.pgd.ExampleNoise(x, seed)` scaled by its eps, so every round starts as
    `attacks.pgd.PGD(steps=steps, seed=seed)` at that eps. The model runs in eval mode with
    frozen parameters (only input gradients); its state is restored afterwards.

    Returns, float64 of shape (N,):
        0.0 for points misclassified clean;
        `eps_max` for points PGD cannot break at eps_max (censored: their margin may be larger);
        otherwise the smallest eps tried at which PGD broke the point, within
        eps_max / 2**bisections above the smallest eps at which this PGD breaks it.
    Each uncensored estimate is an eps at which an adversarial example was found, hence an
    upper bound on the true margin; a stronger attack may break the point at a smaller eps.

    Args:
        model: maps (B, C, H, W) images in [0, 1] to logits (B, K); lives on `device`.
        x, y: images (N, C, H, W) in [0, 1] and labels (N,).
        eps_max: the largest eps tried (> 0).
        norm: "Linf" or "L2".
        steps: PGD steps per bisection round.
        bisections: bisection rounds after the check at eps_max.
        seed: seed of the random starts.
        device: where the batches are attacked.
        batch_size: points attacked at a time (the result does not depend on it).
    """
    check_norm(norm)
    require(eps_max > 0, f"eps_max = {eps_max} is not positive", "use an eps_max > 0")
    require(steps >= 0, f"steps = {steps} is negative", "use steps >= 0")
    require(bisections >= 0, f"bisections = {bisections} is negative", "use bisections >= 0")
    require(step_ratio > 0, f"step_ratio = {step_ratio} is not positive", "use a step_ratio > 0")
    check_inputs(x)
    offsets = ExampleNoise(x, seed).offsets(norm)
    out = [np.zeros(0)]
    with frozen_eval(model):
        for xb, yb, ob in zip(x.split(batch_size), y.split(batch_size), offsets.split(batch_size)):
            xb = xb.detach().to(device)
            out.append(_bisect_batch(model, xb, yb.to(device), ob.to(device=device, dtype=xb.dtype),
                                     float(eps_max), norm, steps, bisections, step_ratio))
    return np.concatenate(out).astype(np.float64)


def _median_and_fraction_below(values: np.ndarray, threshold: float) -> tuple[float, float]:
    """Median of `values` and the fraction strictly below `threshold` (both 0.0 if empty)."""
    if len(values) == 0:
        return 0.0, 0.0
    return float(np.median(values)), float(np.mean(values < threshold))


def margin_summary(margins: np.ndarray, labels: np.ndarray, num_classes: int, primary_eps: float) -> dict:
    """Median margin and the fraction of points with margin strictly below primary_eps / 2,
    overall and per class:
    `{"median", "frac_below_half_primary", "per_class": {"median": [K], "frac_below_half_primary": [K]}}`.
    A class (or a whole set) without points gets 0.0."""
    margins = np.asarray(margins, dtype=np.float64)
    labels = np.asarray(labels)
    threshold = primary_eps / 2
    median, frac = _median_and_fraction_below(margins, threshold)
    per_class = [_median_and_fraction_below(margins[labels == k], threshold) for k in range(num_classes)]
    return {
        "median": median,
        "frac_below_half_primary": frac,
        "per_class": {
            "median": [m for m, _ in per_class],
            "frac_below_half_primary": [f for _, f in per_class],
        },
    }


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> list[list[int]]:
    """K x K counts: entry [i][j] is the number of points of true class i predicted as j.

    Raises:
        ValueError: the arrays differ in length or hold a class outside [0, num_classes).
    """
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    if labels.shape != predictions.shape:
        raise ValueError(f"{len(labels)} labels but {len(predictions)} predictions")
    for name, values in (("label", labels), ("prediction", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"a {name} lies outside [0, {num_classes})")
    counts = np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).tolist()
