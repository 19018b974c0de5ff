"""BPDA, straight-through: PGD through a model whose non-differentiable preprocessing is the
identity on the backward pass."""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Iterator

import torch
from torch import nn

from attacks.pgd import PGD
from attacks.submitted import register
from benchmark.core.errors import AtbenchError

#: The attribute a module sets to True to declare itself preprocessing that BPDA differentiates as
#: the identity (it must return a tensor of its input's shape).
MARK = "bpda_identity"


def preprocessing(model: nn.Module) -> list[nn.Module]:
    """The modules of `model` (itself included) that declare `bpda_identity = True`."""
    return [m for m in model.modules() if getattr(m, MARK, False) is True]


def _straight_through(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    """A forward hook: the module's output on the forward pass, the identity's gradient backward."""
    (x,) = inputs
    if not torch.is_tensor(output) or output.shape != x.shape:
        shape = tuple(output.shape) if torch.is_tensor(output) else type(output).__name__
        raise AtbenchError(f"{type(module).__name__} declares {MARK} = True but maps shape {tuple(x.shape)} to "
                           f"{shape}; BPDA can replace only a shape-preserving layer by the identity",
                           f"set {MARK} only on preprocessing that returns an input-shaped tensor")
    return x + (output - x).detach()


@contextlib.contextmanager
def identity_backward(model: nn.Module) -> Iterator[int]:
    """Within the block, every `preprocessing` module of `model` computes its own output but passes
    gradients through unchanged (straight-through); yields how many modules that is."""
    handles = [m.register_forward_hook(_straight_through) for m in preprocessing(model)]
    try:
        yield len(handles)
    finally:
        for handle in handles:
            handle.remove()


@register
class BPDA(PGD):
    """BPDA with the straight-through estimator ("Obfuscated Gradients Give a False Sense of
    Security: Circumventing Defenses to Adversarial Examples", Athalye, Carlini & Wagner, ICML 2018,
    Section 4.1). Threat models: Linf, L2.

    What it reads from the paper: a defense that puts a non-differentiable (or gradient-shattering)
    preprocessing g before a classifier f, f(g(x)), with g(x) close to x, is attacked by running the
    forward pass through g as is and approximating g by the identity on the backward pass, so the
    gradient of f(g(x)) is taken as that of f at g(x) (the paper's "straight-through" special case
    of Backward Pass Differentiable Approximation, used there against input quantization and
    thermometer encoding).

    Which layers are preprocessing is declared by the model, never guessed: every module with the
    attribute `bpda_identity = True` (e.g. `benchmark.models.planted.InputQuantizer`) returns its
    own output forward and the identity's gradient backward (a forward hook, removed after the
    call). The search is PGD's (`attacks.pgd.PGD`: cross-entropy, uniform random starts drawn per
    example from the seed, steps of `step_ratio * eps`, keep the first fooling iterate); on a model
    that declares no such module it is exactly PGD.

    Arguments (`BPDA.Config`): those of `PGD.Config` (steps=50, restarts=1, step_ratio=0.25,
    norm="Linf", seed=0).

    Shape:
        x: (B, C, H, W) in [0, 1]; y: (B,) labels; returns x_adv (B, C, H, W).

    Example:
        >>> x_adv = BPDA(steps=100)(quantized_model, x, y, eps=0.3)
    """

    name = "bpda"
    title = "BPDA"

    @dataclasses.dataclass(frozen=True)
    class Config(PGD.Config):
        """`PGD.Config`'s settings, under the attack's own name in records."""

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        with identity_backward(model):
            return super().perturb(model, x, y, eps)
