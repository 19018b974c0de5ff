"""CW-Linf as used in adversarial-training papers: PGD on the Carlini-Wagner margin loss."""
from __future__ import annotations

import dataclasses

import torch

from attacks.pgd import PGD, Objective
from benchmark.core.registry import ATTACKS
from benchmark.core.settings import bounded


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example margin m = z_y - max_{k != y} z_k of logits (B, K) for labels (B,);
    negative exactly when another class scores higher than the true one."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.masked_fill(torch.nn.functional.one_hot(y, logits.shape[1]).bool(), float("-inf"))
    return true - others.amax(dim=1)


@ATTACKS.register
class CW(PGD):
    """CW-Linf: PGD on the margin loss of Carlini and Wagner ("Towards Evaluating the
    Robustness of Neural Networks", S&P 2017), the variant AT papers report (not the L2
    optimisation attack). Threat models: Linf (L2 also runs, with normalised-gradient steps).

    Maximises -max(m(x') + kappa, 0) with m = z_y - max_{k != y} z_k, i.e. pushes z_y below
    the best other logit, using PGD's loop: the same random starts, steps, step size, restarts
    and per-example keep-the-first-fooling-iterate rule. The loss is flat only where
    m <= -kappa, a point already fooled, and such a point has stopped; so with kappa >= 0 the
    per-example results do not depend on kappa (kept for the TRADES-script variant, kappa = 50,
    and shown in the record).

    Arguments (`CW.Config`): those of `PGD.Config` (steps=50, restarts=1, step_ratio=0.25,
    norm="Linf", seed=0) and
        kappa (float): confidence of the hinge. Default 0.0.

    Shape:
        x: (B, C, H, W) in [0, 1]; y: (B,) labels; returns x_adv (B, C, H, W).

    Example:
        >>> x_adv = CW(steps=20)(model, x, y, eps=8 / 255)
    """

    name = "cw"
    title = "CW"

    @dataclasses.dataclass(frozen=True)
    class Config(PGD.Config):
        kappa: float = bounded(0.0, 0, 1e6, "confidence of the hinge")

    def objective(self, y: torch.Tensor) -> Objective:
        """The loss maximised for labels `y`: -max(m + kappa, 0)."""
        kappa = self.config.kappa
        return lambda logits, _: -(margin(logits, y) + kappa).clamp_min(0)
