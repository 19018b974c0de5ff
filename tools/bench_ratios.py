"""Ours/reference ratios from pytest-benchmark's JSON (`tox -e bench` writes it).

Each benchmark group of tests/test_bench_timings.py holds one test per side (parameter
`side`: ours or reference) timed in the same run; the ratio is ours' time over the
reference's (below 1: ours is faster), from the fastest round (as `atbench bench` counts) and
from the medians. Prints a markdown table and writes the ratios as JSON next to the input
(`<input>.ratios.json`), or to `--out`.

    python tools/bench_ratios.py .tox/bench.json [--out ratios.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def ratios(benchmarks: list[dict]) -> list[dict]:
    """One row per group that has both sides: seconds (fastest round and median) of each side
    and the two ratios. A group without both sides is an error."""
    groups: dict[str, dict[str, dict]] = {}
    for bench in benchmarks:
        groups.setdefault(bench["group"], {})[bench["params"]["side"]] = bench["stats"]
    rows = []
    for group, sides in sorted(groups.items()):
        if set(sides) != {"ours", "reference"}:
            raise ValueError(f"benchmark group {group!r} has sides {sorted(sides)}, not ours and reference")
        ours, ref = sides["ours"], sides["reference"]
        rows.append({"group": group, "ours_min_s": ours["min"], "reference_min_s": ref["min"],
                     "ratio_min": ours["min"] / ref["min"], "ours_median_s": ours["median"],
                     "reference_median_s": ref["median"], "ratio_median": ours["median"] / ref["median"],
                     "rounds": min(ours["rounds"], ref["rounds"])})
    return rows


def markdown(rows: list[dict]) -> str:
    """The rows as a markdown table."""
    lines = ["| case | ours (fastest) | reference (fastest) | ratio | ratio of medians | rounds |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['group']} | {r['ours_min_s']:.4f} s | {r['reference_min_s']:.4f} s | {r['ratio_min']:.2f} | "
              f"{r['ratio_median']:.2f} | {r['rounds']} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path, help="pytest-benchmark's --benchmark-json file")
    parser.add_argument("--out", type=Path, help="where to write the ratios (default: <json>.ratios.json)")
    args = parser.parse_args(argv)
    body = json.loads(args.json.read_text())
    rows = ratios(body["benchmarks"])
    if not rows:
        print(f"{args.json}: no benchmarks (were they run with --benchmark-enable and without xdist?)",
              file=sys.stderr)
        return 1
    out = args.out or args.json.with_suffix(".ratios.json")
    out.write_text(json.dumps({"machine_info": body["machine_info"], "datetime": body["datetime"],
                               "ratios": rows}, indent=2) + "\n")
    print(markdown(rows))
    print(f"ratios written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
