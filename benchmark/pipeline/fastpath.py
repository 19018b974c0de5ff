"""How the harness and the evaluation use the device: the GPU fast path.

None of these settings changes what is computed, only how fast it runs (and, for bf16, the
float precision of training's forward and backward passes):

- data resident on the device, augmented there (`benchmark.pipeline.data.augment` works on any device);
- channels_last memory layout for the model and its inputs (faster convolutions on tensor cores);
- bf16 autocast for training;
- optionally `torch.compile` of the training forward;
- attacks always take input gradients only (`attacks.base.frozen_eval`).

On the CPU every setting is off by default, so CPU records stay bit-identical. Evaluation
stays in full precision by default; `search_model(model, "bf16")` runs only the attacks'
search in bf16, and the evaluation re-checks every adversarial example in full precision on
the model itself.
"""
from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from typing import ContextManager

import torch
from torch import nn

from benchmark.core.errors import AtbenchError

#: Precisions of an evaluation's attack search; predictions are always full precision.
SEARCH_PRECISIONS = ("fp32", "bf16")


@dataclasses.dataclass(frozen=True)
class FastPath:
    """The training harness's use of the device.

    Attributes:
        data_on_device: move the training and validation splits to the device once.
        channels_last: channels_last layout for the model and every batch.
        bf16: bf16 autocast around the defense's loss (forward and backward).
        compile: `torch.compile` the model used for the defense's loss.
    """

    data_on_device: bool = False
    channels_last: bool = False
    bf16: bool = False
    compile: bool = False

    @classmethod
    def for_device(cls, device: str | torch.device, compile: bool = False) -> "FastPath":
        """Everything on for a CUDA device, everything off on the CPU (`compile` as asked)."""
        cuda = torch.device(device).type == "cuda"
        return cls(data_on_device=cuda, channels_last=cuda, bf16=cuda, compile=compile)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Convert `model` in place to the memory layout of this fast path; returns it."""
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def prepare_batch(self, x: torch.Tensor) -> torch.Tensor:
        """The batch in the memory layout of this fast path."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def forward_model(self, model: nn.Module) -> nn.Module:
        """The module the defense's loss calls: `torch.compile(model)` or `model` itself. A
        compiled module shares the parameters, so the optimiser and checkpoints keep using
        `model` (its state_dict keys stay unprefixed)."""
        return torch.compile(model) if self.compile else model

    def autocast(self, device: torch.device) -> ContextManager:
        """bf16 autocast on `device` when enabled, else a no-op context."""
        return torch.autocast(device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()


class Bf16Search(nn.Module):
    """`model` run under bf16 autocast, its logits returned in fp32 (so every attack, AutoAttack
    included, gets the dtype it expects)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return self.model(x).float()


def search_model(model: nn.Module, precision: str) -> nn.Module:
    """The model an evaluation's attacks search on: `model` itself in full precision ("fp32",
    the default) or wrapped in `Bf16Search` ("bf16"). Predictions on the adversarial examples
    are made on `model` itself, in full precision."""
    if precision not in SEARCH_PRECISIONS:
        raise AtbenchError(f"unknown evaluation precision {precision!r}", f"use one of: {', '.join(SEARCH_PRECISIONS)}")
    return model if precision == "fp32" else Bf16Search(model)
