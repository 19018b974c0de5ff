"""The leaderboard builder, loader and plot: ranking, seed aggregation, determinism, files."""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest

from benchmark.core.errors import AtbenchError
from benchmark.core.io import dumps_json
from leaderboard.build import build, write_board
from leaderboard.plot import plot_classwise, plot_robustness
from leaderboard.record import RecordError
from leaderboard.records import find_records
from tests.fixtures_records import make_record

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _ids(board: dict) -> list[str]:
    return [e["defense"] for e in board["entries"]]


def _mixed_records() -> list[dict]:
    return [
        make_record("pgd-at", 0, clean=0.90, robust=0.50),
        make_record("pgd-at", 1, clean=0.92, robust=0.52),
        make_record("pgd-at", 2, clean=0.91, robust=0.51),
        make_record("trades", 0, clean=0.85, robust=0.55, recipe_overrides={"lr": 0.05, "opt": "adam"}),
        make_record("mart", 0, clean=0.85, robust=0.55),
        make_record("awp", 0, clean=0.95, robust=0.40),
        make_record("zz-top", 0, clean=0.80, robust=0.60),
    ]


def test_ranking_by_worst_case_then_clean_then_id():
    _, board = build([
        make_record("a-low", clean=0.99, robust=0.30),
        make_record("b-high", clean=0.70, robust=0.60),
        make_record("c-mid-clean-lo", clean=0.80, robust=0.50),
        make_record("d-mid-clean-hi", clean=0.90, robust=0.50),
    ])
    assert _ids(board) == ["b-high", "d-mid-clean-hi", "c-mid-clean-lo", "a-low"]
    assert [e["rank"] for e in board["entries"]] == [1, 2, 3, 4]


def test_full_ties_share_a_rank_and_are_ordered_by_id():
    _, board = build([
        make_record("zeta", clean=0.9, robust=0.5), make_record("alpha", clean=0.9, robust=0.5),
        make_record("best", clean=0.9, robust=0.7), make_record("last", clean=0.8, robust=0.5),
    ])
    assert _ids(board) == ["best", "alpha", "zeta", "last"]
    assert [e["rank"] for e in board["entries"]] == [1, 2, 2, 4]


def test_seeds_are_averaged():
    _, board = build(_mixed_records())
    (pgd,) = [e for e in board["entries"] if e["defense"] == "pgd-at"]
    assert pgd["n_seeds"] == 3 and pgd["seeds"] == [0, 1, 2]
    assert pgd["clean_acc"] == pytest.approx(0.91)
    assert pgd["worst_case"]["0.3"] == pytest.approx(0.51)
    assert pgd["robust_acc"]["pgd"]["0.3"] == pytest.approx(0.52)
    assert pgd["worst_class_robust_acc"]["0.3"] == pytest.approx(0.41)


def test_numbers_are_rounded_to_four_decimals():
    _, board = build([make_record("x", clean=0.123456789, robust=0.0987654321)])
    (e,) = board["entries"]
    assert e["clean_acc"] == 0.1235 and e["worst_case"]["0.3"] == 0.0988


def test_json_board_has_the_required_keys():
    _, board = build(_mixed_records())
    assert board["track"] == "mnist5k-cnn"
    assert {"id", "version", "sha256", "norm", "n_examples"} == set(board["protocol"])
    assert board["protocol"]["id"] == "mnist5k-cnn" and board["protocol"]["version"] == 1
    assert board["primary_eps"] == "0.3" and board["eps"] == ["0.1", "0.2", "0.3"]
    assert board["attacks"] == ["autoattack", "pgd"]
    assert board["class_names"] == ["0", "1", "2"]
    for e in board["entries"]:
        assert {"rank", "defense", "n_seeds", "seeds", "clean_acc", "robust_acc", "worst_case",
                "worst_class_robust_acc", "per_class_worst_case", "architecture", "external", "fidelity", "recipe_overrides", "paper",
                "venue", "link", "median_input_margin", "frac_margin_below_half_primary",
                "sanity_fired", "certified_l2"} == set(e)
        assert e["sanity_fired"] == {}
        assert set(e["worst_case"]) == set(e["worst_class_robust_acc"]) == set(e["per_class_worst_case"]) == {
            "0.1", "0.2", "0.3"}
    assert json.loads(dumps_json(board)) == board


def test_markdown_has_every_defense_and_the_primary_eps_columns():
    md, board = build(_mixed_records())
    assert md.startswith("# Leaderboard: mnist5k-cnn (protocol mnist5k-cnn v1)")
    assert "Ranked by worst-case robust accuracy at eps=0.3" in md
    assert "How to read this board" in md
    for d in _ids(board):
        assert f"[{d}](https://example.org/{d})" in md
    for header in ("clean (%)", "autoattack (%)", "pgd (%)", "worst case (%)", "worst class (%)",
                   "recipe overrides", "eps=0.1", "eps=0.3"):
        assert header in md
    assert "lr=0.05, opt=adam" in md
    pgd_row = next(line for line in md.splitlines() if "[pgd-at]" in line)
    assert "91.00" in pgd_row and "51.00" in pgd_row and "41.00" in pgd_row


def test_markdown_escapes_pipes():
    md, _ = build([make_record("x", recipe_overrides={"note": "a|b"})])
    assert "note=a\\|b" in md


def test_output_is_independent_of_input_order():
    records = _mixed_records()
    md0, board0 = build(records)
    for seed in range(5):
        shuffled = records[:]
        random.Random(seed).shuffle(shuffled)
        md, board = build(shuffled)
        assert md == md0 and dumps_json(board) == dumps_json(board0)


@pytest.mark.parametrize("other, words", [
    (make_record("y", version=2), ["mnist5k-cnn v1", "mnist5k-cnn v2"]),
    (make_record("y", protocol_id="other-linf"), ["mnist5k-cnn v1", "other-linf v1"]),
    (make_record("y", track="cifar10-prn18"), ["cifar10-prn18", "mnist5k-cnn"]),
    (make_record("y", eps=("0.1", "0.3")), ["disagree", "bump its version"]),
    (make_record("x", seed=0), ["several records for one seed"]),
    (make_record("x", seed=1, recipe_overrides={"lr": 1}), ["seeds of defense x differ"]),
])
def test_inconsistent_records_raise(other, words):
    with pytest.raises(AtbenchError) as info:
        build([make_record("x", seed=0), other])
    for w in words:
        assert w in str(info.value)


def test_build_rejects_no_records_and_invalid_records():
    with pytest.raises(AtbenchError):
        build([])
    bad = make_record()
    bad["clean_acc"] = 2.0
    with pytest.raises(RecordError, match="clean_acc"):
        build([bad])


def test_png_is_valid_and_deterministic():
    _, board = build(_mixed_records())
    backend = matplotlib.get_backend()
    png = plot_robustness(board)
    assert png.startswith(PNG_MAGIC) and png[12:16] == b"IHDR"
    assert plot_robustness(json.loads(dumps_json(board))) == png
    assert b"Software" not in png
    assert matplotlib.get_backend() == backend


def _write(records_dir, rec, name=None):
    path = records_dir / rec["protocol"]["id"] / rec["defense"]["id"] / f"seed{rec['seed']}" / (name or "record.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps_json(rec))
    return path


def test_find_records_sorted_and_validated(tmp_path):
    for rec in reversed(_mixed_records()):
        _write(tmp_path, rec)
    found = find_records(tmp_path, "mnist5k-cnn")
    assert [p for p, _ in found] == sorted(p for p, _ in found) and len(found) == 7
    assert find_records(tmp_path, "cifar10-prn18") == []


def test_find_records_rejects_a_record_under_the_wrong_protocol(tmp_path):
    rec = make_record(track="cifar10-prn18", protocol_id="cifar10-prn18")
    path = tmp_path / "mnist5k-cnn" / "x.json"
    path.parent.mkdir()
    path.write_text(dumps_json(rec))
    with pytest.raises(RecordError, match="protocol.id") as info:
        find_records(tmp_path, "mnist5k-cnn")
    assert str(path) in str(info.value)


def test_write_board_writes_md_json_and_both_pngs(tmp_path):
    records = _mixed_records()
    for rec in records:
        _write(tmp_path / "records", rec)
    paths = write_board(tmp_path / "records", "mnist5k-cnn", tmp_path / "boards")
    assert [p.name for p in paths] == ["mnist5k-cnn.md", "mnist5k-cnn.json", "mnist5k-cnn.png",
                                       "mnist5k-cnn.classwise.png"]
    md, board = build(records)
    assert paths[0].read_text() == md
    assert paths[1].read_text() == dumps_json(board)
    assert paths[2].read_bytes() == plot_robustness(board) and paths[3].read_bytes() == plot_classwise(board)
    first = [p.read_bytes() for p in paths]
    write_board(tmp_path / "records", "mnist5k-cnn", tmp_path / "boards")
    assert [p.read_bytes() for p in paths] == first


def test_write_board_without_records_says_to_run(tmp_path):
    with pytest.raises(AtbenchError, match="no records for protocol 'mnist5k-cnn'") as info:
        write_board(tmp_path, "mnist5k-cnn", tmp_path / "boards")
    assert "atbench run" in info.value.fix


def test_write_board_names_a_truncated_record(tmp_path):
    path = _write(tmp_path, make_record())
    path.write_text(path.read_text()[:100])
    with pytest.raises(RecordError) as info:
        write_board(tmp_path, "mnist5k-cnn", tmp_path / "boards")
    assert str(path) in str(info.value) and "not valid JSON" in str(info.value)


def test_leaderboard_imports_neither_torch_nor_pyplot():
    code = ("import sys, leaderboard.build, leaderboard.plot, leaderboard.records, leaderboard.schema, "
            "leaderboard.json_schema, leaderboard.robustbench; "
            "bad = {'torch', 'matplotlib.pyplot'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_fired_sanity_flags_are_shown_with_their_detail():
    flagged = make_record("masked")
    flagged["sanity"]["square_beats_white_box"].update(fired=True, value=0.2, detail="Square broke 20% more")
    md, board = build([flagged, make_record("clean")])
    entry = {e["defense"]: e for e in board["entries"]}
    assert entry["masked"]["sanity_fired"] == {"square_beats_white_box": "seed 0: Square broke 20% more"}
    assert "`square_beats_white_box`: seed 0: Square broke 20% more" in md
    assert "No sanity flag fired." not in md


def test_certified_accuracy_table_appears_when_records_have_it():
    rec = make_record("lip")
    rec["certified_l2"] = {"radii": ["0.5"], "certified_acc": {"0.5": 0.25}, "pgd_l2_acc": {"0.5": 0.75},
                           "pgd_l2_steps": 50, "lipschitz_max": 3.0, "median_radius": 0.4}
    md, board = build([rec, make_record("plain")])
    assert board["entries"][0]["certified_l2"] is None or board["entries"][1]["certified_l2"] is None
    assert {e["defense"]: e["certified_l2"] for e in board["entries"]}["lip"] == {
        "0.5": {"certified": 0.25, "pgd_l2": 0.75}}
    assert "25.00 / 75.00" in md and "Certified L2 accuracy" in md
    assert "Certified L2 accuracy" not in build([make_record("plain")])[0]
