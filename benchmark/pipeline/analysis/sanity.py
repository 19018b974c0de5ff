"""Sanity flags of an evaluation: automatic warnings for suspicious defenses.

AutoAttack's checks (stochastic outputs, probability outputs, zero input gradients, the
black-box Square attack beating the white-box attacks) and more (robust accuracy not falling
to chance at a huge eps, robust accuracy rising with eps, Temperature-PGD much stronger than
PGD). A flag is a dict `{"fired", "noted", "value", "threshold", "p_value", "detail"}` with two
levels: `noted` for any evidence, `fired` only when the evidence is beyond chance at the
protocol's number of points (a one-sided exact binomial test at `flag_alpha`, for the flags that
count points), or for a check whose evidence cannot arise by chance (a zero gradient, an output
that changes between passes). `model_flags` probes the model here; `benchmark.pipeline.analysis.result_flags`
reads the evaluation's per-example flags. Every threshold and probe budget is the protocol's
(`[analysis.sanity]`, `benchmark.pipeline.analysis.settings.SanitySettings`; docs/sanity-flags.md).
"""
from __future__ import annotations

import math
import sys

import torch
import torch.nn.functional as F
from torch import nn

from attacks.base import frozen_eval
from attacks.pgd import PGD
from benchmark.pipeline.analysis.settings import SanitySettings
from leaderboard.stats import binomial_excess


def flag(value: float, threshold: float, detail: str, *, noted: bool | None = None, fired: bool | None = None,
         p_value: float | None = None) -> dict:
    """One sanity flag. By default it fires when `value > threshold` and is noted when it fires;
    a statistical flag passes `noted` (any evidence) and `fired` (beyond chance) with the
    evidence's `p_value`. A non-finite value (NaN logits, say) becomes the largest float, so the
    flag fires and stays JSON-safe."""
    value = float(value)
    if not math.isfinite(value):
        value = sys.float_info.max if math.isnan(value) or value > 0 else -sys.float_info.max
    fired = bool(value > threshold) if fired is None else bool(fired)
    return {"fired": fired, "noted": fired if noted is None else bool(noted or fired), "value": value,
            "threshold": float(threshold), "p_value": None if p_value is None else float(p_value), "detail": detail}


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
        count = int((model(x_adv).argmax(dim=1) == y).sum()) if len(y) else 0
    rate = min(1.0, 1 / num_classes + settings.chance_margin)
    test = binomial_excess(count, len(y), rate, settings.flag_alpha)
    detail = (f"{count} of {len(y)} points stay correct under {norm} PGD-{settings.large_eps_pgd_steps} at eps "
              f"{eps:.3g}; chance plus the margin is {rate:.2f} (binomial p = {test.p_value:.2g})")
    return flag(count / len(y) if len(y) else 0.0, rate, detail, noted=count > rate * len(y),
                fired=test.significant, p_value=test.p_value)


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
