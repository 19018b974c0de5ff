"""A board entry's cost: from the records' cost blocks, or from `runtime_s` for records made before
costs were kept; the Pareto front among the entries paid on one device."""
import pytest

from leaderboard.entry_cost import entry_cost, pareto_front

pytestmark = pytest.mark.unit


def _record(train, eval_, cost=None, device="cpu (x86_64, AVX2 kernels, 2 threads)"):
    record = {"runtime_s": {"train": train, "eval": eval_}, "provenance": {"device": device},
              "defense": {"external": False}}
    if cost is not None:
        record["cost"] = cost
    return record


def _phase(seconds, peak):
    return {"seconds": seconds, "device_seconds": seconds, "unit": "core-seconds", "peak_memory_mib": peak}


def test_old_records_give_core_seconds_from_their_threads_and_no_memory():
    cost = entry_cost([_record(100.0, 50.0), _record(110.0, 70.0)])
    assert cost["train"] == {"device_seconds": 210.0, "unit": "core-seconds", "peak_memory_mib": None}
    assert cost["eval"]["device_seconds"] == 120.0
    assert cost["devices"] == ["cpu (x86_64, AVX2 kernels, 2 threads), CPU model not recorded"]


def test_cost_blocks_give_the_mean_seconds_and_the_largest_peak():
    cost = {"device": "Xeon, cpu (x86_64, AVX2 kernels, 1 threads)", "train": _phase(10.0, 300.0),
            "eval": _phase(4.0, 250.0)}
    other = {**cost, "train": _phase(20.0, 320.0)}
    got = entry_cost([_record(10.0, 4.0, cost), _record(20.0, 4.0, other)])
    assert got["train"] == {"device_seconds": 15.0, "unit": "core-seconds", "peak_memory_mib": 320.0}
    assert got["devices"] == ["Xeon, cpu (x86_64, AVX2 kernels, 1 threads)"]


def _entry(name, cost, worst, device="d"):
    return {"defense": name, "worst_case": {"0.3": worst},
            "cost": {"train": {"device_seconds": cost}, "devices": [device]}}


def test_the_front_keeps_entries_no_other_matches_or_beats_on_both():
    entries = [_entry("cheap", 10, 0.5), _entry("robust", 100, 0.9), _entry("dominated", 100, 0.5),
               _entry("tie", 100, 0.9), _entry("elsewhere", 1, 1.0, device="other")]
    comparison = pareto_front(entries, "0.3")
    assert comparison["device"] == "d" and "elsewhere" not in comparison["compared"]
    assert comparison["front"] == ["cheap", "robust", "tie"]  # equal on both: neither beats the other
