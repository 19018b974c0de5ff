"""Where `atbench compare` finds a side's records: `--records-dir`, else the current folder's
records, else the official records shipped with atbench; a `BOARD.json:NAME` entry first in the
records folder beside the board's folder. A board JSON's protocol id is a name, never a path."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmark.commands.cli import main
from benchmark.core.workspace import official_records

pytestmark = pytest.mark.system  # calls the CLI (in process)

BOARD = Path(__file__).resolve().parents[1] / "leaderboard" / "boards" / "smoke.json"


def test_an_official_entry_is_found_from_an_empty_folder(in_tmp, capsys):
    assert main(["compare", "pgd-at", "trades", "--track", "smoke"]) == 0
    assert "pgd-at vs trades" in capsys.readouterr().out
    assert list(in_tmp.iterdir()) == []


def test_a_board_entry_is_found_beside_its_board_from_another_folder(tmp_path, monkeypatch, capsys):
    project = tmp_path / "other" / "leaderboard"
    shutil.copytree(official_records() / "smoke", project / "records" / "smoke")
    (project / "boards").mkdir()
    shutil.copy(BOARD, project / "boards" / "smoke.json")
    (project / "records" / "smoke" / "pgd-at-seed1.json").unlink()  # so the side must come from here
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["compare", str(project / "boards" / "smoke.json") + ":pgd-at", "trades", "--track", "smoke"]) == 0
    assert "2 vs 3 seeds" in capsys.readouterr().out


def test_a_board_whose_protocol_id_is_a_path_is_refused(in_tmp, capsys):
    board = json.loads(BOARD.read_text())
    board["protocol"]["id"] = "../mnist5k-cnn"
    (in_tmp / "forged.json").write_text(json.dumps(board))
    assert main(["compare", "forged.json:pgd-at", "trades", "--track", "smoke"]) == 2
    err = capsys.readouterr().err
    assert "its protocol id '../mnist5k-cnn' is not a name" in err and err.count("atbench: error:") == 1
