"""Hypothesis strategies for whole `atbench` command lines, built by reading the argparse parser
(`benchmark.commands.parser.build_parser`): every command and sub-command, every option and
positional, each value drawn from the hostile family of its type (an option added later is
covered without a change here), or half the time a valid one, so that a command gets past its
first checks. Values are relative to a scene folder (`make_scene`), the current folder of the run.

A command that would train, evaluate or download for long gets a guard that stops it cheaply
after its argument checks and its first reads (`guard`)."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from hypothesis import strategies as st

from benchmark.commands import arguments as arg

#: Hostile values by family. Paths are relative to the scene (`make_scene`).
PATHS = ["missing/x", "afile/sub/x", "afile/x", "afile", "afolder", "x" * 300, "afolder/" + "y" * 300 + "/z",
         "dös ñame/ü.json", "with space/x y", "out-link/x", "out-link", "", ".", "..", "afolder/../afile/x",
         "/proc/version", "/proc/version/x", "new/out.json"]
NUMBERS = ["nan", "inf", "-inf", "-1", "0", "1", "2", "1e309", "99999999999999999999", "1.5", "abc", "", "0x10",
           " 3", "１"]
URLS = ["http://[::1", "http://[::1]:99999/", "ftp://127.0.0.1/x", "file:///etc/passwd", "http://127.0.0.1:0/",
        "http://127.0.0.1:70000/", "http://:80/", "javascript:alert(1)", "", "https://[zz]/", "http://127.0.0.1:-1/",
        "http://127.0.0.1:1/", "ray://127.0.0.1:99999", "auto"]
NAMES = ["", "standard", "pgd-at", "synthetic-tiny", "cnn-tiny", "Upper", "a b", "../x", "x" * 100, "-x", "ünï",
         "a/b", "nope", "mnist"]
FILES = ["empty.json", "truncated.json", "wrong.json", "record.json", "afile", "afolder", "missing.json",
         "system-link", "broken.py", "empty.py", "empty.toml", "wrong.toml", "x" * 300 + ".json", "board.json:x",
         "record.json:pgd-at", "os:system", "benchmark:nope"]
DEVICES = ["cpu", "cuda", "cuda:x", "gpu", "cpu:0", "", "cuda:99"]
ANY = PATHS + NUMBERS + URLS + NAMES + FILES
#: Valid values of each slug kind: half the values drawn are valid, so a command gets past its
#: first checks and a hostile value deeper in it is reached.
VALID_NAMES = {"track": "synthetic-tiny", "defense": "standard", "model": "cnn-tiny", "bench case": "multi-eps",
               "protocol": "synthetic-tiny"}

#: Commands that would train, evaluate or download for long: they always get a `guard`.
EXPENSIVE = {"run", "train", "eval", "tune", "validate", "bench", "regress", "download", "attack", "validate-attack"}


def make_scene(folder: Path, outside: Path) -> None:
    """Fill `folder` with the files the values name: plain files, a folder, empty, truncated and
    wrong-format files, a valid record, garbage code, a link to a system file and a link out of
    `folder` (to `outside`)."""
    from tests.fixtures_records import make_record

    (folder / "afile").write_text("plain\n")
    (folder / "afolder").mkdir()
    (folder / "empty.json").write_text("")
    (folder / "empty.py").write_text("")
    (folder / "empty.toml").write_text("")
    (folder / "truncated.json").write_text('{"schema_version": 1, "defense": "pgd')
    (folder / "wrong.json").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0")
    (folder / "wrong.toml").write_text("id = [\n")
    (folder / "broken.py").write_text("def (:\n")
    (folder / "record.json").write_text(json.dumps(make_record()))
    os.symlink("/proc/version", folder / "system-link")
    os.symlink(outside, folder / "out-link")


def values_for(action: argparse.Action) -> list[str]:
    """The hostile values of `action`'s type; every family for a type not known here."""
    kind = action.type
    if action.choices is not None:
        return [*action.choices, "", "nope"]
    if kind in (arg.folder, arg.output_file, arg.output_path):
        return PATHS
    if kind in (arg.existing_file, arg.existing_path):
        return FILES + PATHS
    if kind is arg.protocol:
        return NAMES + FILES + ["synthetic-tiny.toml"]
    if kind is arg.device:
        return DEVICES
    if kind in (arg.fraction, arg.level) or getattr(kind, "__name__", "") == "integer":
        return NUMBERS
    if getattr(kind, "__name__", "").endswith(" name"):
        return NAMES
    if action.dest in ("mirror", "address"):
        return URLS
    return ANY


def valid_values(action: argparse.Action) -> list[str]:
    """Values `action` accepts (with the scene): a drawn value is one of these half the time."""
    kind = action.type
    if action.choices is not None:
        return list(action.choices)
    if kind in (arg.folder, arg.output_file, arg.output_path):
        return ["new/out.json", "afolder"]
    if kind in (arg.existing_file, arg.existing_path, arg.protocol):
        return ["record.json", "empty.py"] if kind is not arg.protocol else ["synthetic-tiny"]
    if kind is arg.device:
        return ["cpu"]
    if kind in (arg.fraction, arg.level) or getattr(kind, "__name__", "") == "integer":
        return ["1", "0.5"] if kind in (arg.fraction, arg.level) else ["1"]
    name = getattr(kind, "__name__", "")
    if name.endswith(" name"):
        return [VALID_NAMES.get(name[:-len(" name")], "standard")]
    if action.dest in ("mirror", "address"):
        return ["http://127.0.0.1:1/"]
    return ["standard", "record.json"]


def _value(action: argparse.Action) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(valid_values(action)), st.sampled_from(values_for(action)))


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def commands(parser: argparse.ArgumentParser,
             prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every leaf command of `parser` (("run",), ("data", "download"), ...) and its parser."""
    sub = _subparsers(parser)
    if sub is None:
        return {prefix: parser}
    out = {}
    for name, child in sub.choices.items():
        out.update(commands(child, (*prefix, name)))
    return out


@st.composite
def _option(draw, action: argparse.Action) -> list[str]:
    flag = draw(st.sampled_from(list(action.option_strings)))
    if action.nargs == 0:
        return [flag]
    value = draw(_value(action))
    if flag.startswith("--") and draw(st.booleans()):
        return [f"{flag}={value}"]
    return [flag, value]


@st.composite
def _positional(draw, action: argparse.Action) -> list[str]:
    count = {"*": (0, 2), "?": (0, 1), "+": (1, 2)}.get(action.nargs, (1, 1))
    return draw(st.lists(_value(action), min_size=count[0], max_size=count[1]))


def guard(command: tuple[str, ...], argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """Arguments that stop an expensive command cheaply, after its argument checks and first reads:
    a device no machine has (cuda:99, checked before any work), a malformed mirror, or (validate)
    an unknown option."""
    if command[-1] not in EXPENSIVE or (command[-1] == "regress" and any(a.startswith("--current") for a in argv)):
        return []
    flags = {s for a in parser._actions for s in a.option_strings}
    if "--device" in flags:
        return ["--device", "cuda:99"]
    if "--mirror" in flags:
        return [] if any(a.startswith("--mirror") for a in argv) else ["--mirror", "http://[::1"]
    return ["--not-an-option"]


@st.composite
def command_lines(draw, parser: argparse.ArgumentParser) -> list[str]:
    """A whole `atbench` command line: a leaf command (the cheap ones drawn more often), up to six
    of its options (repeats allowed, `--opt=value` or `--opt value`), its positionals, sometimes
    `--help`, and the guard of an expensive command."""
    leaves = commands(parser)
    cheap = sorted(c for c in leaves if c[-1] not in EXPENSIVE)  # they run to the end: drawn more often
    command = draw(st.one_of(st.sampled_from(cheap), st.sampled_from(sorted(leaves))))
    leaf = leaves[command]
    optionals = [a for a in leaf._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]
    chosen = draw(st.lists(st.sampled_from(optionals), max_size=6)) if optionals else []
    argv = [piece for action in chosen for piece in draw(_option(action))]
    for action in leaf._actions:
        if not action.option_strings and not isinstance(action, argparse._SubParsersAction):
            argv += draw(_positional(action))
    if draw(st.integers(0, 19)) == 19:
        argv.append("--help")
    return [*command, *argv, *guard(command, argv, leaf)]
