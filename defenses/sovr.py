"""SOVR: switching one-versus-the-rest loss (Kanai et al., ICML 2023).

No public code exists; the paper's abstract fixes the idea (the one-versus-the-rest loss for the
small-margin samples of a batch, cross-entropy for the rest) and the details are the suite's
reading (fidelity: our-reading): PGD-AT's inner attack, margins on the adversarial logits, a
fixed fraction M of the batch.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from attacks.cw import margin
from defenses.base import Defense, DefenseMeta, TrainContext, register


@dataclasses.dataclass(frozen=True)
class SOVRConfig:
    """SOVR hyperparameters.

    Attributes:
        switch_fraction: M, the fraction of each batch (the smallest logit margins) trained
            with the one-versus-the-rest loss; 0.4 (our reading).
    """

    switch_fraction: float = 0.4

    def __post_init__(self):
        if not 0.0 <= self.switch_fraction <= 1.0:
            raise ValueError(f"switch_fraction must lie in [0, 1], not {self.switch_fraction}")


def ovr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One-versus-the-rest loss per example: softplus(-z_y) + sum_{k != y} softplus(z_k),
    i.e. binary cross-entropy with logits against the one-hot target, summed over classes."""
    signs = 1.0 - 2.0 * F.one_hot(y, logits.shape[1]).to(logits.dtype)
    return F.softplus(signs * logits).sum(dim=1)


def switched_indices(margins: torch.Tensor, fraction: float) -> torch.Tensor:
    """Indices of the round(fraction * B) examples with the smallest margins."""
    count = round(fraction * margins.numel())
    return margins.argsort(stable=True)[:count]


def sovr_loss(logits_adv: torch.Tensor, y: torch.Tensor, fraction: float) -> torch.Tensor:
    """(1/B) [sum over the switched examples of the OVR loss + sum over the rest of CE]."""
    per_example = F.cross_entropy(logits_adv, y, reduction="none")
    switched = switched_indices(margin(logits_adv.detach(), y), fraction)
    per_example = per_example.index_put((switched,), ovr_loss(logits_adv[switched], y[switched]))
    return per_example.mean()


@register
class SOVR(Defense):
    """PGD-AT whose small-margin examples are trained with the one-versus-the-rest loss."""

    name = "sovr"
    Config = SOVRConfig
    meta = DefenseMeta(
        paper="Switching One-Versus-the-Rest Loss to Increase the Margin of Logits for Adversarial Robustness",
        venue="ICML 2023", link="https://arxiv.org/abs/2207.10283", threat_models=("Linf", "L2"),
        fidelity="our-reading",
        search_space=tuple({"switch_fraction": m} for m in (0.2, 0.4, 0.6, 0.8)),
        search_bounds={"switch_fraction": (0.0, 1.0)},
    )

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: TrainContext) -> torch.Tensor:
        """The SOVR objective on PGD adversarial examples."""
        x_adv = ctx.adversarial(model, x, y)
        return sovr_loss(model(x_adv), y, self.config.switch_fraction)
