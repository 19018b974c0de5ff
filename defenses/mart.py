"""MART: misclassification-aware adversarial training (Wang et al., ICLR 2020)."""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from defenses.base import Defense, DefenseMeta, TrainContext, register


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
        threat_models=("Linf", "L2"), fidelity="reference",
        search_space=({"beta": 1.0}, {"beta": 3.0}, {"beta": 6.0}, {"beta": 9.0}),
    )

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: TrainContext) -> torch.Tensor:
        """The MART objective for one batch."""
        x_adv = ctx.adversarial(model, x, objective=lambda logits, _x: F.cross_entropy(logits, y, reduction="sum"),
                                start="gaussian")
        logits_clean, logits_adv = model(x), model(x_adv)
        p_clean = F.softmax(logits_clean, dim=1)
        p_true = p_clean.gather(1, y[:, None]).squeeze(1)
        kl = F.kl_div(torch.log(F.softmax(logits_adv, dim=1) + 1e-12), p_clean, reduction="none").sum(dim=1)
        return boosted_ce(logits_adv, y) + self.config.beta * (kl * (1.0000001 - p_true)).mean()
