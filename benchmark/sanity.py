"""Sanity flags of an evaluation: automatic warnings for suspicious defenses.

AutoAttack's checks (stochastic outputs, probability outputs, zero input gradients, the
black-box Square attack beating the white-box attacks) and more (robust accuracy not falling
to chance at a huge eps, robust accuracy rising with eps, Temperature-PGD much stronger than
PGD). A flag is a dict `{"fired": bool, "value": float, "threshold": float, "detail": str}`;
it fires when `value > threshold`. `model_flags` probes the model, `result_flags` reads the
evaluation's numbers.
"""
from __future__ import annotations

import dataclasses
import math
import sys

import torch
import torch.nn.functional as F
from torch import nn

from attacks.base import frozen_eval
from attacks.pgd import PGD

MAX_POINTS = 100
PASSES = 5
STOCHASTIC_THRESHOLD = 1e-4
PROBABILITY_TOL = 1e-3
RANGE_TOL = 1e-5
SQUARE_THRESHOLD = 0.002
TPGD_THRESHOLD = 0.05
CHANCE_MARGIN = 0.1
LARGE_EPS_LINF = 0.5
LARGE_EPS_PGD = PGD.Config(steps=50, restarts=1, step_ratio=0.1, seed=0)


def flag(value: float, threshold: float, detail: str) -> dict:
    """One sanity flag: fired when `value > threshold`. A non-finite value (NaN logits, say)
    becomes the largest float, so the flag fires and stays JSON-safe."""
    value = float(value)
    if not math.isfinite(value):
        value = sys.float_info.max if math.isnan(value) or value > 0 else -sys.float_info.max
    return {"fired": bool(value > threshold), "value": value, "threshold": float(threshold), "detail": detail}


def large_eps(norm: str, x: torch.Tensor) -> float:
    """An eps so large that every [0, 1] image can reach the constant-0.5 image: 0.5 (Linf) or
    0.5 * sqrt(d) (L2, d = pixels x channels of one image)."""
    return LARGE_EPS_LINF if norm == "Linf" else LARGE_EPS_LINF * math.sqrt(math.prod(x.shape[1:]))


def _stochastic(model: nn.Module, x: torch.Tensor) -> tuple[dict, torch.Tensor]:
    with torch.no_grad():
        outputs = torch.stack([model(x) for _ in range(PASSES)])
    spread = (outputs.amax(dim=0) - outputs.amin(dim=0)).max().item() if outputs.numel() else 0.0
    detail = f"logits differ by up to {spread:.3g} across {PASSES} forward passes in eval mode"
    return flag(spread, STOCHASTIC_THRESHOLD, detail), outputs[0]


def _probabilities(outputs: torch.Tensor) -> dict:
    looks = bool(
        outputs.numel()
        and outputs.min() >= -RANGE_TOL
        and outputs.max() <= 1 + RANGE_TOL
        and ((outputs.sum(dim=1) - 1).abs() <= PROBABILITY_TOL).all()
    )
    detail = ("outputs lie in [0, 1] and every row sums to 1: they look like probabilities"
              if looks else "outputs are not probability vectors")
    return flag(1.0 if looks else 0.0, 0.5, detail)


def _zero_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, outputs: torch.Tensor) -> dict:
    correct = outputs.argmax(dim=1) == y
    n = int(correct.sum())
    zero = 0
    if n:
        xc = x[correct].clone().requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(model(xc), y[correct], reduction="sum")
            # An output that does not depend on the input has no graph: its gradient is zero.
            grad = torch.autograd.grad(loss, xc, allow_unused=True)[0] if loss.requires_grad else None
        zero = n if grad is None else int((grad.flatten(1).abs().amax(dim=1) == 0).sum())
    detail = f"{zero} of {n} correctly classified points have an all-zero input gradient of CE"
    return flag(zero / n if n else 0.0, 0.0, detail)


def _not_chance(model: nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str, num_classes: int) -> dict:
    eps = large_eps(norm, x)
    attack = PGD(config=dataclasses.replace(LARGE_EPS_PGD, norm=norm))
    x_adv = attack(model, x, y, eps)
    with torch.no_grad(), frozen_eval(model):
        acc = (model(x_adv).argmax(dim=1) == y).float().mean().item() if len(y) else 0.0
    threshold = 1 / num_classes + CHANCE_MARGIN
    detail = f"robust accuracy {acc:.3f} under {norm} PGD-50 at eps {eps:.3g} on {len(y)} points"
    return flag(acc, threshold, detail)


def model_flags(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, norm: str, num_classes: int,
                device: str | torch.device) -> dict[str, dict]:
    """The flags that probe the model, on up to the first 100 points of (x, y):
    `stochastic_outputs` (5 forward passes in eval mode), `probability_outputs`,
    `zero_gradients` (CE input gradient of the clean-correct points) and
    `not_chance_at_large_eps` (PGD-50, step 0.1 eps, seed 0, at eps 0.5 Linf or 0.5 sqrt(d) L2).

    The model's modes and `requires_grad` flags are restored; torch's global random streams
    are forked (seeded 0 inside), so the caller's draws are untouched and the result is
    reproducible.
    """
    device = torch.device(device)
    x, y = x[:MAX_POINTS].to(device), y[:MAX_POINTS].to(device)
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(0)
        with frozen_eval(model):
            stochastic, outputs = _stochastic(model, x)
            flags = {
                "stochastic_outputs": stochastic,
                "probability_outputs": _probabilities(outputs),
                "zero_gradients": _zero_gradients(model, x, y, outputs),
            }
        flags["not_chance_at_large_eps"] = _not_chance(model, x, y, norm, num_classes)
    return flags


def _rises(robust_acc: dict[str, dict[str, float]], worst_case: dict[str, float], eps_order: list[str]) -> dict:
    best, where = 0.0, ""
    for name, series in [*robust_acc.items(), ("worst case", worst_case)]:
        present = [e for e in eps_order if e in series]
        for small, big in zip(present, present[1:]):
            rise = series[big] - series[small]
            if rise > best:
                best, where = rise, f"{name} rises by {rise:.3f} from eps {small} to eps {big}"
    return flag(best, 0.0, where or "robust accuracy never rises with eps")


def _tpgd(robust_acc: dict[str, dict[str, float]], eps_order: list[str]) -> dict:
    if "pgd" not in robust_acc or "tpgd" not in robust_acc:
        return flag(0.0, TPGD_THRESHOLD, "skipped: the protocol lacks a pgd or a tpgd column")
    gaps = [(robust_acc["pgd"][e] - robust_acc["tpgd"][e], e) for e in eps_order
            if e in robust_acc["pgd"] and e in robust_acc["tpgd"]]
    if not gaps:
        return flag(0.0, TPGD_THRESHOLD, "skipped: pgd and tpgd share no eps")
    gap, eps = max(gaps)
    return flag(gap, TPGD_THRESHOLD, f"PGD's robust accuracy exceeds Temperature-PGD's by {gap:.3f} at eps {eps}")


def _square(square_fraction: dict[str, float] | None) -> dict:
    if not square_fraction:
        return flag(0.0, SQUARE_THRESHOLD, "skipped: no AutoAttack breakdown")
    eps = max(square_fraction, key=square_fraction.__getitem__)
    value = square_fraction[eps]
    return flag(value, SQUARE_THRESHOLD,
                f"Square broke {value:.2%} of the test points after the gradient-based attacks failed, at eps {eps}")


def result_flags(robust_acc: dict[str, dict[str, float]], worst_case: dict[str, float], eps_order: list[str],
                 square_fraction: dict[str, float] | None) -> dict[str, dict]:
    """The flags read from the evaluation's numbers.

    Args:
        robust_acc: attack column or group ("pgd", "tpgd", ...) -> eps -> robust accuracy.
        worst_case: eps -> worst-case robust accuracy over attacks.
        eps_order: the protocol's eps strings in increasing order.
        square_fraction: eps -> fraction of the test points that AutoAttack's Square broke
            after its gradient-based attacks failed on them; None when AutoAttack did not run.

    Returns:
        `square_beats_white_box`, `accuracy_rises_with_eps`, `tpgd_much_stronger_than_pgd`.
    """
    return {
        "square_beats_white_box": _square(square_fraction),
        "accuracy_rises_with_eps": _rises(robust_acc, worst_case, eps_order),
        "tpgd_much_stronger_than_pgd": _tpgd(robust_acc, eps_order),
    }
