"""The ranked table of the board page (`leaderboard.html`): one row per entry in rank order, every
cell carrying the number it shows as `data-value` (what the page's script sorts by), every
header a sort `<button>`; the evidence columns (worst case, worst class, flags) come first."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from leaderboard.flags import FLAG_DOCS, SANITY_FLAGS
from leaderboard.html_parts import esc, interval_html, safe_href, td
from leaderboard.markdown import flag_letter, seed_spread, worst_class_interval


@dataclass(frozen=True)
class Column:
    """One sortable column: its header label (HTML), how it sorts, and its cell (HTML content and value)."""

    label: str
    cell: Callable[[dict], tuple[str, object]]
    numeric: bool = True
    right: bool = True
    ascending_first: bool = False


def _defense(x: dict, anchor: str) -> str:
    link = safe_href(x["link"])
    name = f'<a href="{link}">{esc(x["defense"])}</a>' if link else esc(x["defense"])
    external = '<span class="ext">(external model)</span>' if x["external"] else ""
    return f'{name}<a class="more" href="#{esc(anchor)}">details</a>{external}'


def _flags(x: dict) -> str:
    return "".join(f'<abbr class="flagmark" title="{esc(n)}: {esc(FLAG_DOCS[n])}">{flag_letter(n)}</abbr>'
                   for n in SANITY_FLAGS if n in x["sanity_fired"]) or '<span class="muted">–</span>'


def _seeds(x: dict, primary: str) -> str:
    spread = seed_spread(x, primary)
    return f'{x["n_seeds"]}<span class="pm"> ({spread})</span>' if spread else "1"


def columns(board: dict, anchors: dict[str, str], tied: set[int]) -> list[Column]:
    """The table's columns; `tied` holds the ranks several entries share."""
    primary, names = board["primary_eps"], board["class_names"]

    def acc(value: float, interval: list[float]) -> tuple[str, object]:
        return interval_html(value, interval), value

    def worst(x: dict) -> tuple[str, object]:
        return f"<strong>{interval_html(x['worst_case'][primary], x['intervals']['worst_case'][primary])}</strong>", \
            x["worst_case"][primary]

    return [
        Column("rank", lambda x: (f'{x["rank"]}{"<span class=tie title=tied>=</span>" if x["rank"] in tied else ""}',
                                  x["rank"]), ascending_first=True),
        Column("defense", lambda x: (_defense(x, anchors[x["defense"]]), x["defense"]), numeric=False, right=False,
               ascending_first=True),
        Column("worst case (%)", worst),
        Column("worst class (%)", lambda x: (
            interval_html(*worst_class_interval(x, primary))
            + f'<span class="muted"> (class {esc(names[x["worst_class"][primary]])})</span>',
            x["worst_class_robust_acc"][primary])),
        Column("flags", lambda x: (_flags(x), len(x["sanity_fired"])), right=False),
        Column("clean (%)", lambda x: acc(x["clean_acc"], x["intervals"]["clean_acc"])),
        *(Column(f"{esc(a)} (%)", lambda x, a=a: acc(x["robust_acc"][a][primary],
                                                      x["intervals"]["robust_acc"][a][primary]))
          for a in board["attacks"]),
        Column("seeds", lambda x: (_seeds(x, primary), x["n_seeds"])),
        Column("median margin", lambda x: (f"{x['median_input_margin']:.4f}", x["median_input_margin"])),
        Column("fidelity", lambda x: (esc(x["fidelity"]), x["fidelity"]), numeric=False, right=False,
               ascending_first=True),
        Column("architecture", lambda x: (f"<code>{esc(x['architecture'])}</code>", x["architecture"]),
               numeric=False, right=False, ascending_first=True),
    ]


def _header(c: Column, sorted_by: bool) -> str:
    return (f'<th scope="col"{" class=num" if c.right else ""} data-type="{"num" if c.numeric else "text"}" '
            f'data-first="{"ascending" if c.ascending_first else "descending"}" '
            f'aria-sort="{"ascending" if sorted_by else "none"}"><button type="button" class="sort">{c.label}</button>'
            "</th>")


def _row(x: dict, order: int, cols: list[Column]) -> str:
    cells = "".join(td(*c.cell(x), "num" if c.right else "") for c in cols)
    return (f'<tr data-order="{order}" data-defense="{esc(x["defense"])}" '
            f'data-flagged="{1 if x["sanity_fired"] else 0}" data-fidelity="{esc(x["fidelity"])}" '
            f'data-architecture="{esc(x["architecture"])}">{cells}</tr>')


def ranked_table(board: dict, anchors: dict[str, str]) -> str:
    """The ranked table in rank order (the board's entry order), inside its own scroll box."""
    entries = board["entries"]
    ranks = [x["rank"] for x in entries]
    cols = columns(board, anchors, {r for r in ranks if ranks.count(r) > 1})
    heads = "".join(_header(c, i == 0) for i, c in enumerate(cols))
    rows = "".join(_row(x, i, cols) for i, x in enumerate(entries))
    caption = (f"Defenses ranked by worst-case robust accuracy at eps={esc(board['primary_eps'])} "
               f"({esc(board['protocol']['norm'])}). Accuracies in %, ± half the 95% interval; robust columns at the "
               "primary eps. Sort by any column.")
    return (f'<div class="table-wrap"><table class="board" id="board-table">'
            f'<caption><span class="cap">{caption}</span></caption>'
            f"<thead><tr>{heads}</tr></thead><tbody>{rows}</tbody></table>"
            '<p class="empty" id="filter-empty" hidden>No entry matches the filters.</p></div>')
