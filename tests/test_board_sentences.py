"""Every sentence a board prints is true of its data: the committed boards' views and fixture
boards' (one with attack records: its best-known sentences) are checked sentence by sentence
(`tests.board_sentences`), and planted false sentences are caught. Also: the JSON board's view is
the one its numbers give, and Markdown and HTML print the view's sentences, not their own."""
import copy
import json
import re
from html import unescape
from pathlib import Path

import pytest

from leaderboard.build import admitted_records, build_json
from leaderboard.evidence import ALPHA
from leaderboard.html import render_board_page
from leaderboard.html_view import inline_html
from leaderboard.markdown import render_markdown
from leaderboard.view import board_view
from leaderboard.view_best_known import OVERSTATED_TEXT
from leaderboard.build import board_attacks
from tests.attack_fixtures import PROTOCOL, write_attacked_board
from tests.board_sentences import problems, sentences
from tests.html_fixtures import fixture_board

ROOT = Path(__file__).resolve().parent.parent
PROTOCOLS = ["mnist5k-cnn", "mnist5k-cnn-l2", "smoke"]


@pytest.fixture(scope="module")
def committed() -> dict[str, dict]:
    return {p: build_json(admitted_records(ROOT / "leaderboard" / "records", p)) for p in PROTOCOLS}


def _note(view: dict, start: str) -> tuple[list[str], int]:
    """The flags section's item list holding the note that starts with `start`, and its index."""
    block = next(b for b in next(s for s in view["sections"] if s["id"] == "flags")["blocks"]
                 if b["kind"] == "items" and any(t.startswith(start) for t in b["items"]))
    return block["items"], next(i for i, t in enumerate(block["items"]) if t.startswith(start))


@pytest.mark.golden
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_sentence_of_the_committed_boards_is_true(committed, protocol):
    board = committed[protocol]
    assert len(sentences(board["view"])) > 30
    assert problems(board, board["view"]) == []


@pytest.mark.unit
def test_every_sentence_of_the_fixture_board_is_true():
    board, _ = fixture_board()
    assert problems(board, board["view"]) == []


@pytest.mark.golden
def test_a_planted_within_chance_note_with_a_small_p_is_caught(committed):
    board = committed["mnist5k-cnn"]
    view = copy.deepcopy(board["view"])
    # a note the board keeps for its threshold, not for chance: p below alpha
    defense, flag = next((entry["defense"], flag) for entry in board["entries"]
                         for flag, note in entry["sanity_noted"].items()
                         if note["p_value"] is not None and note["p_value"] < ALPHA)
    notes, i = _note(view, f"{defense}: `{flag}`")
    notes[i] = notes[i].split("Not a flag: ")[0] + "Not a flag: within chance (p = 0.00098 ≥ 0.05)"
    assert any(defense in p and "says within chance" in p for p in problems(board, view))


@pytest.mark.golden
def test_planted_false_sentences_of_other_kinds_are_caught(committed):
    board = committed["mnist5k-cnn"]
    plants = {
        "a rank gap": lambda v: v["sections"][1]["blocks"].append(
            {"kind": "paragraph", "text": "Ranks: a rank gap is a significant difference."}),
        "Holm over": lambda v: v["sections"][1]["blocks"][1].update(
            text=re.sub(r"Holm over all \d+ pairs", "Holm over all 0 pairs", v["sections"][1]["blocks"][1]["text"])),
        "missing from the table": lambda v: next(
            b for s in v["sections"] if s["id"] == "certified" for b in s["blocks"] if b["kind"] == "items")[
            "items"].clear(),
        "worst class": lambda v: _ranked_cell(v, 0, "worst-class").update(text=re.sub(
            r"\(.*\)$", f"(class {_not_the_worst_class(board, 0)})", _ranked_cell(v, 0, "worst-class")["text"])),
        "called supported": lambda v: next(b for s in v["sections"] if s["id"] == "claims" for b in s["blocks"]
                                           if b["kind"] == "table")["rows"][0][7].update(text="**supported**"),
        "disagree about 0": lambda v: _section_paragraph(v, "claims", "Each founding").update(
            text=_section_paragraph(v, "claims", "Each founding")["text"]
            + " They disagree here: claim 2 (rat's): interval +0.5 to +8.0 excludes 0, p = 0.077."),
        "the cell says '-0.0": _plant_negative_zero,
        "a plural after 1": lambda v: v["sections"][0]["blocks"].append(
            {"kind": "paragraph", "text": "Square broke 1 points."}),
        "tuning: ": lambda v: _replace_count(_ranked_cells(v)[0]),
        "the entries with 1 seed": lambda v: _section_paragraph(v, "claims", "Each founding").update(
            text=_section_paragraph(v, "claims", "Each founding")["text"].replace(
                "with 1 seed per entry on this board", "with 3 seeds per entry on this board")),
        "cost: ": lambda v: _section_paragraph(v, "cost", "Costs compare").update(
            text=_section_paragraph(v, "cost", "Costs compare")["text"].replace("is: ", "is: dyart, ")),
        "names the records without costs": lambda v: _section_paragraph(v, "cost", "Costs compare").update(
            text=_section_paragraph(v, "cost", "Costs compare")["text"]
            + " Records made before atbench kept costs (dyart) give only their seconds."),
    }
    for expected, plant in plants.items():
        view = copy.deepcopy(board["view"])
        plant(view)
        assert any(expected in p for p in problems(board, view)), expected


@pytest.mark.golden
def test_the_json_view_is_what_the_numbers_give_and_every_renderer_prints_it(committed):
    board = committed["mnist5k-cnn"]
    numbers = {k: v for k, v in board.items() if k != "view"}
    assert board_view(json.loads(json.dumps(numbers))) == board["view"]
    markdown = render_markdown(board)
    records = [it.record for it in admitted_records(ROOT / "leaderboard" / "records", "mnist5k-cnn")]
    page = unescape(re.sub(r"<[^>]+>", "", render_board_page(board, records)))
    plain = lambda text: unescape(re.sub(r"<[^>]+>", "", inline_html(text)))
    for where, text in sentences(board["view"]):
        if ".header." in where or ".row" in where:
            continue
        assert text.replace("|", "\\|") in markdown or text in markdown, where
        assert " ".join(plain(text).split()) in " ".join(page.split()), where


@pytest.fixture(scope="module")
def attacked(tmp_path_factory) -> dict:
    """The board of `tests.attack_fixtures`: entries with attack records, one flagged, one not."""
    records, attacks, _ = write_attacked_board(tmp_path_factory.mktemp("attacked"))
    admitted = admitted_records(records, PROTOCOL)
    return build_json(admitted, board_attacks(attacks, PROTOCOL, admitted))


@pytest.mark.unit
def test_every_best_known_sentence_of_a_board_with_attack_records_is_true(attacked):
    section = next(s for s in attacked["view"]["sections"] if s["id"] == "best-known")
    assert len(next(b for b in section["blocks"] if b["kind"] == "items")["items"]) == 3
    assert problems(attacked, attacked["view"]) == []


@pytest.mark.unit
def test_planted_false_best_known_sentences_are_caught(attacked):
    def line(view: dict, defense: str) -> tuple[list[str], int]:
        lines = next(b for s in view["sections"] if s["id"] == "best-known" for b in s["blocks"]
                     if b["kind"] == "items")["items"]
        return lines, next(i for i, t in enumerate(lines) if t.startswith(f"**{defense}**"))

    def flag_honest(view):  # trades: p = 0.25, yet the line says the protocol overstates it
        lines, i = line(view, "trades")
        lines[i] = lines[i].replace("p = 0.25: not significant at 0.05", "p = 0.25: " + OVERSTATED_TEXT)

    def unflag_planted(view):  # pgd-at: p = 1/32 < 0.05, yet no flag
        lines, i = line(view, "pgd-at")
        lines[i] = lines[i].replace(OVERSTATED_TEXT, "not significant at 0.05")

    def miscount(view):
        lines, i = line(view, "pgd-at")
        lines[i] = lines[i].replace("5 points broken beyond the protocol (`bpda` 5", "6 points broken beyond the "
                                    "protocol (`bpda` 6")

    def cell(view):
        _ranked_cell(view, 0, "best-known").update(text="-")

    def ranking(view):
        section = next(s for s in view["sections"] if s["id"] == "best-known")
        section["blocks"][0]["text"] = section["blocks"][0]["text"].replace("The ranking stays the protocol's", "")

    plants = {"trades at eps=0.3 is flagged with p = 0.25": flag_honest,
              "pgd-at at eps=0.3 is not flagged with p = 0.03125": unflag_planted,
              "says 6 points broken beyond the protocol, the data 5": miscount,
              "best-known cell says '-'": cell, "ranking stays the protocol's": ranking}
    for expected, plant in plants.items():
        view = copy.deepcopy(attacked["view"])
        plant(view)
        found = problems(attacked, view)
        assert any(expected in p for p in found), (expected, found)


def _ranked_cell(view: dict, row: int, ident: str) -> dict:
    """A cell of the ranked table by column id."""
    table = view["sections"][1]["blocks"][0]
    return table["rows"][row][[c["id"] for c in table["columns"]].index(ident)]


def _not_the_worst_class(board: dict, row: int) -> int:
    """A class above the minimum of the ranked table's entry `row` at the primary eps."""
    accs = board["entries"][row]["per_class_worst_case"][board["primary_eps"]]
    return next(k for k, a in enumerate(accs) if a > min(accs))


def _ranked_cells(view: dict) -> list[dict]:
    """The cells of the ranked table holding a sweep link."""
    return [cell for section in view["sections"] for block in section["blocks"] if block["kind"] == "table"
            for row in block["rows"] for cell in row if "[sweep](" in cell["text"]]


def _replace_count(cell: dict) -> None:
    """Plant a wrong count of settings tried in a sweep link's cell (two more than the sweep's)."""
    tried = int(re.search(r" of (\d+) settings", cell["text"]).group(1))
    cell["text"] = cell["text"].replace(f" of {tried} settings", f" of {tried + 2} settings")


def _section_table(view: dict, section: str) -> dict:
    return next(b for s in view["sections"] if s["id"] == section for b in s["blocks"] if b["kind"] == "table")


def _plant_negative_zero(view: dict) -> None:
    """Print a tie of the significance matrix (a "+0.0" cell) as "-0.0"."""
    cell = next(cell for row in _section_table(view, "significance")["rows"] for cell in row[1:]
                if cell["text"].startswith("+0.0"))
    cell.update(text="-" + cell["text"][1:])


def _section_paragraph(view: dict, section: str, start: str) -> dict:
    return next(b for s in view["sections"] if s["id"] == section for b in s["blocks"]
                if b["kind"] == "paragraph" and b["text"].startswith(start))
