"""PGD (Madry et al., 2018) and the functional core that the other gradient attacks and the
defenses' inner maximisation share: `random_start`, `ExampleNoise`, `sign_ascent`,
`pgd_train_examples`."""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from attacks.base import MAX_STEPS, Attack, AttackConfig, eval_mode
from benchmark.core.errors import AtbenchError
from benchmark.core.registry import ATTACKS
from benchmark.core.settings import bounded

NORMS = ("Linf", "L2")

#: `objective(logits, x_adv) -> loss`, per example (shape (B,)) or a scalar; it is maximised.
Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def require(ok: bool, problem: str, fix: str) -> None:
    """Raise `AtbenchError(problem, fix)` unless `ok`; used to validate attack configs."""
    if not ok:
        raise AtbenchError(problem, fix)


def check_norm(norm: str) -> None:
    """Raise an `AtbenchError` unless `norm` is one of `NORMS`."""
    require(norm in NORMS, f"unknown norm {norm!r}", f"use one of {', '.join(NORMS)}")


def per_example(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """View a per-example tensor of shape (B,) so that it broadcasts against `like` (B, ...)."""
    return t.view(-1, *([1] * (like.dim() - 1)))


def _l2(t: torch.Tensor) -> torch.Tensor:
    """Per-example L2 norm, shaped to broadcast against `t`."""
    return per_example(t.flatten(1).norm(p=2, dim=1), t)


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str = "Linf") -> torch.Tensor:
    """Project `x_adv` onto the `norm` ball of radius `eps` around `x`, then clamp to [0, 1].

    Clamping after the projection keeps the point in the ball: it moves every coordinate
    towards `x`, which lies in [0, 1].
    """
    delta = x_adv - x
    if norm == "Linf":
        delta = delta.clamp(-eps, eps)
    else:
        delta = delta * (eps / _l2(delta).clamp_min(1e-12)).clamp(max=1.0)
    return (x + delta).clamp(0.0, 1.0)


def random_start(x: torch.Tensor, eps: float, generator: torch.Generator, norm: str = "Linf") -> torch.Tensor:
    """A random point of the eps ball around `x`, clamped to [0, 1].

    Linf: uniform in the cube. L2: a uniform direction scaled by a radius uniform in [0, eps].
    The noise is drawn on `generator`'s device (so a CPU generator gives the same start on
    every device) and moved to `x`'s device and dtype. Shape of `x` and of the result: (B, ...).
    """
    check_norm(norm)
    delta = eps * unit_offsets(x.shape, generator, norm)
    return (x + delta.to(device=x.device, dtype=x.dtype)).clamp(0.0, 1.0)


def unit_offsets(shape: torch.Size, generator: torch.Generator, norm: str) -> torch.Tensor:
    """Random offsets of shape `shape` = (B, ...) in the unit ball of `norm`, drawn as
    `random_start` draws its noise (Linf: uniform in the cube; L2: a uniform direction times a
    radius uniform in [0, 1]); scaled by eps they are random starts' perturbations."""
    draw = dict(generator=generator, device=generator.device)
    if norm == "Linf":
        return 2 * torch.rand(shape, **draw) - 1
    direction = torch.randn(shape, **draw)
    radius = torch.rand(shape[0], **draw)
    return direction / _l2(direction).clamp_min(1e-12) * per_example(radius, direction)


class ExampleNoise:
    """Random-start noise drawn per example, so that an example's start does not depend on the
    batch it is attacked in (its size, order or the other examples in it).

    Each example gets its own CPU generator, seeded from `seed` and a hash of the example's
    values; the r-th call of `offsets` returns every example's r-th draw. The evaluation's
    multi-eps rule relies on this: attacking only the survivors of a smaller eps gives each
    survivor the start it would get in a run on all points.
    """

    def __init__(self, x: torch.Tensor, seed: int):
        rows = x.detach().to("cpu", torch.float32).flatten(1).contiguous().numpy()
        key = int(seed).to_bytes(8, "little", signed=True)
        self.shape = x.shape[1:]
        digests = [hashlib.blake2b(row.tobytes(), digest_size=8, key=key).digest() for row in rows]
        self.generators = [torch.Generator().manual_seed(int.from_bytes(d, "little") >> 1) for d in digests]

    def offsets(self, norm: str = "Linf") -> torch.Tensor:
        """The next draw of every example's unit-ball offset (`unit_offsets`), shape (B, ...)."""
        check_norm(norm)
        if not self.generators:
            return torch.zeros(0, *self.shape)
        return torch.cat([unit_offsets((1, *self.shape), g, norm) for g in self.generators])

    def start(self, x: torch.Tensor, eps: float, norm: str = "Linf") -> torch.Tensor:
        """The next random start of every example: x + eps * offset, clamped to [0, 1]."""
        delta = eps * self.offsets(norm)
        return (x + delta.to(device=x.device, dtype=x.dtype)).clamp(0.0, 1.0)


def sign_ascent(
    model: nn.Module,
    x: torch.Tensor,
    objective: Objective,
    eps: float,
    steps: int,
    step_size: float,
    *,
    x_init: torch.Tensor,
    norm: str = "Linf",
    y: torch.Tensor | None = None,
) -> torch.Tensor:
    """Maximise `objective` over the eps ball around `x` by projected steepest ascent.

    Each step moves by `step_size` along sign(grad) (Linf) or grad / ||grad||_2 (L2), then
    projects onto the ball and [0, 1] (`project`). Only input gradients are computed
    (`torch.autograd.grad`), so no parameter's `.grad` is touched; the model's mode is left as
    the caller set it (attacks run it in eval mode). Gradients are enabled inside, so it works
    under `torch.no_grad()`.

    Args:
        model: maps (B, C, H, W) images in [0, 1] to logits (B, K).
        x: clean images (B, C, H, W), the centre of the ball.
        objective: `objective(logits, x_adv) -> loss`, per example (B,) or a scalar; summed.
        eps: radius of the ball.
        steps: number of ascent steps (0 returns the projected `x_init`).
        step_size: length of each step in the ball's norm.
        x_init: the starting point (B, C, H, W), projected onto the ball first.
        norm: "Linf" (default) or "L2".
        y: labels (B,). When given, an example stops at its first iterate (the start
            included) that the model misclassifies and keeps it; the rest run all steps.
            Stopped examples leave the batch: later steps forward only the running ones, and
            `objective` then gets zero logits (no gradient) in the stopped examples' rows and
            the detached full batch as `x_adv` (per-example objectives of the logits, as the
            attacks' are, are unaffected).

    Returns:
        The detached final iterates (B, C, H, W), inside the ball and [0, 1].

    Example:
        >>> ce = lambda logits, _: F.cross_entropy(logits, y, reduction="none")
        >>> x_adv = sign_ascent(model, x, ce, 8 / 255, 10, 2 / 255, x_init=x)
    """
    check_norm(norm)
    x = x.detach()
    x_adv = project(x_init.detach(), x, eps, norm)
    if y is None:
        for _ in range(steps):
            with torch.enable_grad():
                x_adv.requires_grad_(True)
                (grad,) = torch.autograd.grad(objective(model(x_adv), x_adv).sum(), x_adv)
            x_adv = _ascend(x_adv.detach(), grad, x, eps, step_size, norm)
        return x_adv.detach()
    running = torch.arange(x.shape[0], device=x.device)
    for _ in range(steps):
        with torch.enable_grad():
            x_run = x_adv[running].requires_grad_(True)
            logits = model(x_run)
            keep = logits.detach().argmax(dim=1) == y[running]
            running, logits = running[keep], logits[keep]
            if len(running) == 0:
                break
            # The objective sees every example (rows of stopped ones are zero and constant);
            # only the running ones were forwarded, so only they cost a forward and backward.
            padded = logits.new_zeros(x.shape[0], logits.shape[1]).index_put((running,), logits)
            (grad,) = torch.autograd.grad(objective(padded, x_adv).sum(), x_run)
        x_adv = x_adv.index_put((running,), _ascend(x_run.detach()[keep], grad[keep], x[running],
                                                     _rows(eps, running), _rows(step_size, running), norm))
    return x_adv.detach()


def _rows(value: float | torch.Tensor, rows: torch.Tensor) -> float | torch.Tensor:
    """`value` for the examples `rows`: a per-example tensor is indexed, a number kept."""
    return value[rows] if torch.is_tensor(value) and value.dim() > 0 else value


def _ascend(x_adv: torch.Tensor, grad: torch.Tensor, x: torch.Tensor, eps, step_size, norm: str) -> torch.Tensor:
    """One projected steepest-ascent step: along sign(grad) (Linf) or the normalised gradient."""
    direction = grad.sign() if norm == "Linf" else grad / _l2(grad).clamp_min(1e-12)
    return project(x_adv + step_size * direction, x, eps, norm)


def cross_entropy(y: torch.Tensor, temperature: float = 1.0) -> Objective:
    """The objective CE(softmax(z / temperature), y), per example (z / 1.0 is exactly z)."""
    return lambda logits, _: F.cross_entropy(logits / temperature, y, reduction="none")


def pgd_train_examples(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int,
    step_size: float,
    generator: torch.Generator,
    *,
    norm: str = "Linf",
    objective: Objective | None = None,
) -> torch.Tensor:
    """PGD training examples for adversarial training (Madry et al., 2018), the path of every
    defense's `ctx.adversarial(..., start="uniform")`.

    `steps` steepest-ascent steps of `step_size` on `objective` (default: CE of `y`) from a
    uniform random start in the eps ball (`random_start`, drawn from `generator`), with the
    model in eval mode (each module's mode is restored afterwards) and no early stopping.
    Parameters keep `requires_grad` and no `.grad` is touched. Returns detached x_adv of the
    shape of `x`.

    Example:
        >>> x_adv = ctx.adversarial(model, x, y)  # in a defense's loss
        >>> loss = F.cross_entropy(model(x_adv), y)
    """
    start = random_start(x, eps, generator, norm)
    with eval_mode(model):
        return sign_ascent(model, x, objective or cross_entropy(y), eps, steps, step_size, x_init=start,
                           norm=norm).detach()


@ATTACKS.register
class PGD(Attack):
    """PGD with cross-entropy loss ("Towards Deep Learning Models Resistant to Adversarial
    Attacks", Madry et al., ICLR 2018). Threat models: Linf, L2.

    Each restart starts uniformly at random in the eps ball and takes `steps` steps of
    `step_ratio * eps` (signed gradient for Linf, normalised gradient for L2). Per example the
    result is the first iterate, over steps and restarts, that the model misclassifies; a
    point misclassified when clean keeps x; a point never fooled gets the last restart's
    final iterate. Restart r's start is each example's r-th draw of `ExampleNoise(x, seed)`, a
    function of the seed and the example alone, so results do not depend on the batch and
    more steps or more restarts with the same seed never leave more points robust.
    Subclasses change the loss by overriding `objective`.

    Arguments (`PGD.Config`):
        steps (int): ascent steps per restart. Default 50.
        restarts (int): random restarts. Default 1.
        step_ratio (float): step size as a fraction of eps. Default 0.25.
        norm (str): "Linf" or "L2". Default "Linf".
        seed (int): seed of the random starts. Default 0.

    Shape:
        x: (B, C, H, W) in [0, 1]; y: (B,) labels; returns x_adv (B, C, H, W).

    Example:
        >>> attack = PGD(steps=20, restarts=2)
        >>> x_adv = attack(model, x, y, eps=8 / 255)
    """

    name = "pgd"
    title = "PGD"

    @dataclasses.dataclass(frozen=True)
    class Config(AttackConfig):
        steps: int = bounded(50, 0, MAX_STEPS, "ascent steps per restart")
        restarts: int = bounded(1, 1, 100, "random restarts")
        step_ratio: float = bounded(0.25, 0, 10, "step size as a fraction of eps", open_lo=True)

        def __post_init__(self):
            check_norm(self.norm)
            super().__post_init__()

    def objective(self, y: torch.Tensor) -> Objective:
        """The loss the attack maximises for labels `y`: cross-entropy."""
        return cross_entropy(y)

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        cfg = self.config
        noise = ExampleNoise(x, cfg.seed)
        objective = self.objective(y)
        x_adv = x.clone()
        with torch.no_grad():
            robust = model(x).argmax(dim=1) == y
        for _ in range(cfg.restarts):
            if not robust.any():
                break
            start = noise.start(x, eps, cfg.norm)
            # Points already fooled start at their adversarial example, so they stop at once.
            x_init = torch.where(per_example(robust, x), start, x_adv)
            out = sign_ascent(
                model, x, objective, eps, cfg.steps, cfg.step_ratio * eps, x_init=x_init, norm=cfg.norm, y=y
            )
            x_adv = torch.where(per_example(robust, x), out, x_adv)
            with torch.no_grad():
                robust = robust & (model(out).argmax(dim=1) == y)
        return x_adv
