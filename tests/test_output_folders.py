"""A command's output folders lie apart (`benchmark.core.folders.check_apart`): a boards folder
inside its records folder once wrote the board among the records, and every later build failed
reading its own board JSON as a record."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmark.commands.cli import main
from benchmark.core.errors import AtbenchError
from benchmark.core.folders import check_apart

pytestmark = pytest.mark.system  # calls the CLI (in process)

SMOKE = Path(__file__).resolve().parents[1] / "leaderboard" / "records" / "smoke"


def _tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.mark.parametrize("boards", ["records/boards", "records", "records/smoke"])
def test_leaderboard_refuses_boards_inside_records_before_any_work(tmp_path, capsys, boards):
    """Breaks if `atbench leaderboard` writes board files among the records (the next build then
    fails on its own smoke.json) instead of one error naming both folders, before any work."""
    shutil.copytree(SMOKE, tmp_path / "records" / "smoke")
    before = _tree(tmp_path)
    code = main(["leaderboard", "--track", "smoke", "--records-dir", str(tmp_path / "records"),
                 "--boards-dir", str(tmp_path / boards)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("atbench: error:") == 1, err
    assert "--boards-dir" in err and "--records-dir" in err and "  fix: " in err
    assert _tree(tmp_path) == before
    assert main(["leaderboard", "--track", "smoke", "--records-dir", str(tmp_path / "records"),
                 "--boards-dir", str(tmp_path / "boards")]) == 0


@pytest.mark.parametrize("argv", [
    ["leaderboard", "--track", "smoke", "--records-dir", "{t}/boards/records", "--boards-dir", "{t}/boards"],
    ["run", "--track", "synthetic-tiny", "--runs-dir", "{t}/out", "--records-dir", "{t}/out/records"],
    ["eval", "--track", "synthetic-tiny", "--runs-dir", "{t}/out/runs", "--records-dir", "{t}/out"],
    ["train", "--track", "synthetic-tiny", "--runs-dir", "{t}/same", "--records-dir", "{t}/same/."],
    ["tune", "--track", "synthetic-tiny", "--runs-dir", "{t}/sweeps/runs", "--sweeps-dir", "{t}/sweeps"],
])
def test_every_command_refuses_nested_output_folders(tmp_path, capsys, argv):
    """Breaks if records inside boards, records and runs nested either way (or the same folder),
    or runs inside sweeps are accepted, or if the refusal writes anything."""
    code = main([a.format(t=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and ("lies inside" in err or "is the same folder as" in err), err
    assert list(tmp_path.iterdir()) == []


def test_check_apart_resolves_links_and_ignores_unused_folders(tmp_path):
    """Breaks if a link into the records folder passes as a folder apart, or if folders that lie
    apart (or an option not used, None) are refused."""
    (tmp_path / "records").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "records")
    with pytest.raises(AtbenchError, match="lies inside"):
        check_apart({"--records-dir": tmp_path / "records", "--boards-dir": tmp_path / "link" / "boards"})
    check_apart({"--records-dir": tmp_path / "records", "--boards-dir": tmp_path / "records-boards",
                 "--runs-dir": None})
