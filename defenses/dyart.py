"""DyART: dynamics-aware robust training (Xu et al., ICLR 2023).

The reference code's `DyART_loss_Linf`: for each correctly classified point, a FAB-style search
finds the closest point x_hat on the soft decision boundary {phi = 0} of the soft margin
phi(x) = z_y - (1/beta) log sum_{k != y} exp(beta z_k); the loss raises phi at x_hat with the
closed-form margin-gradient weight w = h'(R) / ||grad_x phi(x_hat)||_1, R = ||x_hat - x||_inf,
h'(R) = exp(-alpha R) 1[R < r0]:

    L = CE(f(x), y) - lambda * (1/B) * sum_i w_i * phi(x_hat_i; theta)

so that its parameter gradient is -lambda/B * sum_i h'(R_i) grad_theta R_i. The search and
grad_x phi run in eval mode, the loss in train mode. The track scales the reference's radii:
r0 = 16/255 and the FAB start radius 4/255 are 2 and 1/2 times its eps of 8/255.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from attacks.base import frozen_eval
from defenses.base import Defense, DefenseMeta, TrainContext, register

#: The reference recipe: 200 epochs after 10 epochs of clean training.
REFERENCE_EPOCHS, REFERENCE_BURN_IN = 200, 10


@dataclasses.dataclass(frozen=True)
class DyARTConfig:
    """DyART hyperparameters (reference CIFAR-10 defaults).

    Attributes:
        lam: weight of the margin term (lambda); 1000.
        beta: temperature of the soft margin; 5.
        alpha_r0: the decay of h'(R) = exp(-alpha R) as alpha * r0, so that it scales with the
            radii: the reference's alpha 3 at r0 16/255 is 0.188 (alpha = alpha_r0 / r0).
        r0_ratio: h'(R) = 0 from R >= r0 = r0_ratio * eps; 2 (16/255 at eps 8/255).
        fab_iterations: iterations of the boundary search; 20.
        fab_alpha_max: FAB's largest step towards the original point; 0.1.
        fab_eta: FAB's overshoot; 1.05.
        fab_beta: FAB's backtracking factor; 0.9.
        max_depth: drop boundary points with phi(x_hat) <= -max_depth; 0.3.
        kkt_filter: also drop points failing the reference's KKT-style alignment test.
    """

    lam: float = 1000.0
    beta: float = 5.0
    alpha_r0: float = 3.0 * 16 / 255
    r0_ratio: float = 2.0
    fab_iterations: int = 20
    fab_alpha_max: float = 0.1
    fab_eta: float = 1.05
    fab_beta: float = 0.9
    max_depth: float = 0.3
    kkt_filter: bool = True


def soft_margin(logits: torch.Tensor, y: torch.Tensor, beta: float) -> torch.Tensor:
    """phi = z_y - (1/beta) logsumexp_{k != y}(beta z_k), per example (a lower bound of the
    logit margin z_y - max_{k != y} z_k)."""
    others = (beta * logits).scatter(1, y[:, None], float("-inf"))
    return logits.gather(1, y[:, None]).squeeze(1) - torch.logsumexp(others, dim=1) / beta


def soft_margin_and_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                         beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """phi(x) and grad_x phi(x), detached (the caller sets the model's mode)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        phi = soft_margin(model(x), y, beta)
        (grad,) = torch.autograd.grad(phi.sum(), x)
    return phi.detach(), grad.detach()


def project_linf_hyperplane(p: torch.Tensor, w: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The smallest-Linf step d (per row) with w . (p + d) = c and p + d in [0, 1].

    Moving coordinate j by t in the direction sign(w_j (c - w . p)) changes w . p by |w_j| t,
    up to the room left in the box; the needed t solves a piecewise-linear equation, found
    exactly by sorting the rooms. Rows where the box leaves too little room get the largest
    move the box allows.

    Args:
        p: points (B, d); w: normals (B, d); c: offsets (B,).
    """
    residual = c - (w * p).sum(dim=1)
    direction = torch.sign(w) * torch.sign(residual)[:, None]
    room = torch.where(direction > 0, 1.0 - p, p)
    weight = w.abs()
    room_sorted, order = room.sort(dim=1)
    weight_sorted = weight.gather(1, order)
    filled = (weight_sorted * room_sorted).cumsum(dim=1)  # sum_{i <= k} a_i room_i
    tail = weight_sorted.flip(1).cumsum(dim=1).flip(1)  # sum_{i >= k} a_i
    reach = filled + room_sorted * (tail - weight_sorted)  # the change at t = room_k
    need = residual.abs()
    k = (reach < need[:, None]).sum(dim=1).clamp(max=p.shape[1] - 1)
    before = torch.where(k > 0, filled.gather(1, (k - 1).clamp_min(0)[:, None]).squeeze(1), torch.zeros_like(need))
    t = (need - before) / tail.gather(1, k[:, None]).squeeze(1).clamp_min(torch.finfo(p.dtype).tiny)
    t = torch.where(reach[:, -1] >= need, t, torch.full_like(t, math.inf))
    return direction * torch.minimum(t[:, None], room)


def boundary_search(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: DyARTConfig, start_radius: float,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """FAB on the scalar soft margin (the reference's `FABAttack_scalar`, one restart): the
    closest point with phi < 0 found in Linf, and whether one was found.

    Each iteration linearises phi at the iterate x1, projects x1 and x onto the hyperplane
    (`project_linf_hyperplane`), mixes the two steps with weight a = min(a1 / (a1 + a2),
    alpha_max), overshoots by eta and clamps to [0, 1]; an iterate with phi < 0 is kept when
    it is the closest so far and then pulled back towards x by fab_beta. Call it with the
    model in eval mode.

    Returns:
        (x_hat (B, C, H, W), found (B,) bool); x_hat equals x where nothing was found.
    """
    flat = x.flatten(1)
    noise = torch.rand(flat.shape, generator=generator, device="cpu").to(x) * 2 - 1
    x1 = (flat + start_radius * noise / noise.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)).clamp(0, 1)
    best, best_dist = flat.clone(), torch.full((len(x),), math.inf, device=x.device)
    for _ in range(config.fab_iterations):
        phi, grad = soft_margin_and_grad(model, x1.view_as(x), y, config.beta)
        g = grad.flatten(1)
        offset = (g * x1).sum(dim=1) - phi
        steps = project_linf_hyperplane(torch.cat([x1, flat]), torch.cat([g, g]), torch.cat([offset, offset]))
        d1, d2 = steps[: len(x)], steps[len(x):]
        a1, a2 = d1.abs().amax(dim=1), d2.abs().amax(dim=1)
        a = (a1 / (a1 + a2).clamp_min(1e-12)).clamp(0, config.fab_alpha_max)[:, None]
        x1 = ((x1 + config.fab_eta * d1) * (1 - a) + (flat + config.fab_eta * d2) * a).clamp(0, 1)
        with torch.no_grad():
            crossed = soft_margin(model(x1.view_as(x)), y, config.beta) < 0
        dist = (x1 - flat).abs().amax(dim=1)
        closer = crossed & (dist < best_dist)
        best = torch.where(closer[:, None], x1, best)
        best_dist = torch.where(closer, dist, best_dist)
        x1 = torch.where(crossed[:, None], flat + config.fab_beta * (x1 - flat), x1)
    return best.view_as(x), torch.isfinite(best_dist)


def kkt_aligned(delta: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """The reference's high-quality test of a boundary point x_hat = x + delta with
    g = grad_x phi(x_hat): among the coordinates with |delta_j| > 0.8 ||delta||_inf (J), more
    than 90% have delta_j g_j < -1e-7, and some coordinate outside J has |g_j| <= 0.1."""
    delta, grad = delta.flatten(1), grad.flatten(1)
    big = delta.abs() > 0.8 * delta.abs().amax(dim=1, keepdim=True)
    n_big = big.sum(dim=1)
    aligned = (big & (delta * grad < -1e-7)).sum(dim=1) / n_big.clamp_min(1)
    n_rest = delta.shape[1] - n_big
    flat_rest = (n_rest - (~big & (grad.abs() > 0.1)).sum(dim=1)) / n_rest.clamp_min(1)
    return (aligned > 0.9) & (flat_rest > 0)


def margin_weights(x: torch.Tensor, x_hat: torch.Tensor, grad: torch.Tensor, config: DyARTConfig,
                   r0: float) -> torch.Tensor:
    """w_i = h'(R_i) / ||grad_x phi(x_hat_i)||_1, h'(R) = exp(-alpha R) 1[R < r0] with
    alpha = alpha_r0 / r0, detached."""
    radius = (x_hat - x).flatten(1).abs().amax(dim=1)
    h_prime = torch.exp(-config.alpha_r0 * radius / r0) * (radius < r0)
    return (h_prime / grad.flatten(1).abs().sum(dim=1).clamp_min(1e-12)).detach()


@register
class DyART(Defense):
    """Clean CE plus the closed-form margin-gradient term at the closest soft-boundary points."""

    name = "dyart"
    relative_cost = 3.5
    Config = DyARTConfig
    meta = DefenseMeta(
        paper="Exploring and Exploiting Decision Boundary Dynamics for Adversarial Robustness", venue="ICLR 2023",
        link="https://arxiv.org/abs/2302.03015", threat_models=("Linf",), fidelity="reference",
        search_space=tuple({"alpha_r0": a, "lam": lam} for a in (3.0 * 16 / 255, 1.8) for lam in (300.0, 1000.0)),
    )

    def overrides(self, track):
        """Clean burn-in (10 of the reference's 200 epochs, scaled to the track, at least one)
        and the reference's EMA 0.995 of the weights for evaluation (the harness's warm-up,
        min(0.995, (1 + step) / (10 + step)), keeps it below 0.995 on a short track: at most
        0.986 after mnist5k-cnn's 640 steps). The reference's gradient clipping (0.1) belongs
        to its SGD recipe and is not applied under the track's Adam."""
        burn_in = max(1, round(track.epochs * REFERENCE_BURN_IN / REFERENCE_EPOCHS))
        return {"burn_in_epochs": burn_in, "ema_decay": 0.995}

    def boundary_points(self, model, x, y, ctx):
        """(indices, x_hat, weights) of the points that enter the margin term."""
        cfg = self.config
        with frozen_eval(model):
            with torch.no_grad():
                candidates = torch.nonzero(soft_margin(model(x), y, cfg.beta) > 1e-9).squeeze(1)
            x_hat, found = boundary_search(model, x[candidates], y[candidates], cfg, ctx.eps / 2, ctx.generator)
            phi, grad = soft_margin_and_grad(model, x_hat, y[candidates], cfg.beta)
        keep = found & (phi < 0) & (phi > -cfg.max_depth)
        if cfg.kkt_filter:
            keep &= kkt_aligned(x_hat - x[candidates], grad)
        weights = margin_weights(x[candidates], x_hat, grad, cfg, cfg.r0_ratio * ctx.eps)
        return candidates[keep], x_hat[keep], weights[keep]

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: TrainContext) -> torch.Tensor:
        """The DyART objective for one batch."""
        index, x_hat, weights = self.boundary_points(model, x, y, ctx)
        loss = F.cross_entropy(model(x), y)
        if len(index):
            phi = soft_margin(model(x_hat), y[index], self.config.beta)
            loss = loss - self.config.lam * (weights * phi).sum() / len(x)
        return loss
