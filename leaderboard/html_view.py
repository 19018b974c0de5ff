"""The board view's blocks (`leaderboard.view`) as HTML: paragraphs, bullet items, images and
tables, with the view's inline marks (`code`, *emphasis*, **strong**, [links](target)) as HTML
elements and every other character escaped."""
from __future__ import annotations

import re

from leaderboard.html_parts import esc, safe_href

_INLINE = re.compile(r"`([^`]*)`|\*\*(.+?)\*\*|\*([^*]+)\*|\[([^\]]+)\]\(([^)\s]+)\)")
#: An accuracy with its interval, as `leaderboard.formats.with_interval` writes it.
_INTERVAL = re.compile(r"^(-?\d+\.\d+) (±\d+\.\d+)(.*)$")


def _href(target: str) -> str | None:
    """A link target: http(s) (`safe_href`) or a relative path; None for any other scheme."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", target):
        return safe_href(target)
    return esc(target)


def inline_html(text: str) -> str:
    """View text with its inline marks as HTML elements, everything else escaped."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(esc(text[pos:m.start()]))
        code, strong, emphasis, label, target = m.groups()
        if code is not None:
            out.append(f"<code>{esc(code)}</code>")
        elif strong is not None:
            out.append(f"<strong>{inline_html(strong)}</strong>")
        elif emphasis is not None:
            out.append(f"<em>{esc(emphasis)}</em>")
        else:
            href = _href(target)
            out.append(f'<a href="{href}">{esc(label)}</a>' if href else esc(label))
        pos = m.end()
    out.append(esc(text[pos:]))
    return "".join(out)


def cell_html(text: str) -> str:
    """A cell's text as HTML; an accuracy's `± half-width` is set in muted type."""
    m = _INTERVAL.match(text)
    if m:
        return f'{m.group(1)}<span class="pm"> {m.group(2)}</span>{inline_html(m.group(3))}'
    return inline_html(text)


def table_html(block: dict, prefix: str = "") -> str:
    """A view table as a scrollable HTML table, with the element id `<prefix>table-<its id>` (a
    prefix keeps the ids of a table shown once per entry apart): the first cell of a row is its
    header; a cell's tone and title become its class and tooltip, its value `data-value`."""
    columns = block["columns"]

    def num(c: dict) -> str:
        return " num" if c["align"] == "r" else ""

    head = "".join(f'<th scope="col" class="col-{esc(c["id"])}{num(c)}">{esc(c["label"])}</th>' for c in columns)
    rows = []
    for row in block["rows"]:
        cells = []
        for i, (c, value) in enumerate(zip(columns, row)):
            attrs = f' class="{(num(c) + " " + value.get("tone", "")).strip()}"' if (num(c) or "tone" in value) else ""
            attrs += f' title="{esc(value["title"])}"' if "title" in value else ""
            attrs += f' data-value="{esc(value["value"])}"' if "value" in value else ""
            content = cell_html(value["text"])
            if value.get("tone") in ("better", "worse"):
                content = f"<strong>{content}</strong>"
            cells.append(f'<th scope="row"{attrs}>{content}</th>' if i == 0 else f"<td{attrs}>{content}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="table-wrap"><table class="data {esc(block["id"])}" id="{esc(prefix)}table-{esc(block["id"])}">'
            f'<caption><span class="cap">{esc(block["caption"])}</span></caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


def block_html(block: dict, prefix: str = "") -> str:
    """One view block as HTML; a table's element id starts with `prefix` (`table_html`)."""
    kind = block["kind"]
    if kind == "paragraph":
        return f"<p>{inline_html(block['text'])}</p>"
    if kind == "items":
        return "<ul>" + "".join(f"<li>{inline_html(t)}</li>" for t in block["items"]) + "</ul>"
    if kind == "image":
        return f'<p>Chart: <a href="{esc(block["src"])}">{esc(block["alt"])}</a> (PNG)</p>'
    return table_html(block, prefix)


def section_html(section: dict, before: str = "", after: str = "") -> str:
    """A view section as `<section id=...>` with its heading and blocks; `before` and `after`
    are page-only HTML placed around the blocks."""
    body = "\n".join(block_html(b) for b in section["blocks"])
    return (f'<section id="{esc(section["id"])}"><h2>{esc(section["title"])}</h2>{before}{body}{after}'
            "</section>")


