"""The defense interface: a defense owns its training objective and nothing else."""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable

import torch
from torch import nn

from attacks.base import frozen_eval
from attacks.pgd import Objective, cross_entropy, pgd_train_examples, sign_ascent
from benchmark.core.errors import AtbenchError
from benchmark.core.registry import DEFENSES

if TYPE_CHECKING:
    from benchmark.pipeline.tracks import Track

FIDELITIES = ("reference", "our-reading")
SELECTIONS = ("robust", "certified-l2")


@dataclasses.dataclass(frozen=True)
class DefenseMeta:
    """Who proposed a defense and how faithful our implementation is.

    Attributes:
        paper: paper title.
        venue: where it appeared, e.g. "ICLR 2018".
        link: URL of the paper.
        threat_models: norms it defends, e.g. ("Linf",); the harness trains it only on tracks
            of these norms.
        any_track_norm: its loss does not use the track's threat model (clean training, or a
            certificate of a fixed norm), so the harness trains it on tracks of any norm; its
            entries on the other norms' boards show what it does there.
        fidelity: "reference" (matches the authors' code) or "our-reading" (the suite's
            reading where code or details were unavailable; documented).
        search_space: the settings `atbench tune` trains and scores (config overrides of its
            one or two key hyperparameters; every tuned defense gets `TUNING_BUDGET` of them,
            the paper's values among them); empty for a defense without hyperparameters.
        search_bounds: per key of the search space that has them, the (low, high) bounds its
            values must stay strictly inside (a fraction: (0, 1)); `atbench tune`'s grid-edge
            rule steps halfway to a bound it would otherwise cross. Unlisted keys: (0, inf).
        selection: the score on the validation split that selects both its checkpoint (the
            epoch the harness keeps) and its tuned setting, the method's own objective:
            "robust" (robust accuracy under CE- and CW-PGD, `benchmark.pipeline.selection`) or
            "certified-l2" (certified L2 accuracy from the LipLT bound, for a certified-training
            method).
        randomized: inference is stochastic, so the protocol adds EOT.
        architectures: model names it supports; None means any.
    """

    paper: str
    venue: str
    link: str
    threat_models: tuple[str, ...] = ("Linf",)
    any_track_norm: bool = False
    fidelity: str = "reference"
    randomized: bool = False
    architectures: tuple[str, ...] | None = None
    search_space: tuple[dict[str, Any], ...] = ()
    search_bounds: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    selection: str = "robust"

    def __post_init__(self):
        if self.fidelity not in FIDELITIES:
            raise ValueError(f"fidelity must be one of {FIDELITIES}, not {self.fidelity!r}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, not {self.selection!r}")


@dataclasses.dataclass
class TrainContext:
    """What the harness tells a defense's loss about the current step.

    Attributes:
        epoch: current epoch (0-based).
        step: global optimiser step (0-based).
        device: the device the batch lives on.
        eps: the training perturbation size at this epoch (after the track's ramp).
        attack_steps: number of inner-maximisation steps the track allows.
        step_size: inner-attack step size (the track's ratio times `eps`).
        num_classes: number of classes.
        generator: a seeded generator for the defense's random choices.
        norm: the threat model's norm.
        val_class_error: per-class robust error (PGD at the track's eps) of the last
            validation, one entry per class; None before the first validation.

    A defense builds its inner maximisation with `adversarial`, which applies the track's norm,
    eps, steps, step size and generator, so no defense passes a budget by hand.
    """

    epoch: int
    step: int
    device: torch.device
    eps: float
    attack_steps: int
    step_size: float
    num_classes: int
    generator: torch.Generator
    norm: str = "Linf"
    val_class_error: tuple[float, ...] | None = None

    def adversarial(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *,
                    objective: Objective | None = None, start: str = "uniform") -> torch.Tensor:
        """Adversarial examples of the track's inner attack for one batch: `attack_steps`
        projected steepest-ascent steps of `step_size` in the `norm` ball of radius `eps`
        around `x` (and [0, 1]), maximising `objective(logits, x_adv)` (default: the
        cross-entropy of `y`), with the model in eval mode; no early stop, no `.grad` touched.

        Args:
            start: "uniform" (a uniform random point of the ball, as PGD-AT) or "gaussian"
                (x + 0.001 N(0, 1), as TRADES and MART); drawn from `generator`.

        Returns:
            Detached x_adv, shaped like `x`.

        Example:
            >>> x_adv = ctx.adversarial(model, x, y)
            >>> loss = F.cross_entropy(model(x_adv), y)
        """
        if objective is None:
            if y is None:
                raise AtbenchError("ctx.adversarial needs the labels y or an objective", "pass y (or objective=...)")
            objective = cross_entropy(y)
        if start == "uniform":
            return pgd_train_examples(model, x, y, self.eps, self.attack_steps, self.step_size, self.generator,
                                      norm=self.norm, objective=objective)
        if start != "gaussian":
            raise AtbenchError(f"unknown start {start!r} of ctx.adversarial", "use 'uniform' or 'gaussian'")
        noise = torch.randn(x.shape, generator=self.generator, device="cpu").to(x.device)
        with frozen_eval(model):
            return sign_ascent(model, x, objective, self.eps, self.attack_steps, self.step_size,
                               x_init=(x + 0.001 * noise).clamp(0, 1), norm=self.norm).detach()


def class_means(flags: torch.Tensor, y: torch.Tensor, num_classes: int, empty: float) -> torch.Tensor:
    """Per-class mean (float64, on the CPU) of boolean per-example `flags`; `empty` for a
    class with no example. The harness builds `TrainContext.val_class_error` with it."""
    hits = torch.bincount(y[flags].cpu(), minlength=num_classes).double()
    count = torch.bincount(y.cpu(), minlength=num_classes).double()
    return torch.where(count > 0, hits / count.clamp_min(1), torch.full_like(count, empty))


class Defense:
    """Base class of every defense.

    Subclasses set `name`, `meta`, `Config` (a frozen dataclass of hyperparameters whose
    defaults are the paper's values) and implement `loss`. Optional hooks:
    `on_epoch_start`, `calibrate`, `wrap`; `recipe_overrides` disclose any change to the
    track's training recipe and appear in the record and on the board.
    """

    name: ClassVar[str] = "defense"
    meta: ClassVar[DefenseMeta]
    Config: ClassVar[type]
    recipe_overrides: ClassVar[dict[str, Any]] = {}
    #: Training cost relative to PGD-AT on the same track; the executor starts costly jobs first.
    relative_cost: ClassVar[float] = 1.0

    def __init__(self, config: Any | None = None):
        self.config = config if config is not None else self.Config()

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: TrainContext) -> torch.Tensor:
        """The training loss for one batch (a scalar tensor attached to the model's parameters),
        inner maximisation included (`ctx.adversarial`)."""
        raise NotImplementedError

    def on_epoch_start(self, model: nn.Module, ctx: TrainContext) -> None:
        """Called by the harness before each epoch."""

    def calibrate(self, model: nn.Module, val_batches: Callable[[], Iterable], ctx: TrainContext) -> None:
        """Called once after training with a factory of validation batches and the context of
        the final epoch (its eps, attack steps and a seeded generator)."""

    def wrap(self, model: nn.Module) -> nn.Module:
        """The deployed, inference-time model; identity by default."""
        return model

    def deployment(self) -> dict[str, Any] | None:
        """What `wrap` adds to the trained network after `calibrate`, for the record's
        `defense.deployed` (e.g. class-wise AT's logit offsets, or why none were kept); None
        for a defense that deploys the trained network as it is."""
        return None

    def overrides(self, track: Track) -> dict[str, Any]:
        """The recipe overrides on `track`: `recipe_overrides` unless the defense scales them to
        the track (e.g. a burn-in given as a share of the reference recipe's epochs)."""
        return dict(self.recipe_overrides)

    def config_dict(self) -> dict[str, Any]:
        """The resolved hyperparameters as a plain dict (for records and hashes)."""
        return dataclasses.asdict(self.config)


def register(cls: type[Defense]) -> type[Defense]:
    """Class decorator: register a defense under its `name` in the DEFENSES registry (a file
    in `defenses/` is found and imported by the registry; a file elsewhere is passed with
    `--defense-file`)."""
    return DEFENSES.register(cls)
