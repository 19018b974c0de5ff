"""OS errors at the command boundary: write paths are judged before any work
(`benchmark.core.writable`, the argparse types), an OSError naming a path the user gave becomes
one `atbench: error:` (`benchmark.commands.os_errors`) while any other exception still raises,
a failed write at the end keeps the finished results, and a reader of stdout that leaves early
ends the command quietly."""
from __future__ import annotations

import argparse
import errno
from pathlib import Path

import pytest

from benchmark.commands import arguments as arg
from benchmark.commands import cli
from benchmark.commands.os_errors import user_error
from benchmark.core.writable import write_problem

pytestmark = pytest.mark.system  # calls the CLI (in process)


@pytest.fixture
def scene(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "afolder").mkdir()
    return tmp_path


@pytest.mark.parametrize("path, problem", [
    ("afile/x.json", "afile is a file, not a folder"),
    ("afolder/../afile/deeper/x", "is a file, not a folder"),
    ("x" * 300, "300 bytes long"),
    ("afolder/" + "é" * 200 + "/x", "400 bytes long"),
    pytest.param("/proc/version", "takes no new file",
                 marks=pytest.mark.skipif(not Path("/proc/version").exists(), reason="no /proc")),
])
def test_a_path_that_cannot_be_written_is_named_with_its_reason(scene, path, problem):
    assert problem in write_problem(path)


@pytest.mark.parametrize("path", ["new/deeper/x.json", "afolder", "afolder/x", "dös ñame/with space"])
def test_a_path_that_can_be_made_passes(scene, path):
    assert write_problem(path) is None


@pytest.mark.parametrize("parse, value", [(arg.folder, "afile/sub"), (arg.output_file, "afile/x.json"),
                                          (arg.output_path, "afile/x"), (arg.folder, "x" * 300),
                                          (arg.existing_file, "x" * 300), (arg.existing_path, "y" * 300)])
def test_the_path_types_refuse_an_unusable_path_without_raising_an_os_error(scene, parse, value):
    with pytest.raises(argparse.ArgumentTypeError):
        parse(value)


@pytest.mark.parametrize("argv", [["run", "--runs-dir", "afile/runs"], ["train", "--records-dir", "afile/x/y"],
                                  ["bench", "--json", "afile/b.json"], ["export", "json-schema", "--out", "afile/s.json"],
                                  ["regress", "--against", ".", "--junit", "afile/j.xml"],
                                  ["tune", "--sweeps-dir", "x" * 300]])
def test_a_write_path_that_cannot_be_made_stops_the_command_before_any_work(scene, capsys, argv):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("atbench: error:") == 1 and "cannot write" in err
    assert sorted(p.name for p in scene.iterdir()) == ["afile", "afolder"]


@pytest.mark.parametrize("exc", [NotADirectoryError(errno.ENOTDIR, "Not a directory", "a/b"),
                                 FileExistsError(errno.EEXIST, "File exists", "a/b"),
                                 PermissionError(errno.EACCES, "Permission denied", "a/b"),
                                 OSError(errno.ENAMETOOLONG, "File name too long", "a/b")])
def test_an_os_error_naming_a_path_is_a_user_error_naming_it(exc):
    error = user_error(exc)
    assert "a/b" in error.problem and error.fix


@pytest.mark.parametrize("exc", [OSError(errno.EIO, "I/O error"), FileNotFoundError(errno.ENOENT, "No such", "a"),
                                 OSError(errno.ENOTDIR, "Not a directory")])
def test_other_os_errors_are_not_user_errors(exc):
    assert user_error(exc) is None


def _failing_ls(exc):
    def command(args):
        raise exc
    return command


def test_main_prints_one_error_for_an_os_error_naming_a_path(monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, "ls", _failing_ls(NotADirectoryError(errno.ENOTDIR, "Not a directory", "f/x")))
    assert cli.main(["ls"]) == 2
    err = capsys.readouterr().err
    assert err.count("atbench: error:") == 1 and "f/x" in err and "fix:" in err


@pytest.mark.parametrize("exc", [OSError(errno.EIO, "I/O error"), ValueError("a bug")])
def test_main_lets_any_other_exception_raise(monkeypatch, exc):
    monkeypatch.setitem(cli.COMMANDS, "ls", _failing_ls(exc))
    with pytest.raises(type(exc)):
        cli.main(["ls"])


def test_a_reader_that_leaves_early_ends_the_command_quietly(monkeypatch, capsys):
    monkeypatch.setitem(cli.COMMANDS, "ls", _failing_ls(BrokenPipeError(errno.EPIPE, "Broken pipe")))
    assert cli.main(["ls"]) == 141
    assert capsys.readouterr().err == ""


def test_bench_keeps_its_table_when_the_json_cannot_be_written_at_the_end(scene, monkeypatch, capsys):
    import benchmark.commands.bench as bench
    import benchmark.pipeline.runner as runner

    def write_json(path, work, results):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(runner, "check_device", lambda device: None)
    monkeypatch.setattr(bench, "trained_workload", lambda *a: "work")
    monkeypatch.setattr(bench, "run_cases", lambda work, cases: ["result"])
    monkeypatch.setattr(bench, "markdown", lambda work, results: "| the table |")
    monkeypatch.setattr(bench, "write_json", write_json)
    assert cli.main(["bench", "--json", "out/b.json"]) == 2
    out, err = capsys.readouterr()
    assert "| the table |" in out
    assert err.count("atbench: error:") == 1 and "out/b.json" in err and "printed above" in err
