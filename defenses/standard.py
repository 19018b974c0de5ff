"""Standard training (ERM): cross-entropy on clean inputs, the floor every board shows."""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from defenses.base import Defense, DefenseMeta, TrainContext, register


@dataclasses.dataclass(frozen=True)
class StandardConfig:
    """Standard training has no hyperparameters of its own."""


@register
class Standard(Defense):
    """Empirical risk minimisation: CE(f(x), y) on clean inputs."""

    name = "standard"
    relative_cost = 0.2
    Config = StandardConfig
    meta = DefenseMeta(
        paper="Standard training (empirical risk minimisation)", venue="-", link="",
        threat_models=(), any_track_norm=True, fidelity="reference",
    )

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: TrainContext) -> torch.Tensor:
        """Cross-entropy on the clean batch."""
        return F.cross_entropy(model(x), y)
