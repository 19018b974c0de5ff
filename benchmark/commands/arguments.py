"""Typed command-line values: every number has bounds, every name is a slug, every path is of
the kind the option needs. A bad value stops the command before any work, with exit code 2 and
one message naming the option, the value and the rule (argparse's `type=` errors)."""
from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Callable, NoReturn

from benchmark.core.errors import AtbenchError
from benchmark.core.names import RULE, is_slug
from benchmark.core.settings import SEED_MAX
from benchmark.core.writable import name_problem, shown, write_problem

#: Bounds of the command-line numbers.
MAX_JOBS = 1024
MAX_POINTS = 1_000_000
MAX_REPEATS = 1000
MAX_SEEDS = 100


class Parser(argparse.ArgumentParser):
    """argparse with atbench's error format: one `atbench: error:` line and its fix, exit 2."""

    def error(self, message: str) -> NoReturn:
        """Print the error as atbench prints every user error and exit with code 2."""
        print(f"atbench: error: {self.prog}: {message}\n  fix: see `{self.prog} --help`", file=sys.stderr)
        sys.exit(2)


def integer(lo: int, hi: int, what: str = "an integer") -> Callable[[str], int]:
    """An argparse type: an integer in [lo, hi]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is outside {lo}..{hi}")
        return value

    parse.__name__ = "integer"
    return parse


seed = integer(0, SEED_MAX, "a seed (an integer)")
jobs = integer(1, MAX_JOBS)
points = integer(1, MAX_POINTS)
repeats = integer(1, MAX_REPEATS)
seed_count = integer(1, MAX_SEEDS)


def fraction(text: str) -> float:
    """An argparse type: a finite number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number in [0, 1]")
    return value


def level(text: str) -> float:
    """An argparse type: a significance level, a finite number strictly between 0 and 1."""
    value = fraction(text)
    if value in (0.0, 1.0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number strictly between 0 and 1")
    return value


def slug(kind: str) -> Callable[[str], str]:
    """An argparse type: a name (`benchmark.core.names`)."""

    def parse(text: str) -> str:
        if not is_slug(text):
            raise argparse.ArgumentTypeError(f"{kind} name {text[:80]!r} is not allowed: names must be {RULE}")
        return text

    parse.__name__ = f"{kind} name"
    return parse


def folder(text: str) -> str:
    """An argparse type: a folder, existing or to be made; an existing file is refused."""
    if not text or "\0" in text:
        raise argparse.ArgumentTypeError("the folder name is empty or has a NUL byte")
    if os.path.lexists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{shown(text)} is a file, not a folder")
    return _writable(text)


def output_path(text: str) -> str:
    """An argparse type: a file or folder to write (what it must be is checked by the command)."""
    if not text or "\0" in text:
        raise argparse.ArgumentTypeError("the path is empty or has a NUL byte")
    return _writable(text)


def output_file(text: str) -> str:
    """An argparse type: a file to write (its folder is made); an existing folder is refused."""
    if not text or "\0" in text:
        raise argparse.ArgumentTypeError("the file name is empty or has a NUL byte")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{shown(text)} is a folder, not a file")
    return _writable(text)


def existing_file(text: str) -> str:
    """An argparse type: a file that exists."""
    existing_path(text)
    if not os.path.isfile(text):
        raise argparse.ArgumentTypeError(f"{shown(text)} is a folder, not a file")
    return text


def existing_path(text: str) -> str:
    """An argparse type: a file or folder that exists."""
    problem = name_problem(text) if text and "\0" not in text else None
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{shown(text)!r} cannot exist: {problem}")
    if not text or "\0" in text or not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"{shown(text)!r} does not exist")
    return text


def _writable(text: str) -> str:
    """`text`, if it can be made and written (`benchmark.core.writable`); else an argparse error."""
    problem = write_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"cannot write {shown(text)}: {problem}")
    return text


def protocol(text: str) -> str:
    """An argparse type: a protocol id (a name) or the path of an existing .toml file."""
    if text.endswith(".toml"):
        return existing_file(text)
    return slug("protocol")(text)


def device(text: str) -> str:
    """An argparse type: cpu, cuda or cuda:N (whether it exists here is checked later)."""
    base, _, index = text.partition(":")
    if base not in ("cpu", "cuda") or (index and not index.isdigit()) or (base == "cpu" and index):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: use cpu, cuda or cuda:N")
    return text


#: The environment variables that stand for an option: variable -> (the option, its attribute on
#: the parsed arguments, its argparse type). `check_environment` checks each value with that type.
ENVIRONMENT = {"ATBENCH_DATA_DIR": ("--data-dir", "data_dir", folder)}


def check_environment(args: argparse.Namespace, environ=os.environ) -> None:
    """Check every `ENVIRONMENT` value the command will use (it has the option and the option was
    not given) exactly as a value of its option, before any work.

    Raises:
        AtbenchError: naming the variable, its value and the option's rule.
    """
    for variable, (option, attribute, parse) in ENVIRONMENT.items():
        value = environ.get(variable)
        if not value or getattr(args, attribute, "absent") is not None:
            continue
        try:
            parse(value)
        except argparse.ArgumentTypeError as exc:
            raise AtbenchError(f"${variable} ({value!r}, standing for {option}): {exc}",
                               f"set {variable} to a valid {option} value, unset it, or pass {option}") from None
