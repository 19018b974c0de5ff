"""AutoAttack (Croce and Hein, ICML 2020) through the official code, packaged as `pyautoattack`."""
from __future__ import annotations

import dataclasses
import logging
import sys
from contextlib import contextmanager
from typing import Iterator

import torch
from pyautoattack import AutoAttack
from torch import nn

from attacks.base import Attack, AttackConfig
from attacks.pgd import check_norm, require
from benchmark.registry import ATTACKS

VERSIONS = ("standard", "plus", "rand")


@contextmanager
def _quiet_autoattack() -> Iterator[None]:
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


@ATTACKS.register("autoattack")
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

    @dataclasses.dataclass(frozen=True)
    class Config(AttackConfig):
        version: str = "standard"
        batch_size: int = 500

        def __post_init__(self):
            check_norm(self.norm)
            require(self.version in VERSIONS, f"unknown AutoAttack version {self.version!r}",
                    f"use one of {', '.join(VERSIONS)}")
            require(self.batch_size >= 1, f"batch_size = {self.batch_size} is below 1", "use e.g. 500")
            require(isinstance(self.seed, int) and not isinstance(self.seed, bool),
                    f"AutoAttack seed {self.seed!r} is not an integer", "pass an explicit integer seed")

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        if x.shape[0] == 0:
            return x.clone()
        cfg = self.config
        cuda = [x.device] if x.device.type == "cuda" else []
        with _quiet_autoattack(), torch.random.fork_rng(devices=cuda):
            aa = AutoAttack(model, device=x.device, eps=eps, norm=cfg.norm, seed=cfg.seed, version=cfg.version)
            aa.verbose = False
            x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=cfg.batch_size)
        return x_adv
