"""atbench: a benchmark suite with a standardized leaderboard for adversarial-training defenses.

Importing atbench pins the CPU kernels of torch, oneDNN and MKL to their AVX2 code paths on
x86-64 (`CPU_KERNEL_PINS`, unless the variable is set already), before torch is imported: the
same seeds then give the same CPU records on AVX2 and AVX-512 machines, which would otherwise
differ from the first training step on (the committed boards and golden records assume it).
GPU results are unaffected.
"""
import os as _os
import platform as _platform

#: Environment variables choosing the CPU kernels (read by torch, oneDNN and MKL on first use).
CPU_KERNEL_PINS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}

if _platform.machine().lower() in ("x86_64", "amd64"):
    for _name, _value in CPU_KERNEL_PINS.items():
        _os.environ.setdefault(_name, _value)
