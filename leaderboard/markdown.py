"""The Markdown form of a JSON board (`leaderboard.build.build_json`): the ranked table with an
interval on every accuracy, the rank rule, the sanity flags and notes, the significance matrix,
the certified table, the per-eps table, the class-wise evidence and how to read it all."""
from __future__ import annotations

import json
from decimal import Decimal

from tabulate import tabulate

from leaderboard.flags import FLAG_DOCS, SANITY_FLAGS

#: Decimals every board number is rounded to (percentages get DIGITS - 2).
DIGITS = 4


def flag_letter(name: str) -> str:
    """The letter a sanity flag has on every board (`[a]` ... `[g]`)."""
    return chr(ord("a") + SANITY_FLAGS.index(name))


def override_value(value: object) -> str:
    """A recipe override's value as the boards print it."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))


def seed_spread(x: dict, primary: str) -> str | None:
    """`sd 2.5`: the seeds' standard deviation of the worst case in points; None for one seed."""
    return None if x["n_seeds"] == 1 else f"sd {x['seed_sd']['worst_case'][primary] * 100:.1f}"


def worst_class_interval(x: dict, primary: str) -> tuple[float, list[float]]:
    """An entry's worst-class accuracy at `primary` and its interval."""
    return x["worst_class_robust_acc"][primary], x["intervals"]["worst_class_robust_acc"][primary]


def pct(x: float) -> str:
    """A fraction (already rounded to DIGITS) as an exact percentage with DIGITS-2 decimals."""
    return f"{Decimal(repr(x)).scaleb(2):.{DIGITS - 2}f}"


def with_interval(value: float, interval: list[float]) -> str:
    """`73.50 ±6.1`: the value in % and the half-width of its interval in points."""
    return f"{pct(value)} ±{(interval[1] - interval[0]) * 50:.1f}"


def p_text(p: float) -> str:
    """A p-value for a table: two significant digits, or `<0.0001`."""
    return "<0.0001" if p < 1e-4 else f"{p:.2g}"


def cell(text: str) -> str:
    """Text safe inside a table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _defense_cell(x: dict) -> str:
    if x["external"]:
        return cell(f"{x['defense']} (external model)")
    if not x["link"]:
        return cell(x["defense"])
    link = x["link"].replace(" ", "%20").replace("(", "%28").replace(")", "%29")
    return cell(f"[{x['defense']}]({link})")


def _flag_marks(fired: dict[str, str]) -> str:
    return " ".join(f"[{flag_letter(n)}]" for n in SANITY_FLAGS if n in fired) or "-"


def _overrides(x: dict) -> str:
    overrides = x["recipe_overrides"]
    if not overrides:
        return "-"
    items = [f"{k}={override_value(v)}" for k, v in sorted(overrides.items())]
    if any(k.startswith("config.") for k in overrides):
        items.append(f"[sweep](../sweeps/{x['sweep']}.md)" if x["sweep"] else "no sweep")
    return cell(", ".join(items))


def _seeds(x: dict, primary: str) -> str:
    spread = seed_spread(x, primary)
    return f"{x['n_seeds']} ({spread})" if spread else "1"


def table(headers: list[str], rows: list[list[str]], align: str) -> str:
    """A GitHub table; `align` has one letter per column: l(eft) or r(ight)."""
    colalign = ["left" if a == "l" else "right" for a in align]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True, colalign=colalign)


def _main_table(board: dict) -> str:
    primary, attacks, entries = board["primary_eps"], board["attacks"], board["entries"]
    headers = (["rank", "defense", "seeds", "clean (%)"] + [f"{a} (%)" for a in attacks]
               + ["worst case (%)", "worst class (%)", "class disparity p", "median margin", "flags", "fidelity",
                  "recipe overrides", "architecture"])
    rows = [
        [str(x["rank"]), _defense_cell(x), _seeds(x, primary),
         with_interval(x["clean_acc"], x["intervals"]["clean_acc"])]
        + [with_interval(x["robust_acc"][a][primary], x["intervals"]["robust_acc"][a][primary]) for a in attacks]
        + [with_interval(x["worst_case"][primary], x["intervals"]["worst_case"][primary]),
           f"{with_interval(*worst_class_interval(x, primary))} "
           f"(class {board['class_names'][x['worst_class'][primary]]})",
           p_text(x["class_disparity"]["p_value"]), f"{x['median_input_margin']:.4f}", _flag_marks(x["sanity_fired"]),
           cell(x["fidelity"]), _overrides(x), cell(x["architecture"])]
        for x in entries
    ]
    return table(headers, rows, "rlrr" + "r" * len(attacks) + "rrrrllll")


def significance_table(board: dict) -> str:
    """Every pair's effect (row minus column, worst case at the primary eps, in points) and its
    Holm-adjusted p-value; a star marks a significant pair."""
    order = [x["defense"] for x in board["entries"]]
    cells = {(r["a"], r["b"]): r for r in board["significance"]}

    def text(a: str, b: str) -> str:
        if a == b:
            return "-"
        row = cells.get((a, b)) or cells[(b, a)]
        effect = row["effect"] if (a, b) in cells else -row["effect"]
        return f"{effect * 100:+.1f} (p={p_text(row['p_adjusted'])}){'*' if row['significant'] else ''}"

    return table(["", *order], [[a, *(text(a, b) for b in order)] for a in order], "l" + "r" * len(order))


def _certified(entries: list[dict]) -> list[str]:
    certified = [x for x in entries if x["certified_l2"]]
    if not certified:
        return []
    radii = list(certified[0]["certified_l2"])
    rows = [[str(x["rank"]), cell(x["defense"])]
            + [f"{pct(x['certified_l2'][r]['certified'])} / {pct(x['certified_l2'][r]['pgd_l2'])}" for r in radii]
            for x in certified]
    return ["## Certified L2 accuracy (LipLT bound) beside L2-PGD robust accuracy", "",
            table(["rank", "defense"] + [f"L2 r={r}: certified / PGD (%)" for r in radii], rows,
                  "rl" + "r" * len(radii)),
            ""]


def _classwise(board: dict) -> list[str]:
    primary, names = board["primary_eps"], board["class_names"]
    lines = []
    for x in board["entries"]:
        d, gain = x["class_disparity"], x["attack_gain"]
        line = (f"- **{cell(x['defense'])}**: worst class {names[x['worst_class'][primary]]} at "
                f"{with_interval(*worst_class_interval(x, primary))}%; "
                f"class disparity {'real' if d['real'] else 'not shown'} (permutation p = {p_text(d['p_value'])})")
        if gain["attack"] and gain["points"]:
            weak = ", ".join(names[k] for k in gain["weakest_classes"])
            line += (f"; `{gain['attack']}` breaks {gain['points']} points PGD leaves robust, "
                     f"{gain['share_on_weakest'] * 100:.0f}% of them in PGD's weakest classes ({weak}, "
                     f"{gain['expected_share'] * 100:.0f}% expected; p = {p_text(gain['p_value'])}: "
                     f"{'concentrated there' if gain['concentrated'] else 'not concentrated there'})")
        lines.append(line)
    return lines


def render_markdown(board: dict) -> str:
    """The Markdown form of a JSON board."""
    p, primary, eps = board["protocol"], board["primary_eps"], board["eps"]
    entries, stats = board["entries"], board["statistics"]
    flagged = [f"- **{x['defense']}**: [{flag_letter(name)}] `{name}`: {cell(detail)}"
               for x in entries for name, detail in x["sanity_fired"].items()]
    noted = [f"- {x['defense']}: `{name}`: {cell(detail)}"
             for x in entries for name, detail in x["sanity_noted"].items()]
    eps_rows = [[str(x["rank"]), cell(x["defense"]), pct(x["clean_acc"])]
                + [with_interval(x["worst_case"][e], x["intervals"]["worst_case"][e]) for e in eps] for x in entries]
    n = p["n_examples"]
    return "\n".join([
        f"# Leaderboard: {board['track']} (protocol {p['id']} v{p['version']})",
        "",
        f"Accuracies in % of the protocol's {n} test points with their 95% interval (± half its width, in "
        f"points): {stats['interval']}; robust columns at eps={primary} ({p['norm']}); each number is the mean over "
        f"the defense's seeds. Training variance: {stats['training_variance']}. Protocol sha256 `{p['sha256']}`.",
        "",
        f"Evaluation: {stats['evaluation']}; every record of this board was made so.",
        "",
        _main_table(board),
        "",
        f"**Ranks.** {stats['rank_rule'].capitalize()}: {stats['comparison']}, {stats['correction']}, "
        f"alpha {stats['alpha']}. Rows are ordered by worst-case accuracy, then clean accuracy, then id.",
        "",
        "## Sanity flags",
        "",
        *(flagged or ["No sanity flag fired."]),
        "",
        "Notes (evidence within chance at this number of points, shown with its count):",
        "",
        *(noted or ["None."]),
        "",
        "## Significance of every pair",
        "",
        f"Row minus column: the difference in worst-case robust accuracy at eps={primary} in points and the "
        f"Holm-adjusted p-value ({stats['comparison']}); * marks a significant pair. Heatmap: "
        f"[{p['id']}.significance.png]({p['id']}.significance.png).",
        "",
        significance_table(board),
        "",
        *_certified(entries),
        "## Worst-case robust accuracy (%) per eps",
        "",
        table(["rank", "defense", "clean"] + [f"eps={e}" for e in eps], eps_rows, "rlr" + "r" * len(eps)),
        "",
        "## Class-wise worst-case robust accuracy",
        "",
        f"![Class-wise worst-case robust accuracy at eps={primary}]({p['id']}.classwise.png)",
        "",
        *_classwise(board),
        "",
        "## How to read this board",
        "",
        "*Worst case*: a test point counts as robust only if it survives every attack column at "
        "that eps. *Rank*: two defenses share a rank unless a paired test on the same test points says one "
        "is better; a rank gap is a significant difference. *Worst class*: the class with the lowest "
        "worst-case accuracy, with the interval over that class's points; *class disparity p*: a permutation "
        "test of whether robustness differs between classes at all. *Seeds* is the number of training seeds "
        "averaged (with their spread). *Fidelity* says how closely the implementation follows the paper; "
        "*recipe overrides* are the defense's departures from the track's training recipe, and `config.*` "
        "the hyperparameters its sweep chose (linked). "
        f"*Median margin*: the median over test points of the smallest {p['norm']} perturbation FAB finds "
        "(0 for misclassified points, capped at the search limit), an upper bound on the true margin. "
        "*Flags* mark suspicious evaluations beyond chance; *notes* show weaker evidence: "
        + "; ".join(f"[{flag_letter(n)}] `{n}`: {FLAG_DOCS[n]}" for n in SANITY_FLAGS) + ".",
        "",
    ])

