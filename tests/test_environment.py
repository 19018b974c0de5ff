"""Every `ATBENCH_*` environment value is checked exactly like the option it stands for
(`benchmark.commands.arguments.ENVIRONMENT`), with one error naming the variable."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmark.commands.arguments import ENVIRONMENT
from benchmark.commands.cli import main

pytestmark = pytest.mark.system  # calls the CLI (in process)

PACKAGE = Path(__file__).resolve().parents[1] / "benchmark"


def test_every_variable_atbench_reads_is_checked():
    """Breaks if code under benchmark/ names an ATBENCH_* variable that `ENVIRONMENT` does not
    check like an option (it would be read unchecked)."""
    named = {m for path in PACKAGE.rglob("*.py") for m in re.findall(r"ATBENCH_[A-Z_]+", path.read_text())}
    assert named and named <= set(ENVIRONMENT)


@pytest.mark.parametrize("argv", [["data", "ls"], ["data", "download", "mnist", "--mirror", "http://127.0.0.1:1/"],
                                  ["run", "--track", "synthetic-tiny"], ["bench", "--points", "1"]])
def test_data_dir_variable_naming_a_file_is_refused_like_the_option(argv, tmp_path, monkeypatch, capsys):
    """Breaks if $ATBENCH_DATA_DIR pointing at a plain file is accepted (`data ls` listed every
    data set as missing) while `--data-dir` with the same file is refused, or if the error does
    not name the variable."""
    plain = tmp_path / "plain-file"
    plain.write_text("not a folder")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ATBENCH_DATA_DIR", str(plain))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("atbench: error: $ATBENCH_DATA_DIR") and f"{plain} is a file, not a folder" in err
    assert "  fix: " in err and "--data-dir" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain-file"]
    assert main([*argv, "--data-dir", str(plain)]) == 2
    assert f"{plain} is a file, not a folder" in capsys.readouterr().err


def test_option_overrides_the_variable_and_a_folder_is_accepted(tmp_path, monkeypatch, capsys):
    """Breaks if a given --data-dir does not replace the variable (a bad value it replaces would
    still stop the command), or if a valid folder in the variable is refused or not used."""
    plain = tmp_path / "plain-file"
    plain.write_text("x")
    monkeypatch.setenv("ATBENCH_DATA_DIR", str(plain))
    assert main(["data", "ls", "--data-dir", str(tmp_path / "data")]) == 0
    monkeypatch.setenv("ATBENCH_DATA_DIR", str(tmp_path / "env-data"))
    assert main(["data", "ls"]) == 0
    assert str(tmp_path / "env-data") in capsys.readouterr().out
