"""Multi-targeted PGD: a targeted logit-margin attack towards every other class, with restarts."""
from __future__ import annotations

import dataclasses
import torch
from torch import nn

from attacks.pgd import PGD, ExampleNoise, Objective, per_example, sign_ascent
from attacks.submitted import register


def targeted_margin(y: torch.Tensor, target: torch.Tensor) -> Objective:
    """The objective z_target - z_y per example (positive exactly when the target outscores y)."""
    return lambda logits, _: logits.gather(1, target[:, None]).squeeze(1) - logits.gather(1, y[:, None]).squeeze(1)


@register
class MultiTargeted(PGD):
    """Multi-targeted PGD ("An Alternative Surrogate Loss for PGD-based Adversarial Testing",
    Gowal, Uesato, Qin, Huang, Mann & Kohli, 2019, arXiv:1910.09338). Threat models: Linf, L2.

    What it reads from the paper: instead of the cross-entropy, maximise the logit margin
    z_t - z_y (a CW-style loss) towards one target class t at a time, for every class t != y,
    each with its own random restarts; a point counts as broken if any target's run breaks it.
    A cross-entropy whose gradient points nowhere useful (saturated softmax, a misleading
    direction) no longer hides the point, since each target is a separate ascent.

    Targets are taken in the order t = (y + k) mod K for k = 1 .. K-1 (K = the model's number of
    logits), so every example is tried against every other class. Each (target, restart) is one
    PGD run (`attacks.pgd.sign_ascent`: steps of `step_ratio * eps` from the example's next uniform
    random draw of `ExampleNoise`, stopping at the first fooling iterate); a point broken by one
    run keeps its adversarial example and is not attacked again.

    Arguments (`MultiTargeted.Config`): those of `PGD.Config`; `restarts` counts restarts per
    target. Defaults: steps=50, restarts=1, step_ratio=0.25, norm="Linf", seed=0.

    Shape:
        x: (B, C, H, W) in [0, 1]; y: (B,) labels; returns x_adv (B, C, H, W).

    Example:
        >>> x_adv = MultiTargeted(restarts=2)(model, x, y, eps=0.3)
    """

    name = "multi-targeted"
    title = "Multi-targeted PGD"

    @dataclasses.dataclass(frozen=True)
    class Config(PGD.Config):
        """`PGD.Config`'s settings, under the attack's own name in records."""

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        cfg = self.config
        noise = ExampleNoise(x, cfg.seed)
        x_adv = x.clone()
        with torch.no_grad():
            logits = model(x)
        robust, classes = logits.argmax(dim=1) == y, logits.shape[1]
        for shift in range(1, classes):
            objective = targeted_margin(y, (y + shift) % classes)
            for _ in range(cfg.restarts):
                if not robust.any():
                    return x_adv
                x_init = torch.where(per_example(robust, x), noise.start(x, eps, cfg.norm), x_adv)
                out = sign_ascent(model, x, objective, eps, cfg.steps, cfg.step_ratio * eps, x_init=x_init,
                                  norm=cfg.norm, y=y)
                x_adv = torch.where(per_example(robust, x), out, x_adv)
                with torch.no_grad():
                    robust = robust & (model(out).argmax(dim=1) == y)
        return x_adv
