"""`atbench bench`: speed comparisons measured as ratios against a reference in the same run.

Each case times our implementation and a reference doing the same work on the same model
and points, one after the other in one process, and checks that ours is not weaker. Ratios,
not absolute times, are the figures to compare across machines.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from benchmark.data import load_dataset
from benchmark.errors import AtbenchError
from benchmark.evaluate import run_protocol, select_test_subset
from benchmark.protocol import Protocol, load_protocol
from benchmark.tracks import Track


@dataclasses.dataclass(frozen=True)
class Workload:
    """The model and test points a bench case runs on."""

    name: str
    model: torch.nn.Module
    protocol: Protocol
    x: torch.Tensor
    y: torch.Tensor
    device: str


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One case's result: seconds of ours and of the reference, and what was compared.

    Attributes:
        case: the case's name.
        ours, reference: what was timed on each side.
        ours_s, reference_s: wall-clock seconds of each.
        not_weaker: whether ours found at least what the reference found (per the case's rule).
        details: per-case numbers (accuracies, counts), JSON-serialisable.
    """

    case: str
    ours: str
    reference: str
    ours_s: float
    reference_s: float
    not_weaker: bool
    details: dict

    @property
    def ratio(self) -> float:
        """ours_s / reference_s (below 1: ours is faster)."""
        return self.ours_s / self.reference_s if self.reference_s > 0 else float("inf")


def _robust_columns(flags: dict[str, np.ndarray]) -> list[str]:
    """The `<column>@<eps>` flag names (not "clean", not AutoAttack's per-sub-attack ones)."""
    return sorted(k for k in flags if "@" in k and "/" not in k)


def multi_eps_vs_per_eps(work: Workload) -> Comparison:
    """The protocol's multi-eps evaluation (eps in increasing order, only survivors attacked
    again) against evaluating each eps from scratch on all points.

    Not weaker means: for every (attack, eps), no point is robust in the multi-eps result that
    the from-scratch evaluation broke. The details give both accuracies per (attack, eps) and
    the count of such points (`robust_only_in_multi`)."""
    t0 = time.perf_counter()
    multi = run_protocol(work.model, work.protocol, work.x, work.y, work.device, progress=False)
    t1 = time.perf_counter()
    scratch: dict[str, np.ndarray] = {}
    for eps in work.protocol.eps:
        one = dataclasses.replace(work.protocol, eps=(eps,))
        scratch.update(run_protocol(work.model, one, work.x, work.y, work.device, progress=False).flags)
    t2 = time.perf_counter()
    columns = {}
    for name in _robust_columns(multi.flags):
        only_multi = int((multi.flags[name] & ~scratch[name]).sum())
        columns[name] = {"multi_eps": float(multi.flags[name].mean()), "per_eps": float(scratch[name].mean()),
                         "robust_only_in_multi": only_multi}
    return Comparison("multi-eps", "multi-eps evaluation", "each eps from scratch", t1 - t0, t2 - t1,
                      all(c["robust_only_in_multi"] == 0 for c in columns.values()),
                      {"points": len(work.y), "eps": list(work.protocol.eps), "columns": columns,
                       "multi_runtimes_s": multi.runtimes})


#: Case name -> function of a `Workload`.
CASES: dict[str, Callable[[Workload], Comparison]] = {"multi-eps": multi_eps_vs_per_eps}


def trained_workload(track: Track, defense: str, seed: int, runs_dir: str, data_dir: str | None, device: str,
                    points: int | None) -> Workload:
    """A trained defense of a finished run (its deployed model) on the track protocol's test
    subset, or its first `points` points (stratified with the protocol's seed)."""
    from benchmark.runner import load_trained_model, run_dir_for, trained_result

    result = trained_result(run_dir_for(runs_dir, track.name, defense, seed), track.name, defense, seed)
    model = load_trained_model(track, track.defense(defense), result.checkpoint, result.checkpoint_sha256,
                               data_dir, device)
    protocol = load_protocol(track.protocol)
    bundle = load_dataset(track.dataset, data_dir)
    n = protocol.n_examples if points is None else points
    if not 0 < n <= protocol.n_examples:
        raise AtbenchError(f"--points {n} is outside 1..{protocol.n_examples} (the protocol's test subset)",
                           f"pass --points between 1 and {protocol.n_examples}")
    indices = select_test_subset(bundle.test.y.numpy(), n, protocol.subset_seed)
    return Workload(f"{defense} seed {seed}", model, protocol, bundle.test.x[indices], bundle.test.y[indices], device)


def run_cases(work: Workload, names: list[str]) -> list[Comparison]:
    """Run the named cases (all when empty) on `work`."""
    unknown = [n for n in names if n not in CASES]
    if unknown:
        raise AtbenchError(f"unknown bench case(s): {', '.join(unknown)}", f"use one of: {', '.join(CASES)}")
    return [CASES[n](work) for n in (names or list(CASES))]


def markdown(work: Workload, results: list[Comparison]) -> str:
    """The results as a Markdown table (one row per case) and, per case, its details."""
    lines = [f"Bench on {work.name}, {len(work.y)} points, device {work.device}", "",
             "| case | ours | s | reference | s | ratio | not weaker |", "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.case} | {r.ours} | {r.ours_s:.1f} | {r.reference} | {r.reference_s:.1f} | "
                     f"{r.ratio:.2f} | {'yes' if r.not_weaker else 'NO'} |")
    for r in results:
        if r.case == "multi-eps":
            lines += ["", "| attack@eps | multi-eps | per-eps | robust only in multi-eps |", "|---|---|---|---|"]
            lines += [f"| {k} | {v['multi_eps']:.3f} | {v['per_eps']:.3f} | {v['robust_only_in_multi']} |"
                      for k, v in r.details["columns"].items()]
    return "\n".join(lines)


def to_json(work: Workload, results: list[Comparison]) -> dict:
    """The results as a JSON-serialisable dict (with each case's ratio)."""
    return {"workload": work.name, "points": len(work.y), "device": work.device,
            "cases": [{**dataclasses.asdict(r), "ratio": r.ratio} for r in results]}


def write_json(path: str | Path, work: Workload, results: list[Comparison]) -> None:
    """Write `to_json` atomically."""
    from benchmark.io import atomic_write_json

    atomic_write_json(Path(path), to_json(work, results))
