"""`atbench export robustbench` reads records only through admission
(`leaderboard.admission.admit`): an edited number or a flags file that is not the regular file
beside its record stops the export with exit 2, naming the record and the field, and nothing is
written."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmark.commands.cli import main

pytestmark = pytest.mark.system  # calls the CLI (in process)

COMMITTED = Path(__file__).resolve().parents[1] / "leaderboard" / "records" / "mnist5k-cnn"


def _copy(tmp_path: Path, name: str = "pgd-at-seed0") -> Path:
    """A committed record and its flags file, copied into `tmp_path/records/`."""
    folder = tmp_path / "records"
    folder.mkdir()
    shutil.copy(COMMITTED / f"{name}.json", folder)
    shutil.copy(COMMITTED / f"{name}.flags.npz", folder)
    return folder / f"{name}.json"


def _export(tmp_path: Path, capsys) -> tuple[int, str]:
    code = main(["export", "robustbench", str(tmp_path / "records"), "--out", str(tmp_path / "out")])
    return code, capsys.readouterr().err


def test_committed_record_exports(tmp_path, capsys):
    """Breaks if an untouched committed record is refused (the checks below would pass vacuously)."""
    _copy(tmp_path)
    assert _export(tmp_path, capsys)[0] == 0 and (tmp_path / "out" / "pgd-at-seed0.json").is_file()


def test_edited_autoattack_accuracy_is_refused(tmp_path, capsys):
    """Breaks if a record whose AutoAttack accuracy was edited (to 99%) is exported: the export
    must exit 2 naming the record and the field, and write nothing."""
    record_path = _copy(tmp_path)
    record = json.loads(record_path.read_text())
    primary = record["protocol"]["primary_eps"]
    assert record["robust_acc"]["autoattack"][primary] != 0.99
    record["robust_acc"]["autoattack"][primary] = 0.99
    record_path.write_text(json.dumps(record))
    code, err = _export(tmp_path, capsys)
    assert code == 2 and "Traceback" not in err
    assert str(record_path) in err and f"robust_acc.autoattack.{primary}" in err and "  fix: " in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("target", ["system-file", "true-flags-elsewhere"])
def test_flags_file_that_is_a_link_is_refused(tmp_path, capsys, target):
    """Breaks if a flags file that is a link leaving the records folder is followed: to a system
    file, or even to a copy of the record's true flags (the hash would match), the export must
    exit 2 naming the record and `flags.file`, and write nothing."""
    record_path = _copy(tmp_path)
    flags = record_path.with_name(json.loads(record_path.read_text())["flags"]["file"])
    if target == "system-file":
        link_to = Path("/etc/passwd")
    else:
        link_to = tmp_path / "elsewhere.npz"
        shutil.copy(flags, link_to)
    flags.unlink()
    flags.symlink_to(link_to)
    code, err = _export(tmp_path, capsys)
    assert code == 2 and str(record_path) in err and "`flags.file`" in err and "is a link" in err, err
    assert not (tmp_path / "out").exists()


def test_flags_file_named_outside_the_records_folder_is_refused(tmp_path, capsys):
    """Breaks if `flags.file` may name a path (`../x.npz`) instead of the file beside the record."""
    record_path = _copy(tmp_path)
    record = json.loads(record_path.read_text())
    shutil.move(record_path.with_name(record["flags"]["file"]), tmp_path / record["flags"]["file"])
    record["flags"]["file"] = f"../{record['flags']['file']}"
    record_path.write_text(json.dumps(record))
    code, err = _export(tmp_path, capsys)
    assert code == 2 and "`flags.file`" in err and "not a file name beside the record" in err, err
    assert not (tmp_path / "out").exists()
