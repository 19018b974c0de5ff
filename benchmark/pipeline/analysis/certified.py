"""The record's `certified_l2` block: certified L2 accuracy of a plain network from its LipLT
bound (`benchmark.models.lipschitz`), beside L2-PGD's robust accuracy at the same radii."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from attacks.pgd import PGD
from benchmark.models.architectures import is_plain
from benchmark.models.lipschitz import certified_lipschitz, certified_radius
from benchmark.pipeline.evaluate import CHUNK, predict
from benchmark.pipeline.protocol import Protocol


def attack_all(attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
               device: torch.device) -> torch.Tensor:
    """`attack`'s adversarial examples for all of (x, y), computed in chunks, on the CPU."""
    return torch.cat([attack(model, xb.to(device), yb.to(device), eps).cpu()
                      for xb, yb in zip(x.split(CHUNK), y.split(CHUNK))])


def certified_radii(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    device: torch.device) -> tuple[np.ndarray, np.ndarray, torch.Tensor, str]:
    """Per point of a plain network: correct or not, and its certified L2 radius (0 when
    misclassified), from the exact LipLT bound; also the bound and how it was computed."""
    model = model.to(device).eval()
    correct = predict(model, x, device) == y.numpy()
    lipschitz, method = certified_lipschitz(model, tuple(x.shape[1:]))
    with torch.no_grad():
        radius = torch.cat([certified_radius(model, xb.to(device), L=lipschitz).cpu() for xb in x.split(CHUNK)])
    return correct, np.where(correct, radius.numpy(), 0.0).astype(np.float64), lipschitz, method


def certify(model: nn.Module, protocol: Protocol, x: torch.Tensor, y: torch.Tensor,
            device: torch.device) -> tuple[dict | None, np.ndarray | None]:
    """Certified L2 accuracy from the LipLT bound at the protocol's certified radii, beside the
    L2-PGD robust accuracy at the same radii on the same points; None for a model that is not a
    plain network (or a protocol without radii). Also returns each point's certified radius."""
    if not protocol.certified_radii or not is_plain(model):
        return None, None
    labels = y.numpy()
    correct, radius, lipschitz, method = certified_radii(model, x, y, device)
    settings = protocol.analysis.certified
    attack = PGD(norm="L2", steps=settings.pgd_steps, restarts=1, step_ratio=settings.pgd_step_ratio,
                 seed=settings.pgd_seed)
    certified, pgd = {}, {}
    for r in protocol.certified_radii:
        value = protocol.eps_value(r)
        survives = predict(model, attack_all(attack, model, x, y, value, device), device) == labels
        certified[r] = float(np.mean(radius >= value))
        pgd[r] = float(np.mean(survives & correct))
    block = {"radii": list(protocol.certified_radii), "certified_acc": certified, "pgd_l2_acc": pgd,
             "pgd_l2_steps": settings.pgd_steps, "lipschitz_max": float(lipschitz.max()),
             "lipschitz_method": method, "median_radius": float(np.median(radius))}
    return block, radius
