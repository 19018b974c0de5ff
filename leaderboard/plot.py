"""Leaderboard plots, rendered with matplotlib's Agg canvas directly (no pyplot, so the user's
global backend is untouched) and byte-for-byte deterministic for a given board."""
from __future__ import annotations

import io

import matplotlib.style
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from leaderboard.record import eps_value

FIGSIZE = (7.0, 4.5)
CLASSWISE_FIGSIZE = (8.0, 5.0)
DPI = 100
MAX_CELL_TEXT_CLASSES = 20  # above this many classes the cells are too narrow for numbers


def _png(fig: Figure) -> bytes:
    """The figure as PNG bytes without software/date metadata."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


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
        return _png(fig)


def plot_cost(board_json: dict) -> bytes:
    """PNG bytes of worst-case robust accuracy (%) at the primary eps against training cost
    (device-seconds, log scale), one point per entry paid on the board's compared device
    (`board_json["cost_comparison"]`), the Pareto front joined by a line."""
    primary, comparison = board_json["primary_eps"], board_json["cost_comparison"]
    compared = [x for x in board_json["entries"] if x["defense"] in comparison["compared"]]
    front = sorted((x for x in compared if x["defense"] in comparison["front"]),
                   key=lambda x: x["cost"]["train"]["device_seconds"])
    with matplotlib.style.context("default"):
        fig = Figure(figsize=FIGSIZE, dpi=DPI)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        for x in compared:
            cost, worst = x["cost"]["train"]["device_seconds"], 100 * x["worst_case"][primary]
            on_front = x["defense"] in comparison["front"]
            ax.plot([cost], [worst], marker="o" if on_front else "x", linestyle="none", color="C0" if on_front else "0.5")
            ax.annotate(x["defense"], (cost, worst), textcoords="offset points", xytext=(4, 4), fontsize="small")
        if front:
            ax.plot([x["cost"]["train"]["device_seconds"] for x in front],
                    [100 * x["worst_case"][primary] for x in front], color="C0", label="Pareto front")
            ax.legend(loc="lower right", fontsize="small")
            ax.set_xscale("log")
        unit = compared[0]["cost"]["train"]["unit"] if compared else "device-seconds"
        ax.set_xlabel(f"training cost ({unit}, log scale; {comparison['device'] or 'no entry with a cost'})",
                      fontsize="small")
        ax.set_ylabel(f"worst-case robust accuracy at eps={primary} (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"{board_json['track']}: robustness against training cost")
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        return _png(fig)


def classwise_matrix(board_json: dict) -> tuple[list[str], list[str], list[list[float]]]:
    """What the class-wise heatmap draws: (defense ids in rank order, class names, one row per
    defense of its per-class worst-case robust accuracy at the primary eps, as fractions: the
    mean over its seeds, as in the board)."""
    primary = board_json["primary_eps"]
    entries = board_json["entries"]
    return ([e["defense"] for e in entries], list(board_json["class_names"]),
            [list(e["per_class_worst_case"][primary]) for e in entries])


def plot_classwise(board_json: dict) -> bytes:
    """PNG bytes of a heatmap of per-class worst-case robust accuracy (%) at the primary eps:
    rows are defenses in rank order, columns classes, each cell labelled with its percentage
    (up to MAX_CELL_TEXT_CLASSES classes). Deterministic like `plot_robustness`, at a fixed size."""
    defenses, classes, matrix = classwise_matrix(board_json)
    ranks = [e["rank"] for e in board_json["entries"]]
    proto = board_json["protocol"]
    percent = [[100 * v for v in row] for row in matrix]
    with matplotlib.style.context("default"):
        fig = Figure(figsize=CLASSWISE_FIGSIZE, dpi=DPI)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        image = ax.imshow(percent, cmap="viridis", vmin=0, vmax=100, aspect="auto", interpolation="nearest")
        if len(classes) <= MAX_CELL_TEXT_CLASSES:
            for i, row in enumerate(percent):
                for j, v in enumerate(row):
                    ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize="x-small",
                            color="white" if v < 60 else "black")
        ax.set_xticks(range(len(classes)))
        ax.set_xticklabels(classes, rotation=90 if len(classes) > 10 else 0, fontsize="small")
        ax.set_yticks(range(len(defenses)))
        ax.set_yticklabels([f"{rank}. {d}" for rank, d in zip(ranks, defenses)], fontsize="small")
        ax.set_xlabel("class")
        ax.set_title(f"{board_json['track']}: per-class worst-case robust accuracy (%), "
                     f"eps={board_json['primary_eps']} ({proto['norm']})", fontsize="medium")
        fig.colorbar(image, ax=ax, label="worst-case robust accuracy (%)")
        fig.tight_layout()
        return _png(fig)


def significance_matrix(board_json: dict) -> tuple[list[str], list[list[float]], list[list[float]]]:
    """What the significance heatmap draws: (defenses in board order, the effect row minus column
    in worst-case accuracy points, the Holm-adjusted p-values; the diagonal is 0 and 1)."""
    order = [e["defense"] for e in board_json["entries"]]
    index = {d: i for i, d in enumerate(order)}
    effect = [[0.0] * len(order) for _ in order]
    p_adjusted = [[1.0] * len(order) for _ in order]
    for row in board_json["significance"]:
        i, j = index[row["a"]], index[row["b"]]
        effect[i][j], effect[j][i] = 100 * row["effect"], -100 * row["effect"] + 0.0  # + 0.0: no -0.0
        p_adjusted[i][j] = p_adjusted[j][i] = row["p_adjusted"]
    return order, effect, p_adjusted


def plot_significance(board_json: dict) -> bytes:
    """PNG bytes of the pairwise significance heatmap: cell (row, column) colours the difference
    in worst-case robust accuracy (points) at the primary eps and shows the Holm-adjusted p-value,
    bold where significant. Deterministic like `plot_robustness`."""
    order, effect, p_adjusted = significance_matrix(board_json)
    alpha = board_json["statistics"]["alpha"]
    bound = max([abs(v) for row in effect for v in row] + [1.0])
    size = max(4.0, 0.6 * len(order) + 2.5)
    with matplotlib.style.context("default"):
        fig = Figure(figsize=(size + 1.5, size), dpi=DPI)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        image = ax.imshow(effect, cmap="RdBu", vmin=-bound, vmax=bound, interpolation="nearest")
        for i in range(len(order)):
            for j in range(len(order)):
                if i != j:
                    ax.text(j, i, f"{effect[i][j]:+.1f}\np={p_adjusted[i][j]:.2g}", ha="center", va="center",
                            fontsize="xx-small", fontweight="bold" if p_adjusted[i][j] < alpha else "normal")
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels(order, rotation=90, fontsize="small")
        ax.set_yticks(range(len(order)))
        ax.set_yticklabels(order, fontsize="small")
        ax.set_title(f"{board_json['track']}: row minus column, worst case at eps={board_json['primary_eps']} "
                     f"(bold: Holm p < {alpha})", fontsize="medium")
        fig.colorbar(image, ax=ax, label="difference (points)")
        fig.tight_layout()
        return _png(fig)
