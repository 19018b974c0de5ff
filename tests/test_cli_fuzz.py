"""A generated fuzzer of the whole `atbench` command line (`tests/cli_strategies.py`): every
command and sub-command with hostile paths, numbers, URLs, names and files. Every run must end
with exit 0, 1 or 2 (exactly one `atbench: error:` line and its fix on 2), no traceback, within
a time bound, and write nothing outside the folder it runs in. Most cases run in-process through
`cli.main`; a sample runs the console script. CI runs `ATBENCH_FUZZ_EXAMPLES` cases (default
1000) with a fixed seed; every minimal failing command line found is kept in `REGRESSIONS`."""
from __future__ import annotations

import contextlib
import io
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from benchmark.commands.cli import main
from benchmark.commands.parser import build_parser
from tests.cli_strategies import command_lines, make_scene

pytestmark = pytest.mark.system

CHECKOUT = Path(__file__).resolve().parent.parent
ATBENCH = [str(Path(sys.executable).with_name("atbench"))] if Path(sys.executable).with_name("atbench").exists() \
    else [sys.executable, "-m", "benchmark"]
EXAMPLES = int(os.environ.get("ATBENCH_FUZZ_EXAMPLES", "1000"))
#: Seconds one in-process case may take.
CASE_SECONDS = 30
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=False,
                suppress_health_check=list(HealthCheck))
#: The minimal command lines the fuzzer shrank its failures to (each a traceback before its fix).
REGRESSIONS = [
    ["compare", "--track-file", "x" * 300, "missing/x", "missing/x"],  # OSError ENAMETOOLONG in the type's exists()
    ["data", "ls", "--data-dir", "x" * 300],  # OSError ENAMETOOLONG listing the data folder
    ["export", "--out", "afile/x", "json-schema"],  # FileExistsError: a plain file where the folder goes
    ["export", "--out", "afile/sub/x", "json-schema"],  # NotADirectoryError: a plain file among the parents
    ["compare", "x" * 300 + ".json", "missing/x"],  # OSError ENAMETOOLONG resolving an untyped positional
    ["export", "--out", "/proc/version", "json-schema"],  # FileNotFoundError: the temporary file in /proc
    ["leaderboard", "--records-dir", "afile/sub/x"],  # NotADirectoryError taking the records folder's lock
]
_COUNTER = itertools.count()


class CaseTimeout(BaseException):
    """A case ran past `CASE_SECONDS` (a BaseException, so no `except Exception` swallows it)."""


def _snapshot(folders: list[Path], skip: Path | None = None) -> dict[str, tuple[int, int]]:
    """(mtime, size) of every file and folder under `folders`, except under `skip`."""
    found = {}
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            if skip is not None and Path(root) == skip.parent:
                dirs[:] = [d for d in dirs if Path(root, d) != skip]
            for name in dirs + files:
                st = os.lstat(os.path.join(root, name))
                found[os.path.join(root, name)] = (st.st_mtime_ns, st.st_size)
    return found


def _watched() -> list[Path]:
    return [p for p in (CHECKOUT / "leaderboard", CHECKOUT / "runs", CHECKOUT / "data") if p.exists()]


def _new_case(root: Path) -> Path:
    """A fresh case folder under `root`: the scene in `work/`, the target of its outward link in
    `outside/`. Returns `work/`."""
    case = root / f"case{next(_COUNTER)}"
    (case / "outside").mkdir(parents=True)
    (case / "work").mkdir()
    make_scene(case / "work", case / "outside")
    return case / "work"


def check_result(argv: list[str], code: int, out: str, err: str) -> None:
    """The rule every run obeys: exit 0, 1 or 2; on 2 one error line and its fix; no traceback."""
    assert code in (0, 1, 2), f"{argv}: exit {code}\n{err}"
    assert "Traceback" not in err, f"{argv}:\n{err}"
    if code == 2:
        assert err.count("atbench: error:") == 1, f"{argv}:\n{err}"
        assert [line for line in err.splitlines() if line.strip()][-1].strip().startswith("fix:"), f"{argv}:\n{err}"
    elif code != 2:
        assert "atbench: error:" not in err, f"{argv}: exit {code}\n{err}"


def _on_alarm(signum, frame):
    raise CaseTimeout(f"a case ran past {CASE_SECONDS} s")


def run_in_process(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    """`cli.main(argv)` run in `cwd` under the time bound: (exit code, stdout, stderr). The timer
    of pytest-timeout (also SIGALRM) is put back afterwards, less the time the case took."""
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
    start = time.monotonic()
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - start), 0.001))
        os.chdir(here)
    return code, out.getvalue(), err.getvalue()


def run_console_script(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    """The `atbench` console script run in `cwd`: (exit code, stdout, stderr)."""
    env = {**os.environ, "ATBENCH_DATA_DIR": str(cwd / "data")}
    proc = subprocess.run([*ATBENCH, *argv], cwd=cwd, capture_output=True, text=True, timeout=120, env=env)
    return proc.returncode, proc.stdout, proc.stderr


def check_case(argv: list[str], root: Path, runner) -> None:
    """Run `argv` by `runner` in a fresh case folder under `root`; check the result and that
    nothing changed outside the case folder (the other cases', the checkout's leaderboard/ and runs/)."""
    work = _new_case(root)
    watched = [root, *_watched()]
    before = _snapshot(watched, skip=work.parent)
    try:
        code, out, err = runner(argv, work)
        check_result(argv, code, out, err)
        after = _snapshot(watched, skip=work.parent)
    finally:
        shutil.rmtree(work.parent)  # `root` stays small, so each snapshot is quick
    changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    assert not changed, f"{argv} changed files outside its folder: {sorted(changed)[:5]}"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("cli-fuzz")


@FUZZ
@given(argv=command_lines(build_parser()))
def test_every_generated_command_line_ends_cleanly_in_process(root, argv):
    check_case(argv, root, run_in_process)


@settings(FUZZ, max_examples=max(25, EXAMPLES // 40))
@given(argv=command_lines(build_parser()))
def test_a_sample_of_generated_command_lines_ends_cleanly_as_the_console_script(root, argv):
    check_case(argv, root, run_console_script)


@pytest.mark.parametrize("argv", REGRESSIONS, ids=[" ".join(a)[:60] for a in REGRESSIONS])
def test_each_minimal_failure_the_fuzzer_found_stays_fixed(root, argv):
    check_case(argv, root, run_in_process)


def test_a_reader_of_stdout_that_leaves_early_gets_no_traceback(tmp_path):
    """`atbench ls | head -0`: stdout's reader is gone before atbench writes."""
    proc = subprocess.Popen([*ATBENCH, "ls"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == "", err
