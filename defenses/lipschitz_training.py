"""What the certified-training defenses (CRM-LipLT, GloRo) share: the plain networks they train
and a Lipschitz bound kept across the steps of an epoch by warm-started power iteration."""
from __future__ import annotations

import torch
from torch import nn

from benchmark.models.lipschitz import LipschitzBound

#: Plain networks of the model zoo (`benchmark.models.architectures.is_plain`).
PLAIN_ARCHITECTURES = ("cnn-mnist", "cnn-cifar", "cnn-tiny")
#: Power iterations run from fresh vectors at the start of each epoch, so that the bound's state
#: at an epoch boundary depends on the weights only (a resumed run matches an uninterrupted one).
WARM_ITERATIONS = 50


class WarmBound:
    """A defense mixin: `warm_bound` gives the network's `LipschitzBound` after `iterations`
    more power iterations, from vectors kept across the steps of an epoch and restarted from a
    fixed seed (with `WARM_ITERATIONS`) at the first step of each epoch."""

    bound: LipschitzBound | None = None

    def on_epoch_start(self, model: nn.Module, ctx) -> None:
        """Forget the power-iteration vectors; they restart from a fixed seed at the next step."""
        self.bound = None

    def warm_bound(self, model: nn.Module, x: torch.Tensor, iterations: int) -> LipschitzBound:
        """The bound of `model` (inputs shaped like `x`'s rows), `iterations` power iterations on."""
        if self.bound is None:
            self.bound = LipschitzBound(model, tuple(x.shape[1:]), seed=0)
            self.bound.update(WARM_ITERATIONS)
        self.bound.update(iterations)
        return self.bound
