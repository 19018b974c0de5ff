"""`atbench attack` end to end on the synthetic-tiny track (its protocol without AutoAttack): a
trained run and an external input-quantized model are attacked by BPDA, their attack records are
admitted, an entry whose run is not at hand is listed with the reason, a re-run skips finished
work, and BPDA shows that the protocol overstates the quantized model."""
from __future__ import annotations

import json
import shutil

import pytest

from benchmark.commands.cli import main
from leaderboard.attack_admission import admitted_attacks
from leaderboard.best_known import OVERSTATED, best_known
from leaderboard.records import find_records
from tests.fixtures_records import write_consistent
from tests.helpers import run_track, white_box_protocol

pytestmark = pytest.mark.system

PLANTED_MODULE = """
from benchmark.models.architectures import build_model
from benchmark.models.planted import quantized


def tiny_quantized():
    return quantized(build_model("cnn-tiny", 10, (1, 28, 28), (0.0,), (1.0,)), 4)
"""


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """A folder with the trained standard run, its published record and the white-box protocol."""
    root = tmp_path_factory.mktemp("attack")
    protocol = white_box_protocol(root)
    run_track("synthetic-tiny", ["standard"], runs_dir=root / "runs", records_dir=root / "records",
              boards_dir=root / "boards", protocol=str(root / "white-box.toml"), jobs=1)
    return root, protocol


def folders(root):
    return ["--track", "synthetic-tiny", "--protocol", str(root / "white-box.toml"), "--runs-dir", str(root / "runs"),
            "--records-dir", str(root / "records"), "--attack-records-dir", str(root / "attacks")]


def test_a_trained_entry_is_attacked_and_its_record_admitted_and_a_rerun_skips_it(board, capsys, monkeypatch):
    root, protocol = board
    monkeypatch.chdir(root)
    absent = write_consistent(root / "elsewhere", "pgd-at", 3)  # an entry whose run is not at hand
    record = json.loads(absent.read_text())
    record["protocol"], record["track"] = json.loads((root / "records" / protocol.id / "standard-seed0.json")
                                                     .read_text())["protocol"], "synthetic-tiny"
    assert main(["attack", "--attack", "multi-targeted", *folders(root)]) == 0
    out = capsys.readouterr().out
    assert "standard seed 0: " in out and "multi-targeted--standard-seed0.json (eps 0.1: protocol" in out
    entries = {(r["defense"]["id"], r["seed"]): r for _, r in find_records(root / "records", protocol.id)}
    written = root / "attacks" / protocol.id / "multi-targeted--standard-seed0.json"
    before = written.read_bytes()
    assert main(["attack", "--attack", "multi-targeted", *folders(root)]) == 0
    assert written.read_bytes() == before  # finished and admitted: skipped
    from benchmark.pipeline.attack_targets import board_entries

    admitted = admitted_attacks(root / "attacks", protocol.id, board_entries(root / "records", protocol))
    assert [a.attack for a in admitted] == ["multi-targeted"] and set(entries) == {("standard", 0)}
    saved = json.loads(before)
    assert saved["entry"]["checkpoint_sha256"] == entries["standard", 0]["provenance"]["checkpoint_sha256"]
    assert saved["attack"] == {"id": "multi-targeted", "source": "atbench", "source_sha256": saved["attack"][
        "source_sha256"], "config": "MultiTargeted.Config(norm='Linf', seed=0, steps=50, restarts=1, step_ratio=0.25)"}


def test_entries_not_at_hand_are_listed_and_none_at_all_is_an_error(board, capsys, tmp_path):
    root, protocol = board
    records = tmp_path / "records"
    shutil.copytree(root / "records", records)
    argv = [a if a != str(root / "records") else str(records) for a in folders(root)]
    argv[argv.index("--runs-dir") + 1] = str(tmp_path / "no-runs")
    assert main(["attack", "--attack", "bpda", *argv]) == 2
    captured = capsys.readouterr()
    assert f"standard seed 0: not attacked: no trained run in {tmp_path / 'no-runs'}" in captured.out
    assert "no entry of the synthetic-tiny-white-box board" in captured.err


def test_bpda_shows_the_protocol_overstates_an_input_quantized_external_model(board, capsys, monkeypatch):
    root, protocol = board
    monkeypatch.chdir(root)
    (root / "planted_tiny.py").write_text(PLANTED_MODULE)
    checkpoint = str(root / "runs" / "synthetic-tiny" / "standard" / "seed0" / "best.pt")
    model = ["--model", "planted_tiny:tiny_quantized", "--checkpoint", checkpoint, "--name", "quantized"]
    common = ["--track", "synthetic-tiny", "--protocol", str(root / "white-box.toml")]
    assert main(["eval", *common, *model, "--runs-dir", str(root / "runs"), "--records-dir", str(root / "records"),
                 "--boards-dir", str(root / "boards"), "-q"]) == 0
    capsys.readouterr()
    assert main(["attack", "--attack", "bpda", *folders(root), *model]) == 0
    out = capsys.readouterr().out
    assert "quantized seed 0: " in out and "bpda--quantized-seed0.json (eps 0.1: protocol" in out
    from benchmark.pipeline.attack_targets import board_entries

    entries = board_entries(root / "records", protocol)
    attacks = [a for a in admitted_attacks(root / "attacks", protocol.id, entries) if a.attack == "bpda"]
    known = best_known(entries["quantized", 0], attacks)[protocol.eps[-1]]  # eps 0.2
    assert known.best_known_acc < known.protocol_acc and known.p_value < 0.05 and known.flag == OVERSTATED
    assert all(names == ("bpda",) for names in known.broken_beyond.values())


def _load_tool():
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "tools" / "official_checkpoints.py"
    spec = importlib.util.spec_from_file_location("official_checkpoints", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_official_entries_are_attacked_from_their_shipped_checkpoints(board, capsys, monkeypatch, tmp_path):
    """No trained run at hand: `tools/official_checkpoints.py` ships the entry's checkpoint (a stale
    one is removed), `atbench attack` finds it by its sha256, and `--with-official` brings the
    official entries to a user whose own records folder is empty. The attack record equals, flags
    byte for byte, the one made from the trained run."""
    import benchmark.commands.attack as attack_command

    root, protocol = board
    shipped = tmp_path / "checkpoints"
    (shipped / protocol.id).mkdir(parents=True)
    (shipped / protocol.id / "gone-seed0.pt").write_bytes(b"a checkpoint of no record")
    tool = _load_tool()
    assert tool.main([str(root / "runs"), "--protocol", protocol.id, "--records-dir", str(root / "records"),
                      "--checkpoints-dir", str(shipped)]) == 0
    assert sorted(p.name for p in (shipped / protocol.id).iterdir()) == ["standard-seed0.pt"]
    monkeypatch.setattr(attack_command, "official_checkpoints", lambda: shipped)
    monkeypatch.setattr(attack_command, "official_records", lambda: root / "records")
    mine = ["--track", "synthetic-tiny", "--protocol", str(root / "white-box.toml"), "--runs-dir",
            str(tmp_path / "no-runs"), "--records-dir", str(tmp_path / "my-records"), "--attack-records-dir",
            str(tmp_path / "my-attacks")]
    assert main(["attack", "--attack", "bpda", *mine]) == 2  # my folder holds no entry
    assert "it has no records" in capsys.readouterr().err
    assert main(["attack", "--attack", "bpda", *mine, "--with-official", "-q"]) == 0
    assert "standard seed 0: " in capsys.readouterr().out
    assert main(["attack", "--attack", "bpda", *folders(root)]) == 0  # from the trained run
    name = "bpda--standard-seed0.flags.npz"
    assert (tmp_path / "my-attacks" / protocol.id / name).read_bytes() == \
        (root / "attacks" / protocol.id / name).read_bytes()
    # an entry of mine that is an official entry too, from another file: one error
    shutil.copytree(root / "records", tmp_path / "copy")
    copy = [a if a != str(tmp_path / "my-records") else str(tmp_path / "copy") for a in mine]
    assert main(["attack", "--attack", "bpda", *copy, "--with-official"]) == 2
    assert f"seed 0 is both an official entry and one of {tmp_path / 'copy'}" in capsys.readouterr().err
