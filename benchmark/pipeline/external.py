"""Models from outside atbench: `--model module:callable` or a registered architecture, with
weights from `--checkpoint path`, evaluated under the same protocol as every defense.

The named module is imported only because the user named it on the command line; nothing is
imported from a record or a board. Checkpoints load with `weights_only=True`.
"""
from __future__ import annotations

import importlib
import io
import os
import re
import sys
from pathlib import Path

import torch
from torch import nn

from benchmark.core.errors import AtbenchError
from benchmark.core.io import load_checkpoint, sha256_bytes, sha256_file
from benchmark.core.registry import MODELS
from benchmark.models.architectures import build_model
from benchmark.pipeline.data import DataBundle

SPEC_HELP = ("pass `--model package.module:function` (a function with no arguments returning an nn.Module "
             "that takes [0, 1] images and returns logits) or a registered architecture (`atbench ls models`)")


def _import_callable(spec: str):
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise AtbenchError(f"model spec {spec!r} is not of the form module:callable", SPEC_HELP)
    here = os.getcwd()
    if here not in sys.path:  # as `python -m` does: modules of the current folder come first
        sys.path.insert(0, here)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AtbenchError(f"cannot import module {module_name!r} of model spec {spec!r} from the current folder "
                           f"({here}) or the installed packages: {exc}",
                           "run from the folder that contains the module, or install its package") from exc
    target = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise AtbenchError(f"module {module_name!r} has no attribute {attr!r}", SPEC_HELP)
        target = getattr(target, part)
    return target


def build_external(spec: str, bundle: DataBundle) -> nn.Module:
    """The model named by `spec`: a registered architecture built for `bundle`'s shapes, or
    the nn.Module returned by calling `module:callable` with no arguments."""
    if ":" not in spec:
        MODELS.get(spec)
        return build_model(spec, bundle.num_classes, bundle.input_shape, bundle.mean, bundle.std)
    model = _import_callable(spec)()
    if not isinstance(model, nn.Module):
        raise AtbenchError(f"{spec} returned {type(model).__name__}, not a torch.nn.Module", SPEC_HELP)
    return model


def load_external(spec: str, checkpoint: str | None, bundle: DataBundle) -> tuple[nn.Module, str]:
    """Build the model of `spec`, load `checkpoint` (a state dict, or a dict with a "model"
    state dict) weights-only, and return it in eval mode with the sha256 that identifies it
    (the checkpoint file's, or that of the model's own weights when no checkpoint is given)."""
    model = build_external(spec, bundle)
    if checkpoint is not None:
        state = load_checkpoint(checkpoint)
        state = state.get("model", state)
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError) as exc:
            raise AtbenchError(f"checkpoint {checkpoint} does not fit model {spec}: {str(exc).splitlines()[0]}",
                               "pass the checkpoint saved from this architecture (its state_dict)") from exc
        sha = sha256_file(checkpoint)
    else:
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        sha = sha256_bytes(buf.getvalue())
    return model.eval(), sha


def external_name(spec: str, checkpoint: str | None) -> str:
    """A default board name for an external model: the callable's (or architecture's) name,
    with the checkpoint's file stem when one is given, as a slug (`my_net:build` and
    `weights_v2.pt` give `build-weights-v2`)."""
    base = spec.rpartition(":")[2].rpartition(".")[2] or spec
    text = f"{base}-{Path(checkpoint).stem}" if checkpoint else base
    return "-".join(re.findall(r"[a-z0-9]+", text.lower()))[:64].strip("-") or "external-model"
