"""Standard training (ERM): cross-entropy on clean inputs, the floor every board shows."""
from __future__ import annotations

import dataclasses

import torch.nn.functional as F

from defenses.base import Defense, DefenseMeta, register


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
        threat_models=(), fidelity="reference",
    )

    def loss(self, model, x, y, ctx):
        """Cross-entropy on the clean batch."""
        return F.cross_entropy(model(x), y)
