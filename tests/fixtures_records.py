"""Valid records (`leaderboard.record.Record`) built from a few numbers, for leaderboard and schema
tests; `tests/test_schema.py` checks them against the typed record."""
from __future__ import annotations

import hashlib
import statistics
from typing import Sequence

from leaderboard.flags import SANITY_FLAGS


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make_record(
    defense: str = "pgd-at",
    seed: int = 0,
    clean: float = 0.9,
    robust: float = 0.5,
    *,
    track: str = "mnist5k-cnn",
    protocol_id: str = "mnist5k-cnn",
    version: int = 1,
    eps: Sequence[str] = ("0.1", "0.2", "0.3"),
    primary: str = "0.3",
    attacks: Sequence[str] = ("autoattack", "pgd"),
    num_classes: int = 3,
    class_gap: float = 0.1,
    recipe_overrides: dict | None = None,
) -> dict:
    """A valid record. `robust` is the worst-case robust accuracy at the largest eps; smaller eps
    get +0.05 per step (capped at `clean`); attack j is 0.01*j weaker than the first one; class c
    deviates from the mean by up to `class_gap`, so the worst class is class 0."""
    n_per = 100
    wc: dict[str, float] = {}
    for i, e in enumerate(eps):
        wc[e] = min(clean, robust + 0.05 * (len(eps) - 1 - i))
    robust_acc = {a: {e: min(clean, wc[e] + 0.01 * j) for e in eps} for j, a in enumerate(attacks)}
    half = (num_classes - 1) / 2 or 1.0

    def spread(v: float) -> list[float]:
        return [min(1.0, max(0.0, v + class_gap * (c - half) / half)) for c in range(num_classes)]

    pc_wc = {e: spread(wc[e]) for e in eps}
    classwise = {}
    for e in eps:
        vals = pc_wc[e]
        lo, hi = min(vals), max(vals)
        classwise[e] = {"worst_class": vals.index(lo), "worst_class_acc": lo, "best_class": vals.index(hi),
                        "best_class_acc": hi, "spread": hi - lo, "std": statistics.pstdev(vals)}
    return {
        "schema_version": 2,
        "versions": {"evaluation": 4, "harness": 2},
        "track": track,
        "seed": seed,
        "training": {"selection_rule": "worst case of CE-PGD and CW-PGD", "best_epoch": 18, "epochs": 20,
                     "val_robust_acc": robust, "val_clean_acc": clean},
        "defense": {
            "id": defense, "external": False, "sweep": None,
            "config": {"beta": 6.0, "steps": 10, "nested": {"a": [1, None]}},
            "paper": f"Paper about {defense}", "venue": "ICLR 2018",
            "link": f"https://example.org/{defense}", "fidelity": "reference", "randomized": False,
            "recipe_overrides": dict(recipe_overrides or {}),
        },
        "architecture": "cnn-mnist",
        "protocol": {"id": protocol_id, "version": version, "sha256": _sha(f"{protocol_id}/{version}"),
                     "norm": "Linf", "eps": list(eps), "primary_eps": primary,
                     "n_examples": n_per * num_classes},
        "attacks": {a: f"{a.upper()}Config(seed=0)" for a in attacks},
        "attack_groups": {},
        "votes": 1,
        "num_classes": num_classes,
        "class_names": [str(c) for c in range(num_classes)],
        "clean_acc": clean,
        "robust_acc": robust_acc,
        "worst_case": wc,
        "per_class": {
            "n": [n_per] * num_classes,
            "clean_acc": spread(clean),
            "robust_acc": {a: {e: spread(robust_acc[a][e]) for e in eps} for a in attacks},
            "worst_case": pc_wc,
        },
        "classwise": classwise,
        "certified_l2": None,
        "confusion_adversarial": {"eps": primary, "matrix": [[n_per if i == j else 0 for j in range(num_classes)]
                                                             for i in range(num_classes)]},
        "margins": {
            "logit": {"edges": [-1.0, 0.0, 1.0], "clean": [10, 290], "adversarial": [150, 150],
                      "adversarial_eps": primary, "adversarial_method": "margin-loss PGD, 50 steps, no early stop",
                      "clean_percentiles": {"p10": 0.5, "p50": 4.0},
                      "adversarial_percentiles": {"p10": -2.0, "p50": 0.1}},
            "input": {"norm": "Linf", "method": "fab", "eps_max": 0.6, "median": 0.11,
                      "frac_below_half_primary": 0.4,
                      "per_class": {"median": [0.11] * num_classes, "frac_below_half_primary": [0.4] * num_classes}},
            "input_bisection": {"norm": "Linf", "method": "pgd-bisection", "eps_max": 0.6, "median": 0.12,
                                "frac_below_half_primary": 0.4,
                                "per_class": {"median": [0.12] * num_classes,
                                              "frac_below_half_primary": [0.4] * num_classes}},
            "input_cross_check": {"points": 250, "fab_at_most_bisection": 0.98, "median_ratio": 0.9},
        },
        "sanity": {name: {"fired": False, "noted": False, "value": 0.0, "threshold": 0.0, "p_value": None,
                          "detail": ""} for name in SANITY_FLAGS},
        "flags": {"file": "flags.npz", "sha256": _sha(f"flags/{defense}/{seed}")},
        "runtime_s": {"train": 12.5, "eval": 3},
        "provenance": {
            "atbench_version": "0.1.0", "git_commit": None, "git_dirty": False,
            "packages": {"numpy": "2.0.0"}, "python": "3.11.7", "device": "cpu",
            "seeds": {"train": seed, "protocol": 0}, "data_sha256": _sha("data"),
            "test_subset_sha256": _sha("subset"), "checkpoint_sha256": _sha(f"ckpt/{defense}/{seed}"),
            "utc_time": "2026-11-21T23:59:59Z",
        },
    }


def consistent(defense: str = "pgd-at", seed: int = 0, *, robust: float = 0.6, flag_seed: int = 0,
               flips: dict | None = None, **kwargs):
    """A record whose accuracies are derived from per-example flags, with those flags, as a board
    admits it (`leaderboard.evidence.Admitted`): points are robust at random (rate `robust` per eps
    step, nested over eps), seeded by `flag_seed`; `flips` maps a flag name to point indices whose
    flag is set to False before the numbers are derived."""
    import io

    import numpy as np

    from leaderboard.admission import FlagsFile
    from leaderboard.derive import aggregate_record
    from leaderboard.evidence import Admitted

    record = make_record(defense, seed, **kwargs)
    n, k = record["protocol"]["n_examples"], record["num_classes"]
    labels = np.repeat(np.arange(k), n // k).astype(np.int64)
    rng = np.random.default_rng(flag_seed)
    flags = {"clean": rng.random(n) < 0.9}
    for attack in record["attacks"]:
        alive = flags["clean"]
        for eps in record["protocol"]["eps"]:
            alive = alive & (rng.random(n) < robust)
            flags[f"{attack}@{eps}"] = alive
    for name, points in (flips or {}).items():
        flags[name][list(points)] = False
    record.update(aggregate_record(record, flags, labels))
    # FAB's margins: 0 for misclassified points, else up to twice the largest eps (the search cap)
    cap = 2 * max(float(e) for e in record["protocol"]["eps"])
    values = {"input_margin": np.where(flags["clean"], rng.uniform(0.0, cap, n), 0.0)}
    buf = io.BytesIO()
    indices = np.arange(n, dtype=np.int64)
    np.savez(buf, labels=labels, indices=indices, **{key: flags[key] for key in sorted(flags)}, **values)
    record["flags"] = {"file": f"{defense}-seed{seed}.flags.npz", "sha256": hashlib.sha256(buf.getvalue()).hexdigest()}
    return Admitted(record, FlagsFile(buf.getvalue(), flags, labels, indices, values))


def write_consistent(folder, defense: str = "pgd-at", seed: int = 0, **kwargs):
    """Write a `consistent` record and its flags file into `folder`; returns the record's path."""
    import json
    from pathlib import Path

    from leaderboard.record import validate_record

    item = consistent(defense, seed, **kwargs)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / item.record["flags"]["file"]).write_bytes(item.flags.data)
    path = folder / f"{defense}-seed{seed}.json"
    path.write_text(json.dumps(validate_record(item.record), sort_keys=True, indent=2))
    return path
