"""The board's cost section: what each entry cost to train and to evaluate, and the Pareto front
of robustness against training cost (`leaderboard.entry_cost`), as view blocks."""
from __future__ import annotations

from leaderboard.entry_cost import NO_CPU_MODEL
from leaderboard.view_tables import cell, column, table, cost_text


def memory_text(phase: dict | None) -> str:
    """`412 MiB`, or why there is no figure."""
    if phase is None:
        return "-"
    return "not recorded" if phase["peak_memory_mib"] is None else f"{phase['peak_memory_mib']:.0f} MiB"


def _seconds(phase: dict | None) -> float | None:
    return None if phase is None else phase["device_seconds"]


def _front_text(x: dict, comparison: dict) -> str:
    if x["defense"] not in comparison["compared"]:
        return "not compared (another device)"
    return "**on the front**" if x["defense"] in comparison["front"] else "no"


def cost_blocks(board: dict) -> list[dict]:
    """The cost table, the plot and the sentences that say what they compare."""
    primary, comparison = board["primary_eps"], board["cost_comparison"]
    rows = [[cell(x["defense"], x["defense"]),
             cell(cost_text(x["cost"]["train"]), _seconds(x["cost"]["train"])),
             cell(cost_text(x["cost"]["eval"]), _seconds(x["cost"]["eval"])),
             cell(memory_text(x["cost"]["train"])), cell(memory_text(x["cost"]["eval"])),
             cell(_front_text(x, comparison)), cell("; ".join(x["cost"]["devices"]))]
            for x in board["entries"]]
    columns = [column("defense", "defense", "l"), column("train-cost", "training cost"),
               column("eval-cost", "evaluation cost"), column("train-memory", "training peak memory"),
               column("eval-memory", "evaluation peak memory"), column("front", "Pareto front", "l"),
               column("device", "device", "l")]
    caption = ("What each entry cost, the mean over its seeds: device-seconds (core-seconds on the CPU: wall seconds "
               "times the threads torch used; GPU-seconds on a GPU), and the largest peak memory over its seeds (the "
               "process's peak resident set on the CPU, torch's peak allocation on a GPU).")
    blocks = [table("cost-table", caption, columns, rows)]
    if comparison["device"] is None:
        blocks.append({"kind": "paragraph", "text": "No entry was trained here, so there is no cost comparison."})
        return blocks
    others = [x["defense"] for x in board["entries"] if x["defense"] not in comparison["compared"]]
    text = (f"Costs compare only between entries paid on one device. Among the "
            f"{len(comparison['compared'])} entries trained on {comparison['device']}, the Pareto front (no other of "
            f"them is at most as costly to train and at least as robust at eps={primary}, one of the two strictly) "
            f"is: {', '.join(comparison['front'])}.")
    if others:
        text += f" Not compared, paid on another device: {', '.join(others)}."
    old = [x["defense"] for x in board["entries"] if any(d.endswith(NO_CPU_MODEL) for d in x["cost"]["devices"])]
    if old:
        text += (f" Records made before atbench kept costs ({', '.join(old)}) give only their seconds (`runtime_s`, "
                 f"times the threads their device names): no peak memory and no CPU model.")
    blocks.append({"kind": "paragraph", "text": text})
    blocks.append({"kind": "image", "src": f"{board['protocol']['id']}.cost.png",
                   "alt": f"Worst-case robust accuracy at eps={primary} against training cost"})
    return blocks
