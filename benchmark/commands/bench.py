"""`atbench bench`: speed comparisons measured as ratios against a reference in the same run.

Each case times our implementation and a reference doing the same work on the same model
and points, alternately in one process (the fastest of `repeats` runs of each counts), reports
images per second and peak memory of each side, and checks that ours is not weaker. Ratios,
not absolute times, are the figures to compare across machines. The cases live in
`benchmark.commands.bench_cases.evaluation` (evaluation) and
`benchmark.commands.bench_cases.training` (the training step).
"""
from __future__ import annotations

import ctypes
import dataclasses
import functools
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from benchmark.core.errors import AtbenchError
from benchmark.core.registry import Registry
from benchmark.pipeline.data import load_dataset
from benchmark.pipeline.evaluate import select_test_subset
from benchmark.pipeline.protocol import Protocol, load_protocol
from benchmark.pipeline.tracks import Track

#: The bench cases, registered by the modules of `benchmark.commands.bench_cases`.
BENCH_CASES: Registry = Registry("bench case", loader="benchmark.commands.bench_cases")


@dataclasses.dataclass(frozen=True)
class Workload:
    """What the bench cases run on.

    Attributes:
        name: a description for the report.
        model, protocol, x, y, device: the evaluation cases' deployed model, protocol and points.
        track: the track they come from (the training case uses its model, data and budget).
        repeats: runs of each side of a comparison (the fastest counts).
        train_model: a model id for the training case on CIFAR-10-shaped random data instead
            of the track's model and data (e.g. "preact-resnet18").
        compile: whether the training case's harness side uses `torch.compile`.
        data_dir: where the track's local data sets are (None: the default).
    """

    name: str
    model: torch.nn.Module
    protocol: Protocol
    x: torch.Tensor
    y: torch.Tensor
    device: str
    track: Track | None = None
    repeats: int = 1
    train_model: str | None = None
    compile: bool = False
    data_dir: str | None = None


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One case's result: seconds and peak memory of ours and of the reference, and what was
    compared.

    Attributes:
        case: the case's name.
        ours, reference: what was timed on each side.
        ours_s, reference_s: wall-clock seconds of each (the fastest of the repeats).
        not_weaker: whether ours found at least what the reference found (per the case's rule).
        details: per-case numbers (accuracies, counts), JSON-serialisable.
        images: images each side processed (test points, or training images).
        ours_peak_mb, reference_peak_mb: peak memory of each side in MiB (CUDA: allocated by
            torch; CPU: growth of the process's resident set, sampled every 2 ms, with freed
            tensors returned to the system).
    """

    case: str
    ours: str
    reference: str
    ours_s: float
    reference_s: float
    not_weaker: bool
    details: dict
    images: int = 0
    ours_peak_mb: float = 0.0
    reference_peak_mb: float = 0.0

    @property
    def ratio(self) -> float:
        """ours_s / reference_s (below 1: ours is faster)."""
        return self.ours_s / self.reference_s if self.reference_s > 0 else float("inf")

    @property
    def ours_images_per_s(self) -> float:
        """Images per second of ours."""
        return self.images / self.ours_s if self.ours_s > 0 else 0.0

    @property
    def reference_images_per_s(self) -> float:
        """Images per second of the reference."""
        return self.images / self.reference_s if self.reference_s > 0 else 0.0


@functools.cache
def _return_freed_memory() -> None:
    """Fix glibc's mmap threshold at 128 KiB (where glibc exists), so that tensors freed by a
    bench side leave the resident set and the next side's peak is its own; otherwise glibc
    keeps freed blocks in its heap and later peaks read as zero."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def _resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def peak_memory(device: str | torch.device) -> Iterator[list[float]]:
    """Measure the peak memory of the block in MiB, put in the yielded list's only element on
    exit: torch's peak allocation on a CUDA device, else the peak growth of the process's
    resident set (sampled every 2 ms; 0 where /proc is missing)."""
    device, out = torch.device(device), [0.0]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        yield out
        torch.cuda.synchronize(device)
        out[0] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        return
    if not os.path.exists("/proc/self/statm"):
        yield out
        return
    _return_freed_memory()
    base, peak, done = _resident_bytes(), [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.002):
            peak[0] = max(peak[0], _resident_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield out
    finally:
        done.set()
        sampler.join()
        out[0] = max(0, max(peak[0], _resident_bytes()) - base) / 2**20


@dataclasses.dataclass(frozen=True)
class Timed:
    """What one side of a comparison returned, its fastest time and its largest peak memory."""

    result: Any
    seconds: float
    peak_mb: float


def _run_once(fn: Callable[[], Any], device: str) -> tuple[Any, float, float]:
    with peak_memory(device) as peak:
        t0 = time.perf_counter()
        result = fn()
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
    return result, seconds, peak[0]


def time_pair(ours: Callable[[], Any], reference: Callable[[], Any], device: str,
              repeats: int = 1) -> tuple[Timed, Timed]:
    """Run `reference` and `ours` alternately `repeats` times each (reference first); each side's
    time is its fastest run, its memory its largest peak, its result that of its first run."""
    runs: dict[str, list[tuple[Any, float, float]]] = {"ours": [], "reference": []}
    for _ in range(max(1, repeats)):
        runs["reference"].append(_run_once(reference, device))
        runs["ours"].append(_run_once(ours, device))
    timed = {side: Timed(r[0][0], min(x[1] for x in r), max(x[2] for x in r)) for side, r in runs.items()}
    return timed["ours"], timed["reference"]


Case = Callable[[Workload], Comparison]


def cases() -> dict[str, Case]:
    """Every registered case (`BENCH_CASES`, in `benchmark.commands.bench_cases`), by name."""
    return {name: BENCH_CASES.get(name) for name in BENCH_CASES.names()}


def trained_workload(track: Track, defense: str, seed: int, runs_dir: str, data_dir: str | None, device: str,
                     points: int | None, repeats: int = 1, train_model: str | None = None,
                     compile: bool = False) -> Workload:
    """A trained defense of a finished run (its deployed model) on the track protocol's test
    subset, or its first `points` points (stratified with the protocol's seed); the other
    arguments are `Workload`'s."""
    from benchmark.pipeline.job import Job, Paths
    from benchmark.pipeline.steps import load_trained_model, trained_result

    protocol = load_protocol(track.protocol)
    result = trained_result(Job(track, protocol, defense, seed, device, Paths(runs_dir=runs_dir, data_dir=data_dir)))
    model = load_trained_model(track, track.defense(defense), result.checkpoint, result.checkpoint_sha256,
                               data_dir, device)
    bundle = load_dataset(track.dataset, data_dir)
    n = protocol.n_examples if points is None else points
    if not 0 < n <= protocol.n_examples:
        raise AtbenchError(f"--points {n} is outside 1..{protocol.n_examples} (the protocol's test subset)",
                           f"pass --points between 1 and {protocol.n_examples}")
    indices = select_test_subset(bundle.test.y.numpy(), n, protocol.subset_seed)
    return Workload(f"{defense} seed {seed}", model, protocol, bundle.test.x[indices], bundle.test.y[indices], device,
                    track, repeats, train_model, compile, data_dir)


def run_cases(work: Workload, names: list[str]) -> list[Comparison]:
    """Run the named cases (all when empty) on `work`."""
    known = cases()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise AtbenchError(f"unknown bench case(s): {', '.join(unknown)}", f"use one of: {', '.join(known)}")
    return [known[n](work) for n in (names or list(known))]


def markdown(work: Workload, results: list[Comparison]) -> str:
    """The results as a Markdown table (one row per case) and, per case, its detail table
    (`details["table"]`: a header and rows) when it has one."""
    lines = [f"Bench on {work.name}, {len(work.y)} points, device {work.device}", "",
             "| case | ours | s | img/s | peak MiB | reference | s | img/s | peak MiB | ratio | not weaker |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.case} | {r.ours} | {r.ours_s:.2f} | {r.ours_images_per_s:.1f} | {r.ours_peak_mb:.0f} | "
                     f"{r.reference} | {r.reference_s:.2f} | {r.reference_images_per_s:.1f} | "
                     f"{r.reference_peak_mb:.0f} | {r.ratio:.2f} | {'yes' if r.not_weaker else 'NO'} |")
    for r in results:
        table = r.details.get("table")
        if table:
            lines += ["", f"{r.case}:", "", "| " + " | ".join(table["header"]) + " |",
                      "|" + "---|" * len(table["header"])]
            lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table["rows"]]
    return "\n".join(lines)


def to_json(work: Workload, results: list[Comparison]) -> dict:
    """The results as a JSON-serialisable dict (with each case's ratio and images/s)."""
    return {"workload": work.name, "points": len(work.y), "device": work.device,
            "cases": [{**dataclasses.asdict(r), "ratio": r.ratio, "ours_images_per_s": r.ours_images_per_s,
                       "reference_images_per_s": r.reference_images_per_s} for r in results]}


def write_json(path: str | Path, work: Workload, results: list[Comparison]) -> None:
    """Write `to_json` atomically."""
    from benchmark.core.io import atomic_write_json

    atomic_write_json(Path(path), to_json(work, results))
