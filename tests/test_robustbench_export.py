"""The RobustBench export: RobustBench's field names, percentages from the records' fractions,
sanity flags as `unreliable`, files written atomically and only when every record converts."""
from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from benchmark.core.errors import AtbenchError
from benchmark.core.io import dumps_json
from leaderboard.flags import SANITY_FLAGS
from leaderboard.record import RecordError, load_record
from leaderboard.robustbench import (
    EXTERNAL,
    ROBUSTBENCH_FIELDS,
    attack_records_of,
    export_robustbench,
    percent,
    robustbench_entry,
)
from tests.attack_fixtures import PROTOCOL, broken_already, write_records
from tests.fixtures_records import make_record, write_consistent
from tests.test_attack_records import robust_positions, write_attack

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
TRACK_DIR = ROOT / "leaderboard" / "records" / "mnist5k-cnn"
RECORD_FILES = sorted(TRACK_DIR.glob("*.json"))
needs_records = pytest.mark.skipif(not RECORD_FILES, reason="no committed mnist5k-cnn records")

# RobustBench's model_info fields (robustbench/utils.py ModelInfo plus the hand-added `unreliable`;
# /work/shared/research/anchors.md section 2.1), without the corruption fields and `external` (present
# only when submitted attacks broke points beyond the protocol: the tests at the end).
ROBUSTBENCH_NAMES = {"link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue",
                     "architecture", "eps", "clean_acc", "reported", "autoattack_acc", "footnote", "unreliable"}


@needs_records
@pytest.mark.parametrize("path", RECORD_FILES, ids=lambda p: p.name)
def test_entry_fields_and_numbers_follow_the_record(path):
    record = load_record(path)
    entry = robustbench_entry(record)
    assert set(entry) == ROBUSTBENCH_NAMES == set(ROBUSTBENCH_FIELDS)
    primary = record["protocol"]["primary_eps"]
    # 200 test points: every accuracy is a multiple of 0.5 %, so two decimals are exact.
    assert Decimal(entry["clean_acc"]) == Decimal(repr(record["clean_acc"])) * 100
    assert Decimal(entry["autoattack_acc"]) == Decimal(repr(record["robust_acc"]["autoattack"][primary])) * 100
    for field in ("clean_acc", "autoattack_acc"):
        assert entry[field].count(".") == 1 and len(entry[field].split(".")[1]) == 2
    assert entry["eps"] == primary == "0.3"
    assert entry["dataset"] == "mnist" and entry["reported"] is None
    assert entry["architecture"] == record["architecture"] and entry["link"] == record["defense"]["link"]
    assert entry["number_forward_passes"] == 1 and entry["additional_data"] is False
    assert f"{percent(record['worst_case'][primary])}%" in entry["footnote"]


@needs_records
@pytest.mark.parametrize("path", RECORD_FILES, ids=lambda p: p.name)
def test_unreliable_and_footnote_follow_the_sanity_flags(path):
    record = load_record(path)
    entry = robustbench_entry(record)
    fired = {n for n in SANITY_FLAGS if record["sanity"][n]["fired"]}
    assert entry["unreliable"] is bool(fired)
    assert ("sanity flags fired" in entry["footnote"]) is bool(fired)
    assert {n for n in SANITY_FLAGS if n in entry["footnote"]} == fired


def test_percent_formats_two_decimals():
    assert [percent(x) for x in (0.735, 1.0, 0.0, 0.1, 0.98766)] == ["73.50", "100.00", "0.00", "10.00", "98.77"]
    assert [percent(x) for x in (0.98765, 0.98775)] == ["98.76", "98.78"]  # ties go to the even digit


def test_a_fired_flag_in_a_fixture_record_is_named():
    record = make_record()
    record["sanity"]["square_beats_white_box"]["fired"] = True
    entry = robustbench_entry(record)
    assert entry["unreliable"] is True and "square_beats_white_box" in entry["footnote"]


def test_record_without_autoattack_is_rejected(tmp_path):
    write_consistent(tmp_path / "in", "pgd-at")
    write_consistent(tmp_path / "in", "mart", attacks=("pgd", "cw"))
    with pytest.raises(AtbenchError, match="autoattack") as info:
        export_robustbench(tmp_path / "in", tmp_path / "out")
    assert "mart" in str(info.value) and info.value.fix
    assert not (tmp_path / "out").exists()  # nothing written, not even the good record


@needs_records
def test_export_writes_one_readable_file_per_record(tmp_path):
    paths = export_robustbench(TRACK_DIR, tmp_path / "rb")
    assert [p.name for p in paths] == [p.name for p in RECORD_FILES]  # <defense>-seed<k>.json
    for path, source in zip(paths, RECORD_FILES):
        assert json.loads(path.read_text()) == robustbench_entry(load_record(source))
    assert sorted(p.name for p in (tmp_path / "rb").iterdir()) == sorted(p.name for p in paths)  # no temp files


def test_export_takes_a_list_of_files_and_names_by_defense_and_seed(tmp_path):
    files = [write_consistent(tmp_path, "trades", seed) for seed in (0, 3)]
    paths = export_robustbench(files, tmp_path / "out")
    assert [p.name for p in paths] == ["trades-seed0.json", "trades-seed3.json"]


def test_export_rejects_two_records_for_one_file(tmp_path):
    for track in ("mnist5k-cnn", "smoke"):
        write_consistent(tmp_path / track, track=track, protocol_id=track)
    with pytest.raises(AtbenchError, match="both export to pgd-at-seed0.json"):
        export_robustbench(tmp_path, tmp_path / "out")


def test_export_rejects_an_empty_directory_and_an_invalid_record(tmp_path):
    with pytest.raises(AtbenchError, match="no records"):
        export_robustbench(tmp_path, tmp_path / "out")
    bad = make_record()
    bad["clean_acc"] = 1.5
    (tmp_path / "bad.json").write_text(dumps_json(bad))
    with pytest.raises(RecordError, match="clean_acc"):
        export_robustbench(tmp_path, tmp_path / "out")


@pytest.fixture
def attacked(tmp_path):
    """Records of pgd-at (planted: `bpda` breaks 5 points beyond the protocol at the primary eps,
    `eot-pgd` one of them), trades (honest: `multi-targeted` breaks only points the protocol broke)
    and mart (`eot-pgd` breaks 2 points beyond the protocol), with their attack records."""
    records, attacks = tmp_path / "records", tmp_path / "attack_records"
    entries = write_records(records, {"pgd-at": (0,), "trades": (0,), "mart": (0,)})
    folder = attacks / PROTOCOL
    planted, honest, mart = entries[("pgd-at", 0)], entries[("trades", 0)], entries[("mart", 0)]
    five = robust_positions(planted, "0.3", 5)
    write_attack(folder, planted, "bpda", {"0.3": five})
    write_attack(folder, planted, "eot-pgd", {"0.3": five[:1]})
    write_attack(folder, honest, "multi-targeted", {"0.2": broken_already(honest, "0.2", 4)})
    write_attack(folder, mart, "eot-pgd", {"0.3": robust_positions(mart, "0.3", 2)})
    return records, attacks, entries


def _exported(out) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}


def test_external_is_the_best_known_accuracy_when_a_submitted_attack_broke_points_beyond_the_protocol(attacked,
                                                                                                       tmp_path):
    records, attacks, entries = attacked
    export_robustbench(records, tmp_path / "out", attacks)
    out = _exported(tmp_path / "out")
    planted = out["pgd-at-seed0"]
    robust = int(entries[("pgd-at", 0)].record["worst_case"]["0.3"] * 300 + 0.5)
    assert planted[EXTERNAL] == percent((robust - 5) / 300)
    assert Decimal(planted[EXTERNAL]) < Decimal(planted["autoattack_acc"])
    assert f"{planted[EXTERNAL]}% robust accuracy is due to the submitted attacks bpda (5 points), eot-pgd " \
           "(1 point) beside the protocol's attack columns (atbench attack records): 5 points the protocol's attacks " \
           "left robust were broken (one-sided exact paired test p = 0.031)." in planted["footnote"]
    # the honest entry: its submitted attack broke nothing beyond the protocol, so no external field at all
    honest = out["trades-seed0"]
    assert EXTERNAL not in honest and "due to" not in honest["footnote"]
    assert honest == robustbench_entry(entries[("trades", 0)].record)
    # two points beyond the protocol are not significant, yet best known is lower: external says so, with its p
    assert out["mart-seed0"][EXTERNAL] == percent(
        (int(entries[("mart", 0)].record["worst_case"]["0.3"] * 300 + 0.5) - 2) / 300)
    assert "due to the submitted attack eot-pgd (2 points)" in out["mart-seed0"]["footnote"]
    assert "p = 0.25" in out["mart-seed0"]["footnote"]
    # every other field is there as without attack records
    for entry in out.values():
        assert set(entry) - {EXTERNAL} == set(ROBUSTBENCH_FIELDS)


def test_without_attack_records_the_export_is_unchanged(attacked, tmp_path):
    records, _, entries = attacked
    moved = tmp_path / "elsewhere" / "records"  # the same records, with no attack_records folder beside them
    shutil.copytree(records, moved)
    export_robustbench(moved, tmp_path / "plain")
    export_robustbench(records, tmp_path / "none", tmp_path / "missing")
    assert _exported(tmp_path / "plain") == _exported(tmp_path / "none") == {
        f"{d}-seed{s}": robustbench_entry(item.record) for (d, s), item in entries.items()}


def test_by_default_the_attack_records_beside_the_exported_records_folder_are_read(attacked, tmp_path):
    records, attacks, _ = attacked
    assert attack_records_of(records / PROTOCOL / "pgd-at-seed0.json") == attacks
    export_robustbench(records, tmp_path / "given", attacks)
    export_robustbench(records / PROTOCOL, tmp_path / "beside")
    export_robustbench(sorted((records / PROTOCOL).glob("*.json")), tmp_path / "files")
    given = _exported(tmp_path / "given")
    assert EXTERNAL in given["pgd-at-seed0"]
    assert _exported(tmp_path / "beside") == _exported(tmp_path / "files") == given


def test_attack_records_of_records_not_exported_are_left_out_and_a_refused_one_is_an_error(attacked, tmp_path):
    records, attacks, entries = attacked
    export_robustbench(records / PROTOCOL / "trades-seed0.json", tmp_path / "one", attacks)
    assert list(_exported(tmp_path / "one")) == ["trades-seed0"]

    def claim_more(record):
        record["broken"]["0.3"] += 1

    path = write_attack(attacks / PROTOCOL, entries[("trades", 0)], "bpda", {}, claim_more)
    with pytest.raises(AtbenchError) as info:
        export_robustbench(records, tmp_path / "bad", attacks)
    assert str(path) in info.value.problem and "field `broken.0.3`" in info.value.problem
    assert not (tmp_path / "bad").exists()


def test_atbench_export_takes_the_attack_records_folder(attacked, tmp_path, capsys):
    from benchmark.commands.cli import main

    records, attacks, _ = attacked
    args = ["export", "robustbench", str(records / PROTOCOL), "--out", str(tmp_path / "cli")]
    assert main([*args, "--attack-records-dir", str(attacks)]) == 0
    assert EXTERNAL in _exported(tmp_path / "cli")["pgd-at-seed0"]
    assert main([*args, "--attack-records-dir", str(tmp_path / "missing")]) == 0
    assert EXTERNAL not in _exported(tmp_path / "cli")["pgd-at-seed0"]
    assert main(args) == 0  # by default, the attack_records folder beside the records folder
    assert EXTERNAL in _exported(tmp_path / "cli")["pgd-at-seed0"]
