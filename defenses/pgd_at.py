"""PGD adversarial training (Madry et al., ICLR 2018)."""
from __future__ import annotations

import dataclasses

import torch.nn.functional as F

from attacks.pgd import pgd_train_examples
from defenses.base import Defense, DefenseMeta, register


@dataclasses.dataclass(frozen=True)
class PGDATConfig:
    """PGD-AT has no hyperparameters beyond the track's inner-attack budget."""


@register
class PGDAT(Defense):
    """CE on x' = PGD (CE loss, uniform random start, the track's steps and step size eps/4),
    generated with the model in eval mode."""

    name = "pgd-at"
    Config = PGDATConfig
    meta = DefenseMeta(
        paper="Towards Deep Learning Models Resistant to Adversarial Attacks", venue="ICLR 2018",
        link="https://arxiv.org/abs/1706.06083", threat_models=("Linf", "L2"), fidelity="reference",
    )

    def loss(self, model, x, y, ctx):
        """Cross-entropy on PGD adversarial examples."""
        x_adv = pgd_train_examples(model, x, y, ctx.eps, ctx.attack_steps, ctx.step_size, ctx.generator)
        return F.cross_entropy(model(x_adv), y)
