"""Planted models for demonstrating adaptive attacks (`docs/attacks.md`): a trained model behind
non-differentiable input quantization, and behind Gaussian input noise. Neither is a defense to
rank: each is built to show how a fixed protocol can overstate a model and how a submitted attack
(`attacks/adaptive/`) corrects it.

The wrappers add no weights: their state dict is the wrapped model's, so a checkpoint of the
wrapped architecture loads into them as is, e.g.
`atbench eval --model benchmark.models.planted:quantized_cnn_mnist --checkpoint
runs/mnist5k-cnn/pgd-at/seed0/best.pt --name pgd-at-quantized` (the factories take no arguments,
as `--model module:callable` calls them; the weights and the input normalisation come from
`--checkpoint`).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from benchmark.models.architectures import build_model

#: cnn-mnist's input: 1x28x28 images of 10 classes. The Normalize layer's mean and std are
#: placeholders that the checkpoint's buffers replace.
MNIST_SHAPE, MNIST_CLASSES = (1, 28, 28), 10


class InputQuantizer(nn.Module):
    """round(x * levels) / levels: `levels` + 1 grey values; its gradient is zero almost everywhere.
    It declares `bpda_identity = True`: it is preprocessing that BPDA (`attacks.adaptive.bpda`) may
    differentiate as the identity."""

    bpda_identity = True

    def __init__(self, levels: int):
        super().__init__()
        if levels < 1:
            raise ValueError(f"levels must be at least 1, got {levels}")
        self.levels = levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * self.levels) / self.levels

    def extra_repr(self) -> str:
        return f"levels={self.levels}"


class LogitQuantizer(nn.Module):
    """round(z / step) * step on the logits: the scores are flat almost everywhere, so neither a
    gradient (zero) nor a score-based search (no change to follow) finds a direction, while the
    network behind it is as vulnerable as ever. It declares `bpda_identity = True`: BPDA may
    differentiate it as the identity (it keeps its input's shape)."""

    bpda_identity = True

    def __init__(self, step: float):
        super().__init__()
        if step <= 0:
            raise ValueError(f"step must be positive, got {step}")
        self.step = step

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.round(z / self.step) * self.step

    def extra_repr(self) -> str:
        return f"step={self.step}"


class GaussianInputNoise(nn.Module):
    """x + sigma * N(0, 1), clamped to [0, 1], a fresh draw (from torch's global generator) on every
    forward pass: a randomized model."""

    def __init__(self, sigma: float):
        super().__init__()
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + self.sigma * torch.randn_like(x)).clamp(0.0, 1.0)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"


class Preprocessed(nn.Module):
    """`model(preprocess(x))`, whose state dict is `model`'s own (the preprocessing has no weights)."""

    def __init__(self, preprocess: nn.Module, model: nn.Module):
        super().__init__()
        self.preprocess, self.model = preprocess, model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.preprocess(x))

    def state_dict(self, *args: Any, **kwargs: Any) -> dict:
        """The wrapped model's state dict (keys without a `model.` prefix)."""
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: dict, strict: bool = True, assign: bool = False):
        """Load a state dict of the wrapped model."""
        return self.model.load_state_dict(state_dict, strict=strict, assign=assign)


class Postprocessed(Preprocessed):
    """`postprocess(model(x))`, whose state dict is `model`'s own (the postprocessing has no weights)."""

    def __init__(self, model: nn.Module, postprocess: nn.Module):
        super().__init__(postprocess, model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.preprocess(self.model(x))


def quantized(model: nn.Module, levels: int = 16) -> Preprocessed:
    """`model` behind `InputQuantizer(levels)`."""
    return Preprocessed(InputQuantizer(levels), model)


def noisy(model: nn.Module, sigma: float = 0.25) -> Preprocessed:
    """`model` behind `GaussianInputNoise(sigma)`."""
    return Preprocessed(GaussianInputNoise(sigma), model)


def _cnn_mnist() -> nn.Module:
    return build_model("cnn-mnist", MNIST_CLASSES, MNIST_SHAPE, (0.0,), (1.0,))


def quantized_cnn_mnist() -> Preprocessed:
    """The mnist5k-cnn track's architecture (cnn-mnist) behind 16-level input quantization; load a
    trained cnn-mnist checkpoint into it (`--checkpoint`)."""
    return quantized(_cnn_mnist())


def quantized_logits_cnn_mnist() -> Postprocessed:
    """cnn-mnist whose logits are rounded to steps of 2 (`LogitQuantizer`); load a trained
    cnn-mnist checkpoint into it. The protocol's attacks see flat scores; BPDA sees through."""
    return Postprocessed(_cnn_mnist(), LogitQuantizer(2.0))


def noisy_cnn_mnist() -> Preprocessed:
    """cnn-mnist behind Gaussian input noise of sigma 0.25; load a trained cnn-mnist checkpoint into it."""
    return noisy(_cnn_mnist())


#: The smoke track's input: scikit-learn's 1x8x8 digits of 10 classes (its architecture: cnn-tiny).
DIGITS_SHAPE = (1, 8, 8)


def noisy_cnn_tiny_digits() -> Preprocessed:
    """The smoke track's architecture (cnn-tiny on 8x8 digits) behind Gaussian input noise of sigma
    0.25; load a trained smoke checkpoint into it. The smoke protocol's 100 points keep the
    randomized evaluation (EOT and majority votes) short."""
    return noisy(build_model("cnn-tiny", MNIST_CLASSES, DIGITS_SHAPE, (0.0,), (1.0,)))
