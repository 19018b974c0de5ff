"""What each board entry cost to train and to evaluate, and which entries no other beats on both
robustness and training cost (the Pareto front), from the records' `cost` blocks.

A record made before atbench kept costs has only `runtime_s`; its device-seconds are those seconds
times the threads its `provenance.device` names (core-seconds), its peak memory is unknown and its
device names no CPU model. Costs compare only between entries paid on one device, so the front is
drawn among the entries that share the board's most common device, and the board names the others.
"""
from __future__ import annotations

import math
import re
from collections import Counter

_THREADS = re.compile(r"(\d+) threads?\)")
#: How the device of a record made before costs were kept ends: its CPU model is unknown.
NO_CPU_MODEL = ", CPU model not recorded"


def _phase(record: dict, phase: str) -> tuple[float, str, float | None]:
    cost = record.get("cost")
    if cost is not None:
        block = cost[phase]
        return block["device_seconds"], block["unit"], block["peak_memory_mib"]
    device = record["provenance"]["device"]
    threads = _THREADS.search(device)
    gpu = not device.startswith("cpu")
    seconds = record["runtime_s"][phase] * (1 if gpu or threads is None else int(threads.group(1)))
    return seconds, "GPU-seconds" if gpu else "core-seconds", None


def device_of(record: dict) -> str:
    """The device a record's cost was paid on (the CPU model is unknown in records made before
    costs were kept)."""
    cost = record.get("cost")
    return cost["device"] if cost is not None else f"{record['provenance']['device']}{NO_CPU_MODEL}"


def entry_cost(records: list[dict]) -> dict:
    """An entry's cost over its seeds: the mean training and evaluation device-seconds (training
    None for an external model), their unit, the largest peak memory of each phase (None when a
    seed did not record it) and the devices."""
    out: dict = {"devices": sorted({device_of(r) for r in records})}
    for phase in ("train", "eval"):
        if any(r.get("cost") and r["cost"][phase] is None for r in records) or records[0]["defense"]["external"]:
            out[phase] = None
            continue
        seconds, units, peaks = zip(*(_phase(r, phase) for r in records))
        out[phase] = {"device_seconds": round(math.fsum(seconds) / len(seconds), 1), "unit": units[0],
                      "peak_memory_mib": None if None in peaks else max(peaks)}
    return out


def pareto_front(entries: list[dict], primary: str) -> dict:
    """The board's cost comparison: the device most entries were paid on, the entries compared
    (trained on it), and among them the front: those no other compared entry matches or beats
    on both training device-seconds (lower) and worst-case accuracy at `primary` (higher), with
    one of the two strictly."""
    trained = [x for x in entries if x["cost"]["train"] is not None and len(x["cost"]["devices"]) == 1]
    if not trained:
        return {"device": None, "compared": [], "front": []}
    device = Counter(x["cost"]["devices"][0] for x in trained).most_common(1)[0][0]
    compared = [x for x in trained if x["cost"]["devices"][0] == device]

    def beats(a: dict, b: dict) -> bool:
        ca, cb = a["cost"]["train"]["device_seconds"], b["cost"]["train"]["device_seconds"]
        wa, wb = a["worst_case"][primary], b["worst_case"][primary]
        return ca <= cb and wa >= wb and (ca < cb or wa > wb)

    front = [x["defense"] for x in compared if not any(beats(y, x) for y in compared if y is not x)]
    return {"device": device, "compared": [x["defense"] for x in compared], "front": front}
