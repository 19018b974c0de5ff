"""Provenance of a record: code version, packages, device, time."""
from __future__ import annotations

import datetime
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

SOURCE_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("atbench", "torch", "numpy", "pyautoattack")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(SOURCE_ROOT), *args], capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_state() -> tuple[str | None, bool]:
    """The source tree's commit (None outside a git checkout) and whether its code
    (Python and TOML files) differs from that commit."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return None, False
    diff = _git("status", "--porcelain", "--untracked-files=no", "--", ":(glob)**/*.py", ":(glob)**/*.toml")
    return commit, bool(diff)


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that determine results."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def device_name(device: torch.device) -> str:
    """A human-readable device name: the GPU model, or the CPU architecture with the kernels
    torch uses on it (AVX2 on x86-64 under atbench's pin, `benchmark.CPU_KERNEL_PINS`) and the
    thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    kernels = torch.backends.cpu.get_cpu_capability()
    return f"cpu ({platform.machine()}, {kernels} kernels, {torch.get_num_threads()} threads)"


def _cpuinfo(field: str) -> str:
    """The first value of `field` in /proc/cpuinfo ("unknown" where the OS does not say)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def cpu_vendor() -> str:
    """The CPU's vendor string ("AuthenticAMD", "GenuineIntel", ...; "unknown" where the OS does
    not say). CPU results are bit-identical only between machines of one vendor: MKL's matrix
    products take vendor-specific paths even under `MKL_CBWR=AVX2` (README, "Same CPU numbers")."""
    return _cpuinfo("vendor_id")


def cpu_model() -> str:
    """The CPU's model name ("AMD EPYC 7B13", ...; "unknown" where the OS does not say)."""
    return _cpuinfo("model name")


def utc_now() -> str:
    """The current UTC time, ISO 8601 with a Z suffix."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
