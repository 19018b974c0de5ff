"""Readers of the state files a run leaves in its folder (`train.json`, `eval_state.json`).

A re-run trusts these files to skip finished work, so each is checked field by field before it
is used: a malformed, truncated or edited file is an `AtbenchError` naming the file and the
field, never a traceback or a silently wrong result.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Callable

from benchmark.core.errors import AtbenchError
from benchmark.pipeline.fastpath import FAST_PATH_SETTINGS
from benchmark.pipeline.train import TrainResult

_SHA256 = re.compile(r"[0-9a-f]{64}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _read_object(path: Path, fix: str) -> dict:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise AtbenchError(f"{path} cannot be read as JSON ({exc})", fix) from None
    if not isinstance(body, dict):
        raise AtbenchError(f"{path} must hold a JSON object, not {type(body).__name__}", fix)
    return body


def _check_fields(path: Path, body: dict, checks: dict[str, tuple[Callable[[Any], bool], str]], fix: str) -> None:
    for name in body:
        if name not in checks:
            raise AtbenchError(f"{path}: unexpected field {name!r}", fix)
    for name, (ok, expected) in checks.items():
        if name not in body:
            raise AtbenchError(f"{path}: field {name!r} is missing", fix)
        if not ok(body[name]):
            raise AtbenchError(f"{path}: field {name!r} must be {expected}, not {body[name]!r:.80}", fix)


def read_train_result(path: str | Path) -> TrainResult:
    """The finished training recorded in `train.json`, checked field by field.

    Raises:
        AtbenchError: the file is unreadable or a field is missing, unexpected or wrong.
    """
    path = Path(path)
    fix = (f"delete {path} and re-run: training resumes from last.pt in the same folder, "
           "so no finished epoch is lost")
    body = _read_object(path, fix)
    body.setdefault("fast_path", [])  # a train.json from before atbench recorded the fast path
    body.setdefault("best_val_certified_acc", None)  # ... or certified selection
    body.setdefault("peak_memory_mib", None)  # ... or costs
    accuracy = (lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]")
    count = (lambda v: _is_int(v) and v >= 1, "an integer of at least 1")
    _check_fields(path, body, {
        "checkpoint": (lambda v: isinstance(v, str) and v != "", "a non-empty path"),
        "checkpoint_sha256": (lambda v: isinstance(v, str) and bool(_SHA256.fullmatch(v)), "64 hex digits"),
        "best_epoch": count, "epochs": count,
        "best_val_robust_acc": accuracy, "best_val_clean_acc": accuracy,
        "best_val_certified_acc": (lambda v: v is None or accuracy[0](v), "null or a number in [0, 1]"),
        "peak_memory_mib": (lambda v: v is None or (_is_number(v) and v >= 0), "null or a number of at least 0"),
        "runtime_s": (lambda v: _is_number(v) and v >= 0, "a number of at least 0"),
        "train_key": (lambda v: isinstance(v, str) and bool(_SHA256.fullmatch(v)), "64 hex digits"),
        "fast_path": (lambda v: isinstance(v, list) and all(s in FAST_PATH_SETTINGS for s in v)
                      and len(set(v)) == len(v), f"a list of distinct settings of {', '.join(FAST_PATH_SETTINGS)}"),
    }, fix)
    if body["best_epoch"] > body["epochs"]:
        raise AtbenchError(f"{path}: field 'best_epoch' ({body['best_epoch']}) exceeds 'epochs' ({body['epochs']})",
                           fix)
    # The checkpoint lies beside train.json: read it from there, so the run folder can be used
    # from any working directory (or after a move).
    return TrainResult(**{**body, "checkpoint": str(path.parent / Path(body["checkpoint"]).name),
                          "fast_path": tuple(body["fast_path"])})


def read_eval_state(path: str | Path, points: int) -> dict:
    """The finished (attack, eps) pairs saved in `eval_state.json` for `points` test points:
    `{"key": str, "runtimes": {name: seconds}, "preds": {name: [prediction or -1 per point]}}`,
    checked field by field (`benchmark.pipeline.evaluate.EvalState` writes it).

    Raises:
        AtbenchError: the file is unreadable or a field is missing, unexpected or wrong.
    """
    path = Path(path)
    fix = f"delete {path}: the evaluation then redoes its (attack, eps) pairs"
    body = _read_object(path, fix)
    _check_fields(path, body, {
        "key": (lambda v: isinstance(v, str), "a string"),
        "runtimes": (lambda v: isinstance(v, dict), "an object"),
        "preds": (lambda v: isinstance(v, dict), "an object"),
    }, fix)
    for name, seconds in body["runtimes"].items():
        if not (_is_number(seconds) and seconds >= 0):
            raise AtbenchError(f"{path}: field 'runtimes.{name}' must be a number of at least 0, not {seconds!r:.80}",
                               fix)
    for name, preds in body["preds"].items():
        if not (isinstance(preds, list) and len(preds) == points and all(_is_int(p) and p >= -1 for p in preds)):
            raise AtbenchError(f"{path}: field 'preds.{name}' must be a list of {points} integers of at least -1",
                               fix)
        if "/" not in name and name not in body["runtimes"]:
            raise AtbenchError(f"{path}: field 'runtimes.{name}' is missing", fix)
    return body
