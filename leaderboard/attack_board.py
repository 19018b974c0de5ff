"""The attack board of a protocol: the submitted attacks (`atbench attack`, docs/attacks.md) ranked
by the points they break beyond the protocol's attacks, over every entry they were run against.

A pure function of a board (`leaderboard.build.build_json`) and its admitted attack records
(`leaderboard.attack_admission`), written as JSON, Markdown and a web page from one view (the board's
view blocks, `leaderboard.view`, carried by the JSON under "view" and rendered by
`leaderboard.markdown.render_view` and `leaderboard.html_attack_board.render_attack_board_page`).

Per attack and eps, a point of an entry's seed is **broken beyond the protocol** when the
protocol's worst case left it robust (correct clean and robust under every attack column) and the
attack broke it; other submitted attacks do not matter (each attack is compared with the protocol
alone). The counts are summed over the entries and seeds the attack was run against. The paired
test of "the attack's worst case is below the protocol's" pools the entries and seeds by
concatenating their points: every discordant point lies one way (an attack can only add broken
points to the protocol's worst case), so the one-sided exact McNemar test gives p = 0.5 ** b for b
points broken beyond the protocol (`leaderboard.stats.binomial_excess`). The p-values are
Holm-adjusted over the board's attacks, at each eps separately; an attack is significant when its
adjusted p is below the board's level. Attacks are ranked by their count at the primary eps:
rank = 1 + the number of attacks with a larger count, so equal counts share a rank. An attack run
against more entries has more points to break, and the table says how many it was run against.
"""
from __future__ import annotations

from typing import Sequence

from benchmark.core.io import dumps_json
from leaderboard import stats
from leaderboard.attack_admission import AdmittedAttack
from leaderboard.evidence import ALPHA, worst_flags
from leaderboard.formats import count, p_is, p_text
from leaderboard.html_attack_board import render_attack_board_page
from leaderboard.markdown import render_view
from leaderboard.view_tables import cell, column, items, paragraph, section, table

#: The attack board's files beside the board's: `<protocol>.attacks.md`, `.attacks.json` and `.attacks.html`.
ATTACK_BOARD_MD, ATTACK_BOARD_JSON, ATTACK_BOARD_HTML = ".attacks.md", ".attacks.json", ".attacks.html"
ATTACK_BOARD_SUFFIXES = (ATTACK_BOARD_MD, ATTACK_BOARD_JSON, ATTACK_BOARD_HTML)
TEST = ("one-sided exact McNemar test of the attack's worst case below the protocol's, on the paired per-point "
        "flags of every entry and seed it was run against, pooled (their points concatenated): every discordant "
        "point is one broken beyond the protocol, so p = 0.5^b for b such points")


def _sig(p: float) -> float:
    return float(f"{p:.6g}")


def _entry_rows(attacks: list[AdmittedAttack], eps: list[str]) -> list[dict]:
    """Per entry the attack was run against (board order is not known here: by defense id), its
    seeds and, per eps, the points the protocol left robust and the points broken beyond it."""
    rows: dict[str, dict] = {}
    for a in sorted(attacks, key=lambda a: (a.record["entry"]["defense"], a.record["entry"]["seed"])):
        defense = a.record["entry"]["defense"]
        row = rows.setdefault(defense, {"defense": defense, "external": a.record["entry"]["external"], "seeds": [],
                                        "protocol_robust": {e: 0 for e in eps},
                                        "points_beyond": {e: 0 for e in eps}})
        row["seeds"].append(a.record["entry"]["seed"])
        for e in eps:
            protocol = worst_flags(a.entry, e)
            row["protocol_robust"][e] += int(protocol.sum())
            row["points_beyond"][e] += int((protocol & ~a.robust(e)).sum())
    return list(rows.values())


def build_attack_board(board: dict, submitted: Sequence[AdmittedAttack], alpha: float = ALPHA) -> dict:
    """The attack board (JSON, with its view under "view") of `board` and the admitted attack
    records of its entries, `submitted` (at least one). See the module docstring for the counts,
    the test and the ranking.

    Each attack's row: `attack`, `sources` and `configs` (as its records state them), `entries`
    (per entry attacked: `defense`, `external`, `seeds`, and per eps `protocol_robust` and
    `points_beyond`), `by_eps` (per eps: `points_beyond` and `protocol_robust` summed over the
    entries, `p_value`, `p_adjusted` (Holm over the attacks at that eps) and `significant`), and
    `rank` (at the primary eps). Rows are in rank order, then by name.
    """
    eps, primary = board["eps"], board["primary_eps"]
    rows = []
    for name in sorted({a.attack for a in submitted}):
        mine = [a for a in submitted if a.attack == name]
        entries = _entry_rows(mine, eps)
        by_eps = {}
        for e in eps:
            beyond = sum(r["points_beyond"][e] for r in entries)
            test = stats.binomial_excess(beyond, beyond, 0.5, alpha)
            by_eps[e] = {"points_beyond": beyond, "protocol_robust": sum(r["protocol_robust"][e] for r in entries),
                         "p_value": test.p_value}
        rows.append({"attack": name, "sources": sorted({a.record["attack"]["source"] for a in mine}),
                     "configs": sorted({a.record["attack"]["config"] for a in mine}), "entries": entries,
                     "by_eps": by_eps})
    for e in eps:
        for row, adjusted in zip(rows, stats.holm([r["by_eps"][e]["p_value"] for r in rows])):
            row["by_eps"][e].update(p_value=_sig(row["by_eps"][e]["p_value"]), p_adjusted=_sig(adjusted),
                                    significant=adjusted < alpha)
    counts = [r["by_eps"][primary]["points_beyond"] for r in rows]
    for row in rows:
        row["rank"] = 1 + sum(1 for c in counts if c > row["by_eps"][primary]["points_beyond"])
    rows.sort(key=lambda r: (r["rank"], r["attack"]))
    out = {"track": board["track"], "protocol": dict(board["protocol"]), "primary_eps": primary, "eps": list(eps),
           "alpha": alpha, "test": TEST, "correction": f"Holm over the {count(len(rows), 'attack')}, at each eps",
           "attacks": rows}
    out["view"] = attack_board_view(out)
    return out


def _entries_text(row: dict) -> str:
    return ", ".join(f"{r['defense']}" + (f" (seeds {', '.join(map(str, r['seeds']))})" if len(r["seeds"]) > 1 else "")
                     for r in row["entries"])


def attack_board_view(board: dict) -> dict:
    """The attack board's view: its title and sections, every sentence and cell as text (the
    board's view format, `leaderboard.view`). A pure function of the attack board's numbers."""
    p, primary, alpha = board["protocol"], board["primary_eps"], board["alpha"]
    rows = board["attacks"]
    ranked = table(
        "attack-table",
        f"Submitted attacks ranked by the points they break beyond the protocol's attacks at eps={primary} "
        f"({p['norm']}), summed over the entries and seeds they were run against.",
        [column("rank", "rank"), column("attack", "attack", "l"), column("entries", "entries attacked"),
         column("points", "points broken beyond the protocol"), column("p", "p"), column("p-adjusted", "Holm p"),
         column("significant", "significant", "l")],
        [[cell(str(r["rank"]), r["rank"]), cell(f"`{r['attack']}`", r["attack"]),
          cell(str(len(r["entries"])), len(r["entries"])),
          cell(str(r["by_eps"][primary]["points_beyond"]), r["by_eps"][primary]["points_beyond"]),
          cell(p_text(r["by_eps"][primary]["p_value"]), r["by_eps"][primary]["p_value"]),
          cell(p_text(r["by_eps"][primary]["p_adjusted"]), r["by_eps"][primary]["p_adjusted"]),
          cell("**yes**" if r["by_eps"][primary]["significant"] else "no")] for r in rows])
    per_entry = table(
        "attack-entries",
        "Points broken beyond the protocol per entry attacked (summed over its seeds attacked), at every eps; "
        "beside each count, the points the protocol's worst case left robust there.",
        [column("attack", "attack", "l"), column("entry", "entry", "l"), column("seeds", "seeds", "l")]
        + [column(f"eps-{e}", f"eps={e}") for e in board["eps"]],
        [[cell(f"`{r['attack']}`", r["attack"]),
          cell(f"{x['defense']} (external model)" if x["external"] else x["defense"], x["defense"]),
          cell(", ".join(map(str, x["seeds"])))]
         + [cell(f"{x['points_beyond'][e]} of {x['protocol_robust'][e]}", x["points_beyond"][e]) for e in board["eps"]]
         for r in rows for x in r["entries"]])
    per_eps = table(
        "attack-eps",
        "Points broken beyond the protocol at every eps, summed over the entries attacked, with the Holm-adjusted p "
        "(over the attacks, at that eps); * marks a significant attack.",
        [column("attack", "attack", "l")] + [column(f"eps-{e}", f"eps={e}") for e in board["eps"]],
        [[cell(f"`{r['attack']}`", r["attack"])]
         + [cell(f"{r['by_eps'][e]['points_beyond']} (p={p_text(r['by_eps'][e]['p_adjusted'])})"
                 f"{'*' if r['by_eps'][e]['significant'] else ''}", r["by_eps"][e]["points_beyond"])
            for e in board["eps"]] for r in rows])
    lines = [f"`{r['attack']}` ({', '.join(r['sources'])}): run against "
             f"{count(len(r['entries']), 'entry', 'entries')}: {_entries_text(r)}; breaks "
             f"{count(r['by_eps'][primary]['points_beyond'], 'point')} beyond the protocol at eps={primary} "
             f"(Holm p {p_is(r['by_eps'][primary]['p_adjusted'])}: "
             + ("significant" if r["by_eps"][primary]["significant"] else f"not significant at {alpha}") + ")"
             for r in rows]
    return {
        "title": f"Submitted attacks: {board['track']} (protocol {p['id']} v{p['version']})",
        "sections": [
            section("summary", "Summary",
                    paragraph(f"Attacks submitted beside the protocol (docs/attacks.md), each run against the entries "
                              f"of the board [{p['id']}.md]({p['id']}.md) (web page: [{p['id']}.html]({p['id']}.html)) "
                              f"whose model was at hand, on the protocol's {p['n_examples']} test points. A point "
                              "counts as broken beyond the protocol when the protocol's worst case left it robust "
                              "(correct clean and robust under every attack column) and the attack broke it; other "
                              "submitted attacks do not count. The defenses' ranking stays the protocol's: this board "
                              "ranks the attacks."),
                    paragraph(f"Test: {board['test']}; {board['correction']}; alpha {alpha}. Rank: 1 + the number "
                              f"of attacks that break more points at eps={primary}, so equal counts share a rank. "
                              "An attack run against more entries has more points to break (the entries column).")),
            section("ranking", "Ranking", ranked, items(lines)),
            section("entries", "Per entry", per_entry),
            section("per-eps", "Per eps", per_eps),
        ],
    }


def has_attack_board(board: dict) -> bool:
    """Whether a board (`leaderboard.build.build_json`) has an attack board beside it: some entry
    has a best-known block, i.e. admitted attack records (`leaderboard.build.write_board` writes
    the attack board exactly then)."""
    return any(x.get("best_known") for x in board["entries"])


def attack_board_files(board: dict) -> dict[str, bytes]:
    """The attack board's files by suffix: its Markdown, its JSON and its web page, all three from
    its view (`board["view"]`)."""
    return {ATTACK_BOARD_MD: render_view(board["view"]).encode(), ATTACK_BOARD_JSON: dumps_json(board).encode(),
            ATTACK_BOARD_HTML: render_attack_board_page(board).encode()}
