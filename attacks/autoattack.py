"""AutoAttack (Croce and Hein, ICML 2020) through the official code, packaged as `pyautoattack`."""
from __future__ import annotations

import dataclasses
import inspect
import logging
import sys
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from pyautoattack import AutoAttack
from torch import nn

from attacks.base import Attack, AttackConfig
from attacks.pgd import check_norm, require
from benchmark.core.registry import ATTACKS
from benchmark.core.settings import bounded

VERSIONS = ("standard", "plus", "rand")
#: The sub-attack objects of `pyautoattack.AutoAttack` whose `perturb` the adapter wraps.
SUB_ATTACKS = ("apgd", "apgd_targeted", "fab", "square")


@contextmanager
def quiet_autoattack() -> Iterator[None]:
    """Silence pyautoattack's logger (its sanity warnings included; the evaluation computes
    its own sanity flags) and restore the trace function that its dynamic-defense check
    (`sys.settrace`) resets, so coverage and debuggers keep working."""
    logger = logging.getLogger("auto-attack")
    level, trace = logger.level, sys.gettrace()
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
        sys.settrace(trace)


class _BreakdownRecorder:
    """Records, for every sub-attack call inside `run_standard_evaluation`, the sub-attack's name
    and the indices (into the evaluated batch) of the points it was run on.

    The sub-attacks' `perturb` methods are wrapped on the instance; each wrapper reads the
    indices and the attack name from `run_standard_evaluation`'s frame (its locals
    `batch_datapoint_idcs` and `attack`), calls the original method and returns its result
    unchanged, so no result, random draw or forward pass of AutoAttack changes.
    """

    def __init__(self, aa: AutoAttack):
        self.calls: list[tuple[str, torch.Tensor]] = []
        for attr in SUB_ATTACKS:
            sub = getattr(aa, attr)
            sub.perturb = self._wrap(sub.perturb)

    def _wrap(self, perturb: Callable) -> Callable:
        def recorded(*args, **kwargs):
            caller = inspect.currentframe().f_back.f_locals
            if "batch_datapoint_idcs" not in caller or "attack" not in caller:
                raise RuntimeError("pyautoattack's run_standard_evaluation no longer exposes "
                                   "batch_datapoint_idcs/attack; update AutoAttackAdapter")
            idcs = caller["batch_datapoint_idcs"].reshape(-1).detach().cpu().clone()
            self.calls.append((caller["attack"], idcs))
            return perturb(*args, **kwargs)

        return recorded

    def breakdown(self, names: list[str], robust: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per sub-attack name, a bool CPU tensor over the batch: True where that sub-attack
        broke the point. A point is broken by the last sub-attack run on it, unless it is
        still `robust` at the end; points never attacked (clean errors) are in no set."""
        last = torch.full(robust.shape, -1, dtype=torch.long)
        for name, idcs in self.calls:
            last[idcs] = names.index(name)
        broken = ~robust.cpu()
        return {name: (last == i) & broken for i, name in enumerate(names)}


@ATTACKS.register
class AutoAttackAdapter(Attack):
    """AutoAttack ("Reliable evaluation of adversarial robustness with an ensemble of diverse
    parameter-free attacks", Croce and Hein, ICML 2020) via `pyautoattack.AutoAttack`.
    Threat models: Linf, L2.

    Version "standard" runs APGD-CE, APGD-T (9 targets), FAB-T (9 targets) and Square (5000
    queries) in that order, each on the points still robust; "rand" (APGD-CE and APGD-DLR with
    EOT-20) is for randomized defenses; "plus" is the stronger variant. The result is exactly
    `run_standard_evaluation` of pyautoattack called with the same model, points, eps, norm,
    seed, version and batch size: robust points come back unchanged. pyautoattack seeds
    torch's global generators; the adapter forks them (CPU, and x's CUDA device) so the
    caller's random streams are untouched. Its logging is silenced.

    After each call, `last_breakdown` maps every sub-attack of the version (in run order, e.g.
    "apgd-ce", "apgd-t", "fab-t", "square" for "standard") to a bool CPU tensor over the
    batch: True where that sub-attack broke the point (the later ones only ever see points
    the earlier ones left robust). The sets are disjoint; their union is the points
    classified correctly when clean and not robust after the attack. A sub-attack skipped
    because no point was left maps to all False.

    Arguments (`AutoAttackAdapter.Config`):
        version (str): "standard", "plus" or "rand". Default "standard".
        batch_size (int): points per forward pass inside AutoAttack. Default 500.
        norm (str): "Linf" or "L2". Default "Linf".
        seed (int): passed explicitly to AutoAttack (never None, which would mean the clock).
            Default 0.

    Shape:
        x: (B, C, H, W) in [0, 1]; y: (B,) labels; returns x_adv (B, C, H, W).
        The targeted attacks of "standard" need at least 10 classes.

    Example:
        >>> x_adv = AutoAttackAdapter(seed=0)(model, x, y, eps=8 / 255)
    """

    name = "autoattack"
    title = "AutoAttack"
    black_box_parts = ("square",)

    @classmethod
    def randomized_settings(cls, settings: dict, eot_samples: int) -> dict:
        """Version "rand" (APGD-CE and APGD-DLR, each gradient the mean over `eot_samples`
        samples of the defense's randomness)."""
        return {**settings, "version": "rand", "eot_samples": eot_samples}

    @dataclasses.dataclass(frozen=True)
    class Config(AttackConfig):
        version: str = dataclasses.field(default="standard", metadata={"doc": "one of standard, plus, rand"})
        batch_size: int = bounded(500, 1, 100_000, "points per forward pass inside AutoAttack")
        eot_samples: int = bounded(20, 1, 10_000, "version rand: gradient samples of APGD's EOT")

        def __post_init__(self):
            check_norm(self.norm)
            require(self.version in VERSIONS, f"unknown AutoAttack version {self.version!r}",
                    f"use one of {', '.join(VERSIONS)}")
            require(isinstance(self.seed, int) and not isinstance(self.seed, bool),
                    f"AutoAttack seed {self.seed!r} is not an integer", "pass an explicit integer seed")
            super().__post_init__()

    def __init__(self, config: AttackConfig | None = None, **kwargs):
        super().__init__(config, **kwargs)
        self.last_breakdown: dict[str, torch.Tensor] = {}

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        cfg = self.config
        if x.shape[0] == 0:
            with quiet_autoattack():
                names = AutoAttack(model, eps=eps, norm=cfg.norm, seed=cfg.seed, version=cfg.version).attacks_to_run
            self.last_breakdown = {name: torch.zeros(0, dtype=torch.bool) for name in names}
            return x.clone()
        cuda = [x.device] if x.device.type == "cuda" else []
        with quiet_autoattack(), torch.random.fork_rng(devices=cuda):
            aa = AutoAttack(model, device=x.device, eps=eps, norm=cfg.norm, seed=cfg.seed, version=cfg.version)
            if cfg.version == "rand":
                aa.apgd.eot_iter = cfg.eot_samples
            aa.verbose = False
            recorder = _BreakdownRecorder(aa)
            x_adv, y_adv = aa.run_standard_evaluation(x, y, batch_size=cfg.batch_size)
        # pyautoattack's y_adv is the clean prediction, replaced by the adversarial one where
        # a sub-attack succeeded: it equals y exactly where the point is still robust.
        self.last_breakdown = recorder.breakdown(list(aa.attacks_to_run), y_adv.eq(y))
        return x_adv
