"""TRADES (Zhang et al., ICML 2019)."""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from attacks.base import frozen_eval
from defenses.base import Defense, DefenseMeta, TrainContext, register


def kl_adversarial_examples(model: nn.Module, x: torch.Tensor, ctx: TrainContext) -> torch.Tensor:
    """TRADES' inner maximisation: x' = argmax KL(p(x) || p(x')) by the track's inner attack
    (`ctx.adversarial`) from x + 0.001 N(0, 1), with the model in eval mode. Shared with RAT."""
    with frozen_eval(model):
        p_clean = F.softmax(model(x), dim=1).detach()

    def objective(logits, _x_adv):
        return F.kl_div(F.log_softmax(logits, dim=1), p_clean, reduction="sum")

    return ctx.adversarial(model, x, objective=objective, start="gaussian")


def trades_kl(logits_clean, logits_adv):
    """KL(p(x) || p(x')), batch mean, differentiable in both arguments."""
    return F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits_clean, dim=1), reduction="batchmean")


@dataclasses.dataclass(frozen=True)
class TRADESConfig:
    """TRADES hyperparameters.

    Attributes:
        beta: weight of the robustness (KL) term; 6 in the paper.
    """

    beta: float = 6.0


@register
class TRADES(Defense):
    """CE(f(x), y) + beta * KL(p(x) || p(x')) with x' the KL-maximising point in the eps ball."""

    name = "trades"
    Config = TRADESConfig
    meta = DefenseMeta(
        paper="Theoretically Principled Trade-off between Robustness and Accuracy", venue="ICML 2019",
        link="https://arxiv.org/abs/1901.08573", threat_models=("Linf", "L2"), fidelity="reference",
        search_space=({"beta": 1.0}, {"beta": 3.0}, {"beta": 6.0}, {"beta": 9.0}),
    )

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: TrainContext) -> torch.Tensor:
        """The TRADES objective for one batch."""
        x_adv = kl_adversarial_examples(model, x, ctx)
        logits = model(x)
        return F.cross_entropy(logits, y) + self.config.beta * trades_kl(logits, model(x_adv))
