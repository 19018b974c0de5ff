"""Defenses from outside atbench's tree: a file passed with `--defense-file PATH.py`.

The file is imported by path under a module name of its own; the `Defense` subclasses it
registers with `@register` become available under their names. A defense file runs only when
the user names it: nothing is imported because a record, a board or a config mentions a name.
(Installed packages add defenses through the entry-point group `atbench.defenses`, which the
DEFENSES registry imports on the first lookup of such a name.)
"""
from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from typing import Iterable

from benchmark.core.errors import AtbenchError
from benchmark.core.registry import DEFENSES, NameTakenError

#: Resolved path of every defense file imported in this process -> the names it registered.
_LOADED: dict[Path, tuple[str, ...]] = {}


def module_name(path: Path) -> str:
    """The module name a defense file is imported under: unique per resolved path, the same
    in every process (so worker processes import it under the same name)."""
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    stem = "".join(c if c.isalnum() else "_" for c in path.stem)
    return f"atbench_defense_file_{stem}_{digest}"


def _checked_path(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise AtbenchError(f"defense file {path} does not exist", "pass the path of a .py file defining the defense")
    if path.suffix != ".py":
        raise AtbenchError(f"defense file {path} is not a .py file", "pass the Python file that defines the defense")
    return path.resolve()


def _execute(path: Path) -> None:
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
        raise AtbenchError(f"defense file {path}: {exc}",
                           "give the defense a `name` no registered defense uses (see `atbench ls defenses`)") from exc
    except Exception as exc:
        sys.modules.pop(name, None)
        raise AtbenchError(f"defense file {path} failed to import: {type(exc).__name__}: {exc}",
                           "fix the error in the file (run `python PATH.py` to see the traceback)") from exc


def load_defense_file(path: str | Path) -> tuple[str, ...]:
    """Import a defense file and return the names of the defenses it registered. Loading the
    same file again in a process whose registry still holds them does nothing.

    Raises:
        AtbenchError: the file is missing, not a .py file, fails to import (syntax or import
            error, a name clashing with a registered defense) or registers no defense. The
            registry is left as it was.
    """
    path = _checked_path(path)
    if path in _LOADED and set(_LOADED[path]) <= set(DEFENSES.names()):
        return _LOADED[path]
    before = set(DEFENSES.names())  # in-tree defenses first, so clashes are seen
    try:
        _execute(path)
    except AtbenchError:
        for name in set(DEFENSES.names()) - before:
            DEFENSES.remove(name)
        raise
    added = tuple(sorted(set(DEFENSES.names()) - before))
    if not added:
        raise AtbenchError(f"defense file {path} registers no defense",
                           "decorate its Defense subclass with @register (from defenses.base import register)")
    _LOADED[path] = added
    return added


def load_defense_files(paths: Iterable[str | Path]) -> None:
    """`load_defense_file` for each path."""
    for path in paths:
        load_defense_file(path)
