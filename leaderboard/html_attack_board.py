"""The attack board as a web page, `<protocol>.attacks.html`: the attack board's view
(`leaderboard.attack_board.attack_board_view`, carried by its JSON under "view"), the same
sentences and cells as its Markdown, laid out with the board page's parts (`leaderboard.html_view`,
`leaderboard.html_parts`). Pure and byte-deterministic; self-contained (inline CSS, no script,
nothing loaded from the network)."""
from __future__ import annotations

from leaderboard.formats import count
from leaderboard.html_parts import esc, page, path_href
from leaderboard.html_view import block_html, section_html


def render_attack_board_page(board: dict) -> str:
    """An attack board (`leaderboard.attack_board.build_attack_board`, with its view under "view")
    as a self-contained HTML page: the view's summary under the title, then its sections; the
    navigation links the boards' index, the board of entries and the attack board's other files."""
    view, p = board["view"], board["protocol"]
    ident = p["id"]
    summary = "".join(block_html(b) for b in view["sections"][0]["blocks"])
    nav = "".join(f'<a href="#{esc(s["id"])}">{esc(s["title"])}</a>' for s in view["sections"][1:])
    links = (f'<a href="{path_href(ident + ".html")}">The board</a>{nav}'
             f'<a href="{path_href(ident + ".attacks.json")}">JSON</a>'
             f'<a href="{path_href(ident + ".attacks.md")}">Markdown</a>')
    body = f"""<header>
<h1>{esc(view['title'])}</h1>
<p class="subtitle">{count(len(board['attacks']), 'submitted attack')} · {esc(p['norm'])} threat model · ranked at \
eps={esc(board['primary_eps'])} · {p['n_examples']} test points</p>
<nav class="toc" aria-label="Sections"><a href="index.html">All boards</a>{links}</nav>
{summary}
</header>
<main>
{"".join(section_html(s) for s in view["sections"][1:])}
</main>
<footer>Built by atbench from the attack records in <code>leaderboard/attack_records/{esc(ident)}/</code>, each \
admitted against the board's records. Attack board data: <a href="{path_href(ident + '.attacks.json')}">\
{esc(ident)}.attacks.json</a>.</footer>"""
    return page(view["title"], body)
