"""The class-wise heatmap of a board: the matrix it draws comes from the records' per-class
worst-case numbers (averaged over seeds, rows in rank order), and its PNG is deterministic."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pytest

from benchmark.core.errors import AtbenchError
from benchmark.core.io import dumps_json
from leaderboard.build import admitted_records, build, write_board
from leaderboard.plot import classwise_matrix, plot_classwise, significance_matrix
from tests.fixtures_records import consistent, write_consistent

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ROOT / "leaderboard" / "records"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


SPECS = [("pgd-at", 0, {"robust": 0.70, "flag_seed": 1}), ("pgd-at", 1, {"robust": 0.74, "flag_seed": 2}),
         ("trades", 0, {"robust": 0.72, "flag_seed": 3}), ("standard", 0, {"robust": 0.1, "flag_seed": 4})]


def _records(**flips):
    """Admitted records with flags: two pgd-at seeds, trades and standard; `flips` (by defense)
    are passed on as `consistent(flips=...)`."""
    return [consistent(d, s, flips=flips.get(d) if s == 0 else None, **kw) for d, s, kw in SPECS]


@pytest.mark.skipif(not (RECORDS / "mnist5k-cnn").is_dir(), reason="no committed mnist5k-cnn records")
def test_matrix_is_the_committed_records_per_class_worst_case():
    admitted = admitted_records(RECORDS, "mnist5k-cnn")
    records = [item.record for item in admitted]
    _, board = build(admitted)
    defenses, classes, matrix = classwise_matrix(board)
    assert defenses == [e["defense"] for e in board["entries"]]  # rank order
    by_id = {r["defense"]["id"]: r for r in records}  # one seed per defense here
    primary = board["primary_eps"]
    assert classes == records[0]["class_names"]
    assert matrix == [[round(v, 4) for v in by_id[d]["per_class"]["worst_case"][primary]] for d in defenses]


def test_seeds_are_averaged_per_class():
    items = _records()
    records = [item.record for item in items]
    _, board = build(items)
    defenses, classes, matrix = classwise_matrix(board)
    assert set(defenses) == {"pgd-at", "trades", "standard"} and defenses[-1] == "standard"
    assert classes == ["0", "1", "2"]
    seeds = [r["per_class"]["worst_case"]["0.3"] for r in records[:2]]
    matrix = dict(zip(defenses, matrix))
    assert seeds[0] != seeds[1]
    assert matrix["pgd-at"] == [round((a + b) / 2, 4) for a, b in zip(*seeds)]
    assert matrix["trades"] == [round(v, 4) for v in records[2]["per_class"]["worst_case"]["0.3"]]


def test_png_is_deterministic_and_follows_the_numbers():
    _, board = build(_records())
    backend = matplotlib.get_backend()
    png = plot_classwise(board)
    assert png.startswith(PNG_MAGIC) and b"Software" not in png
    assert plot_classwise(json.loads(dumps_json(board))) == png
    assert matplotlib.get_backend() == backend
    broken = {f"{attack}@0.3": range(100, 200) for attack in _records()[0].record["attacks"]}
    changed = _records(trades=broken)  # every class-1 point of trades broken at eps 0.3
    assert plot_classwise(build(changed)[1]) != png


def test_write_board_writes_the_heatmap_byte_identically(tmp_path):
    for defense, seed, kwargs in SPECS:
        write_consistent(tmp_path / "records" / "mnist5k-cnn", defense, seed, **kwargs)
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
    _, board = build([consistent("a", num_classes=30), consistent("b", num_classes=30, robust=0.3)])
    assert len(classwise_matrix(board)[1]) == 30
    assert plot_classwise(board).startswith(PNG_MAGIC)


def test_records_with_different_class_names_raise():
    other = consistent("y")
    other.record["class_names"] = ["cat", "dog", "bird"]
    with pytest.raises(AtbenchError, match="class names differ"):
        build([consistent("x"), other])


def test_the_significance_heatmap_prints_no_negative_zero():
    # trades and rat tie on the default board: the mirrored cell was printed -0.0
    board = json.loads((ROOT / "leaderboard" / "boards" / "mnist5k-cnn.json").read_text())
    _, effect, _ = significance_matrix(board)
    ties = [v for row in effect for v in row if v == 0]
    assert ties and all(f"{v:+.1f}" == "+0.0" for v in ties)
