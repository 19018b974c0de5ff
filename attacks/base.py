"""The attack base class: it owns the bookkeeping, subclasses implement `perturb`."""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from typing import ClassVar, Iterator

import torch
from torch import nn

from benchmark.core.errors import AtbenchError
from benchmark.core.settings import SEED_MAX, bounded, check_value, range_text

BUDGET_TOL = 1e-6
#: The most steps (or restarts x steps) a protocol may ask of an attack.
MAX_STEPS = 10_000


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """Settings shared by every attack: the norm of the threat model and an explicit seed.
    Every numeric setting of an attack's Config carries its allowed range (`bounded`), which
    the protocol loader enforces and docs/protocols.md lists."""

    norm: str = "Linf"
    seed: int = bounded(0, 0, SEED_MAX, "seed of the attack's random draws")

    def __post_init__(self):
        """Refuse a numeric setting outside its range (`benchmark.core.settings.bounded`)."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if "lo" in field.metadata and isinstance(value, (int, float)) and not isinstance(value, bool):
                problem = check_value(field, value, float)
                if problem:
                    raise AtbenchError(f"{type(self).__qualname__} setting {field.name} {problem}",
                                       f"use a {field.name} in {range_text(field)}")


@dataclasses.dataclass(frozen=True)
class Sweep:
    """An attack setting a protocol may list several values of (`<key> = [...]`): one column per
    value, named `<attack>-<label><value>`, plus their per-example worst case under the
    attack's name.

    Attributes:
        field: the Config field swept ("temperature").
        key: the protocol key listing its values ("temperatures").
        label: the prefix of the value in column names ("T").
        baseline: the attack the sweep generalises (its sweep value 1 is exactly that attack);
            the sanity flag comparing the two reads its column.
    """

    field: str
    key: str
    label: str
    baseline: type | None = None


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module of `model` in eval mode; restore each one's training flag afterwards."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes.items():
            m.training = training


@contextmanager
def frozen_eval(model: nn.Module) -> Iterator[nn.Module]:
    """`eval_mode` with the parameters frozen as well (only input gradients are computed);
    `requires_grad` is restored afterwards."""
    grads = {p: p.requires_grad for p in model.parameters()}
    for p in grads:
        p.requires_grad_(False)
    try:
        with eval_mode(model):
            yield model
    finally:
        for p, flag in grads.items():
            p.requires_grad_(flag)


def perturbation_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-example Linf or L2 norm of a batch of perturbations."""
    flat = delta.flatten(1)
    if norm == "Linf":
        return flat.abs().amax(dim=1)
    if norm == "L2":
        return flat.norm(p=2, dim=1)
    raise AtbenchError(f"unknown norm {norm!r}", "use 'Linf' or 'L2'")


def check_inputs(x: torch.Tensor) -> None:
    """Raise if `x` is not a batch of images in [0, 1]."""
    if x.dim() != 4:
        raise AtbenchError(f"attack input has shape {tuple(x.shape)}, not NCHW", "pass a batch of images")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise AtbenchError(
            f"attack input lies outside [0, 1] (min {x.min().item():.3g}, max {x.max().item():.3g})",
            "feed raw [0, 1] images; normalisation belongs inside the model",
        )


class Attack:
    """Base class of every attack: `attack(model, x, y, eps) -> x_adv`.

    The call puts the model in eval mode with frozen parameters, checks the inputs lie in
    [0, 1], runs `perturb`, asserts the result lies in the eps ball and in [0, 1], and
    restores the model. Subclasses define `Config` (a frozen dataclass deriving from
    `AttackConfig`) and implement `perturb`.
    """

    name: ClassVar[str] = "attack"
    #: How reports write the attack's name ("Temperature-PGD").
    title: ClassVar[str] = "attack"
    Config: ClassVar[type] = AttackConfig
    #: A setting the protocol may sweep over (one column per value), or None.
    sweep: ClassVar[Sweep | None] = None
    #: Parts of `last_breakdown` that use no gradient: points they break after the gradient-based
    #: parts failed are evidence of gradient masking (the `square_beats_white_box` flag).
    black_box_parts: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def randomized_settings(cls, settings: dict, eot_samples: int) -> dict:
        """The settings this attack uses against a randomized defense (expectation over
        `eot_samples` gradient samples where the attack has such a variant); unchanged by default."""
        return dict(settings)

    def __init__(self, config: AttackConfig | None = None, **kwargs):
        if config is not None and kwargs:
            raise TypeError("pass either a config or keyword settings, not both")
        self.config = config if config is not None else self.Config(**kwargs)

    def __repr__(self) -> str:
        return repr(self.config)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        check_inputs(x)
        x = x.detach()
        with frozen_eval(model):
            x_adv = self.perturb(model, x, y, float(eps)).detach()
        self.assert_budget(x, x_adv, eps)
        return x_adv

    def assert_budget(self, x: torch.Tensor, x_adv: torch.Tensor, eps: float) -> None:
        """Raise `AssertionError` if `x_adv` leaves the eps ball around `x` or [0, 1]."""
        if x_adv.shape != x.shape:
            raise AssertionError(f"{self.name}: x_adv shape {tuple(x_adv.shape)} != {tuple(x.shape)}")
        if x.numel() == 0:
            return
        dist = perturbation_norm(x_adv - x, self.config.norm).max().item()
        if dist > eps + BUDGET_TOL:
            raise AssertionError(f"{self.name}: perturbation {dist:.3g} exceeds eps {eps:.3g}")
        if x_adv.min() < 0 or x_adv.max() > 1:
            raise AssertionError(f"{self.name}: x_adv leaves [0, 1]")

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        """Return adversarial examples for the batch; implemented by each attack."""
        raise NotImplementedError
