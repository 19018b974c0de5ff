"""The RobustBench export: RobustBench's field names, percentages from the records' fractions,
sanity flags as `unreliable`, files written atomically and only when every record converts."""
from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from benchmark.core.errors import AtbenchError
from benchmark.core.io import dumps_json
from leaderboard.flags import SANITY_FLAGS
from leaderboard.record import RecordError, load_record
from leaderboard.robustbench import (
    ROBUSTBENCH_FIELDS,
    export_robustbench,
    percent,
    robustbench_entry,
)
from tests.fixtures_records import make_record, write_consistent

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
TRACK_DIR = ROOT / "leaderboard" / "records" / "mnist5k-cnn"
RECORD_FILES = sorted(TRACK_DIR.glob("*.json"))
needs_records = pytest.mark.skipif(not RECORD_FILES, reason="no committed mnist5k-cnn records")

# RobustBench's model_info fields (robustbench/utils.py ModelInfo plus the hand-added `unreliable`;
# /work/shared/research/anchors.md section 2.1), without the corruption fields and `external`.
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
