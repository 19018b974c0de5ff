"""The Markdown form of a board: its view (`leaderboard.view`) written as GitHub Markdown. Every
sentence and cell comes from the view; this module only lays them out."""
from __future__ import annotations

from tabulate import tabulate

from leaderboard.view import board_view


def table(headers: list[str], rows: list[list[str]], align: str) -> str:
    """A GitHub table; `align` has one letter per column: l(eft) or r(ight)."""
    colalign = ["left" if a == "l" else "right" for a in align]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True, colalign=colalign)


def _cell(text: str) -> str:
    """Text safe inside a table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _block(block: dict) -> list[str]:
    kind = block["kind"]
    if kind == "paragraph":
        return [block["text"]]
    if kind == "items":
        return ["\n".join(f"- {text}" for text in block["items"])]
    if kind == "image":
        return [f"![{block['alt']}]({block['src']})"]
    columns = block["columns"]
    rows = [[_cell(c["text"]) for c in row] for row in block["rows"]]
    return [f"Table: {block['caption']}", table([c["label"] for c in columns], rows,
                  "".join(c["align"] for c in columns))]


def render_view(view: dict) -> str:
    """A board view as Markdown: the title, then each section's heading and blocks."""
    parts = [f"# {view['title']}"]
    for section in view["sections"]:
        parts.append(f"## {section['title']}")
        for block in section["blocks"]:
            parts.extend(_block(block))
    return "\n\n".join(parts) + "\n"


def render_markdown(board: dict) -> str:
    """The Markdown form of a JSON board (`leaderboard.build.build_json`)."""
    return render_view(board_view(board))
