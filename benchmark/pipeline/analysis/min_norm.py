"""Margins that can test a claim: input margins from a minimum-norm attack (FAB, through
pyautoattack) and adversarial logit margins from a full-budget attack that keeps maximising after
its first success.

Every gradient attack of the protocol stops at a point's first fooling iterate, which is right for
robust accuracy but leaves broken points just below a logit margin of 0; the logit margins here
come instead from PGD on the margin loss run for its whole budget, so they say how far an attack
can push a point. FAB searches for the smallest perturbation that changes the prediction, a far
tighter estimate of a point's input margin than the bisection over PGD's eps
(`benchmark.pipeline.analysis.margins.input_margins`), which stays beside it as a cross-check.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from attacks.base import frozen_eval, perturbation_norm
from attacks.cw import margin
from attacks.pgd import ExampleNoise, sign_ascent
from benchmark.pipeline.analysis.margins import logit_margins

FAB_METHOD = "fab"


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(dim=1)


def full_budget_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str, steps: int,
                         step_ratio: float, seed: int, device, batch_size: int = 500) -> torch.Tensor:
    """PGD on the margin loss max_{k != y} z_k - z_y for all `steps` steps (no early stop),
    from each point's seeded random start (`attacks.pgd.ExampleNoise`), in the `norm` ball of
    radius `eps`: the final iterates, on the CPU. The model runs in eval mode with frozen
    parameters."""
    out = []
    with frozen_eval(model):
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            xb, yb = xb.to(device), yb.to(device)
            start = ExampleNoise(xb, seed).start(xb, eps, norm)
            out.append(sign_ascent(model, xb, lambda logits, _x, t=yb: -margin(logits, t), eps, steps,
                                   step_ratio * eps, x_init=start, norm=norm).cpu())
    return torch.cat(out) if out else x.clone()


def adversarial_logit_margins(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str,
                              steps: int, step_ratio: float, seed: int, device) -> np.ndarray:
    """Logit margins z_y - max_{k != y} z_k of `full_budget_examples` (float64, one per point)."""
    x_adv = full_budget_examples(model, x, y, eps=eps, norm=norm, steps=steps, step_ratio=step_ratio, seed=seed,
                                 device=device)
    return logit_margins(model, x_adv, y, device)


def fab_margins(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, norm: str, eps_max: float, iterations: int,
                seed: int, device, batch_size: int = 500) -> np.ndarray:
    """Per point, the norm of the smallest adversarial perturbation FAB finds (untargeted, one
    run of `iterations` from the point itself; pyautoattack's `FABAttack_PT.attack_single_run`):
    0 for a point misclassified clean, and `eps_max` (censored) for one FAB does not break within
    `eps_max`. Each value is an upper bound on the point's true margin in `norm`. torch's global
    random streams are forked, so the caller's draws are untouched."""
    from pyautoattack.fab_pt import FABAttack_PT

    out = []
    cuda = [torch.device(device)] if torch.device(device).type == "cuda" else []
    with frozen_eval(model), torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        fab = FABAttack_PT(model, norm=norm, n_restarts=1, n_iter=iterations, seed=seed, device=torch.device(device))
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            xb, yb = xb.to(device), yb.to(device)
            correct = _predict(model, xb) == yb
            found = torch.full((len(yb),), float(eps_max), dtype=torch.float64, device=xb.device)
            found[~correct] = 0.0
            if correct.any():
                xc, yc = xb[correct], yb[correct]
                adv = fab.attack_single_run(xc, yc, use_rand_start=False, is_targeted=False).clamp(0, 1)
                broken = _predict(model, adv) != yc
                dist = perturbation_norm(adv - xc, norm).double()
                found[correct] = torch.where(broken & (dist < eps_max), dist, torch.full_like(dist, float(eps_max)))
            out.append(found.cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def percentiles(values: np.ndarray) -> dict[str, float]:
    """The 10th and 50th percentiles (linear interpolation; 0.0 for no values)."""
    if len(values) == 0:
        return {"p10": 0.0, "p50": 0.0}
    return {"p10": float(np.percentile(values, 10)), "p50": float(np.percentile(values, 50))}


def cross_check(fab: np.ndarray, bisection: np.ndarray, eps_max: float, resolution: float) -> dict[str, float]:
    """How the two input-margin estimates compare, over the points both break below the search
    limit `eps_max`: their number, the fraction where FAB's is at most the bisection's (+
    `resolution`, the bisection's step), and the median ratio FAB / bisection."""
    both = (fab > 0) & (bisection > 0) & (fab < eps_max) & (bisection < eps_max)
    if not both.any():
        return {"points": 0, "fab_at_most_bisection": 0.0, "median_ratio": 0.0}
    return {"points": int(both.sum()),
            "fab_at_most_bisection": float(np.mean(fab[both] <= bisection[both] + resolution)),
            "median_ratio": float(np.median(fab[both] / bisection[both]))}
