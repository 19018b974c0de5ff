"""The web page of a board (`leaderboard.html`), without a browser: deterministic bytes, the
board's numbers, nothing remote, everything escaped, the index, the static rank order."""
from __future__ import annotations

import json
import re
from html import unescape
from html.parser import HTMLParser

import pytest

from leaderboard.html import render_board_page, render_index
from leaderboard.formats import class_list, pct, with_interval
from leaderboard.markdown import render_markdown
from tests.html_fixtures import fixture_board

pytestmark = pytest.mark.unit


class _Tables(HTMLParser):
    """Every table of a page: per table its attributes and rows, per row its attributes and
    cells, per cell its attributes and text content."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict] = []
        self._stack: list[dict] = []
        self._cell: dict | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self._stack.append({"attrs": dict(attrs), "rows": [], "section": None})
            self.tables.append(self._stack[-1])
        elif self._stack and tag in ("thead", "tbody"):
            self._stack[-1]["section"] = tag
        elif self._stack and tag == "tr":
            self._stack[-1]["rows"].append({"attrs": dict(attrs), "cells": [], "section": self._stack[-1]["section"]})
        elif self._stack and tag in ("td", "th"):
            self._cell = {"tag": tag, "attrs": dict(attrs), "text": ""}
            self._stack[-1]["rows"][-1]["cells"].append(self._cell)

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._stack.pop()
        elif tag in ("td", "th"):
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell["text"] += data


def tables(page: str) -> list[dict]:
    parser = _Tables()
    parser.feed(page)
    return parser.tables


def body_rows(table: dict) -> list[dict]:
    return [r for r in table["rows"] if r["section"] == "tbody"]


def table_with(page: str, **attrs: str) -> dict:
    return next(t for t in tables(page) if all(t["attrs"].get(k) == v for k, v in attrs.items()))


@pytest.fixture(scope="module")
def built() -> tuple[dict, list[dict], str]:
    board, records = fixture_board()
    return board, records, render_board_page(board, records)


def test_same_inputs_give_the_same_bytes(built):
    board, records, page = built
    assert render_board_page(board, records) == page
    assert render_board_page(board, list(reversed(records))) == page
    reloaded = json.loads(json.dumps(board, sort_keys=True))
    assert render_board_page(reloaded, [json.loads(json.dumps(r, sort_keys=True)) for r in records]) == page


def test_the_static_table_is_in_rank_order_with_tied_ranks(built):
    board, _, page = built
    rows = body_rows(table_with(page, id="board-table"))
    assert [r["attrs"]["data-defense"] for r in rows] == [x["defense"] for x in board["entries"]]
    assert [int(r["cells"][0]["attrs"]["data-value"]) for r in rows] == [x["rank"] for x in board["entries"]]
    ranks = [x["rank"] for x in board["entries"]]
    assert len(set(ranks)) < len(ranks), "the fixture board has a tie"
    for row, x in zip(rows, board["entries"]):
        assert row["cells"][0]["text"] == (f"{x['rank']}=" if ranks.count(x["rank"]) > 1 else str(x["rank"]))


def test_every_table_number_is_the_boards(built):
    board, _, page = built
    primary, attacks = board["primary_eps"], board["attacks"]
    rows = body_rows(table_with(page, id="board-table"))
    heads = [c["text"] for c in table_with(page, id="board-table")["rows"][0]["cells"]]
    for row, x in zip(rows, board["entries"]):
        cell, ci = dict(zip(heads, row["cells"])), x["intervals"]
        expected = ({"clean (%)": (x["clean_acc"], ci["clean_acc"]),
                     "worst case (%)": (x["worst_case"][primary], ci["worst_case"][primary])}
                    | {f"{a} (%)": (x["robust_acc"][a][primary], ci["robust_acc"][a][primary]) for a in attacks})
        for head, (value, interval) in expected.items():
            assert cell[head]["text"] == with_interval(value, interval)
            assert float(cell[head]["attrs"]["data-value"]) == value
        classes = class_list(board["class_names"], x["worst_classes"][primary])
        worst_class = with_interval(x["worst_class_robust_acc"][primary], ci["worst_class_robust_acc"][primary])
        assert cell["worst class (%)"]["text"] == f"{worst_class} ({classes})"
        corrected = x["margin_corrected"]
        assert cell["median margin"]["text"] == \
            f"{x['median_input_margin']:.4f} ({corrected['points']} of {corrected['of']} lowered)"
        assert cell["flags"]["attrs"]["data-value"] == str(len(x["sanity_fired"]))
        assert (cell["seeds"]["attrs"]["data-value"], cell["loss fidelity"]["text"], cell["recipe"]["text"],
                cell["architecture"]["text"]) == \
            (str(x["n_seeds"]), x["fidelity"]["loss"], x["fidelity"]["recipe"], x["architecture"])
    for row, x in zip(body_rows(table_with(page, **{"class": "data per-eps"})), board["entries"]):
        assert [c["text"] for c in row["cells"][3:]] == [
            with_interval(x["worst_case"][e], x["intervals"]["worst_case"][e]) for e in board["eps"]]


def test_the_significance_matrix_matches_the_board(built):
    board, _, page = built
    order = [x["defense"] for x in board["entries"]]
    matrix = body_rows(table_with(page, **{"class": "data significance"}))
    for pair in board["significance"]:
        row = matrix[order.index(pair["a"])]
        cell = row["cells"][1 + order.index(pair["b"])]
        assert cell["text"].startswith(f"{pair['effect'] * 100:+.1f} (p")
        assert cell["text"].endswith("*") == pair["significant"]
        mirror = matrix[order.index(pair["b"])]["cells"][1 + order.index(pair["a"])]
        assert mirror["text"].startswith(f"{-pair['effect'] * 100 + 0.0:+.1f} (p")  # a zero is +0.0, never -0.0


def test_detail_panels_hold_each_records_numbers_and_links(built):
    board, records, page = built
    for x in board["entries"]:
        anchor = re.search(rf'<details class="entry" id="([^"]+)" data-defense="{re.escape(x["defense"])}">', page)
        assert anchor, x["defense"]
        panel = page[anchor.start():page.index("</details>", anchor.start())]
        mine = sorted((r for r in records if r["defense"]["id"] == x["defense"]), key=lambda r: r["seed"])
        assert len(mine) == x["n_seeds"]
        for r in mine:
            pid = board["protocol"]["id"]
            assert f'href="../records/{pid}/{x["defense"]}-seed{r["seed"]}.json"' in panel
            assert f'href="../records/{pid}/{r["flags"]["file"]}"' in panel
            seed = panel[panel.index(f'data-seed="{r["seed"]}"'):]
            confusion = table_with(seed, **{"class": "confusion"})
            assert [[int(c["text"]) for c in row["cells"][1:]] for row in body_rows(confusion)] == \
                r["confusion_adversarial"]["matrix"]
            fab = body_rows(table_with(seed, **{"class": "data input-margins"}))[0]["cells"]
            assert float(fab[1]["text"]) == pytest.approx(r["margins"]["input"]["median"], rel=1e-3)
        eps_rows = body_rows(table_with(panel, **{"class": "data eps-table"}))
        for row, a in zip(eps_rows, board["attacks"]):
            assert [c["text"] for c in row["cells"][1:]] == [
                with_interval(x["robust_acc"][a][e], x["intervals"]["robust_acc"][a][e]) for e in board["eps"]]
        for name in x["sanity_fired"]:
            assert name in panel and unescape(panel).count(x["sanity_fired"][name]["detail"]) == 1


def test_nothing_is_loaded_from_the_network(built):
    board, _, page = built
    assert not re.search(r"<(script|link|img|iframe|source|video|audio|embed|object|use)\b[^>]*\b(src|href)\s*=", page)
    assert "url(" not in page and "@import" not in page
    papers = {x["link"] for x in board["entries"]}
    for href in re.findall(r'href="([^"]*)"', page):
        if re.match(r"[a-z]+:|//", href):
            assert unescape(href) in papers, href
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page


def test_hostile_record_text_is_escaped(built):
    board, records, _ = built
    x = board["entries"][0]
    x.update(paper="<script>alert(1)</script>", link="javascript:alert(2)",
             recipe_overrides={"lr": "</td><script>alert(3)</script>"}, architecture='"><img src=x onerror=alert(4)>')
    record = next(r for r in records if r["defense"]["id"] == x["defense"])
    record["provenance"]["device"] = "<b onmouseover=alert(5)>gpu</b>"
    page = render_board_page(board, records)
    assert page.count("<script") == 1
    assert "<img" not in page and "<b onmouseover" not in page and "javascript:" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;/td&gt;&lt;script&gt;alert(3)&lt;/script&gt;" in page


def _words(text: str) -> str:
    return " ".join(text.split())


def test_how_to_read_is_the_markdowns_text(built):
    board, _, page = built
    markdown = render_markdown(board).split("## How to read this board\n", 1)[1]
    plain = "".join(part if i % 2 else part.replace("*", "") for i, part in enumerate(markdown.split("`")))
    text = unescape(re.sub(r"<[^>]+>", "", page[page.index('id="how-to-read"'):]))
    assert _words(plain) in _words(text)
    for key in ("interval", "comparison", "correction", "rank_rule", "training_variance"):
        assert board["statistics"][key] in text


def test_the_index_lists_every_board_sorted_with_links(built):
    board, _, _ = built
    other = json.loads(json.dumps(board))
    other["protocol"]["id"], other["track"] = "cifar10-resnet", "cifar10-resnet"
    other["entries"] = other["entries"][:2]
    page = render_index([(board, "2026-11-22"), (other, "<2026-11-23>")])
    rows = body_rows(tables(page)[0])
    assert [r["cells"][0]["text"] for r in rows] == ["cifar10-resnet", "mnist5k-cnn"]
    assert page.index('href="cifar10-resnet.html"') < page.index('href="mnist5k-cnn.html"')
    assert [c["text"] for c in rows[1]["cells"][:5]] == ["mnist5k-cnn", "mnist5k-cnn", "1", "2026-11-22",
                                                         str(len(board["entries"]))]
    assert rows[0]["cells"][3]["text"] == "<2026-11-23>" and "&lt;2026-11-23&gt;" in page
    assert render_index([(other, "<2026-11-23>"), (board, "2026-11-22")]) == page
    assert f"{pct(board['entries'][0]['worst_case'][board['primary_eps']])}%" in rows[1]["cells"][5]["text"]
    # the board's other files; its attack board's page only when an entry has attack records
    assert rows[1]["cells"][6]["text"] == "Markdown · JSON" and "attacks" not in page
    assert 'href="mnist5k-cnn.md">Markdown</a> · <a href="mnist5k-cnn.json">JSON</a>' in page
    attacked = json.loads(json.dumps(board))
    attacked["entries"][-1]["best_known"] = {board["primary_eps"]: {}}
    rows = body_rows(tables(render_index([(attacked, "2026-11-22")]))[0])
    assert rows[0]["cells"][6]["text"] == "Markdown · JSON · attack board"
    assert 'href="mnist5k-cnn.attacks.html">attack board</a>' in render_index([(attacked, "2026-11-22")])


def test_certified_accuracy_is_shown_per_radius_in_increasing_order(built):
    board, records, _ = built
    x = board["entries"][0]
    x["certified_l2"] = {"10.0": {"certified": 0.0, "pgd_l2": 0.05}, "0.5": {"certified": 0.25, "pgd_l2": 0.5}}
    page = render_board_page(board, records)
    certified = page[page.index('id="certified"'):page.index('id="details"')]
    assert certified.index("r=0.5") < certified.index("r=10.0")
    assert "25.00 / 50.00" in certified and "0.00 / 5.00" in certified
    panel = page[page.index(f'data-defense="{x["defense"]}">'):]
    assert "Certified L2 accuracy" in panel[:panel.index("</details>")]
