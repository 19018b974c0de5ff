"""The harness's checkpoint selection (and `atbench tune`'s score), by the defense's own
objective (`DefenseMeta.selection`): robust accuracy on the validation split where a point counts
only if it survives both CE-PGD and CW-PGD (a margin loss), so a model whose cross-entropy
gradients vanish cannot win it (`tests/test_selection.py`); or, for a certified-training method,
certified L2 accuracy from the LipLT bound, which no attack's weakness can raise."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from attacks.base import eval_mode
from attacks.cw import margin
from attacks.pgd import cross_entropy, random_start, sign_ascent
from benchmark.core.errors import AtbenchError
from benchmark.models.lipschitz import certified_lipschitz, certified_radius
from benchmark.pipeline.data import Split
from benchmark.pipeline.protocol import parse_eps, protocol_for
from benchmark.pipeline.tracks import Track
from defenses.base import class_means

#: How the harness picks the checkpoint (and `atbench tune` a setting), stated in every record: a
#: score that a model whose cross-entropy gradients vanish (gradient masking) cannot win.
SELECTION_RULE = ("highest validation robust accuracy at the track's eps, a point counting only if it survives both "
                  "CE-PGD and CW-PGD (margin loss) with the track's validation steps; ties broken by clean accuracy")
#: The rule of each `DefenseMeta.selection`, stated in every record and sweep.
SELECTION_RULES = {
    "robust": SELECTION_RULE,
    "certified-l2": ("highest validation certified L2 accuracy (LipLT bound), the mean over the track protocol's "
                     "certified radii of the share of points classified correctly with a certified radius at least "
                     "that large; ties broken by the robust rule's accuracy (CE-PGD and CW-PGD at the track's eps), "
                     "then by clean accuracy"),
}


@torch.no_grad()
def correct_flags(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Per-example correctness of `model` on (x, y), in eval mode."""
    model.eval()
    return torch.cat([model(xb).argmax(1) == yb for xb, yb in zip(x.split(batch_size), y.split(batch_size))])


def class_error(robust: torch.Tensor, y: torch.Tensor, num_classes: int) -> tuple[float, ...]:
    """Per-class error rate from per-example robust flags (0 for a class with no example)."""
    return tuple(class_means(~robust, y, num_classes, empty=0.0).tolist())


def cw_objective(y: torch.Tensor):
    """The CW margin loss max_{k != y} z_k - z_y (maximised: its gradient does not vanish when
    the softmax saturates, unlike the cross-entropy's)."""
    return lambda logits, _x: -margin(logits, y)


def selection_flags(model: nn.Module, x: torch.Tensor, y: torch.Tensor, track: Track,
                    seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per point, (correct, robust under CE-PGD alone, robust under both CE-PGD and CW-PGD):
    correct clean and still correct under each attack at the track's eps, norm and validation budget.
    The second is what the harness selects by (`SELECTION_RULE`); the first, the cross-entropy
    score alone, is logged beside it (a masked model scores high there only). Each attack draws
    its uniform random start from its own generator seeded by `seed`."""
    eps, steps, size = track.eps, track.val_attack_steps, track.step_ratio * track.eps
    survived = []
    for k, objective in enumerate((cross_entropy, cw_objective)):
        gen = torch.Generator().manual_seed(seed + k)
        x_adv = []
        for xb, yb in zip(x.split(500), y.split(500)):
            start = random_start(xb, eps, gen, track.norm)
            with eval_mode(model):
                x_adv.append(sign_ascent(model, xb, objective(yb), eps, steps, size, x_init=start, norm=track.norm))
        survived.append(correct_flags(model, torch.cat(x_adv), y))
    clean = correct_flags(model, x, y)
    return clean, clean & survived[0], clean & survived[0] & survived[1]


@dataclasses.dataclass(frozen=True)
class Validation:
    """One validation of the harness: clean accuracy, the selection score (worst case over CE-
    and CW-PGD), the cross-entropy score alone, and the per-class worst-case robust error."""

    clean: float
    robust: float
    ce_robust: float
    class_error: tuple[float, ...]


def validate(model: nn.Module, val: Split, track: Track, device: torch.device, seed: int,
             num_classes: int) -> Validation:
    """The harness's validation on the first `val_size` validation points (`selection_flags`)."""
    x, y = val.x[: track.val_size].to(device), val.y[: track.val_size].to(device)
    clean, ce, robust = selection_flags(model, x, y, track, seed)
    return Validation(clean.float().mean().item(), robust.float().mean().item(), ce.float().mean().item(),
                      class_error(robust, y, num_classes))


@torch.no_grad()
def certified_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, radii: tuple[float, ...],
                       batch_size: int = 500) -> float:
    """Mean over `radii` of the share of points of (x, y) that `model` (a plain network, in
    eval mode) classifies correctly with a certified L2 radius (LipLT bound) at least that large."""
    model.eval()
    lipschitz, _ = certified_lipschitz(model, tuple(x.shape[1:]))
    correct = correct_flags(model, x, y, batch_size)
    radius = torch.cat([certified_radius(model, xb, L=lipschitz) for xb in x.split(batch_size)])
    return float(sum((correct & (radius >= r)).double().mean().item() for r in radii) / len(radii))


def certified_selection_score(model: nn.Module, val: Split, track: Track, device: torch.device) -> float:
    """`certified_accuracy` on the first `val_size` validation points at the certified radii of
    the track's own protocol (the score of `selection = "certified-l2"`)."""
    radii = tuple(parse_eps(r) for r in protocol_for(track).certified_radii)
    if not radii:
        raise AtbenchError(f"track {track.name}'s protocol {track.protocol} names no certified radii, so a "
                           "certified-training defense cannot be selected on it",
                           "add certified_l2_radii to the protocol, or train the defense on a track whose protocol has them")
    x, y = val.x[: track.val_size].to(device), val.y[: track.val_size].to(device)
    return certified_accuracy(model, x, y, radii)
