"""RAT: randomized adversarial training via Taylor expansion (Jin et al., CVPR 2023).

The reference code's TRADES variant (`TRADES_first_second/trades_first_second.py`): the inner
TRADES attack runs on a copy of the model whose conv weights carry Gaussian noise, and the loss
adds first- and second-order Taylor terms written as KL divergences to soft labels built from
the last linear layer's gradients. As in the reference, both second-order terms use the target
P2' = S(g_adv^2 - g_nat^2); P2 = S(g_nat^2 - g_adv^2) is never used (a likely typo upstream,
reproduced for fidelity). Inference is deterministic: the noise is only in the attack.
"""
from __future__ import annotations

import copy
import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.core.errors import AtbenchError
from defenses.base import Defense, DefenseMeta, TrainContext, register
from defenses.trades import kl_adversarial_examples, trades_kl


@dataclasses.dataclass(frozen=True)
class RATConfig:
    """RAT hyperparameters (reference defaults).

    Attributes:
        beta: weight of the TRADES KL term; 6.
        alpha: weight of the Taylor terms; 0.2.
        second_order_weight: extra factor of the second-order term; 0.5 (WRN scripts).
        sigma: standard deviation of the Gaussian noise on the attack copy's conv weights; 1e-4.
        soft_label_mass: c, the mass a soft label puts off the diagonal; None means the
            reference's choice, 0.8 for up to 10 classes and 0.98 above.
    """

    beta: float = 6.0
    alpha: float = 0.2
    second_order_weight: float = 0.5
    sigma: float = 1e-4
    soft_label_mass: float | None = None


def noisy_copy(model: nn.Module, sigma: float, generator: torch.Generator) -> nn.Module:
    """A frozen copy of `model` whose Conv2d weights carry N(0, sigma^2) noise; nothing else
    differs and `model` is not touched."""
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for module in twin.modules():
            if isinstance(module, nn.Conv2d):
                noise = torch.randn(module.weight.shape, generator=generator, device="cpu")
                module.weight.add_(sigma * noise.to(module.weight))
    return twin.requires_grad_(False)


def soft_labels(v: torch.Tensor, mass: float) -> torch.Tensor:
    """The reference's `reg_gap`: a (K, K) row-stochastic matrix from a K-vector v.

    v <- v - min v; v <- v / sum v; P[i, j] = mass * v_j / sum_{k != i} v_k for j != i and
    P[i, i] = 1 - mass. Zero sums (all entries equal) fall back to uniform shares.
    """
    k = v.numel()
    v = v - v.min()
    total = v.sum()
    v = v / total if total > 0 else torch.full_like(v, 1.0 / k)
    off_diagonal = 1.0 - torch.eye(k, dtype=v.dtype, device=v.device)
    shares = v[None, :] * off_diagonal
    row_sums = shares.sum(dim=1, keepdim=True)
    shares = torch.where(row_sums > 0, shares / row_sums.clamp_min(torch.finfo(v.dtype).tiny),
                         off_diagonal / (k - 1))
    return mass * shares + (1.0 - mass) * torch.eye(k, dtype=v.dtype, device=v.device)


def last_linear(model: nn.Module) -> nn.Linear:
    """The model's last nn.Linear layer (W in the RAT loss)."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise AtbenchError("RAT needs a model whose logits come from an nn.Linear layer",
                           "train RAT on a track whose architecture ends with a linear classifier")
    return layers[-1]


def label_kl(targets: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(targets || softmax(logits)), batch mean."""
    return F.kl_div(F.log_softmax(logits, dim=1), targets, reduction="batchmean")


def rat_loss(logits: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor, weight: torch.Tensor,
             config: RATConfig) -> torch.Tensor:
    """The RAT objective from clean and adversarial logits; `weight` is the last linear layer's
    weight (K, d) on whose gradients the soft labels are built."""
    ce = F.cross_entropy(logits, y)
    g_nat = torch.autograd.grad(ce, weight, retain_graph=True)[0].sum(dim=1).detach()
    g_adv = torch.autograd.grad(F.cross_entropy(logits_adv, y), weight, retain_graph=True)[0].sum(dim=1).detach()
    mass = config.soft_label_mass if config.soft_label_mass is not None else (0.8 if logits.shape[1] <= 10 else 0.98)
    p1 = soft_labels(g_nat.abs() - g_adv.abs(), mass)
    p1_prime = soft_labels(g_adv.abs() - g_nat.abs(), mass)
    p2_prime = soft_labels(g_adv ** 2 - g_nat ** 2, mass)
    first = 0.5 * (label_kl(p1[y], logits_adv) + label_kl(p1_prime[y], logits))
    second = 0.5 * (label_kl(p2_prime[y], logits_adv) + label_kl(p2_prime[y], logits))
    return ((1 - config.alpha) * ce + config.alpha * first + config.second_order_weight * config.alpha * second
            + config.beta * trades_kl(logits, logits_adv))


@register
class RAT(Defense):
    """TRADES with a noisy-weight inner attack and first/second-order Taylor soft-label terms."""

    name = "rat"
    Config = RATConfig
    meta = DefenseMeta(
        paper="Randomized Adversarial Training via Taylor Expansion", venue="CVPR 2023",
        link="https://arxiv.org/abs/2303.10653", threat_models=("Linf", "L2"), fidelity="reference",
        search_space=tuple({"alpha": a, "beta": b} for a in (0.2, 0.5) for b in (3.0, 6.0)),
        search_bounds={"alpha": (0.0, 1.0)},
    )

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: TrainContext) -> torch.Tensor:
        """The RAT objective for one batch."""
        attacker = noisy_copy(model, self.config.sigma, ctx.generator)
        x_adv = kl_adversarial_examples(attacker, x, ctx)
        return rat_loss(model(x), model(x_adv), y, last_linear(model).weight, self.config)
