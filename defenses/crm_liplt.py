"""CRM-LipLT: certified-radius maximisation with LipLT Lipschitz bounds (Fazlyab et al., NeurIPS 2023).

The reference code's 'softMax' certified-radius loss (`o4lc/CRM-LipLT`): cross-entropy plus
mu times a soft minimum over classes of the certified L2 radii R_ij = (z_yhat - z_j) / L_yhat,j
of the correctly classified points whose radius is below R0. The pairwise bounds L come from
`benchmark.models.lipschitz.LipschitzBound` (LipLT recursion, convolutions as linear maps, persistent
power iteration, 5 iterations per step, differentiable in the weights), the same code the
evaluation uses to certify every plain network (`certified_radius`, re-exported here).

Plain networks only (conv/linear + ReLU, no skip connections, no normalisation layers):
`meta.architectures` lists them and training anything else is an error. The robust term starts
after a clean cross-entropy phase, the harness's burn-in: 10 of the reference's 400 epochs,
scaled to the track's length (at least one epoch).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.models.lipschitz import certified_radius
from defenses.base import Defense, DefenseMeta, TrainContext, register
from defenses.lipschitz_training import PLAIN_ARCHITECTURES, WarmBound

__all__ = ["CRMLipLT", "CRMConfig", "certified_radius", "radius_loss"]

#: The reference recipe: 400 epochs, the robust term from epoch 10.
REFERENCE_EPOCHS, REFERENCE_START_EPOCH = 400, 10


@dataclasses.dataclass(frozen=True)
class CRMConfig:
    """CRM-LipLT hyperparameters (reference CIFAR-10 defaults).

    Attributes:
        mu: weight of the radius term; 15.
        r0: only points with certified radius below r0 (L2, input units) are penalised; 0.2.
        t: temperature of the soft minimum over classes; 5.
        power_iterations: power iterations per training step; 5.
    """

    mu: float = 15.0
    r0: float = 0.2
    t: float = 5.0
    power_iterations: int = 5


def radius_loss(logits: torch.Tensor, y: torch.Tensor, lipschitz: torch.Tensor, config: CRMConfig) -> torch.Tensor:
    """mu * (1/B) * sum over correct points with R_i < r0 of (1/t) logsumexp_j(-t R_ij).

    Args:
        logits: (B, K) logits.
        y: (B,) labels.
        lipschitz: (K, K) pairwise bounds L[k, j] (differentiable).
        config: the hyperparameters.
    """
    predicted = logits.argmax(dim=1)
    lip = lipschitz[predicted].clamp_min(torch.finfo(logits.dtype).tiny)
    radii = (logits.gather(1, predicted[:, None]) - logits) / lip
    radii = radii.scatter(1, predicted[:, None], float("inf"))
    active = (predicted == y) & (radii.detach().min(dim=1).values < config.r0)
    soft_min = torch.logsumexp(-config.t * radii[active], dim=1) / config.t
    return config.mu * soft_min.sum() / logits.shape[0]


@register
class CRMLipLT(WarmBound, Defense):
    """Cross-entropy plus the certified-radius soft minimum from LipLT pairwise bounds."""

    name = "crm-liplt"
    relative_cost = 0.3
    Config = CRMConfig
    meta = DefenseMeta(
        paper="Certified Robustness via Dynamic Margin Maximization and Improved Lipschitz Regularization",
        venue="NeurIPS 2023", link="https://arxiv.org/abs/2310.00116", threat_models=("L2",),
        any_track_norm=True, fidelity="reference", architectures=PLAIN_ARCHITECTURES,
        search_space=({"mu": 30.0, "r0": 2.2}, {"mu": 100.0, "r0": 4.0}, {"mu": 300.0, "r0": 8.0},
                      {"mu": 1000.0, "r0": 8.0}),
        selection="certified-l2",
    )

    def overrides(self, track):
        """Adam at lr 1e-3 (the reference optimiser) and a clean burn-in of 10/400 of the track."""
        return {"optimizer": "adam", "lr": 1e-3,
                "burn_in_epochs": max(1, round(track.epochs * REFERENCE_START_EPOCH / REFERENCE_EPOCHS))}

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: TrainContext) -> torch.Tensor:
        """CE + the certified-radius term, with bounds from warm-started power iteration."""
        bound = self.warm_bound(model, x, self.config.power_iterations)
        logits = model(x)
        return F.cross_entropy(logits, y) + radius_loss(logits, y, bound.pairwise(), self.config)
