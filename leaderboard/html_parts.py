"""Small HTML building blocks shared by the board page and the index (`leaderboard.html`):
escaping, number formats, cells, tables and the page shell. Pure string functions."""
from __future__ import annotations

from html import escape
from urllib.parse import quote

from leaderboard.html_assets import CSS
from leaderboard.formats import pct, with_interval


def esc(value: object) -> str:
    """Any value as text safe in HTML content and in double-quoted attributes."""
    return escape(str(value), quote=True)


def num(x: float) -> str:
    """A plain (non-percentage) number with four significant digits."""
    return f"{x:.4g}"


def interval_html(value: float, interval: list[float]) -> str:
    """`73.50 ±6.1` (`leaderboard.markdown.with_interval`) with the half-width set in muted type."""
    main, half = with_interval(value, interval).split(" ", 1)
    return f'{main}<span class="pm"> {half}</span>'


def interval_range(interval: list[float]) -> str:
    """The interval itself in %, for tooltips: `70.12 to 76.88`."""
    return f"{pct(interval[0])} to {pct(interval[1])}"


def safe_href(link: str) -> str | None:
    """An http(s) link escaped for an attribute; None for anything else (no javascript: URLs)."""
    if not link.startswith(("https://", "http://")):
        return None
    return esc(link.replace(" ", "%20"))


def path_href(*parts: str) -> str:
    """A relative link from path segments, each percent-encoded."""
    return esc("/".join(p if p == ".." else quote(p, safe="") for p in parts))


def td(content: str, value: object | None = None, cls: str = "") -> str:
    """A table cell; `value` becomes its `data-value` (what the page sorts by)."""
    data = f' data-value="{esc(value)}"' if value is not None else ""
    klass = f' class="{cls}"' if cls else ""
    return f"<td{klass}{data}>{content}</td>"


def simple_table(caption: str, headers: list[str], rows: list[list[str]], numeric_from: int = 1,
                 cls: str = "data") -> str:
    """A scrollable table of escaped-or-built cells: `headers` are text, row cells HTML; columns
    from `numeric_from` on are right-aligned; the first cell of a row is its header."""
    head = "".join(f'<th scope="col"{" class=num" if i >= numeric_from else ""}>{esc(h)}</th>'
                   for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<th scope="row">{c}</th>' if i == 0 else
                                    f'<td{" class=num" if i >= numeric_from else ""}>{c}</td>'
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return (f'<div class="table-wrap"><table class="{cls}"><caption><span class="cap">{caption}</span></caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")


def definition_list(items: list[tuple[str, str]]) -> str:
    """A `<dl>` of (term text, description HTML) pairs."""
    return '<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def page(title: str, body: str, script: str = "") -> str:
    """A complete, self-contained HTML document: inline CSS, optional inline script, nothing remote."""
    js = f"<script>{script}</script>" if script else ""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="generator" content="atbench">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n{js}\n</body>\n</html>\n"
    )
