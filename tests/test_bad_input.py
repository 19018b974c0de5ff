"""Bad input from a table: every command-line option of `atbench`, by type, times the classes
of invalid values (empty, negative, huge, NaN, wrong type, a file where a folder is expected and
the reverse, path traversal, odd characters), run through the real console script in a
subprocess. Each must exit 2 with one error message, no traceback, no hang, and write nothing
outside its scratch folder. Protocol files with out-of-range numbers are refused the same way,
before any work."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.pipeline.protocol import PROTOCOL_DIR

pytestmark = pytest.mark.system

ATBENCH = [str(Path(sys.executable).with_name("atbench"))] if Path(sys.executable).with_name("atbench").exists() \
    else [sys.executable, "-m", "benchmark"]
#: Invalid values per option type. {file} is an existing file, {folder} an existing folder.
INVALID = {
    "int": ["", "-1", "99999999999999999999", "nan", "abc", "1.5"],
    "fraction": ["", "-0.1", "nan", "inf", "1.5", "abc"],
    "name": ["", "../../../escaped", "/abs/escaped", "FGSM RS v2!", "x" * 100, "Upper"],
    "folder": ["", "{file}"],
    "file": ["", "missing.py", "{folder}"],
    "path": ["", "missing-thing"],
    "device": ["", "gpu", "cuda:x", "cpu:0"],
    "protocol": ["", "../../../escaped", "missing.toml", "Odd Name"],
    "choice": ["", "nope"],
    "output": ["{folder}"],
}
COMMON = {"--track": "name", "--track-file": "file", "--defense": "name", "--defense-file": "file", "--seed": "int",
          "--seeds": "int",
          "--device": "device",
          "--data-dir": "folder", "--runs-dir": "folder", "--jobs": "int", "--protocol": "protocol",
          "--records-dir": "folder", "--boards-dir": "folder"}
#: command -> (arguments that make the rest of the line valid, {option: type}); "" is a positional.
COMMANDS = {
    "run": ([], {**COMMON, "--executor": "choice", "--eval-precision": "choice", "--fast-path": "choice",
                 "--attack-records-dir": "folder"}),
    "tune": ([], {**COMMON, "--sweeps-dir": "folder"}),
    "train": ([], {**COMMON, "--fast-path": "choice"}),
    "eval": ([], {**COMMON, "--checkpoint": "file", "--name": "name", "--eval-precision": "choice",
                  "--fast-path": "choice", "--attack-records-dir": "folder"}),
    "regress": (["--current", "{folder}", "--against", "{folder}"],
                {**COMMON, "--against": "path", "--current": "path", "--tolerance": "fraction", "--alpha": "fraction",
                 "--junit": "output"}),
    "leaderboard": ([], {"--track": "name", "--track-file": "file", "--protocol": "protocol", "--records-dir": "folder",
                         "--boards-dir": "folder", "--attack-records-dir": "folder"}),
    "bench": ([], {"--track": "name", "--defense": "name", "--seed": "int", "--points": "int", "--device": "device",
                   "--data-dir": "folder", "--runs-dir": "folder", "--repeats": "int", "--train-model": "name",
                   "--json": "output", "": "name"}),
    "verify": (["{file}"], {"--checkpoint": "file", "--runs-dir": "folder", "--points": "int",
                            "--tolerance": "fraction", "--device": "device", "--data-dir": "folder",
                            "--defense-file": "file"}),
    "validate": (["pgd-at"], {"--defense-file": "file"}),
    "attack": (["--attack", "bpda"], {"--track": "name", "--track-file": "file", "--attack": "name",
                                      "--attack-file": "file", "--defense-file": "file", "--protocol": "protocol",
                                      "--runs-dir": "folder", "--records-dir": "folder",
                                      "--attack-records-dir": "folder", "--checkpoint": "file", "--name": "name",
                                      "--device": "device", "--data-dir": "folder"}),
    "validate-attack": (["bpda"], {"--attack-file": "file"}),
    "compare": (["a", "b"], {"--track": "name", "--track-file": "file", "--protocol": "protocol",
                             "--records-dir": "folder", "--format": "choice"}),
    "export": (["json-schema"], {"--out": "output", "": "path", "--attack-records-dir": "folder"}),
    "ls": ([], {"": "choice"}),
}


def cases() -> list[tuple[str, list[str]]]:
    """(label, argv) for every command, option and invalid value."""
    out = []
    for command, (base, options) in COMMANDS.items():
        for option, kind in options.items():
            for value in INVALID[kind]:
                if command == "validate" and option == "":
                    continue
                argv = [command, *base, *([option, value] if option else [value])]
                if command == "validate":
                    argv = [command, *([option, value] if option else [value]), *base]
                out.append((f"{command} {option or '<arg>'} {value[:20]!r}", argv))
    out += [
        ("validate <arg> traversal", ["validate", "../../../escaped"]),
        ("validate <arg> odd", ["validate", "FGSM RS v2!"]),
        ("export <arg> choice", ["export", "nope", "--out", "x.json"]),
        ("eval --model arch without --checkpoint", ["eval", "--track", "synthetic-tiny", "--model", "cnn-tiny"]),
        ("eval --name a registered defense", ["eval", "--track", "synthetic-tiny", "--model", "cnn-tiny",
                                              "--checkpoint", "{file}", "--name", "pgd-at"]),
        ("run --protocol steps 1e8", ["run", "--track", "synthetic-tiny", "--protocol", "{huge}"]),
        ("run --protocol a folder", ["run", "--track", "synthetic-tiny", "--protocol", "{folder}.toml"]),
    ]
    return out


CASES = cases()


@pytest.fixture(scope="module")
def scratch_root(tmp_path_factory):
    return tmp_path_factory.mktemp("bad-input")


def _snapshot(folder: Path) -> set[str]:
    return {str(p) for p in folder.rglob("*")}


@pytest.mark.parametrize("label, argv", CASES, ids=[c[0] for c in CASES])
def test_bad_value_exits_2_with_one_message_and_writes_nothing_outside(scratch_root, label, argv):
    scratch = scratch_root / f"case{CASES.index((label, argv))}" / "work"
    scratch.mkdir(parents=True)
    (scratch / "a-file.py").write_text("x = 1\n")
    (scratch / "a-folder").mkdir()
    (scratch / "a-folder.toml").mkdir()
    huge = (PROTOCOL_DIR / "synthetic-tiny.toml").read_text().replace("steps = 5", "steps = 100000000", 1)
    (scratch / "huge.toml").write_text(huge.replace('id = "synthetic-tiny"', 'id = "huge"'))
    fill = {"{file}": str(scratch / "a-file.py"), "{folder}": str(scratch / "a-folder"),
            "{huge}": str(scratch / "huge.toml")}
    argv = [fill.get(a, a) for a in argv]
    outside = _snapshot(scratch_root)
    env = {**os.environ, "ATBENCH_DATA_DIR": str(scratch / "data")}
    proc = subprocess.run([*ATBENCH, *argv], cwd=scratch, capture_output=True, text=True, timeout=120, env=env)
    err = proc.stderr
    assert proc.returncode == 2, f"{label}: exit {proc.returncode}\n{err}\n{proc.stdout}"
    assert "Traceback" not in err and err.count("atbench: error:") == 1, f"{label}:\n{err}"
    assert [line for line in err.splitlines() if line.strip()][-1].strip().startswith("fix:"), err
    created = {p for p in _snapshot(scratch_root) - outside if not p.startswith(str(scratch))}
    assert created == set(), f"{label} wrote outside its scratch folder: {created}"
    assert not any(Path(p).exists() for p in ("/abs/escaped", str(scratch_root.parent / "escaped")))


def test_the_table_covers_every_typed_option_of_every_command():
    from benchmark.commands.parser import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for command, subparser in sub.choices.items():
        if command not in COMMANDS:
            continue
        declared = {s for a in subparser._actions if a.option_strings and (a.type is not None or a.choices)
                    for s in a.option_strings if s.startswith("--")}
        missing = declared - set(COMMANDS[command][1])
        assert not missing, f"{command}: no bad-input cases for {missing}"
    assert len(CASES) >= 250
