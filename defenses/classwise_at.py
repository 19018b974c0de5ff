"""Class-wise adversarial training (after Tian et al., KDD 2021).

The paper states that robustness differs strongly between classes and that changes at training
and at inference improve the most vulnerable class; its code and exact rules are not public, so
both changes are the suite's reading (fidelity: our-reading):

- training: PGD-AT whose per-example loss is weighted by its class weight
  w_c = floor + (1 - floor) * err_c^gamma / mean_k(err_k^gamma) (err: per-class robust error on
  the validation split, measured by the harness after every epoch), so the weights have mean 1
  and none falls below `weight_floor` (0.5). The floor is Fair Robust Learning's (Xu et al.,
  ICML 2021, "To be Robust or to be Fair", reference code `hannxu123/fair_robust`,
  `normalize_lambda` and `cost_sensitive`): its class weights are 1/K + lambda_c - sum(lambda)/K
  with multipliers lambda >= 0 of total mass at most `lim` = 0.5, i.e. the uniform weight mixed
  with a class-dependent part of share at most 0.5, so no class weighs less than half the mean.
  Without a floor, a class with zero validation error gets weight zero and gamma 2 or 4 collapses
  training onto the weakest classes;
- inference: per-class logit offsets b, calibrated on the validation split to maximise the
  worst-class robust accuracy while the overall robust accuracy drops at most one point, added
  to the logits by `wrap`.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from attacks.cw import margin
from defenses.base import Defense, DefenseMeta, TrainContext, class_means, register


@dataclasses.dataclass(frozen=True)
class ClasswiseATConfig:
    """Class-wise AT hyperparameters (our reading).

    Attributes:
        reweight: weight each example's loss by its class weight.
        gamma: exponent of the per-class error in the weights; 1.
        weight_floor: the least class weight, as a fraction of the mean weight (1); 0.5, Fair
            Robust Learning's (1 - lim) with its default lim = 0.5 (module docstring).
        calibrate_offsets: add calibrated per-class logit offsets at inference.
        max_accuracy_drop: the overall validation robust accuracy the offsets may cost; 0.01.
        largest_step: the largest offset step tried, in units of the median clean logit margin.
        grid_size: steps tried per update, evenly spaced up to `largest_step`.
        rounds: at most this many greedy offset updates.
    """

    reweight: bool = True
    gamma: float = 1.0
    weight_floor: float = 0.5
    calibrate_offsets: bool = True
    max_accuracy_drop: float = 0.01
    largest_step: float = 1.0
    grid_size: int = 20
    rounds: int = 20


def class_weights(errors: torch.Tensor, gamma: float, floor: float = 0.5) -> torch.Tensor:
    """w_c = floor + (1 - floor) * errors_c^gamma / mean(errors^gamma): mean 1, each at least
    `floor` (uniform when every error is 0)."""
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"weight floor must be in [0, 1], not {floor}")
    raw = errors.double().clamp_min(0) ** gamma
    if raw.sum() <= 0:
        return torch.ones_like(raw)
    return floor + (1.0 - floor) * raw * (len(raw) / raw.sum())


class LogitOffsets(nn.Module):
    """The deployed model: logits of `model` plus fixed per-class offsets."""

    def __init__(self, model: nn.Module, offsets: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("offsets", offsets.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) + self.offsets.to(x.dtype)


def robust_flags(logits_clean: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor,
                 offsets: torch.Tensor) -> torch.Tensor:
    """Per-example: correct on the clean and on the adversarial logits once offsets are added."""
    return ((logits_clean + offsets).argmax(1) == y) & ((logits_adv + offsets).argmax(1) == y)


def class_accuracy(flags: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-class mean of boolean flags (classes without examples count as 1)."""
    return class_means(flags, y, num_classes, empty=1.0)


def summary(logits_clean: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor, offsets: torch.Tensor,
            num_classes: int) -> tuple[float, float]:
    """(worst-class, overall) robust accuracy of fixed logits with `offsets` added."""
    flags = robust_flags(logits_clean, logits_adv, y, offsets)
    return class_accuracy(flags, y, num_classes).min().item(), flags.double().mean().item()


def attacked_logits(model: nn.Module, val_batches, ctx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clean logits, logits of PGD examples (the training attack at ctx.eps) and labels of the
    validation batches, on the CPU."""
    clean, adv, labels = [], [], []
    for xb, yb in val_batches():
        xb, yb = xb.to(ctx.device), yb.to(ctx.device)
        x_adv = ctx.adversarial(model, xb, yb)
        with torch.no_grad():
            clean.append(model(xb).cpu())
            adv.append(model(x_adv).cpu())
        labels.append(yb.cpu())
    return torch.cat(clean), torch.cat(adv), torch.cat(labels)


def search_offsets(logits_clean: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor, num_classes: int,
                   config: ClasswiseATConfig) -> torch.Tensor:
    """Greedy search for per-class logit offsets on fixed clean and adversarial logits: raise
    the offset of the currently worst class by the step that most improves (worst-class,
    overall) robust accuracy while overall accuracy stays within `max_accuracy_drop` of its
    value without offsets; stop when no step improves."""
    offsets = torch.zeros(num_classes, dtype=logits_clean.dtype)
    unit = margin(logits_clean, y).abs().median().item() or 1.0

    def score(b):
        return summary(logits_clean, logits_adv, y, b, num_classes)

    best = score(offsets)
    floor = best[1] - config.max_accuracy_drop
    for _ in range(config.rounds):
        worst = int(class_accuracy(robust_flags(logits_clean, logits_adv, y, offsets), y, num_classes).argmin())
        candidates = []
        for k in range(1, config.grid_size + 1):
            step = config.largest_step * k / config.grid_size
            trial = offsets.clone()
            trial[worst] += step * unit
            result = score(trial)
            if result[1] >= floor - 1e-12 and result > best:
                candidates.append((result, trial))
        if not candidates:
            break
        best, offsets = max(candidates, key=lambda c: c[0])
    return offsets


@register
class ClasswiseAT(Defense):
    """PGD-AT with class weights from validation robust error, and calibrated per-class logit
    offsets at inference; both switchable."""

    name = "classwise-at"
    Config = ClasswiseATConfig
    meta = DefenseMeta(
        paper="Analysis and Applications of Class-wise Robustness in Adversarial Training", venue="KDD 2021",
        link="https://arxiv.org/abs/2105.14240", threat_models=("Linf", "L2"), fidelity="our-reading",
        search_space=tuple({"gamma": g} for g in (0.5, 1.0, 2.0, 4.0)),
    )

    def __init__(self, config: ClasswiseATConfig | None = None):
        super().__init__(config)
        self.offsets: torch.Tensor | None = None
        self.offsets_reason = "not calibrated"

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: TrainContext) -> torch.Tensor:
        """Class-weighted cross-entropy on PGD adversarial examples."""
        x_adv = ctx.adversarial(model, x, y)
        per_example = F.cross_entropy(model(x_adv), y, reduction="none")
        if not self.config.reweight or ctx.val_class_error is None:
            return per_example.mean()
        weights = class_weights(torch.tensor(ctx.val_class_error), self.config.gamma,
                                self.config.weight_floor).to(per_example)
        return (weights[y] * per_example).mean()

    def calibrate(self, model, val_batches, ctx):
        """Fit the logit offsets on PGD examples of the validation split at the track's eps,
        then re-attack the offset model: offsets that lower its worst-class robust accuracy, or
        its overall robust accuracy by more than `max_accuracy_drop`, are dropped (as are
        all-zero ones), and `wrap` then deploys the model unchanged."""
        self.offsets = None
        if not self.config.calibrate_offsets:
            self.offsets_reason = "switched off (calibrate_offsets = false)"
            return
        start = ctx.generator.get_state()
        clean, adv, y = attacked_logits(model, val_batches, ctx)
        offsets = search_offsets(clean, adv, y, ctx.num_classes, self.config)
        ctx.generator.set_state(start)
        checked = attacked_logits(LogitOffsets(model, offsets.to(ctx.device)), val_batches, ctx)
        zero = torch.zeros_like(offsets)
        before, after = summary(clean, adv, y, zero, ctx.num_classes), summary(*checked, zero, ctx.num_classes)
        helps = after[0] >= before[0] and after[1] >= before[1] - self.config.max_accuracy_drop - 1e-12
        if not offsets.any():
            self.offsets_reason = "the search found no offset that raises the validation worst-class robust accuracy"
        elif not helps:
            self.offsets_reason = (f"re-attacked, the offset model's validation (worst-class, overall) robust accuracy "
                                   f"({after[0]:.3f}, {after[1]:.3f}) fell short of the plain model's "
                                   f"({before[0]:.3f}, {before[1]:.3f}) beyond the allowed drop")
        else:
            self.offsets = offsets
            self.offsets_reason = (f"re-attacked on the validation split: worst-class robust accuracy {before[0]:.3f} "
                                   f"-> {after[0]:.3f}, overall {before[1]:.3f} -> {after[1]:.3f}")

    def deployment(self) -> dict:
        """Whether the calibrated logit offsets are deployed: the offsets (null when none were
        kept) and the reason."""
        offsets = None if self.offsets is None else [round(v, 6) for v in self.offsets.tolist()]
        return {"logit_offsets": offsets, "reason": self.offsets_reason}

    def wrap(self, model):
        """The model plus the calibrated offsets (the model itself when offsets are off)."""
        if self.offsets is None:
            return model
        return LogitOffsets(model, self.offsets.to(next(model.parameters()).device))
