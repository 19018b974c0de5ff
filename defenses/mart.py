"""MART: misclassification-aware adversarial training (Wang et al., ICLR 2020)."""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from attacks.base import frozen_eval
from attacks.pgd import sign_ascent
from defenses.base import Defense, DefenseMeta, register


@dataclasses.dataclass(frozen=True)
class MARTConfig:
    """MART hyperparameters.

    Attributes:
        beta: weight of the misclassification-aware KL term; 6 in the paper (WRN).
    """

    beta: float = 6.0


def boosted_ce(logits_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """BCE = CE(f(x'), y) - log(1.0001 - max_{k != y} p_k(x')), batch mean (reference code)."""
    probs = F.softmax(logits_adv, dim=1)
    top2 = probs.argsort(dim=1)[:, -2:]
    runner_up = torch.where(top2[:, -1] == y, top2[:, -2], top2[:, -1])
    return F.cross_entropy(logits_adv, y) + F.nll_loss(torch.log(1.0001 - probs + 1e-12), runner_up)


@register
class MART(Defense):
    """BCE(f(x'), y) + beta * mean_i[KL(p(x_i) || p(x'_i)) * (1 - p_y(x_i))], x' = CE-PGD
    started at x + 0.001 N(0, 1) as in the reference code, model in eval mode."""

    name = "mart"
    Config = MARTConfig
    meta = DefenseMeta(
        paper="Improving Adversarial Robustness Requires Revisiting Misclassified Examples",
        venue="ICLR 2020", link="https://openreview.net/forum?id=rklOg6EFwS",
        threat_models=("Linf",), fidelity="reference",
    )

    def loss(self, model, x, y, ctx):
        """The MART objective for one batch."""
        noise = torch.randn(x.shape, generator=ctx.generator, device="cpu").to(x.device)
        x_init = (x + 0.001 * noise).clamp(0, 1)
        with frozen_eval(model):
            x_adv = sign_ascent(model, x, lambda logits, _x: F.cross_entropy(logits, y, reduction="sum"),
                                ctx.eps, ctx.attack_steps, ctx.step_size, x_init=x_init, norm=ctx.norm).detach()
        logits_clean, logits_adv = model(x), model(x_adv)
        p_clean = F.softmax(logits_clean, dim=1)
        p_true = p_clean.gather(1, y[:, None]).squeeze(1)
        kl = F.kl_div(torch.log(F.softmax(logits_adv, dim=1) + 1e-12), p_clean, reduction="none").sum(dim=1)
        return boosted_ce(logits_adv, y) + self.config.beta * (kl * (1.0000001 - p_true)).mean()
