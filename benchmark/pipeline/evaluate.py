"""Run a protocol on a model: per-example flags for every (attack, eps), then aggregates.

The flags are the primary result; every number of the record (per attack, worst case,
per class) is derived from them by `aggregate`. Eps are evaluated in increasing order and
each attack attacks only the points it has not broken at a smaller eps (an adversarial
example inside a smaller ball lies inside every larger one). Finished (attack, eps) pairs
are saved to a state file, so a killed evaluation resumes without redoing them.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from attacks.base import check_inputs
from benchmark.core.errors import AtbenchError
from benchmark.core.io import atomic_write_text
from benchmark.pipeline.fastpath import search_model
from benchmark.pipeline.protocol import Protocol, build_attack
from benchmark.pipeline.run_files import read_eval_state
from leaderboard import derive
from leaderboard.derive import flag_key

log = logging.getLogger(__name__)
CHUNK = 1000
#: Bumped whenever the evaluation computes something new: records carry it, finished runs of
#: another version are re-evaluated, and boards refuse to mix versions.
EVALUATION_VERSION = 6


def select_test_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A seeded, class-stratified subset of `n` test indices (sorted). Classes get n // K
    points each; the remainder goes to the lowest class ids."""
    classes = np.unique(labels)
    if n > len(labels):
        raise AtbenchError(f"protocol asks for {n} test points but the test split has {len(labels)}",
                           "lower test_subset.n in the protocol file (and bump its version)")
    rng = np.random.default_rng(seed)
    per_class = [n // len(classes) + (i < n % len(classes)) for i in range(len(classes))]
    picked = []
    for c, k in zip(classes, per_class):
        members = np.flatnonzero(labels == c)
        if k > len(members):
            raise AtbenchError(f"class {c} has only {len(members)} test points, the protocol needs {k}",
                               "lower test_subset.n in the protocol file (and bump its version)")
        picked.append(rng.permutation(members)[:k])
    return np.sort(np.concatenate(picked))


def checked_logits(model: nn.Module, x: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """`model(x)`, refused unless it is one finite logit vector per input (of `num_classes`
    logits, when given).

    Raises:
        AtbenchError: wrong output shape, or NaN / Inf logits (such a model is not scored).
    """
    logits = model(x)
    expected = f"(batch, {num_classes})" if num_classes else "(batch, classes)"
    if (not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != len(x)
            or (num_classes and logits.shape[1] != num_classes)):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise AtbenchError(f"model output has shape {shape}, expected {expected}; the model is not scored",
                           "the model must return one logit vector per input, one logit per class")
    if not torch.isfinite(logits).all():
        raise AtbenchError("model output contains NaN or Inf logits; the model is not scored",
                           "check the checkpoint and the model's forward pass")
    return logits


@torch.no_grad()
def check_outputs(model: nn.Module, x: torch.Tensor, num_classes: int, device: torch.device | str) -> None:
    """Refuse, before any attack runs, a model whose outputs on the first points of `x` are not
    finite logit vectors of `num_classes` (`checked_logits`).

    Raises:
        AtbenchError: naming what is wrong with the outputs.
    """
    checked_logits(model.eval(), x[:16].to(device), num_classes)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, device: torch.device, votes: int = 1) -> np.ndarray:
    """The model's top-1 predictions (int64), in eval mode; with `votes` > 1 (a randomized
    defense), the majority over that many forward passes (ties go to the smallest class).
    Inputs outside [0, 1] are refused (`attacks.base.check_inputs`)."""
    check_inputs(x)
    model.eval()
    out = []
    for xb in x.split(CHUNK):
        xb = xb.to(device)
        passes = torch.stack([checked_logits(model, xb).argmax(1) for _ in range(votes)])
        out.append((torch.mode(passes, dim=0).values if votes > 1 else passes[0]).cpu().numpy())
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, dtype=np.int64)


class FiniteWatch(nn.Module):
    """The model as an attack sees it, noting whether any logit it returned was NaN or Inf (as a
    tensor, so watching costs no device sync). A model finite on clean inputs but not on
    perturbed ones would otherwise stall every gradient attack and score as robust."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.seen: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        bad = ~torch.isfinite(logits.detach()).all()
        self.seen = bad if self.seen is None else self.seen | bad
        return logits

    def check(self, what: str) -> None:
        """Raise if any logit seen so far was not finite.

        Raises:
            AtbenchError: naming `what` (the attack and eps) that met the non-finite logits.
        """
        if self.seen is not None and bool(self.seen):
            raise AtbenchError(f"model output contains NaN or Inf logits under {what}; the model is not scored",
                               "the model must return finite logits for every input in the eps ball (non-finite "
                               "logits on perturbed inputs only hide its gradients from the attacks)")


def _attack_survivors(model, attack, x, y, eps_value, alive, device, votes, precision: str,
                      name: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Predictions on the attack's adversarial examples for the `alive` points (-1 elsewhere)
    and, for an attack that reports one (AutoAttack), which of its sub-attacks broke each point.
    The attack searches in `precision`; the predictions are always made in full precision.

    Raises:
        AtbenchError: the model returned NaN or Inf logits during the attack `name`.
    """
    preds = np.full(len(y), -1, dtype=np.int64)
    breakdown: dict[str, np.ndarray] = {}
    idx = np.flatnonzero(alive)
    watched = FiniteWatch(search_model(model, precision))
    for chunk in np.array_split(idx, max(1, int(np.ceil(len(idx) / CHUNK)))):
        if len(chunk) == 0:
            continue
        x_adv = attack(watched, x[chunk].to(device), y[chunk].to(device), eps_value)
        watched.check(name)
        preds[chunk] = predict(model, x_adv, device, votes)
        for sub, broke in getattr(attack, "last_breakdown", {}).items():
            breakdown.setdefault(sub, np.zeros(len(y), dtype=np.int64))[chunk] = broke.cpu().numpy()
    return preds, breakdown


class EvalState:
    """Finished (attack, eps) predictions of `points` test points on disk, keyed by what
    determines them (a state saved under another key is ignored, then overwritten)."""

    def __init__(self, path: Path | None, key: str, points: int):
        self.path, self.key, self.preds, self.runtimes = path, key, {}, {}
        if path is not None and path.is_file():
            saved = read_eval_state(path, points)
            if saved["key"] == key:
                self.preds = {k: np.array(v, dtype=np.int64) for k, v in saved["preds"].items()}
                self.runtimes = saved["runtimes"]

    def save(self, name: str, preds: np.ndarray, seconds: float, extra: dict[str, np.ndarray]) -> None:
        """Record one finished (attack, eps) pair (and its `extra` arrays, stored under
        `<name>/<key>`) and write the state atomically."""
        self.preds[name] = preds
        self.preds.update({f"{name}/{k}": v for k, v in extra.items()})
        self.runtimes[name] = seconds
        if self.path is not None:
            body = {"key": self.key, "runtimes": self.runtimes,
                    "preds": {k: v.tolist() for k, v in self.preds.items()}}
            atomic_write_text(self.path, json.dumps(body, sort_keys=True))


@dataclasses.dataclass
class ProtocolResult:
    """What a protocol run produced.

    Attributes:
        flags: `"clean"` and `"<column>@<eps>"` -> bool array (robust: clean-correct and
            still correct on the column's adversarial example at eps); for AutoAttack also
            `"<column>@<eps>/<sub-attack>"`: the points that sub-attack broke at that eps.
        predictions: `"clean"` and `"<column>@<eps>"` -> int64 array of predictions (for a
            point broken at a smaller eps, the prediction on that adversarial example, which
            lies in the ball).
        runtimes: seconds per (attack, eps).
    """

    flags: dict[str, np.ndarray]
    predictions: dict[str, np.ndarray]
    runtimes: dict[str, float]


def run_protocol(model: nn.Module, protocol: Protocol, x: torch.Tensor, y: torch.Tensor,
                 device: str | torch.device = "cpu", state_path: str | Path | None = None,
                 state_key: str = "", progress: bool = True, votes: int = 1, label: str = "",
                 precision: str = "fp32") -> ProtocolResult:
    """Evaluate `model` on (x, y) under every (attack, eps) of `protocol`, eps in increasing
    order, each attack attacking only the points it has not broken yet. `votes` > 1 decides
    every prediction by majority over that many forward passes (randomized defenses).
    `precision` "bf16" runs the attacks' search in bf16 (`benchmark.pipeline.fastpath.search_model`); every
    adversarial example is then re-checked in full precision, which alone decides the flags.

    With `state_path`, finished pairs are saved and reused on a re-run with the same
    `state_key`. `label` (e.g. the defense) prefixes the log lines.
    """
    device = torch.device(device)
    labels = y.numpy()
    state = EvalState(Path(state_path) if state_path else None, state_key, len(y))
    clean_pred = predict(model, x, device, votes)
    flags, preds = {"clean": clean_pred == labels}, {"clean": clean_pred}
    bar = tqdm([(c, e) for c in protocol.columns for e in protocol.eps], desc="evaluate",
               disable=not progress, unit="attack", leave=False)
    previous: dict[str, str] = {}
    for column, eps in bar:
        name = flag_key(column.column, eps)
        bar.set_postfix_str(name)
        before = previous.get(column.column, "clean")
        if name not in state.preds:
            t0 = time.perf_counter()
            attacked, breakdown = _attack_survivors(model, build_attack(column, protocol), x, y,
                                                    protocol.eps_value(eps), flags[before], device, votes, precision,
                                                    name)
            state.save(name, attacked, time.perf_counter() - t0, breakdown)
        attacked = state.preds[name]
        flags.update({k: v.astype(bool) for k, v in state.preds.items() if k.startswith(f"{name}/")})
        preds[name] = np.where(attacked >= 0, attacked, preds[before])
        flags[name] = flags[before] & (preds[name] == labels)
        previous[column.column] = name
        log.info("%s%s: robust accuracy %.3f", f"{label} " if label else "", name, flags[name].mean())
    return ProtocolResult(flags, preds, dict(state.runtimes))


def worst_case_predictions(result: ProtocolResult, protocol: Protocol, eps: str) -> np.ndarray:
    """Per point, the prediction on its worst-case adversarial example at `eps`: that of the
    first attack column (in protocol order) that broke it, else the clean prediction."""
    out = result.predictions["clean"].copy()
    decided = ~result.flags["clean"]
    for column in protocol.columns:
        name = flag_key(column.column, eps)
        broken = ~result.flags[name] & ~decided
        out[broken] = result.predictions[name][broken]
        decided |= broken
    return out


def aggregate(flags: dict[str, np.ndarray], labels: np.ndarray, protocol: Protocol, num_classes: int) -> dict:
    """Every accuracy of the record, derived from the per-example flags
    (`leaderboard.derive.aggregate` with the protocol's eps, columns and groups)."""
    return derive.aggregate(flags, labels, protocol.eps, [c.column for c in protocol.columns], protocol.groups(),
                            num_classes)


def flags_npz_bytes(flags: dict[str, np.ndarray], labels: np.ndarray, indices: np.ndarray,
                    per_example: dict[str, np.ndarray] | None = None) -> bytes:
    """The flags file's bytes (deterministic: uncompressed, fixed key order): the bool flags,
    `labels`, `indices` and any other per-example arrays (e.g. input margins)."""
    import io

    buf = io.BytesIO()
    arrays = {k: flags[k].astype(bool) for k in sorted(flags)}
    arrays.update({k: per_example[k] for k in sorted(per_example or {})})
    np.savez(buf, labels=labels.astype(np.int64), indices=indices.astype(np.int64), **arrays)
    return buf.getvalue()

