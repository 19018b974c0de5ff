"""The tables of the board's view (`leaderboard.view`): the ranked table, the claims, the
significance matrix, the certified table and the per-eps table, each as columns and rows of
cells (text in the view's inline marks, and the value the web page sorts by); and the view's
block constructors (tables, paragraphs, bullet items, sections) that every view module uses."""
from __future__ import annotations

from fractions import Fraction

from leaderboard.flags import SANITY_FLAGS
from leaderboard.formats import class_list, count, override_value, p_is, p_text, pct, seed_spread, with_interval


def flag_letter(name: str) -> str:
    """The letter a sanity flag has on every board (`[a]` ... `[g]`)."""
    return chr(ord("a") + SANITY_FLAGS.index(name))


def cell(text: str, value: object = None, **extra: str) -> dict:
    """A table cell: its text, and the value the web page sorts by (None: not sortable by value)."""
    return {"text": text, **({"value": value} if value is not None else {}), **extra}


def column(ident: str, label: str, align: str = "r") -> dict:
    """A column: its id, its header text and its alignment ("l" or "r")."""
    return {"id": ident, "label": label, "align": align}


def table(ident: str, caption: str, columns: list[dict], rows: list[list[dict]]) -> dict:
    """A table block."""
    return {"kind": "table", "id": ident, "caption": caption, "columns": columns, "rows": rows}


def paragraph(text: str) -> dict:
    """A paragraph block."""
    return {"kind": "paragraph", "text": text}


def items(texts: list[str]) -> dict:
    """A bullet-list block."""
    return {"kind": "items", "items": texts}


def section(ident: str, title: str, *blocks: dict) -> dict:
    """A section: its anchor id, its heading and its blocks."""
    return {"id": ident, "title": title, "blocks": list(blocks)}


def _link(name: str, link: str) -> str:
    if not link:
        return name
    return f"[{name}]({link.replace(' ', '%20').replace('(', '%28').replace(')', '%29')})"


def _defense(x: dict) -> str:
    return f"{x['defense']} (external model)" if x["external"] else _link(x["defense"], x["link"])


def worst_class_text(x: dict, names: list[str], eps: str) -> str:
    """`worst class 7 at 60.00 ±19.7%` (ties named: `worst classes 7, 8 (tied) at ...`)."""
    classes = x["worst_classes"][eps]
    acc, interval = x["worst_class_robust_acc"][eps], x["intervals"]["worst_class_robust_acc"][eps]
    return f"worst {class_list(names, classes)} at {with_interval(acc, interval)}%"


def _overrides(x: dict) -> str:
    overrides = x["recipe_overrides"]
    if not overrides:
        return "-"
    parts = [f"{k}={override_value(v)}" for k, v in sorted(overrides.items())]
    if any(k.startswith("config.") for k in overrides):
        parts.append(f"[sweep](../sweeps/{x['sweep']}.md){tuning_text(x['tuning'])}" if x["sweep"] else "no sweep")
    return ", ".join(parts)


def tuning_text(tuning: dict | None) -> str:
    """` of 6 settings, 2 by the grid-edge rule` after an entry's sweep link (nothing when its
    sweep is not a shipped one)."""
    if tuning is None:
        return ""
    if tuning["edge_extensions"] is None:
        edge = ", winner at an edge" if tuning["winner_at_edge"] else ""
        return f" of {count(tuning['settings'], 'setting')}, before the grid-edge rule{edge}"
    return f" of {count(tuning['settings'], 'setting')}, {tuning['edge_extensions']} by the grid-edge rule"


def attack_label(board: dict, attack: str) -> str:
    """An attack column's header: a group (Temperature-PGD's temperatures) says it is the worst
    over its members."""
    members = board["attack_groups"].get(attack)
    if not members:
        return f"{attack} (%)"
    return f"{attack}: worst over {', '.join(m.removeprefix(attack + '-') for m in members)} (%)"


def best_known_cell(x: dict, eps: str) -> dict:
    """An entry's best-known worst case at `eps` (`73.00`, `71.50 (overstated)` when the paired
    test flags it); `-` when no submitted attack was run against the entry."""
    block = x.get("best_known")
    if not block:
        return cell("-")
    at = block[eps]
    return cell(pct(at["best_known"]) + (" (overstated)" if at["flag"] else ""), at["best_known"])


def ranked_table(board: dict) -> dict:
    """One row per entry in rank order; the evidence columns (worst case, worst class, flags) first."""
    primary, names = board["primary_eps"], board["class_names"]

    def interval_cell(value: float, interval: list[float]) -> dict:
        return cell(with_interval(value, interval), value)

    def row(x: dict) -> list[dict]:
        fired = " ".join(f"[{flag_letter(n)}]" for n in SANITY_FLAGS if n in x["sanity_fired"]) or "-"
        corrected = x["margin_corrected"]
        spread = seed_spread(x, primary)
        worst_class = x["worst_class_robust_acc"][primary]
        return [
            cell(str(x["rank"]), x["rank"]), cell(_defense(x), x["defense"]),
            interval_cell(x["worst_case"][primary], x["intervals"]["worst_case"][primary]),
            best_known_cell(x, primary),
            cell(f"{with_interval(worst_class, x['intervals']['worst_class_robust_acc'][primary])}"
                 f" ({class_list(names, x['worst_classes'][primary])})", worst_class),
            cell(fired, len(x["sanity_fired"])),
            interval_cell(x["clean_acc"], x["intervals"]["clean_acc"]),
            *(interval_cell(x["robust_acc"][a][primary], x["intervals"]["robust_acc"][a][primary])
              for a in board["attacks"]),
            cell(f"{x['n_seeds']} ({spread})" if spread else "1", x["n_seeds"]),
            cell(p_text(x["class_disparity"]["p_value"]), x["class_disparity"]["p_value"]),
            cell(f"{x['median_input_margin']:.4f} ({corrected['points']} of {corrected['of']} lowered)",
                 x["median_input_margin"]),
            cell(x["fidelity"]["loss"], x["fidelity"]["loss"]), cell(x["fidelity"]["recipe"], x["fidelity"]["recipe"]),
            cell(_overrides(x)), cell(f"`{x['architecture']}`", x["architecture"]),
            cell(cost_text(x["cost"]["train"]), None if x["cost"]["train"] is None
                 else x["cost"]["train"]["device_seconds"]),
        ]

    columns = ([column("rank", "rank"), column("defense", "defense", "l"), column("worst-case", "worst case (%)"),
                column("best-known", "best known (%)"), column("worst-class", "worst class (%)"),
                column("flags", "flags", "l"), column("clean", "clean (%)")]
               + [column(f"attack-{a}", attack_label(board, a)) for a in board["attacks"]]
               + [column("seeds", "seeds"), column("disparity", "class disparity p"),
                  column("margin", "median margin"), column("loss-fidelity", "loss fidelity", "l"),
                  column("recipe", "recipe", "l"), column("overrides", "recipe overrides", "l"),
                  column("architecture", "architecture", "l"), column("train-cost", "training cost")])
    caption = (f"Defenses ranked by worst-case robust accuracy at eps={primary} ({board['protocol']['norm']}). "
               "Accuracies in %, ± half the 95% interval; robust columns at the primary eps.")
    return table("board-table", caption, columns, [row(x) for x in board["entries"]])


def cost_text(phase: dict | None) -> str:
    """A phase's cost: `213 core-s` (GPU-s on a GPU); `-` where it has none (an external model's training)."""
    if phase is None:
        return "-"
    return f"{phase['device_seconds']:.0f} {'core-s' if phase['unit'] == 'core-seconds' else 'GPU-s'}"


def _claim_scale(claim: dict) -> tuple[int, int]:
    """(scale, decimals) of a claim's effect and interval as printed: points with 1 decimal for an
    accuracy, the unit itself with 3 otherwise."""
    return (100, 1) if claim["unit"].startswith("points") else (1, 3)


def claim_interval_text(claim: dict) -> str:
    """A claim's 95% interval as the claims table prints it (`+0.5 to +8.0`, in points for an
    accuracy; `-` when it has none)."""
    if claim["interval"] is None:
        return "-"
    scale, digits = _claim_scale(claim)
    return f"{claim['interval'][0] * scale:+.{digits}f} to {claim['interval'][1] * scale:+.{digits}f}"


def claims_table(board: dict) -> dict:
    """One row per tested (or untestable) part of a founding method's claim."""
    rows = []
    for c in board["claims"]:
        scale, digits = _claim_scale(c)
        effect = None if c["effect"] is None else c["effect"] * scale
        rows.append([cell(c["method"], c["method"]), cell(c["statement"]), cell(c["test"]),
                     cell("-" if effect is None else f"{effect:+.{digits}f} {c['unit']}", effect),
                     cell(claim_interval_text(c)),
                     cell("-" if c["p_value"] is None else p_text(c["p_value"]), c["p_value"]),
                     cell("-" if c["p_adjusted"] is None else p_text(c["p_adjusted"]), c["p_adjusted"]),
                     cell(f"**{c['result']}**"), cell(c["reason"])])
    columns = [column("method", "method", "l"), column("statement", "statement on this board", "l"),
               column("test", "test", "l"), column("effect", "effect"), column("interval", "95% interval"),
               column("p", "p"), column("p-adjusted", "Holm p"), column("result", "result", "l"),
               column("reason", "why", "l")]
    return table("claims", "The founding methods' claims, tested on this board", columns, rows)


def significance_table(board: dict) -> dict:
    """Every pair's effect (row minus column, worst case at the primary eps, in points) and its
    adjusted p-value; a star marks a significant pair."""
    order = [x["defense"] for x in board["entries"]]
    pairs = {(r["a"], r["b"]): r for r in board["significance"]}

    def pair_cell(a: str, b: str) -> dict:
        if a == b:
            return cell("-", tone="diag")
        row = pairs.get((a, b)) or pairs[(b, a)]
        sign = 1 if (a, b) in pairs else -1
        # + 0.0 turns the -0.0 of a negated zero difference into 0.0 (printed +0.0, not -0.0)
        effect, low, high = sign * row["effect"] + 0.0, *sorted((sign * row["low"] + 0.0, sign * row["high"] + 0.0))
        text = f"{effect * 100:+.1f} (p={p_text(row['p_adjusted'])}){'*' if row['significant'] else ''}"
        tone = ("better" if effect > 0 else "worse") if row["significant"] else "none"
        title = (f"{a} minus {b}: {effect * 100:+.1f} points (95% interval {low * 100:+.1f} to {high * 100:+.1f}); "
                 f"p {p_is(row['p_value'])}, adjusted p {p_is(row['p_adjusted'])}")
        return cell(text, tone=tone, title=title)

    columns = [column("row", "", "l"), *(column(f"vs-{b}", b) for b in order)]
    rows = [[cell(a), *(pair_cell(a, b) for b in order)] for a in order]
    return table("significance", "Every pair of entries compared", columns, rows)


def certified_table(board: dict) -> dict | None:
    """Certified / L2-PGD accuracy per radius (increasing) of the entries that have them; None if none has."""
    certified = [x for x in board["entries"] if x["certified_l2"]]
    if not certified:
        return None
    radii = sorted(certified[0]["certified_l2"], key=Fraction)
    rows = [[cell(str(x["rank"]), x["rank"]), cell(x["defense"])]
            + [cell(f"{pct(x['certified_l2'][r]['certified'])} / {pct(x['certified_l2'][r]['pgd_l2'])}",
                    x["certified_l2"][r]["certified"]) for r in radii]
            for x in certified]
    columns = [column("rank", "rank"), column("defense", "defense", "l")] + [
        column(f"r-{r}", f"L2 r={r}: certified / PGD (%)") for r in radii]
    return table("certified", "LipLT-certified L2 accuracy / L2-PGD robust accuracy (%) per radius", columns, rows)


def per_eps_table(board: dict) -> dict:
    """Worst-case robust accuracy of every entry at every eps, with intervals."""
    eps = board["eps"]
    rows = [[cell(str(x["rank"]), x["rank"]), cell(x["defense"]), cell(pct(x["clean_acc"]), x["clean_acc"])]
            + [cell(with_interval(x["worst_case"][e], x["intervals"]["worst_case"][e]), x["worst_case"][e])
               for e in eps] for x in board["entries"]]
    columns = [column("rank", "rank"), column("defense", "defense", "l"), column("clean", "clean")] + [
        column(f"eps-{e}", f"eps={e}") for e in eps]
    return table("per-eps", "Worst-case robust accuracy (%) per eps, ± half the 95% interval", columns, rows)
