"""The class-wise heatmap of a board: the matrix it draws comes from the records' per-class
worst-case numbers (averaged over seeds, rows in rank order), and its PNG is deterministic."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pytest

from benchmark.core.errors import AtbenchError
from benchmark.core.io import dumps_json
from leaderboard.build import build, write_board
from leaderboard.plot import classwise_matrix, plot_classwise
from leaderboard.records import find_records
from tests.fixtures_records import make_record

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ROOT / "leaderboard" / "records"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _records() -> list[dict]:
    return [make_record("pgd-at", 0, robust=0.50), make_record("pgd-at", 1, robust=0.60, class_gap=0.2),
            make_record("trades", 0, robust=0.55), make_record("standard", 0, clean=0.95, robust=0.0)]


@pytest.mark.skipif(not (RECORDS / "mnist5k-cnn").is_dir(), reason="no committed mnist5k-cnn records")
def test_matrix_is_the_committed_records_per_class_worst_case():
    records = [r for _, r in find_records(RECORDS, "mnist5k-cnn")]
    _, board = build(records)
    defenses, classes, matrix = classwise_matrix(board)
    assert defenses == [e["defense"] for e in board["entries"]]  # rank order
    by_id = {r["defense"]["id"]: r for r in records}  # one seed per defense here
    primary = board["primary_eps"]
    assert classes == records[0]["class_names"]
    assert matrix == [[round(v, 4) for v in by_id[d]["per_class"]["worst_case"][primary]] for d in defenses]


def test_seeds_are_averaged_per_class():
    records = _records()
    _, board = build(records)
    defenses, classes, matrix = classwise_matrix(board)
    assert defenses == ["pgd-at", "trades", "standard"] and classes == ["0", "1", "2"]
    seeds = [r["per_class"]["worst_case"]["0.3"] for r in records[:2]]
    assert seeds[0] != seeds[1]
    assert matrix[0] == [round((a + b) / 2, 4) for a, b in zip(*seeds)]
    assert matrix[1] == [round(v, 4) for v in records[2]["per_class"]["worst_case"]["0.3"]]


def test_png_is_deterministic_and_follows_the_numbers():
    _, board = build(_records())
    backend = matplotlib.get_backend()
    png = plot_classwise(board)
    assert png.startswith(PNG_MAGIC) and b"Software" not in png
    assert plot_classwise(json.loads(dumps_json(board))) == png
    assert matplotlib.get_backend() == backend
    changed = _records()
    changed[3]["per_class"]["worst_case"]["0.3"][1] = 0.5
    assert plot_classwise(build(changed)[1]) != png


def test_write_board_writes_the_heatmap_byte_identically(tmp_path):
    for rec in _records():
        path = tmp_path / "records" / "mnist5k-cnn" / f"{rec['defense']['id']}-seed{rec['seed']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dumps_json(rec))
    paths = write_board(tmp_path / "records", "mnist5k-cnn", tmp_path / "boards")
    heatmap = tmp_path / "boards" / "mnist5k-cnn.classwise.png"
    assert heatmap in paths
    first = heatmap.read_bytes()
    assert first == plot_classwise(build(_records())[1])
    write_board(tmp_path / "records", "mnist5k-cnn", tmp_path / "boards")
    assert heatmap.read_bytes() == first
    assert "](mnist5k-cnn.classwise.png)" in (tmp_path / "boards" / "mnist5k-cnn.md").read_text()


def test_markdown_has_the_classwise_section():
    md, _ = build(_records())
    assert "## Class-wise worst-case robust accuracy" in md
    assert "![Class-wise worst-case robust accuracy at eps=0.3](mnist5k-cnn.classwise.png)" in md


def test_many_classes_render():
    _, board = build([make_record("a", num_classes=30), make_record("b", num_classes=30, robust=0.3)])
    assert len(classwise_matrix(board)[1]) == 30
    assert plot_classwise(board).startswith(PNG_MAGIC)


def test_records_with_different_class_names_raise():
    other = make_record("y")
    other["class_names"] = ["cat", "dog", "bird"]
    with pytest.raises(AtbenchError, match="class names differ"):
        build([make_record("x"), other])
