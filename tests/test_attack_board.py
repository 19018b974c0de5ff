"""The attack board (`leaderboard.attack_board`): the submitted attacks of the fixture board
(`tests.attack_fixtures`) ranked by the points they break beyond the protocol, pooled over the
entries and seeds they were run against, with exact one-sided tests Holm-adjusted over the attacks,
every number checked by hand; its Markdown, JSON and web page come from one view."""
from __future__ import annotations

import copy
import json
import re
from html import unescape

import pytest

from benchmark.core.io import dumps_json
from leaderboard.attack_board import (
    ATTACK_BOARD_HTML,
    ATTACK_BOARD_JSON,
    ATTACK_BOARD_MD,
    ATTACK_BOARD_SUFFIXES,
    attack_board_files,
    build_attack_board,
)
from leaderboard.build import admitted_records, board_attacks, build_json
from leaderboard.formats import p_text
from leaderboard.html_attack_board import render_attack_board_page
from leaderboard.html_view import inline_html
from leaderboard.markdown import render_view
from tests.attack_fixtures import PROTOCOL, write_attacked_board
from tests.test_html import body_rows, tables

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def attack_board(tmp_path_factory):
    records, attacks, _ = write_attacked_board(tmp_path_factory.mktemp("attacked"))
    admitted = admitted_records(records, PROTOCOL)
    submitted = board_attacks(attacks, PROTOCOL, admitted)
    return build_attack_board(build_json(admitted, submitted), submitted), submitted


def test_attacks_are_ranked_by_the_points_they_break_beyond_the_protocol(attack_board):
    board, _ = attack_board
    rows = {r["attack"]: r for r in board["attacks"]}
    assert [r["attack"] for r in board["attacks"]] == ["bpda", "eot-pgd", "multi-targeted"]
    assert [r["rank"] for r in board["attacks"]] == [1, 2, 3]
    # bpda: 5 on pgd-at, 3 + 2 on mart's two seeds; eot-pgd: 1 on pgd-at (a point bpda broke too: each attack
    # is compared with the protocol alone), 2 on trades; multi-targeted: only points the protocol broke
    assert {name: r["by_eps"]["0.3"]["points_beyond"] for name, r in rows.items()} == \
        {"bpda": 10, "eot-pgd": 3, "multi-targeted": 0}
    assert [(e["defense"], e["seeds"], e["points_beyond"]["0.3"]) for e in rows["bpda"]["entries"]] == \
        [("mart", [0, 1], 5), ("pgd-at", [0], 5)]
    assert [(e["defense"], e["points_beyond"]["0.3"]) for e in rows["eot-pgd"]["entries"]] == \
        [("pgd-at", 1), ("trades", 2)]
    for r in rows.values():
        assert all(r["by_eps"][e]["points_beyond"] == 0 for e in ("0.1", "0.2"))
        assert r["by_eps"]["0.3"]["protocol_robust"] == sum(e["protocol_robust"]["0.3"] for e in r["entries"])


def test_p_values_are_exact_one_sided_and_holm_adjusted_over_the_attacks(attack_board):
    board, _ = attack_board
    rows = {r["attack"]: r["by_eps"]["0.3"] for r in board["attacks"]}
    assert {name: r["p_value"] for name, r in rows.items()} == \
        {"bpda": float(f"{0.5 ** 10:.6g}"), "eot-pgd": 0.125, "multi-targeted": 1.0}
    # Holm over 3: the smallest times 3, the next times 2 (at least the one before), the largest times 1
    assert rows["bpda"]["p_adjusted"] == pytest.approx(3 * 0.5 ** 10, rel=1e-5)
    assert rows["eot-pgd"]["p_adjusted"] == 0.25 and rows["multi-targeted"]["p_adjusted"] == 1.0
    assert [r["significant"] for r in rows.values()] == [True, False, False]
    at_small = board["attacks"][0]["by_eps"]["0.1"]
    assert (at_small["p_value"], at_small["p_adjusted"], at_small["significant"]) == (1.0, 1.0, False)
    assert board["correction"] == "Holm over the 3 attacks, at each eps" and board["alpha"] == 0.05


def test_equal_counts_share_a_rank(attack_board):
    board, submitted = attack_board
    tied = [a for a in submitted if a.attack == "bpda" and a.record["entry"]["defense"] == "pgd-at"]
    tied += [a for a in submitted if a.attack == "eot-pgd"]
    fake_board = {k: board[k] for k in ("track", "protocol", "primary_eps", "eps")}
    # bpda on pgd-at alone: 5 points; eot-pgd: 3 -> ranks 1, 2
    assert [(r["attack"], r["rank"]) for r in build_attack_board(fake_board, tied)["attacks"]] == \
        [("bpda", 1), ("eot-pgd", 2)]
    none = [a for a in submitted if a.attack == "multi-targeted"]
    eot_trades = [a for a in submitted if a.attack == "eot-pgd" and a.record["entry"]["defense"] == "trades"]
    bpda_mart1 = [a for a in submitted if a.attack == "bpda" and a.record["entry"]["seed"] == 1]
    rows = build_attack_board(fake_board, none + eot_trades + bpda_mart1)["attacks"]  # 0, 2 and 2 points
    assert [(r["attack"], r["rank"]) for r in rows] == [("bpda", 1), ("eot-pgd", 1), ("multi-targeted", 3)]


def test_markdown_json_and_the_web_page_come_from_one_view(attack_board):
    board, _ = attack_board
    files = attack_board_files(board)
    assert set(files) == {ATTACK_BOARD_MD, ATTACK_BOARD_JSON, ATTACK_BOARD_HTML} == set(ATTACK_BOARD_SUFFIXES)
    assert json.loads(files[ATTACK_BOARD_JSON]) == json.loads(dumps_json(board))
    markdown = files[ATTACK_BOARD_MD].decode()
    assert markdown == render_view(board["view"])
    table = board["view"]["sections"][1]["blocks"][0]
    assert [[c["text"] for c in row] for row in table["rows"]] == [
        ["1", "`bpda`", "2", "10", "0.00098", "0.0029", "**yes**"],
        ["2", "`eot-pgd`", "2", "3", "0.12", "0.25", "no"],
        ["3", "`multi-targeted`", "1", "0", "1", "1", "no"]]
    assert f"Table: {table['caption']}" in markdown
    assert "`bpda` (file): run against 2 entries: mart (seeds 0, 1), pgd-at; breaks 10 points beyond the protocol at " \
           "eps=0.3 (Holm p = 0.0029: significant)" in markdown
    assert "`multi-targeted` (file): run against 1 entry: trades; breaks 0 points beyond the protocol at eps=0.3 " \
           "(Holm p = 1: not significant at 0.05)" in markdown
    assert "The defenses' ranking stays the protocol's" in markdown
    assert "[mnist5k-cnn.md](mnist5k-cnn.md)" in markdown
    assert "[mnist5k-cnn.html](mnist5k-cnn.html)" in markdown


def _plain(text: str) -> str:
    """View text as the web page shows it: its inline marks rendered, tags dropped, spaces collapsed."""
    return " ".join(unescape(re.sub(r"<[^>]+>", "", inline_html(text))).split())


def _page_text(page: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", "", page)).split())


def _cells(table: dict) -> list[list[str]]:
    return [[" ".join(c["text"].split()) for c in row["cells"]] for row in body_rows(table)]


def test_the_web_page_prints_the_views_sentences_and_cells(attack_board):
    board, _ = attack_board
    page = attack_board_files(board)[ATTACK_BOARD_HTML].decode()
    assert page == render_attack_board_page(copy.deepcopy(board))  # deterministic, from the JSON's view
    view, text = board["view"], _page_text(page)
    assert f"<h1>{view['title']}</h1>" in page
    for section in view["sections"]:
        if section["id"] != "summary":
            assert f'<section id="{section["id"]}"><h2>{section["title"]}</h2>' in page
        for block in section["blocks"]:
            for sentence in [block["text"]] if block["kind"] == "paragraph" else block.get("items", []):
                assert _plain(sentence) in text, sentence
    shown, blocks = tables(page), [b for s in view["sections"] for b in s["blocks"] if b["kind"] == "table"]
    assert [t["attrs"]["id"] for t in shown] == [f"table-{b['id']}" for b in blocks]
    for table, block in zip(shown, blocks):
        assert [c["text"] for c in table["rows"][0]["cells"]] == [c["label"] for c in block["columns"]]
        assert _cells(table) == [[_plain(c["text"]) for c in row] for row in block["rows"]], block["id"]


def test_the_web_page_shows_the_numbers_of_the_attack_board(attack_board):
    """The page's tables against the attack board's numbers (not its view), and by hand."""
    board, _ = attack_board
    page = render_attack_board_page(board)
    ranking, per_entry, per_eps = (next(t for t in tables(page) if t["attrs"]["id"] == f"table-{ident}")
                                   for ident in ("attack-table", "attack-entries", "attack-eps"))
    assert _cells(ranking) == [
        [str(r["rank"]), r["attack"], str(len(r["entries"])), str(r["by_eps"]["0.3"]["points_beyond"]),
         p_text(r["by_eps"]["0.3"]["p_value"]), p_text(r["by_eps"]["0.3"]["p_adjusted"]),
         "yes" if r["by_eps"]["0.3"]["significant"] else "no"] for r in board["attacks"]] == [
        ["1", "bpda", "2", "10", "0.00098", "0.0029", "yes"], ["2", "eot-pgd", "2", "3", "0.12", "0.25", "no"],
        ["3", "multi-targeted", "1", "0", "1", "1", "no"]]
    assert [[float(c["attrs"]["data-value"]) for c in row["cells"][3:6]] for row in body_rows(ranking)] == [
        [r["by_eps"]["0.3"][k] for k in ("points_beyond", "p_value", "p_adjusted")] for r in board["attacks"]]
    assert _cells(per_entry) == [
        [r["attack"], x["defense"], ", ".join(map(str, x["seeds"]))]
        + [f"{x['points_beyond'][e]} of {x['protocol_robust'][e]}" for e in board["eps"]]
        for r in board["attacks"] for x in r["entries"]]
    assert [row[:3] + [row[-1].split(" of ")[0]] for row in _cells(per_entry)][:2] == [
        ["bpda", "mart", "0, 1", "5"], ["bpda", "pgd-at", "0", "5"]]
    assert _cells(per_eps)[0] == ["bpda", "0 (p=1)", "0 (p=1)", "10 (p=0.0029)*"]
    assert _cells(per_eps)[1][-1] == "3 (p=0.25)"


def test_the_web_page_links_the_files_the_build_writes_and_loads_nothing(attack_board):
    board, _ = attack_board
    page = render_attack_board_page(board)
    siblings = {f"{PROTOCOL}{s}" for s in (".html", ".md", ".json", *ATTACK_BOARD_SUFFIXES)} | {"index.html"}
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert {f"{PROTOCOL}.html", f"{PROTOCOL}.attacks.json", f"{PROTOCOL}.attacks.md", "index.html"} <= set(hrefs)
    for href in hrefs:
        if href.startswith("#"):
            assert f'id="{href[1:]}"' in page, href
        else:
            assert href in siblings, href
    assert "<script" not in page and "http" not in page.split("<body>")[1]
