"""The leaderboard as web pages: one self-contained HTML page per board and an index of boards.

Pure and byte-deterministic: the same board and records give the same bytes (records in any
order, the board's keys in any order); no I/O, no clock. Every string from a record is escaped;
CSS, script and charts (SVG) are inline, and nothing is loaded from the network. The page is
complete without JavaScript (the table is static, in rank order, and holds every number); the
script sorts, filters and searches the table (`leaderboard.html_assets`).
"""
from __future__ import annotations

import re
from fractions import Fraction

from leaderboard.flags import FLAG_DOCS, SANITY_FLAGS
from leaderboard.html_assets import JS
from leaderboard.html_detail import render_detail
from leaderboard.html_parts import (
    definition_list,
    esc,
    interval_html,
    page,
    path_href,
    simple_table,
)
from leaderboard.html_table import ranked_table
from leaderboard.markdown import flag_letter, p_text, pct, render_markdown


def _anchors(entries: list[dict]) -> dict[str, str]:
    """A unique, readable element id per defense: `detail-<defense>`."""
    anchors: dict[str, str] = {}
    for x in entries:
        base = "detail-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", x["defense"]).strip("-") or "entry")
        anchor, k = base, 2
        while anchor in anchors.values():
            anchor, k = f"{base}-{k}", k + 1
        anchors[x["defense"]] = anchor
    return anchors


def _select(ident: str, label: str, values: list[str]) -> str:
    options = "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in values)
    return (f'<div class="control"><label for="{ident}">{label}</label>'
            f'<select id="{ident}"><option value="">all</option>{options}</select></div>')


def _filters(entries: list[dict]) -> str:
    return (
        '<div class="filters" id="filters" hidden>'
        '<div class="control"><label for="filter-search">Search defense</label>'
        '<input type="search" id="filter-search" placeholder="e.g. trades" autocomplete="off"></div>'
        + _select("filter-fidelity", "Fidelity", sorted({x["fidelity"] for x in entries}))
        + _select("filter-architecture", "Architecture", sorted({x["architecture"] for x in entries}))
        + '<div class="control check"><input type="checkbox" id="filter-flagged">'
          '<label for="filter-flagged">Hide flagged entries</label></div>'
          '<p class="status" id="filter-status" aria-live="polite"></p></div>'
    )


def _flag_legend() -> str:
    items = " ".join(f'<span class="item"><abbr class="flagmark" title="{esc(FLAG_DOCS[n])}">{flag_letter(n)}</abbr>'
                     f"<code>{esc(n)}</code></span>" for n in SANITY_FLAGS)
    return f'<p class="flag-legend">Flags (explained in each entry\'s panel and below): {items}</p>'


def _per_eps_table(board: dict) -> str:
    eps = board["eps"]
    rows = [[f"{x['rank']} · {esc(x['defense'])}", pct(x["clean_acc"])]
            + [interval_html(x["worst_case"][e], x["intervals"]["worst_case"][e]) for e in eps]
            for x in board["entries"]]
    return simple_table("Worst-case robust accuracy (%) per eps, ± half the 95% interval",
                        ["rank · defense", "clean"] + [f"eps={e}" for e in eps], rows, cls="data per-eps")


def _certified_table(board: dict) -> str:
    certified = [x for x in board["entries"] if x["certified_l2"]]
    if not certified:
        return ""
    radii = sorted(certified[0]["certified_l2"], key=Fraction)
    rows = [[f"{x['rank']} · {esc(x['defense'])}"]
            + [f"{pct(x['certified_l2'][r]['certified'])} / {pct(x['certified_l2'][r]['pgd_l2'])}" for r in radii]
            for x in certified]
    return ('<section id="certified"><h2>Certified L2 accuracy</h2>'
            + simple_table("LipLT-certified L2 accuracy / L2-PGD robust accuracy (%) per radius",
                           ["rank · defense"] + [f"r={r}" for r in radii], rows) + "</section>")


def _significance(board: dict) -> str:
    order = [x["defense"] for x in board["entries"]]
    pairs = {(r["a"], r["b"]): r for r in board["significance"]}

    def cell(a: str, b: str) -> str:
        if a == b:
            return '<td class="diag">–</td>'
        row = pairs.get((a, b)) or pairs[(b, a)]
        sign = 1 if (a, b) in pairs else -1
        effect, low, high = (sign * row["effect"], *sorted((sign * row["low"], sign * row["high"])))
        p = p_text(row["p_adjusted"])
        text = f"{effect * 100:+.1f} (p{'' if p.startswith('<') else '='}{p}){'*' if row['significant'] else ''}"
        klass = ("better" if effect > 0 else "worse") if row["significant"] else "none"
        tip = (f"{a} minus {b}: {effect * 100:+.1f} points (95% interval {low * 100:+.1f} to {high * 100:+.1f}); "
               f"p = {p_text(row['p_value'])}, Holm-adjusted p = {p_text(row['p_adjusted'])}")
        text = f"<strong>{esc(text)}</strong>" if row["significant"] else esc(text)
        return f'<td class="num {klass}" title="{esc(tip)}">{text}</td>'

    head = "".join(f'<th scope="col" class="num">{esc(b)}</th>' for b in order)
    body = "".join(f'<tr><th scope="row">{esc(a)}</th>{"".join(cell(a, b) for b in order)}</tr>' for a in order)
    return ('<div class="table-wrap"><table class="significance"><caption><span class="cap">Row minus column, in '
            "points, with the Holm-adjusted p-value; * and bold: significant</span></caption>"
            f'<thead><tr><th scope="col">row \\ column</th>'
            f"{head}</tr></thead><tbody>{body}</tbody></table></div>"
            '<p class="legend-line"><span class="key better">row significantly better</span>'
            '<span class="key worse">row significantly worse</span><span class="key">no significant difference</span>'
            "</p>")


def _inline_markdown(text: str) -> str:
    """The Markdown board's inline marks as HTML: `code` and *emphasis*, everything escaped."""
    parts = text.split("`")
    return "".join(f"<code>{esc(part)}</code>" if i % 2 else re.sub(r"\*([^*]+)\*", r"<em>\1</em>", esc(part))
                   for i, part in enumerate(parts))


def _how_to_read(board: dict) -> str:
    """The Markdown board's "How to read this board" section, as HTML (the same text)."""
    text = render_markdown(board).split("## How to read this board\n", 1)[1].strip()
    return "".join(f"<p>{_inline_markdown(par)}</p>" for par in text.split("\n\n"))


def _protocol(board: dict, record: dict) -> str:
    p = board["protocol"]
    groups = record["attack_groups"]
    rows = [[f"<code>{esc(a)}</code>", "group: worst case of " + ", ".join(f"<code>{esc(m)}</code>" for m in groups[a])
             if a in groups else f"<code>{esc(record['attacks'][a])}</code>"] for a in board["attacks"]]
    facts = [("track", esc(board["track"])), ("protocol", f"<code>{esc(p['id'])}</code> version {p['version']}"),
             ("sha256", f"<code>{esc(p['sha256'])}</code>"), ("threat model", esc(p["norm"])),
             ("eps", ", ".join(esc(e) for e in board["eps"])), ("primary eps", esc(board["primary_eps"])),
             ("test points", str(p["n_examples"])), ("classes", ", ".join(esc(c) for c in board["class_names"]))]
    return (definition_list(facts)
            + simple_table("Attack columns and groups; a point is robust in the worst case only if it survives "
                           "every column", ["attack", "configuration"], rows, numeric_from=2))


def render_board_page(board: dict, records: list[dict]) -> str:
    """One board (`leaderboard.build.build_json`) as a self-contained HTML page.

    `records` are the records the board was built from (any order): they give each entry's
    confusion matrix, margins, training and provenance, and the links to the record files
    (`../records/<protocol>/`). Deterministic: the same inputs give the same bytes.
    """
    p, stats, entries = board["protocol"], board["statistics"], board["entries"]
    records = sorted(records, key=lambda r: (r["defense"]["id"], r["seed"]))
    anchors = _anchors(entries)
    details = "".join(render_detail(board, x, [r for r in records if r["defense"]["id"] == x["defense"]],
                                    anchors[x["defense"]]) for x in entries)
    title = f"Leaderboard: {board['track']} (protocol {p['id']} v{p['version']})"
    ident = p["id"]
    body = f"""<header>
<h1>{esc(title)}</h1>
<p class="subtitle">{len(entries)} entries · {esc(p['norm'])} threat model · ranked at eps={esc(board['primary_eps'])} \
· {p['n_examples']} test points</p>
<nav class="toc" aria-label="Sections"><a href="index.html">All boards</a><a href="#ranking">Ranking</a>\
<a href="#per-eps">Per eps</a><a href="#details">Entries in detail</a><a href="#significance">Significance</a>\
<a href="#protocol">Protocol</a><a href="#how-to-read">How to read</a>\
<a href="{path_href(ident + '.json')}">JSON</a><a href="{path_href(ident + '.md')}">Markdown</a></nav>
</header>
<main>
<section id="ranking" aria-labelledby="ranking-title"><h2 id="ranking-title">Ranking</h2>
{_filters(entries)}
{ranked_table(board, anchors)}
{_flag_legend()}
<p>Accuracies in % of the protocol's {p['n_examples']} test points with their 95% interval (± half its width, in \
points): {esc(stats['interval'])}. Each number is the mean over the defense's seeds. Training variance: \
{esc(stats['training_variance'])}.</p>
<p>Evaluation: {esc(stats['evaluation'])}; every record of this board was made so.</p>
<p><strong>Ranks.</strong> {esc(stats['rank_rule'].capitalize())}: {esc(stats['comparison'])}, \
{esc(stats['correction'])}, alpha {stats['alpha']}. Rows are ordered by worst-case accuracy, then clean accuracy, \
then id.</p>
</section>
<section id="per-eps"><h2>Worst-case robust accuracy per eps</h2>
{_per_eps_table(board)}
</section>
{_certified_table(board)}
<section id="details"><h2>Entries in detail</h2>
<p>Open an entry for its robust accuracy against eps per attack, its per-class accuracy, flags, recipe and, per \
seed, the confusion matrix, margins, provenance and links to the record files.</p>
{details}
</section>
<section id="significance"><h2>Significance of every pair</h2>
<p>Row minus column: the difference in worst-case robust accuracy at eps={esc(board['primary_eps'])} in points \
and the Holm-adjusted p-value ({esc(stats['comparison'])}).</p>
{_significance(board)}
</section>
<section id="protocol"><h2>Protocol</h2>
{_protocol(board, records[0])}
</section>
<section id="how-to-read"><h2>How to read this board</h2>
{_how_to_read(board)}
{definition_list([(k.replace('_', ' '), esc(stats[k])) for k in ('interval', 'comparison', 'correction', 'alpha',
                                                                 'rank_rule', 'training_variance', 'evaluation')])}
</section>
</main>
<footer>Built by atbench from the records in <code>leaderboard/records/{esc(ident)}/</code>: every number is \
re-derived from their per-example flags. Board data: <a href="{path_href(ident + '.json')}">{esc(ident)}.json</a>.\
</footer>"""
    return page(title, body, JS)


def render_index(boards: list[tuple[dict, str]]) -> str:
    """The index page of boards, each given as (board JSON, date text): track, protocol id and
    version, date, number of entries and the leader, with a link to `<protocol>.html`; sorted by
    protocol id (then version)."""
    rows = []
    for board, date in sorted(boards, key=lambda b: (b[0]["protocol"]["id"], b[0]["protocol"]["version"])):
        p, entries = board["protocol"], board["entries"]
        leader = entries[0] if entries else None
        top = (f"{esc(leader['defense'])} ({pct(leader['worst_case'][board['primary_eps']])}%)" if leader else "–")
        rows.append([f'<a href="{path_href(p["id"] + ".html")}">{esc(p["id"])}</a>', esc(board["track"]),
                     str(p["version"]), esc(date), str(len(entries)), top])
    table = simple_table("Every board: one per protocol version", ["protocol", "track", "version", "date", "entries",
                                                                   "leader (worst case at the primary eps)"],
                         rows, numeric_from=6, cls="data index")
    body = ("<header><h1>atbench leaderboards</h1><p class=\"subtitle\">Adversarial-training defenses, one board per "
            "evaluation protocol</p></header>\n<main>\n" + table + "\n</main>")
    return page("atbench leaderboards", body)

