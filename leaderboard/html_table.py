"""The ranked table of the board page (`leaderboard.html`): the view's ranked table
(`leaderboard.view_tables.ranked_table`) with a sort `<button>` in every header and each cell's
number as `data-value` (what the page's script sorts by); the defense cell links to its panel."""
from __future__ import annotations

from leaderboard.html_parts import esc
from leaderboard.html_view import cell_html

#: Columns sorted ascending on the first click (the others descending) and sorted as text.
_ASCENDING_FIRST = ("rank", "defense", "loss-fidelity", "recipe", "architecture", "flags")
_TEXT = ("defense", "loss-fidelity", "recipe", "architecture", "overrides")


def _header(c: dict, sorted_by: bool) -> str:
    first = "ascending" if c["id"] in _ASCENDING_FIRST else "descending"
    kind = "text" if c["id"] in _TEXT else "num"
    return (f'<th scope="col" class="col-{esc(c["id"])}{" num" if c["align"] == "r" else ""}" data-type="{kind}" '
            f'data-first="{first}" aria-sort="{"ascending" if sorted_by else "none"}">'
            f'<button type="button" class="sort">{esc(c["label"])}</button></th>')


def _cell(column: dict, cell: dict, x: dict, anchor: str, tied: bool) -> str:
    content = cell_html(cell["text"])
    if column["id"] == "rank" and tied:
        content += "<span class=tie title=tied>=</span>"
    if column["id"] == "defense":
        content += f'<a class="more" href="#{esc(anchor)}">details</a>'
    value = f' data-value="{esc(cell["value"])}"' if "value" in cell else ""
    return f'<td{" class=num" if column["align"] == "r" else ""}{value}>{content}</td>'


def ranked_table(board: dict, table: dict, anchors: dict[str, str]) -> str:
    """The view's ranked `table` of `board` in rank order, inside its own scroll box; `anchors`
    are the entries' panel ids."""
    entries, columns = board["entries"], table["columns"]
    ranks = [x["rank"] for x in entries]
    heads = "".join(_header(c, i == 0) for i, c in enumerate(columns))
    rows = "".join(
        f'<tr data-order="{i}" data-defense="{esc(x["defense"])}" data-flagged="{1 if x["sanity_fired"] else 0}" '
        f'data-fidelity="{esc(x["fidelity"]["loss"])}" data-architecture="{esc(x["architecture"])}">'
        + "".join(_cell(c, cell, x, anchors[x["defense"]], ranks.count(x["rank"]) > 1) for c, cell in zip(columns, row))
        + "</tr>"
        for i, (x, row) in enumerate(zip(entries, table["rows"])))
    return (f'<div class="table-wrap"><table class="board" id="board-table">'
            f'<caption><span class="cap">{esc(table["caption"])} Sort by any column.</span></caption>'
            f"<thead><tr>{heads}</tr></thead><tbody>{rows}</tbody></table>"
            '<p class="empty" id="filter-empty" hidden>No entry matches the filters.</p></div>')
