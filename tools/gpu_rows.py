"""Print rows of README.md's Speed table ("| device | work | ours | reference | ratio | floor |")
from `atbench bench --json` files, one row per bench case (tools/gpu_check.sh).

Usage: python tools/gpu_rows.py [--device-name NAME] RESULT.json...
"""
from __future__ import annotations

import argparse
import json
import sys

HEADER = "| device | work | ours | reference | ratio | floor |\n|---|---|---|---|---|---|"


def _mib(mb: float) -> str:
    return f"{mb:,.0f} MiB"


def _ratio(case: dict) -> str:
    return f"{case['ratio']:.2f}" + ("" if case["not_weaker"] else " (ours weaker)")


def at_step_cells(case: dict) -> list[str]:
    """work, ours, reference and floor of an at-step case: images/s, seconds per CIFAR-10 epoch,
    peak memory, and the compute floor at the measured peak rate."""
    d = case["details"]
    epoch = d["seconds_per_cifar10_epoch"]
    settings = [name for name, on in d["fast_path"].items() if on]
    return [f"AT step, {d['setting']} ({', '.join(settings) or 'plain path'})",
            f"{case['ours_images_per_s']:,.1f} img/s, {epoch['ours']:,.0f} s per CIFAR-10 epoch, "
            f"{_mib(case['ours_peak_mb'])}",
            f"{case['reference_images_per_s']:,.1f} img/s, {epoch['plain']:,.0f} s ({case['reference']}), "
            f"{_mib(case['reference_peak_mb'])}",
            f"{d['floor_images_per_s']:,.1f} img/s, {epoch['floor']:,.0f} s ({d['peak_dtype']}, "
            f"{d['peak_tflops']:.2f} TFLOP/s)"]


def autoattack_cells(case: dict, workload: str) -> list[str]:
    """work, ours, reference and floor of an autoattack-adapter case: seconds, points per second
    and peak memory of each side."""
    d, points = case["details"], case["images"]
    return [f"AutoAttack {d['version']}, {workload}, {points:,} points, eps {d['eps']:g}",
            f"{case['ours_s']:,.1f} s ({points / case['ours_s']:,.1f} points/s), {_mib(case['ours_peak_mb'])}",
            f"{case['reference_s']:,.1f} s, {_mib(case['reference_peak_mb'])} ({case['reference']})",
            "-"]


def rows(device: str, report: dict) -> list[str]:
    """The table's rows of one `atbench bench --json` report (cases at-step and
    autoattack-adapter, the Speed table's GPU rows).

    Raises:
        SystemExit: another case, which the table has no GPU row for.
    """
    out = []
    for case in report["cases"]:
        if case["case"] == "at-step":
            work, ours, reference, floor = at_step_cells(case)
        elif case["case"] == "autoattack-adapter":
            work, ours, reference, floor = autoattack_cells(case, report["workload"])
        else:
            raise SystemExit(f"bench case {case['case']!r} has no GPU row in the Speed table")
        out.append(f"| {device} | {work} | {ours} | {reference} | {_ratio(case)} | {floor} |")
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the header and the rows of every report; returns the exit code (1 without one)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="*", metavar="RESULT.json")
    parser.add_argument("--device-name", default=None, help="the device column (default: each report's device)")
    args = parser.parse_args(argv)
    if not args.reports:
        print("no bench results to print", file=sys.stderr)
        return 1
    lines = [HEADER]
    for path in args.reports:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
        lines += rows(args.device_name or report["device"], report)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
