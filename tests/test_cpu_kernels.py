"""atbench pins torch's CPU kernels to AVX2 on x86-64 (benchmark/__init__.py), so CPU records and
golden values are the same on AVX2 and AVX-512 machines; a user's own setting wins."""
import os
import platform
import subprocess
import sys

import pytest

from benchmark import CPU_KERNEL_PINS

pytestmark = [pytest.mark.system,
              pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 only")]
PROBE = ("import os, benchmark, torch; "
         "print(torch.backends.cpu.get_cpu_capability(), os.environ['ONEDNN_MAX_CPU_ISA'], os.environ['MKL_CBWR'])")


def _capability(**env):
    clean = {k: v for k, v in os.environ.items() if k not in CPU_KERNEL_PINS}
    return subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_importing_atbench_pins_the_cpu_kernels_to_avx2():
    assert _capability() == "AVX2 AVX2 AVX2"


def test_a_users_own_kernel_choice_wins():
    assert _capability(ATEN_CPU_CAPABILITY="default") == "DEFAULT AVX2 AVX2"
