"""What a phase costs: device-seconds in their unit and a peak memory that each phase reads anew."""
import pytest
import torch

from benchmark.core.cost import max_known, peak_memory_mib, phase_cost, reset_peak_memory

pytestmark = pytest.mark.unit


def test_cpu_cost_is_core_seconds_of_torch_threads():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert phase_cost(2.5, 300.04, "cpu") == {"seconds": 2.5, "device_seconds": 2.5, "unit": "core-seconds",
                                                   "peak_memory_mib": 300.0}
        torch.set_num_threads(2)
        assert phase_cost(2.5, None, "cpu")["device_seconds"] == 5.0
    finally:
        torch.set_num_threads(threads)


def test_a_reset_starts_a_new_peak_that_sees_a_large_allocation():
    reset_peak_memory(torch.device("cpu"))
    before = peak_memory_mib(torch.device("cpu"))
    if before is None:
        pytest.skip("this OS offers no peak resident set (/proc/self/status)")
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    after = peak_memory_mib(torch.device("cpu"))
    del block
    assert after >= before + 60
    reset_peak_memory(torch.device("cpu"))
    assert peak_memory_mib(torch.device("cpu")) < after  # the freed block is no longer the peak


def test_the_larger_of_two_peaks_either_unknown():
    assert (max_known(None, None), max_known(None, 3.0), max_known(2.0, None), max_known(2.0, 3.0)) == (None, 3, 2, 3)
