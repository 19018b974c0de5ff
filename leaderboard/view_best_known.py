"""Best known in the board's view: the section of the entries a submitted attack was run against
(`leaderboard.best_known`), and each such entry's own blocks for its panel on the web page
(`leaderboard.html_detail`), as view blocks. Per eps: the entry's best-known worst case beside the
protocol's, the points the protocol left robust and a submitted attack broke (and by which
attacks), and the paired test's p with the flag it gives."""
from __future__ import annotations

from leaderboard.formats import count, p_is, p_text, pct
from leaderboard.view_tables import cell, column, items, paragraph, section, table

#: The flag sentence of an entry whose best known is significantly below the protocol's worst case
#: (`leaderboard.best_known.OVERSTATED`, in bold).
OVERSTATED_TEXT = "**the protocol's attacks overstate this entry**"
#: The heading of the board's best-known section and of an entry's best-known part of its panel.
TITLE = "Best known: submitted attacks beside the protocol"


def _by_attack(at: dict) -> dict[str, int]:
    """Per attack, how many of the points broken beyond the protocol it broke (a point broken by
    several attacks counts for each), by name."""
    by_attack: dict[str, int] = {}
    for points in at["best_known_attacks"].values():
        for point in points:
            for name in point["attacks"]:
                by_attack[name] = by_attack.get(name, 0) + 1
    return dict(sorted(by_attack.items()))


def _beyond_text(at: dict) -> str:
    """`7 points broken beyond the protocol (`bpda` 5, `eot-pgd` 3)`: the points and, per attack,
    how many of them it broke (a point broken by several attacks counts for each)."""
    if not at["points_beyond"]:
        return "no point broken beyond the protocol"
    return (f"{count(at['points_beyond'], 'point')} broken beyond the protocol ("
            + ", ".join(f"`{name}` {n}" for name, n in _by_attack(at).items()) + ")")


def _verdict(at: dict, alpha: float) -> str:
    """The flag when the paired test's p is below alpha, else `not significant at 0.05`."""
    return OVERSTATED_TEXT if at["p_value"] < alpha else f"not significant at {alpha}"


def _submitted(x: dict, eps: list[str]) -> str:
    """The submitted attacks run against an entry, each with its seeds when the entry has several."""
    seeds = x["best_known"][eps[0]]["attacks"]
    names = sorted({name for run in seeds.values() for name in run})
    several = x["n_seeds"] > 1
    return ", ".join(f"`{name}`" + (f" (seeds {', '.join(s for s, run in seeds.items() if name in run)})"
                                    if several else "") for name in names)


def best_known_line(x: dict, eps: list[str], alpha: float) -> str:
    """An entry's best-known sentence: the attacks submitted against it, then per eps its best
    known beside the protocol's worst case, the points broken beyond the protocol and by which
    attacks, the paired test's p and, when p < alpha, the flag."""
    parts = []
    for e in eps:
        at = x["best_known"][e]
        parts.append(f"eps={e}: best known {pct(at['best_known'])}% against the protocol's {pct(at['protocol'])}%, "
                     f"{_beyond_text(at)}, p {p_is(at['p_value'])}: {_verdict(at, alpha)}")
    return f"**{x['defense']}** (submitted: {_submitted(x, eps)}): " + "; ".join(parts) + "."


def best_known_sections(board: dict) -> list[dict]:
    """The board's best-known section, only when a submitted attack was run against an entry."""
    attacked = [x for x in board["entries"] if x.get("best_known")]
    if not attacked:
        return []
    alpha, p = board["statistics"]["alpha"], board["protocol"]
    others = [x["defense"] for x in board["entries"] if not x.get("best_known")]
    blocks = [
        paragraph("Beside the protocol's worst case, each entry attacked by a submitted attack (docs/attacks.md) has "
                  "a *best known* worst case: per point, the worst over the protocol's attack columns and every "
                  "admitted submitted attack of that entry, the mean over its seeds. The ranking stays the "
                  "protocol's: best known is shown beside it and changes no rank. Test: one-sided exact McNemar test "
                  "of best known below the protocol's worst case on the paired per-point flags, the seeds' points "
                  "concatenated; every discordant point is one broken beyond the protocol, so p = 0.5^b for b such "
                  f"points; an entry with p below {alpha} carries the flag {OVERSTATED_TEXT} (per eps, not corrected "
                  f"over entries). The attacks ranked over every entry: [{p['id']}.attacks.md]({p['id']}.attacks.md) "
                  f"(web page: [{p['id']}.attacks.html]({p['id']}.attacks.html))."),
        items([best_known_line(x, board["eps"], alpha) for x in attacked])]
    if others:
        blocks.append(paragraph(f"No submitted attack was run against: {', '.join(others)}."))
    return [section("best-known", TITLE, *blocks)]


def _points_table(x: dict, eps: list[str]) -> dict | None:
    """Every (seed, test index) broken beyond the protocol at some eps, with the attacks that broke
    it at each eps; None when there is none."""
    broke: dict[tuple[int, int], dict[str, list[str]]] = {}
    for e in eps:
        for seed, points in x["best_known"][e]["best_known_attacks"].items():
            for point in points:
                broke.setdefault((int(seed), point["index"]), {})[e] = point["attacks"]
    if not broke:
        return None
    rows = [[cell(str(seed), seed), cell(str(index), index)]
            + [cell(", ".join(f"`{name}`" for name in at[e]) if e in at else "-") for e in eps]
            for (seed, index), at in sorted(broke.items())]
    return table("best-known-points",
                 "Every point the protocol's worst case left robust and a submitted attack broke: its seed, its test "
                 "index (as the flags file's indices give it) and, per eps, the attacks that broke it (- where it was "
                 "not broken beyond the protocol at that eps).",
                 [column("seed", "seed"), column("index", "test index")]
                 + [column(f"eps-{e}", f"eps={e}", "l") for e in eps], rows)


def entry_best_known_blocks(x: dict, eps: list[str], alpha: float) -> list[dict]:
    """A board entry's best-known blocks (its web page panel): the attacks submitted against it,
    per eps its best known beside the protocol's worst case with the points broken beyond the
    protocol, the paired test's p and its verdict, and every such point with the attacks that
    broke it; none when no submitted attack was run against it."""
    block = x.get("best_known")
    if not block:
        return []
    per_eps = table(
        "best-known-eps",
        "Best known beside the protocol's worst case (%, the mean over the seeds), the points the protocol left "
        "robust and a submitted attack broke (summed over the seeds) and p of the one-sided exact McNemar test of "
        "best known below the protocol's worst case (p = 0.5^b for b such points).",
        [column("eps", "eps", "l"), column("protocol", "protocol's worst case (%)"),
         column("best-known", "best known (%)"), column("beyond", "broken beyond the protocol", "l"),
         column("p", "p"), column("verdict", "verdict", "l")],
        [[cell(f"eps={e}"), cell(pct(block[e]["protocol"]), block[e]["protocol"]),
          cell(pct(block[e]["best_known"]), block[e]["best_known"]),
          cell(_beyond_text(block[e]), block[e]["points_beyond"]),
          cell(p_text(block[e]["p_value"]), block[e]["p_value"]), cell(_verdict(block[e], alpha))] for e in eps])
    points = _points_table(x, eps)
    return [paragraph(f"Submitted attacks run against {x['defense']} (docs/attacks.md): {_submitted(x, eps)}. Best "
                      "known changes no rank: the ranking stays the protocol's."),
            per_eps, *([points] if points else [])]
