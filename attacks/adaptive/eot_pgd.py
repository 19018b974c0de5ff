"""EOT-PGD: PGD on the expectation of the loss over a randomized model's randomness."""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from attacks.base import MAX_STEPS, Attack, AttackConfig
from attacks.pgd import ExampleNoise, check_norm, per_example, project
from attacks.submitted import register
from benchmark.core.settings import bounded


@register
class EOTPGD(Attack):
    """PGD with Expectation over Transformation ("Synthesizing Robust Adversarial Examples",
    Athalye, Engstrom, Ilyas & Kwok, ICML 2018; used against randomized defenses in "Obfuscated
    Gradients Give a False Sense of Security", Athalye, Carlini & Wagner, ICML 2018, Section 4.3).
    Threat models: Linf, L2.

    What it reads from the papers: against a model whose forward pass draws randomness t (noise,
    random transformations), maximise the expected loss E_t[L(f_t(x'), y)]; its gradient is the
    average of the gradients of `samples` draws, so a step follows the expectation rather than one
    draw's noise.

    Each step takes `samples` forward and backward passes of the model at the current iterate,
    sums their cross-entropy gradients (the sign, or the normalised L2 direction, of the sum is
    that of the mean) and moves `step_ratio * eps`, then projects onto the ball and [0, 1]. Every
    restart starts from the example's next uniform random draw (`ExampleNoise`, from the seed) and
    runs all `steps` (a randomized model's one fooled draw is no success); per example the restart
    whose final iterate the most of `samples` further passes misclassify is kept. The model's own
    randomness is drawn from torch's global generator seeded with `seed` inside the call, and the
    caller's generator state is restored afterwards, so the result is a function of the seed.

    Arguments (`EOTPGD.Config`):
        steps (int): ascent steps per restart. Default 50.
        samples (int): forward-backward passes averaged per step (and votes per final check). Default 20.
        restarts (int): random restarts. Default 1.
        step_ratio (float): step size as a fraction of eps. Default 0.25.
        norm (str): "Linf" or "L2". Default "Linf".
        seed (int): seed of the random starts and of the model's randomness. Default 0.

    Shape:
        x: (B, C, H, W) in [0, 1]; y: (B,) labels; returns x_adv (B, C, H, W).

    Example:
        >>> x_adv = EOTPGD(samples=20)(noisy_model, x, y, eps=0.3)
    """

    name = "eot-pgd"
    title = "EOT-PGD"

    @dataclasses.dataclass(frozen=True)
    class Config(AttackConfig):
        steps: int = bounded(50, 0, MAX_STEPS, "ascent steps per restart")
        samples: int = bounded(20, 1, 1000, "forward-backward passes averaged per step")
        restarts: int = bounded(1, 1, 100, "random restarts")
        step_ratio: float = bounded(0.25, 0, 10, "step size as a fraction of eps", open_lo=True)

        def __post_init__(self):
            check_norm(self.norm)
            super().__post_init__()

    def _summed_gradient(self, model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The sum over `samples` passes of the cross-entropy's input gradient at `x_adv`."""
        total = torch.zeros_like(x_adv)
        for _ in range(self.config.samples):
            with torch.enable_grad():
                point = x_adv.detach().requires_grad_(True)
                loss = F.cross_entropy(model(point), y, reduction="sum")
                (grad,) = torch.autograd.grad(loss, point)
            total += grad
        return total

    @torch.no_grad()
    def _fooled_share(self, model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per example, the share of `samples` passes that misclassify `x_adv`."""
        wrong = sum((model(x_adv).argmax(dim=1) != y).float() for _ in range(self.config.samples))
        return wrong / self.config.samples

    def _ascend(self, x_adv: torch.Tensor, grad: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
        cfg = self.config
        if cfg.norm == "Linf":
            direction = grad.sign()
        else:
            direction = grad / per_example(grad.flatten(1).norm(p=2, dim=1), grad).clamp_min(1e-12)
        return project(x_adv + cfg.step_ratio * eps * direction, x, eps, cfg.norm)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        cfg = self.config
        noise = ExampleNoise(x, cfg.seed)
        best, best_share = x.clone(), torch.full((len(x),), -1.0, device=x.device)
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(cfg.seed)
            for _ in range(cfg.restarts):
                x_adv = noise.start(x, eps, cfg.norm)
                for _ in range(cfg.steps):
                    x_adv = self._ascend(x_adv, self._summed_gradient(model, x_adv, y), x, eps)
                share = self._fooled_share(model, x_adv, y)
                better = share > best_share
                best = torch.where(per_example(better, x), x_adv, best)
                best_share = torch.where(better, share, best_share)
        return best
