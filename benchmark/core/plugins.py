"""Defenses, tracks and submitted attacks from outside atbench's tree: files passed with
`--defense-file PATH.py`, `--track-file PATH.py` and `--attack-file PATH.py`.

A file is imported by path under a module name of its own; the defenses it registers with
`@register` (the tracks it registers with `TRACKS.register(Track(...))`, the attacks it registers
with `attacks.submitted.register`) become available under their names. A file runs only when the
user names it: nothing is imported because a record, a board or a config mentions a name.
(Installed packages add defenses through the entry-point group `atbench.defenses`, and attacks
through `atbench.attacks`, which the DEFENSES and SUBMITTED_ATTACKS registries import on the first
lookup of such a name.)
Jobs carry their loaded track, so only defense files need importing in worker processes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import sys
from pathlib import Path
from typing import Iterable

from benchmark.core.errors import AtbenchError
from benchmark.core.registry import DEFENSES, SUBMITTED_ATTACKS, TRACKS, NameTakenError, Registry


@dataclasses.dataclass(frozen=True)
class Kind:
    """What a kind of plugin file registers, and how to say so in messages."""

    name: str
    registry: Registry
    how: str


DEFENSE = Kind("defense", DEFENSES, "decorate its Defense subclass with @register (from defenses.base import register)")
TRACK = Kind("track", TRACKS, "call TRACKS.register(Track(...)) (from benchmark.core.registry import TRACKS; "
                              "from benchmark.pipeline.tracks import Track)")
ATTACK = Kind("attack", SUBMITTED_ATTACKS, "decorate its Attack subclass with @register "
                                          "(from attacks.submitted import register)")
#: (kind, resolved path) of every file imported in this process -> the names it registered.
_LOADED: dict[tuple[str, Path], tuple[str, ...]] = {}


def module_name(path: Path) -> str:
    """The module name a plugin file is imported under: unique per resolved path, the same in
    every process (so worker processes import it under the same name)."""
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    stem = "".join(c if c.isalnum() else "_" for c in path.stem)
    return f"atbench_plugin_{stem}_{digest}"


def _checked_path(path: str | Path, kind: Kind) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise AtbenchError(f"{kind.name} file {path} does not exist",
                           f"pass the path of a .py file defining the {kind.name}")
    if path.suffix != ".py":
        raise AtbenchError(f"{kind.name} file {path} is not a .py file",
                           f"pass the Python file that defines the {kind.name}")
    return path.resolve()


def _execute(path: Path, kind: Kind) -> None:
    """Import the file under `module_name(path)`; raise one `AtbenchError` naming the file for
    anything that goes wrong inside it."""
    name = module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except NameTakenError as exc:
        sys.modules.pop(name, None)
        raise AtbenchError(f"{kind.name} file {path}: {exc}",
                           f"give the {kind.name} a `name` no registered {kind.name} uses "
                           f"(see `atbench ls {kind.name}s`)") from exc
    except Exception as exc:
        sys.modules.pop(name, None)
        raise AtbenchError(f"{kind.name} file {path} failed to import: {type(exc).__name__}: {exc}",
                           "fix the error in the file (run `python PATH.py` to see the traceback)") from exc


def load_file(path: str | Path, kind: Kind = DEFENSE) -> tuple[str, ...]:
    """Import a plugin file and return the names of the entries of `kind` it registered.
    Loading the same file again in a process whose registry still holds them does nothing.

    Raises:
        AtbenchError: the file is missing, not a .py file, fails to import (syntax or import
            error, a name clashing with a registered entry) or registers nothing of `kind`. The
            registry is left as it was.
    """
    path = _checked_path(path, kind)
    registry = kind.registry
    if (kind.name, path) in _LOADED and set(_LOADED[kind.name, path]) <= set(registry.names()):
        return _LOADED[kind.name, path]
    before = set(registry.names())  # in-tree entries first, so clashes are seen
    try:
        _execute(path, kind)
    except AtbenchError:
        for name in set(registry.names()) - before:
            registry.remove(name)
        raise
    added = tuple(sorted(set(registry.names()) - before))
    if not added:
        raise AtbenchError(f"{kind.name} file {path} registers no {kind.name}", kind.how)
    _LOADED[kind.name, path] = added
    return added


def load_defense_files(paths: Iterable[str | Path]) -> None:
    """`load_defense_file` for each path."""
    for path in paths:
        load_file(path, DEFENSE)


def load_track_files(paths: Iterable[str | Path]) -> None:
    """`load_file` of each track file."""
    for path in paths:
        load_file(path, TRACK)


def load_attack_files(paths: Iterable[str | Path]) -> None:
    """`load_file` of each submitted attack's file."""
    for path in paths:
        load_file(path, ATTACK)
