"""Reading protocol files: TOML, `include`s merged, and the resolved content's hash.

A protocol file may name other files in `include = ["suites/attacks-50.toml", ...]` (a string
or a list). A relative include is found beside the including file, else in atbench's own
`benchmark/protocols/` folder (so a protocol written anywhere can include the shipped suites).
Included files are merged first, in order, then the file's own keys: a table merges key by key,
any other value (an `[[attacks]]` list included) replaces the earlier one. The content hash is
the sha256 of the merged result as canonical JSON: comments and the split into files do not
change it, every value does.
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from benchmark.core.errors import AtbenchError
from benchmark.core.io import sha256_json

PROTOCOL_DIR = Path(__file__).resolve().parent.parent / "protocols"
#: Include depth beyond which a chain of includes is refused (a cycle is refused at once).
MAX_INCLUDE_DEPTH = 8


def protocol_path(name_or_path: str | Path) -> Path:
    """The file of a protocol given by id (a file in `benchmark/protocols/`) or by path.

    Raises:
        AtbenchError: the file does not exist.
    """
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = PROTOCOL_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise AtbenchError(f"protocol file {path} does not exist", f"use one of: {', '.join(shipped_ids())}")
    return path


def shipped_ids() -> list[str]:
    """The ids of the protocols shipped in `benchmark/protocols/`."""
    return sorted(p.stem for p in PROTOCOL_DIR.glob("*.toml"))


def _read_toml(path: Path, included_by: Path | None) -> dict:
    where = f" (included by {included_by})" if included_by else ""
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AtbenchError(f"protocol file {path}{where} is not valid TOML: {exc}", "fix the syntax error") from exc
    except OSError as exc:
        raise AtbenchError(f"protocol file {path}{where} cannot be read: {exc}", "check the path") from exc


def _include_path(including: Path, name: Any, root: Path) -> Path:
    if not isinstance(name, str) or not name.endswith(".toml"):
        raise AtbenchError(f"protocol file {root}: field 'include' must name .toml files, not {name!r}",
                           "write include = [\"suites/attacks-50.toml\", ...]")
    for folder in (including.parent, PROTOCOL_DIR):
        candidate = folder / name
        if candidate.is_file():
            return candidate.resolve()
    raise AtbenchError(f"protocol file {including}: included file {name} does not exist (looked beside it and in "
                       f"{PROTOCOL_DIR})", "fix the include path")


def merge(base: dict, override: dict) -> dict:
    """`override` on top of `base`: tables merge key by key, other values replace."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def resolve(path: Path, root: Path | None = None, chain: tuple[Path, ...] = ()) -> dict:
    """The content of the protocol file at `path` with its includes merged in.

    Raises:
        AtbenchError: a file is missing or not valid TOML, an include names no .toml file, or
            the includes form a cycle or a chain deeper than MAX_INCLUDE_DEPTH.
    """
    root = root or path
    if path.resolve() in chain or len(chain) > MAX_INCLUDE_DEPTH:
        raise AtbenchError(f"protocol file {root}: its includes form a cycle or a chain deeper than "
                           f"{MAX_INCLUDE_DEPTH} ({' -> '.join(p.name for p in (*chain, path))})",
                           "include each suite once, without cycles")
    data = _read_toml(path, chain[-1] if chain else None)
    includes = data.pop("include", [])
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list):
        raise AtbenchError(f"protocol file {root}: field 'include' must be a file name or a list of them",
                           "write include = [\"suites/attacks-50.toml\", ...]")
    merged: dict = {}
    for name in includes:
        merged = merge(merged, resolve(_include_path(path, name, root), root, (*chain, path.resolve())))
    return merge(merged, data)


def content_sha256(content: dict) -> str:
    """sha256 of a resolved protocol's content (canonical JSON: `sha256_json`, sorted keys)."""
    return sha256_json(content)
