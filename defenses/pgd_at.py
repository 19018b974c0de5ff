"""PGD adversarial training (Madry et al., ICLR 2018)."""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from defenses.base import Defense, DefenseMeta, TrainContext, register


@dataclasses.dataclass(frozen=True)
class PGDATConfig:
    """PGD-AT has no hyperparameters beyond the track's inner-attack budget."""


@register
class PGDAT(Defense):
    """CE on x' = PGD (CE loss, uniform random start, the track's norm, steps and step size
    eps/4), generated with the model in eval mode (`ctx.adversarial`)."""

    name = "pgd-at"
    Config = PGDATConfig
    meta = DefenseMeta(
        paper="Towards Deep Learning Models Resistant to Adversarial Attacks", venue="ICLR 2018",
        link="https://arxiv.org/abs/1706.06083", threat_models=("Linf", "L2"), fidelity="reference",
    )

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: TrainContext) -> torch.Tensor:
        """Cross-entropy on PGD adversarial examples."""
        x_adv = ctx.adversarial(model, x, y)
        return F.cross_entropy(model(x_adv), y)
