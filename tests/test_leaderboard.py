"""The leaderboard builder, loader and plots: ordering and tied ranks, seed aggregation,
determinism, files; every board is built from records admitted with their flags."""
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
from leaderboard.build import board_files, build, write_board
from leaderboard.plot import plot_robustness
from leaderboard.record import RecordError
from leaderboard.records import find_records
from tests.fixtures_records import consistent, write_consistent

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _ids(board: dict) -> list[str]:
    return [e["defense"] for e in board["entries"]]


def _mixed() -> list:
    return [
        consistent("pgd-at", 0, robust=0.7, flag_seed=1),
        consistent("pgd-at", 1, robust=0.72, flag_seed=2),
        consistent("pgd-at", 2, robust=0.71, flag_seed=3),
        consistent("trades", 0, robust=0.75, flag_seed=4, recipe_overrides={"lr": 0.05, "opt": "adam"}),
        consistent("mart", 0, robust=0.74, flag_seed=5),
        consistent("awp", 0, robust=0.5, flag_seed=6),
        consistent("zz-top", 0, robust=0.3, flag_seed=7),
    ]


@pytest.mark.unit
def test_entries_are_ordered_by_worst_case_then_clean_then_id():
    _, board = build(_mixed())
    wc = [(-e["worst_case"]["0.3"], -e["clean_acc"], e["defense"]) for e in board["entries"]]
    assert wc == sorted(wc)
    ranks = [e["rank"] for e in board["entries"]]
    assert ranks == sorted(ranks) and ranks[0] == 1


@pytest.mark.unit
def test_seeds_are_averaged_with_their_spread():
    items = _mixed()
    _, board = build(items)
    (pgd,) = [e for e in board["entries"] if e["defense"] == "pgd-at"]
    seeds = [it.record for it in items if it.record["defense"]["id"] == "pgd-at"]
    assert pgd["n_seeds"] == 3 and pgd["seeds"] == [0, 1, 2]
    assert pgd["clean_acc"] == pytest.approx(sum(r["clean_acc"] for r in seeds) / 3, abs=1e-4)
    assert pgd["worst_case"]["0.3"] == pytest.approx(sum(r["worst_case"]["0.3"] for r in seeds) / 3, abs=1e-4)
    assert pgd["seed_sd"]["worst_case"]["0.3"] > 0
    assert "bootstrap" in board["statistics"]["interval"]


@pytest.mark.unit
def test_json_board_has_the_required_keys():
    _, board = build(_mixed())
    assert board["track"] == "mnist5k-cnn"
    assert {"id", "version", "sha256", "norm", "n_examples"} == set(board["protocol"])
    assert board["primary_eps"] == "0.3" and board["eps"] == ["0.1", "0.2", "0.3"]
    assert board["attacks"] == ["autoattack", "pgd"] and board["class_names"] == ["0", "1", "2"]
    assert board["attack_groups"] == {} and board["view"]["title"].startswith("Leaderboard: mnist5k-cnn")
    assert {c["method"] for c in board["claims"]} == {"dyart", "rat", "sovr", "classwise-at", "crm-liplt"}
    assert set(board["statistics"]) == {"interval", "comparison", "correction", "alpha", "rank_rule",
                                        "training_variance", "evaluation"}
    assert len(board["significance"]) == 10  # every pair of the five defenses
    for e in board["entries"]:
        assert {"rank", "defense", "n_seeds", "seeds", "clean_acc", "robust_acc", "worst_case", "worst_class",
                "worst_classes", "margin_corrected", "worst_class_robust_acc", "per_class_worst_case", "architecture", "external", "sweep", "fidelity",
                "recipe_overrides", "paper", "venue", "link", "median_input_margin", "logit_margin_percentiles",
                "frac_margin_below_half_primary", "sanity_fired", "sanity_noted", "certified_l2", "intervals",
                "seed_sd", "class_disparity", "attack_gain", "training", "tuning", "cost", "best_known"} == set(e)
        lo, hi = e["intervals"]["worst_case"]["0.3"]
        assert lo <= e["worst_case"]["0.3"] <= hi
        for attack in board["attacks"]:
            lo, hi = e["intervals"]["robust_acc"][attack]["0.3"]
            assert lo <= e["robust_acc"][attack]["0.3"] <= hi
    assert json.loads(dumps_json(board)) == board


@pytest.mark.unit
def test_markdown_shows_intervals_ranks_rule_and_significance():
    md, board = build(_mixed())
    assert md.startswith("# Leaderboard: mnist5k-cnn (protocol mnist5k-cnn v1)")
    assert "**Ranks.** Rank = 1 + the number of entries significantly better" in md
    assert "ranks are tiers, not pairwise verdicts" in md
    assert "## Significance of every pair" in md and "How to read this board" in md
    for d in _ids(board):
        assert f"[{d}](https://example.org/{d})" in md
    for header in ("clean (%)", "autoattack (%)", "pgd (%)", "worst case (%)", "worst class (%)", "class disparity p",
                   "recipe overrides", "eps=0.1", "eps=0.3"):
        assert header in md
    assert "lr=0.05, opt=adam" in md
    top = board["entries"][0]
    row = next(line for line in md.splitlines() if f"[{top['defense']}]" in line)
    half = (top["intervals"]["worst_case"]["0.3"][1] - top["intervals"]["worst_case"]["0.3"][0]) * 50
    assert f"{top['worst_case']['0.3'] * 100:.2f} ±{half:.1f}" in row


@pytest.mark.unit
def test_markdown_escapes_pipes():
    md, _ = build([consistent("x", recipe_overrides={"note": "a|b"})])
    assert "note=a\\|b" in md


@pytest.mark.unit
def test_output_is_independent_of_input_order():
    items = _mixed()
    md0, board0 = build(items)
    for seed in range(3):
        shuffled = items[:]
        random.Random(seed).shuffle(shuffled)
        md, board = build(shuffled)
        assert md == md0 and dumps_json(board) == dumps_json(board0)


@pytest.mark.parametrize("other, words", [
    (consistent("y", version=2), ["mnist5k-cnn v1", "mnist5k-cnn v2"]),
    (consistent("y", protocol_id="other-linf"), ["mnist5k-cnn v1", "other-linf v1"]),
    (consistent("y", track="cifar10-prn18"), ["cifar10-prn18", "mnist5k-cnn"]),
    (consistent("y", eps=("0.1", "0.3")), ["disagree", "bump its version"]),
    (consistent("x", seed=0), ["several records for one seed"]),
    (consistent("x", seed=1, recipe_overrides={"lr": 1}), ["seeds of defense x differ"]),
])
@pytest.mark.unit
def test_inconsistent_records_raise(other, words):
    with pytest.raises(AtbenchError) as info:
        build([consistent("x", seed=0), other])
    for w in words:
        assert w in str(info.value)


@pytest.mark.unit
def test_records_of_other_code_versions_or_other_points_are_refused():
    newer = consistent("y")
    newer.record["versions"]["evaluation"] += 1
    with pytest.raises(AtbenchError, match="different atbench code"):
        build([consistent("x"), newer])
    shifted = consistent("y")
    shifted.flags.indices[0] = 10_000
    with pytest.raises(AtbenchError, match="other test points"):
        build([consistent("x"), shifted])


@pytest.mark.unit
def test_build_rejects_no_records_and_invalid_records():
    with pytest.raises(AtbenchError):
        build([])
    bad = consistent("x")
    bad.record["clean_acc"] = 2.0
    with pytest.raises(RecordError, match="clean_acc"):
        build([bad])


@pytest.mark.unit
def test_pngs_are_valid_and_deterministic():
    items = _mixed()
    md, board = build(items)
    backend = matplotlib.get_backend()
    files = board_files(md, board, [it.record for it in items])
    for suffix in (".png", ".classwise.png", ".significance.png", ".cost.png"):
        assert files[suffix].startswith(PNG_MAGIC) and b"Software" not in files[suffix]
    assert plot_robustness(json.loads(dumps_json(board))) == files[".png"]
    assert board_files(md, board, [it.record for it in items]) == files
    assert matplotlib.get_backend() == backend


@pytest.mark.unit
def test_find_records_sorted_and_validated(tmp_path):
    for item in reversed(_mixed()):
        write_consistent(tmp_path / "mnist5k-cnn" / item.record["defense"]["id"], item.record["defense"]["id"],
                         item.record["seed"])
    found = find_records(tmp_path, "mnist5k-cnn")
    assert [p for p, _ in found] == sorted(p for p, _ in found) and len(found) == 7
    assert find_records(tmp_path, "cifar10-prn18") == []


@pytest.mark.unit
def test_find_records_rejects_a_record_under_the_wrong_protocol(tmp_path):
    path = write_consistent(tmp_path / "mnist5k-cnn", "x", track="cifar10-prn18", protocol_id="cifar10-prn18")
    with pytest.raises(RecordError, match="protocol.id") as info:
        find_records(tmp_path, "mnist5k-cnn")
    assert str(path) in str(info.value)


@pytest.mark.unit
def test_write_board_writes_every_file_and_rewrites_identical_bytes(tmp_path):
    items = [write_consistent(tmp_path / "records" / "mnist5k-cnn", d, robust=r, flag_seed=i)
             for i, (d, r) in enumerate((("a", 0.7), ("b", 0.4), ("c", 0.65)))]
    paths = write_board(tmp_path / "records", "mnist5k-cnn", tmp_path / "boards")
    assert [p.name for p in paths] == ["mnist5k-cnn.md", "mnist5k-cnn.json", "mnist5k-cnn.html", "mnist5k-cnn.png",
                                       "mnist5k-cnn.classwise.png", "mnist5k-cnn.significance.png",
                                       "mnist5k-cnn.cost.png"]
    assert "mnist5k-cnn.html" in (tmp_path / "boards" / "index.html").read_text()
    first = [p.read_bytes() for p in paths]
    write_board(tmp_path / "records", "mnist5k-cnn", tmp_path / "boards")
    assert [p.read_bytes() for p in paths] == first and len(items) == 3


@pytest.mark.unit
def test_write_board_without_records_says_to_run(tmp_path):
    with pytest.raises(AtbenchError, match="no records for protocol 'mnist5k-cnn'") as info:
        write_board(tmp_path, "mnist5k-cnn", tmp_path / "boards")
    assert "atbench run" in info.value.fix


@pytest.mark.unit
def test_write_board_names_a_truncated_record(tmp_path):
    path = write_consistent(tmp_path / "mnist5k-cnn", "x")
    path.write_text(path.read_text()[:100])
    with pytest.raises(RecordError) as info:
        write_board(tmp_path, "mnist5k-cnn", tmp_path / "boards")
    assert str(path) in str(info.value) and "not valid JSON" in str(info.value)


@pytest.mark.system
def test_leaderboard_imports_neither_torch_nor_pyplot():
    code = ("import sys, leaderboard.build, leaderboard.plot, leaderboard.records, leaderboard.record, "
            "leaderboard.record_docs, leaderboard.robustbench, leaderboard.stats, leaderboard.evidence; "
            "bad = {'torch', 'matplotlib.pyplot'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


@pytest.mark.unit
def test_fired_flags_and_notes_are_shown_with_their_detail():
    flagged, noted = consistent("masked"), consistent("noted", flag_seed=3)
    flagged.record["sanity"]["square_beats_white_box"].update(fired=True, noted=True, value=0.2,
                                                             detail="Square broke 40 of 200 points")
    noted.record["sanity"]["square_beats_white_box"].update(noted=True, detail="Square broke 1 of 200 points")
    md, board = build([flagged, noted, consistent("clean", flag_seed=9)])
    entry = {e["defense"]: e for e in board["entries"]}
    assert entry["masked"]["sanity_fired"] == {"square_beats_white_box": {
        "seed": 0, "detail": "Square broke 40 of 200 points", "value": 0.2, "threshold": 0.0, "p_value": None}}
    assert entry["noted"]["sanity_fired"] == {} and "square_beats_white_box" in entry["noted"]["sanity_noted"]
    assert "`square_beats_white_box`: seed 0: Square broke 40 of 200 points" in md
    assert ("- noted: `square_beats_white_box`: seed 0: Square broke 1 of 200 points. Not a flag: not above the "
            "flag's threshold (0% of the points ≤ 0% of the points)") in md


@pytest.mark.unit
def test_certified_accuracy_table_appears_when_records_have_it():
    lip = consistent("lip")
    lip.record["certified_l2"] = {"radii": ["0.5"], "certified_acc": {"0.5": 0.25}, "pgd_l2_acc": {"0.5": 0.75},
                                  "pgd_l2_steps": 50, "lipschitz_max": 3.0,
                                  "lipschitz_method": "exact (float64 Gram matrices)", "median_radius": 0.4}
    md, board = build([lip, consistent("plain", flag_seed=2)])
    assert {e["defense"]: e["certified_l2"] for e in board["entries"]}["lip"] == {
        "0.5": {"certified": 0.25, "pgd_l2": 0.75}}
    assert "25.00 / 75.00" in md and "Certified L2 accuracy" in md
    assert "Not in this table:\n\n- plain: its records have no certified block" in md
    assert "Certified L2 accuracy" not in build([consistent("plain")])[0]
