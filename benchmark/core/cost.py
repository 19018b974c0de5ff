"""What a phase of a run (training, evaluation) costs: wall seconds, device-seconds (core-seconds
on the CPU: seconds times the threads torch uses; GPU-seconds on a GPU) and peak memory (torch's
peak allocation on a GPU; the process's peak resident set on the CPU, read from Linux's
/proc/self/status after resetting it through /proc/self/clear_refs, so each phase reads its own
peak; None where the OS offers neither). Timing and memory never enter a result's reproducibility
comparison: the flags and every accuracy are the result, its cost is not."""
from __future__ import annotations

from pathlib import Path

import torch

from benchmark.core.provenance import cpu_model, device_name


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak: `peak_memory_mib` then reads the peak from here on."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
    except OSError:
        pass


def peak_memory_mib(device: torch.device) -> float | None:
    """The peak memory since the last `reset_peak_memory`, in MiB (None: not measurable here)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def max_known(a: float | None, b: float | None) -> float | None:
    """The larger of two peaks, either of which may be unknown (None)."""
    return b if a is None else a if b is None else max(a, b)


def phase_cost(seconds: float, peak_mib: float | None, device: str | torch.device) -> dict:
    """A record's cost of one phase: seconds, device-seconds with their unit, peak memory."""
    device = torch.device(device)
    gpu = device.type == "cuda"
    return {"seconds": round(seconds, 3), "device_seconds": round(seconds * (1 if gpu else torch.get_num_threads()), 3),
            "unit": "GPU-seconds" if gpu else "core-seconds",
            "peak_memory_mib": None if peak_mib is None else round(peak_mib, 1)}


def device_label(device: str | torch.device) -> str:
    """The device a cost was paid on: the GPU's name, or the CPU's model with torch's kernels and threads."""
    device = torch.device(device)
    return device_name(device) if device.type == "cuda" else f"{cpu_model()}, {device_name(device)}"
