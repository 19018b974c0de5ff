"""Leaderboard plots, rendered with matplotlib's Agg canvas directly (no pyplot, so the user's
global backend is untouched) and byte-for-byte deterministic for a given board."""
from __future__ import annotations

import io

import matplotlib.style
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from leaderboard.schema import eps_value

FIGSIZE = (7.0, 4.5)
DPI = 100


def plot_robustness(board_json: dict) -> bytes:
    """PNG bytes of worst-case robust accuracy (%) against eps, one line per defense in rank
    order, with clean accuracy as the point at eps 0.

    `board_json` is a board from `leaderboard.build.build`. Styling uses matplotlib's defaults
    (not the user's rc settings) and the PNG carries no software/date metadata, so the same board
    always gives the same bytes with the same matplotlib version.
    """
    eps = board_json["eps"]
    xs = [0.0] + [eps_value(e) for e in eps]
    proto = board_json["protocol"]
    with matplotlib.style.context("default"):
        fig = Figure(figsize=FIGSIZE, dpi=DPI)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        for i, entry in enumerate(board_json["entries"]):
            ys = [entry["clean_acc"]] + [entry["worst_case"][e] for e in eps]
            style = ("-", "--", ":", "-.")[(i // 10) % 4]  # the colour cycle repeats after 10
            ax.plot(xs, [100 * y for y in ys], marker="o", linestyle=style,
                    label=f"{entry['rank']}. {entry['defense']}")
        ax.axvline(eps_value(board_json["primary_eps"]), color="0.6", linestyle=":", linewidth=1)
        ax.set_xticks(xs)
        ax.set_xticklabels(["0"] + list(eps))
        ax.set_ylim(0, 100)
        ax.set_xlabel(f"eps ({proto['norm']}); eps 0 = clean accuracy")
        ax.set_ylabel("worst-case robust accuracy (%)")
        ax.set_title(f"{board_json['track']}: protocol {proto['id']} v{proto['version']}")
        ax.grid(True, alpha=0.3)
        if board_json["entries"]:
            ax.legend(loc="lower left", fontsize="small")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()
