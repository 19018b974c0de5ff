"""The leaderboard as web pages: one self-contained HTML page per board and an index of boards.

Pure and byte-deterministic: the same board and records give the same bytes (records in any
order, the board's keys in any order); no I/O, no clock. Every string from a record is escaped;
CSS, script and charts (SVG) are inline, and nothing is loaded from the network. The page is
complete without JavaScript (the table is static, in rank order, and holds every number); the
script sorts, filters and searches the table (`leaderboard.html_assets`).
"""
from __future__ import annotations

import re

from leaderboard.attack_board import ATTACK_BOARD_HTML, has_attack_board
from leaderboard.flags import FLAG_DOCS, SANITY_FLAGS
from leaderboard.formats import pct
from leaderboard.html_assets import JS
from leaderboard.html_detail import render_detail
from leaderboard.html_parts import (
    definition_list,
    esc,
    page,
    path_href,
    simple_table,
)
from leaderboard.html_table import ranked_table
from leaderboard.html_view import block_html, section_html
from leaderboard.view import board_view
from leaderboard.view_tables import flag_letter


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
        + _select("filter-fidelity", "Loss fidelity", sorted({x["fidelity"]["loss"] for x in entries}))
        + _select("filter-architecture", "Architecture", sorted({x["architecture"] for x in entries}))
        + '<div class="control check"><input type="checkbox" id="filter-flagged">'
          '<label for="filter-flagged">Hide flagged entries</label></div>'
          '<p class="status" id="filter-status" aria-live="polite"></p></div>'
    )


def _flag_legend() -> str:
    items = " ".join(f'<span class="item"><abbr class="flagmark" title="{esc(FLAG_DOCS[n])}">{flag_letter(n)}</abbr>'
                     f"<code>{esc(n)}</code></span>" for n in SANITY_FLAGS)
    return f'<p class="flag-legend">Flags (explained in each entry\'s panel and below): {items}</p>'


_SIGNIFICANCE_LEGEND = ('<p class="legend-line"><span class="key better">row significantly better</span>'
                        '<span class="key worse">row significantly worse</span>'
                        '<span class="key">no significant difference</span></p>')


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


def _ranking(board: dict, section: dict, anchors: dict[str, str]) -> str:
    """The view's ranking section with the page's filters, sortable table and flag legend."""
    table, rest = section["blocks"][0], section["blocks"][1:]
    return (f'<section id="ranking" aria-labelledby="ranking-title"><h2 id="ranking-title">{esc(section["title"])}'
            f"</h2>{_filters(board['entries'])}{ranked_table(board, table, anchors)}{_flag_legend()}"
            + "".join(block_html(b) for b in rest) + "</section>")


def render_board_page(board: dict, records: list[dict]) -> str:
    """One board (`leaderboard.build.build_json`) as a self-contained HTML page: the sections of its
    view (`leaderboard.view`), the same sentences and cells as the Markdown board, with the page's
    own layout: filters, a sortable table, a panel per entry and the protocol's facts.

    `records` are the records the board was built from (any order): they give each entry's
    confusion matrix, margins, training and provenance, and the links to the record files
    (`../records/<protocol>/`). Deterministic: the same inputs give the same bytes.
    """
    p, stats, entries = board["protocol"], board["statistics"], board["entries"]
    view = board_view(board)
    records = sorted(records, key=lambda r: (r["defense"]["id"], r["seed"]))
    anchors = _anchors(entries)
    details = "".join(render_detail(board, x, [r for r in records if r["defense"]["id"] == x["defense"]],
                                    anchors[x["defense"]]) for x in entries)
    ident = p["id"]
    sections = []
    for section in view["sections"]:
        if section["id"] == "summary":
            continue
        if section["id"] == "ranking":
            sections.append(_ranking(board, section, anchors))
        elif section["id"] == "significance":
            sections.append(section_html(section, after=_SIGNIFICANCE_LEGEND))
        elif section["id"] == "how-to-read":
            sections.append(section_html(section, after=definition_list(
                [(k.replace("_", " "), esc(stats[k])) for k in ("interval", "comparison", "correction", "alpha",
                                                                "rank_rule", "training_variance", "evaluation")])))
        else:
            sections.append(section_html(section))
        if section["id"] == "classwise":
            sections.append('<section id="details"><h2>Entries in detail</h2><p>Open an entry for its robust '
                            "accuracy against eps per attack, its per-class accuracy, flags, recipe and, per seed, the "
                            "confusion matrix, margins, provenance and links to the record files.</p>"
                            f"{details}</section>"
                            f'<section id="protocol"><h2>Protocol</h2>{_protocol(board, records[0])}</section>')
    summary = "".join(block_html(b) for b in view["sections"][0]["blocks"])
    nav = "".join(f'<a href="#{esc(s["id"])}">{esc(s["title"])}</a>' for s in view["sections"][1:])
    attacks = _attack_board_link(board, "Attack board")
    body = f"""<header>
<h1>{esc(view['title'])}</h1>
<p class="subtitle">{len(entries)} entries · {esc(p['norm'])} threat model · ranked at eps={esc(board['primary_eps'])} \
· {p['n_examples']} test points</p>
<nav class="toc" aria-label="Sections"><a href="index.html">All boards</a>{nav}<a href="#details">Entries in detail</a>\
<a href="#protocol">Protocol</a>{attacks}<a href="{path_href(ident + '.json')}">JSON</a>\
<a href="{path_href(ident + '.md')}">Markdown</a></nav>
{summary}
</header>
<main>
{"".join(sections)}
</main>
<footer>Built by atbench from the records in <code>leaderboard/records/{esc(ident)}/</code>: every number is \
re-derived from their per-example flags. Board data: <a href="{path_href(ident + '.json')}">{esc(ident)}.json</a>.\
</footer>"""
    return page(view["title"], body, JS)


def _attack_board_link(board: dict, label: str) -> str:
    """A link labelled `label` to the board's attack board page, or "" when it has none
    (`leaderboard.attack_board.has_attack_board`)."""
    if not has_attack_board(board):
        return ""
    return f'<a href="{path_href(board["protocol"]["id"] + ATTACK_BOARD_HTML)}">{esc(label)}</a>'


def _files(board: dict) -> str:
    """Links to a board's other files: its Markdown and JSON, and its attack board's web page when
    it has one."""
    ident = board["protocol"]["id"]
    links = [f'<a href="{path_href(ident + ".md")}">Markdown</a>', f'<a href="{path_href(ident + ".json")}">JSON</a>',
             _attack_board_link(board, "attack board")]
    return " · ".join(link for link in links if link)


def render_index(boards: list[tuple[dict, str]]) -> str:
    """The index page of boards, each given as (board JSON, date text): track, protocol id and
    version, date, number of entries, the leader, with a link to `<protocol>.html`, and links to
    the board's other files (its attack board's page among them when it has one); sorted by
    protocol id (then version)."""
    rows = []
    for board, date in sorted(boards, key=lambda b: (b[0]["protocol"]["id"], b[0]["protocol"]["version"])):
        p, entries = board["protocol"], board["entries"]
        leader = entries[0] if entries else None
        top = (f"{esc(leader['defense'])} ({pct(leader['worst_case'][board['primary_eps']])}%)" if leader else "–")
        rows.append([f'<a href="{path_href(p["id"] + ".html")}">{esc(p["id"])}</a>', esc(board["track"]),
                     str(p["version"]), esc(date), str(len(entries)), top, _files(board)])
    table = simple_table("Every board: one per protocol version", ["protocol", "track", "version", "date", "entries",
                                                                   "leader (worst case at the primary eps)", "files"],
                         rows, numeric_from=7, cls="data index")
    body = ("<header><h1>atbench leaderboards</h1><p class=\"subtitle\">Adversarial-training defenses, one board per "
            "evaluation protocol</p></header>\n<main>\n" + table + "\n</main>")
    return page("atbench leaderboards", body)

