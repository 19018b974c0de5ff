"""An example external defense: a package of its own, found by atbench through its entry point
(`[atbench.defenses] example-smooth-at = atbench_example_defense:ExampleSmoothAT` in its
dist-info), never registered in atbench's tree. atbench's tests put its folder on sys.path the
way an installed distribution would be."""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from defenses.base import Defense, DefenseMeta, TrainContext


@dataclasses.dataclass(frozen=True)
class ExampleSmoothATConfig:
    """smoothing: label-smoothing factor of the outer cross-entropy."""

    smoothing: float = 0.1


class ExampleSmoothAT(Defense):
    """PGD-AT whose outer cross-entropy uses label smoothing (one of the tricks studied by
    Pang et al.); the inner PGD maximises plain cross-entropy."""

    name = "example-smooth-at"
    Config = ExampleSmoothATConfig
    meta = DefenseMeta(
        paper="Bag of Tricks for Adversarial Training", venue="ICLR 2021",
        link="https://arxiv.org/abs/2010.00467", threat_models=("Linf",), fidelity="our-reading",
    )

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: TrainContext) -> torch.Tensor:
        """Label-smoothed cross-entropy on PGD adversarial examples (the track's inner attack)."""
        x_adv = ctx.adversarial(model, x, y)
        return F.cross_entropy(model(x_adv), y, label_smoothing=self.config.smoothing)
