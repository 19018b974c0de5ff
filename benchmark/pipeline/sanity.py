"""Sanity flags of an evaluation: automatic warnings for suspicious defenses.

AutoAttack's checks (stochastic outputs, probability outputs, zero input gradients, the
black-box Square attack beating the white-box attacks) and more (robust accuracy not falling
to chance at a huge eps, robust accuracy rising with eps, Temperature-PGD much stronger than
PGD). A flag is a dict `{"fired": bool, "value": float, "threshold": float, "detail": str}`;
it fires when `value > threshold`. `model_flags` probes the model, `result_flags` reads the
evaluation's numbers. Every threshold and probe budget is the protocol's (`[analysis.sanity]`,
`benchmark.pipeline.analysis_settings.SanitySettings`).
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
from benchmark.pipeline.analysis_settings import SanitySettings


def flag(value: float, threshold: float, detail: str) -> dict:
    """One sanity flag: fired when `value > threshold`. A non-finite value (NaN logits, say)
    becomes the largest float, so the flag fires and stays JSON-safe."""
    value = float(value)
    if not math.isfinite(value):
        value = sys.float_info.max if math.isnan(value) or value > 0 else -sys.float_info.max
    return {"fired": bool(value > threshold), "value": value, "threshold": float(threshold), "detail": detail}


def large_eps(norm: str, x: torch.Tensor, linf: float) -> float:
    """An eps so large that every [0, 1] image can reach the constant-0.5 image: `linf` (0.5;
    Linf) or `linf` * sqrt(d) (L2, d = pixels x channels of one image)."""
    return linf if norm == "Linf" else linf * math.sqrt(math.prod(x.shape[1:]))


def _stochastic(model: nn.Module, x: torch.Tensor, settings: SanitySettings) -> tuple[dict, torch.Tensor]:
    passes = settings.probe_passes
    with torch.no_grad():
        outputs = torch.stack([model(x) for _ in range(passes)])
    spread = (outputs.amax(dim=0) - outputs.amin(dim=0)).max().item() if outputs.numel() else 0.0
    detail = f"logits differ by up to {spread:.3g} across {passes} forward passes in eval mode"
    return flag(spread, settings.stochastic_threshold, detail), outputs[0]


def _probabilities(outputs: torch.Tensor, settings: SanitySettings) -> dict:
    looks = bool(
        outputs.numel()
        and outputs.min() >= -settings.range_tolerance
        and outputs.max() <= 1 + settings.range_tolerance
        and ((outputs.sum(dim=1) - 1).abs() <= settings.probability_tolerance).all()
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


def _not_chance(model: nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str, num_classes: int,
                settings: SanitySettings) -> dict:
    eps = large_eps(norm, x, settings.large_eps_linf)
    attack = PGD(norm=norm, steps=settings.large_eps_pgd_steps, restarts=1,
                 step_ratio=settings.large_eps_pgd_step_ratio, seed=settings.large_eps_pgd_seed)
    x_adv = attack(model, x, y, eps)
    with torch.no_grad(), frozen_eval(model):
        acc = (model(x_adv).argmax(dim=1) == y).float().mean().item() if len(y) else 0.0
    threshold = 1 / num_classes + settings.chance_margin
    detail = (f"robust accuracy {acc:.3f} under {norm} PGD-{settings.large_eps_pgd_steps} at eps {eps:.3g} on "
              f"{len(y)} points")
    return flag(acc, threshold, detail)


def model_flags(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, norm: str, num_classes: int,
                device: str | torch.device, settings: SanitySettings) -> dict[str, dict]:
    """The flags that probe the model, on up to the first `settings.probe_points` points of
    (x, y): `stochastic_outputs` (`probe_passes` forward passes in eval mode),
    `probability_outputs`, `zero_gradients` (CE input gradient of the clean-correct points) and
    `not_chance_at_large_eps` (PGD at eps `large_eps_linf` Linf, or that x sqrt(d) in L2).

    The model's modes and `requires_grad` flags are restored; torch's global random streams
    are forked (seeded 0 inside), so the caller's draws are untouched and the result is
    reproducible.
    """
    device = torch.device(device)
    x, y = x[:settings.probe_points].to(device), y[:settings.probe_points].to(device)
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(0)
        with frozen_eval(model):
            stochastic, outputs = _stochastic(model, x, settings)
            flags = {
                "stochastic_outputs": stochastic,
                "probability_outputs": _probabilities(outputs, settings),
                "zero_gradients": _zero_gradients(model, x, y, outputs),
            }
        flags["not_chance_at_large_eps"] = _not_chance(model, x, y, norm, num_classes, settings)
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


@dataclasses.dataclass(frozen=True)
class SweepPair:
    """A swept column group and the column of the attack it generalises, with their titles
    (`Attack.title`), e.g. "tpgd" (Temperature-PGD) and "pgd" (PGD)."""

    group: str
    group_title: str
    baseline: str
    baseline_title: str


def _sweep_gap(robust_acc: dict[str, dict[str, float]], eps_order: list[str], sweeps: list[SweepPair],
               threshold: float) -> dict:
    gaps = [(robust_acc[p.baseline][e] - robust_acc[p.group][e], e, p.group, p) for p in sweeps
            for e in eps_order if e in robust_acc.get(p.baseline, {}) and e in robust_acc.get(p.group, {})]
    if not gaps:
        return flag(0.0, threshold, "skipped: the protocol sweeps no attack beside its baseline's column")
    gap, eps, _, pair = max(gaps)
    return flag(gap, threshold, f"{pair.baseline_title}'s robust accuracy exceeds {pair.group_title}'s by {gap:.3f} "
                                f"at eps {eps}")


def _black_box(fractions: dict[str, float] | None, label: str, threshold: float) -> dict:
    if not fractions:
        return flag(0.0, threshold, "skipped: no attack with black-box parts ran")
    eps = max(fractions, key=fractions.__getitem__)
    value = fractions[eps]
    return flag(value, threshold,
                f"{label} broke {value:.2%} of the test points after the gradient-based attacks failed, at eps {eps}")


def result_flags(robust_acc: dict[str, dict[str, float]], worst_case: dict[str, float], eps_order: list[str],
                 black_box_fraction: dict[str, float] | None, black_box_label: str, sweeps: list[SweepPair],
                 settings: SanitySettings) -> dict[str, dict]:
    """The flags read from the evaluation's numbers.

    Args:
        robust_acc: attack column or group ("pgd", "tpgd", ...) -> eps -> robust accuracy.
        worst_case: eps -> worst-case robust accuracy over attacks.
        eps_order: the protocol's eps strings in increasing order.
        black_box_fraction: eps -> fraction of the test points that an attack's black-box
            parts (AutoAttack's Square) broke after its gradient-based parts failed on them;
            None when no such attack ran; `black_box_label` names those parts ("Square").
        sweeps: the swept column groups beside the column of the attack each generalises.
        settings: the protocol's thresholds.

    Returns:
        `square_beats_white_box`, `accuracy_rises_with_eps`, `tpgd_much_stronger_than_pgd`.
    """
    return {
        "square_beats_white_box": _black_box(black_box_fraction, black_box_label, settings.square_threshold),
        "accuracy_rises_with_eps": _rises(robust_acc, worst_case, eps_order),
        "tpgd_much_stronger_than_pgd": _sweep_gap(robust_acc, eps_order, sweeps, settings.tpgd_threshold),
    }
