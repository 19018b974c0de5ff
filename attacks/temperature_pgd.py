"""Temperature-PGD (Tian et al., KDD 2021): PGD on the cross-entropy of tempered logits."""
from __future__ import annotations

import dataclasses

import torch

from attacks.base import Sweep
from attacks.pgd import PGD, Objective, cross_entropy
from benchmark.core.registry import ATTACKS
from benchmark.core.settings import bounded


@ATTACKS.register
class TemperaturePGD(PGD):
    """Temperature-PGD ("Analysis and Applications of Class-wise Robustness in Adversarial
    Training", Tian et al., KDD 2021; the suite's reading, the authors' code being unavailable).
    Threat models: Linf, L2.

    PGD maximising CE(softmax(z(x') / T), y) for one temperature T, with PGD's random starts,
    steps, step size, restarts and keep-the-first-fooling-iterate rule; T = 1 gives exactly
    PGD's result for the same seed. With signed steps only the gradient direction matters:
    small T tends to the margin direction, large T avoids saturated softmax gradients. The
    protocol runs one instance per temperature and combines their per-example flags itself.

    Arguments (`TemperaturePGD.Config`): those of `PGD.Config` (steps=50, restarts=1,
    step_ratio=0.25, norm="Linf", seed=0) and
        temperature (float): T, positive. Default 2.0.

    Shape:
        x: (B, C, H, W) in [0, 1]; y: (B,) labels; returns x_adv (B, C, H, W).

    Example:
        >>> x_adv = TemperaturePGD(temperature=5.0, steps=20)(model, x, y, eps=8 / 255)
    """

    name = "tpgd"
    title = "Temperature-PGD"
    sweep = Sweep(field="temperature", key="temperatures", label="T", baseline=PGD)

    @dataclasses.dataclass(frozen=True)
    class Config(PGD.Config):
        temperature: float = bounded(2.0, 0, 1e6, "softmax temperature T", open_lo=True)

    def objective(self, y: torch.Tensor) -> Objective:
        """The loss maximised for labels `y`: CE(softmax(z / T), y)."""
        return cross_entropy(y, self.config.temperature)
