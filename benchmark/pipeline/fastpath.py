"""How the harness and the evaluation use the device: the GPU fast path.

None of these settings changes what is computed, only how fast it runs (and, for bf16, the
float precision of training's forward and backward passes):

- data resident on the device, augmented there (`benchmark.pipeline.data.augment` works on any device);
- channels_last memory layout for the model and its inputs (faster convolutions on tensor cores);
- bf16 autocast for training;
- optionally `torch.compile` of the training forward;
- attacks always take input gradients only (`attacks.base.frozen_eval`).

`--fast-path auto` (the default) turns the fast path on for a CUDA device and off on the CPU,
so CPU records stay bit-identical; `on` forces it anywhere (the CPU end-to-end test runs it), and
`off` turns it off. A run made with any setting on says so (`settings`: train.json, the train
key and the record's `provenance.fast_path`), so it is never mistaken for, nor reused as, a plain
run. Evaluation uses only the model's layout (`for_evaluation`) and stays in full precision by
default; `search_model(model, "bf16")` runs only the attacks'
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
#: `--fast-path` modes: "auto" is on for a CUDA device and off elsewhere.
FAST_PATH_MODES = ("auto", "on", "off")


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
    def for_device(cls, device: str | torch.device, compile: bool = False, mode: str = "auto") -> "FastPath":
        """The fast path `mode` asks for on `device`: every setting but `compile` on with "on",
        off with "off", and with "auto" on for a CUDA device and off elsewhere; `compile` as
        asked.

        Raises:
            AtbenchError: an unknown mode.
        """
        if mode not in FAST_PATH_MODES:
            raise AtbenchError(f"unknown fast-path mode {mode!r}", f"use one of: {', '.join(FAST_PATH_MODES)}")
        on = mode == "on" or (mode == "auto" and torch.device(device).type == "cuda")
        return cls(data_on_device=on, channels_last=on, bf16=on, compile=compile)

    def for_evaluation(self) -> "FastPath":
        """The part of this fast path an evaluation uses: the model's layout (its data stay
        where they are, its predictions are full precision, its model is not compiled)."""
        return FastPath(channels_last=self.channels_last)

    def settings(self) -> tuple[str, ...]:
        """The names of the settings that are on, in field order (empty for the plain path)."""
        return tuple(name for name in FAST_PATH_SETTINGS if getattr(self, name))

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


#: The names of the fast path's settings (what `FastPath.settings` returns a selection of).
FAST_PATH_SETTINGS = tuple(f.name for f in dataclasses.fields(FastPath))


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
