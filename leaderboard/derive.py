"""Every accuracy of a record, derived from its per-example flags (numpy only, no torch).

The evaluation writes records with `aggregate`, and every board build and `atbench verify`
recompute them with it from the flags file, so a number edited by hand never reaches a board.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def flag_key(column: str, eps: str) -> str:
    """The name of one (attack column, eps) flag array."""
    return f"{column}@{eps}"


def attack_flag_names(flags: dict[str, np.ndarray]) -> list[str]:
    """The `<column>@<eps>` flag names of a flags file, sorted (not "clean", not the per-part
    `<column>@<eps>/<part>` arrays of an attack's breakdown)."""
    return sorted(k for k in flags if "@" in k and "/" not in k)


def class_means(flags: np.ndarray, labels: np.ndarray, num_classes: int) -> list[float]:
    """Per-class mean of boolean per-example flags (0.0 for a class without points)."""
    return [float(flags[labels == k].mean()) if (labels == k).any() else 0.0 for k in range(num_classes)]


def aggregate(flags: dict[str, np.ndarray], labels: np.ndarray, eps: Sequence[str], columns: Sequence[str],
              groups: dict[str, list[str]], num_classes: int) -> dict:
    """The record's accuracy blocks from the per-example flags: per-attack robust accuracy
    (each group, e.g. Temperature-PGD's temperatures, also as its per-example worst case), the
    worst case over attacks per eps, per-class accuracies and class-wise summaries.

    Args:
        flags: "clean" and "<column>@<eps>" -> bool array (robust).
        labels: the points' labels.
        eps: the protocol's eps strings; columns: its attack columns; groups: group -> columns.
        num_classes: number of classes.
    """
    per_attack: dict[str, dict[str, np.ndarray]] = {c: {} for c in columns}
    per_attack.update({g: {} for g in groups})
    worst: dict[str, np.ndarray] = {}
    for e in eps:
        for c in columns:
            per_attack[c][e] = flags[flag_key(c, e)]
        for g, members in groups.items():
            per_attack[g][e] = np.logical_and.reduce([flags[flag_key(m, e)] for m in members])
        worst[e] = np.logical_and.reduce([flags["clean"]] + [flags[flag_key(c, e)] for c in columns])
    classwise = {}
    for e in eps:
        accs = np.array(class_means(worst[e], labels, num_classes))
        classwise[e] = {
            "worst_class": int(accs.argmin()), "worst_class_acc": float(accs.min()),
            "best_class": int(accs.argmax()), "best_class_acc": float(accs.max()),
            "spread": float(accs.max() - accs.min()), "std": float(accs.std()),
        }
    return {
        "clean_acc": float(flags["clean"].mean()),
        "robust_acc": {a: {e: float(f.mean()) for e, f in cols.items()} for a, cols in per_attack.items()},
        "worst_case": {e: float(f.mean()) for e, f in worst.items()},
        "per_class": {
            "n": [int((labels == k).sum()) for k in range(num_classes)],
            "clean_acc": class_means(flags["clean"], labels, num_classes),
            "robust_acc": {a: {e: class_means(f, labels, num_classes) for e, f in cols.items()}
                           for a, cols in per_attack.items()},
            "worst_case": {e: class_means(f, labels, num_classes) for e, f in worst.items()},
        },
        "classwise": classwise,
    }


def aggregate_record(record: dict, flags: dict[str, np.ndarray], labels: np.ndarray) -> dict:
    """`aggregate` with the protocol facts a record states (its eps, attack columns and groups)."""
    return aggregate(flags, labels, record["protocol"]["eps"], sorted(record["attacks"]), record["attack_groups"],
                     record["num_classes"])


#: Numbers derived from the flags must match the record's to this (they are stored as floats).
NUMBER_TOLERANCE = 1e-9


def differences(expected, actual, path: str = "") -> list[str]:
    """Dotted paths where `actual` differs from `expected` (numbers beyond NUMBER_TOLERANCE),
    each with both values; only the keys of `expected` are compared."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: not an object"]
        return [d for k in expected for d in differences(expected[k], actual.get(k), f"{path}.{k}" if path else k)]
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: not a list of {len(expected)}"]
        return [d for i, (e, a) in enumerate(zip(expected, actual)) for d in differences(e, a, f"{path}[{i}]")]
    if isinstance(actual, (int, float)) and not isinstance(actual, bool) and abs(expected - actual) <= NUMBER_TOLERANCE:
        return []
    return [f"{path}: the record says {actual}, its flags give {expected}"]
