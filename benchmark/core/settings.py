"""Typed, bounded settings read from TOML tables: the protocol's attack settings and its
[analysis] table.

A settings class is a frozen dataclass whose fields carry their allowed range (`bounded`); the
reader refuses a missing, unknown, ill-typed or out-of-range value with one message naming the
file and the field. The ranges are the protocol schema's documented bounds (`describe`).
"""
from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path
from typing import Any, TypeVar

from benchmark.core.errors import AtbenchError

S = TypeVar("S")
#: The largest seed anywhere in atbench (torch and numpy take 32-bit seeds).
SEED_MAX = 2**31 - 1


def bounded(default: Any = dataclasses.MISSING, lo: float | None = None, hi: float | None = None,
            doc: str = "", open_lo: bool = False) -> Any:
    """A dataclass field whose value must lie in [lo, hi] ((lo, hi] with `open_lo`); `doc`
    says what it means. Without a default the field is required."""
    kw = {} if default is dataclasses.MISSING else {"default": default}
    return dataclasses.field(metadata={"lo": lo, "hi": hi, "open_lo": open_lo, "doc": doc}, **kw)


def _fits(value: Any, kind: Any) -> bool:
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    if kind is int:
        return isinstance(value, int)
    return isinstance(value, kind) if isinstance(kind, type) else True


def range_text(field: dataclasses.Field) -> str:
    """The allowed range of a bounded field, e.g. "[1, 10000]" or "(0, 1]"; "" if unbounded."""
    lo, hi = field.metadata.get("lo"), field.metadata.get("hi")
    if lo is None and hi is None:
        return ""
    left = "(" if field.metadata.get("open_lo") else "["
    return f"{left}{'-inf' if lo is None else _number(lo)}, {'inf' if hi is None else _number(hi)}]"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def check_value(field: dataclasses.Field, value: Any, kind: Any) -> str | None:
    """Why `value` is not allowed for `field` of type `kind`, or None when it is."""
    if not _fits(value, kind):
        name = getattr(kind, "__name__", str(kind))
        shown = "a boolean" if isinstance(value, bool) else repr(value)
        return f"must be {'a number' if kind is float else 'an integer' if kind is int else name}, not {shown}"
    lo, hi = field.metadata.get("lo"), field.metadata.get("hi")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        below = lo is not None and (value <= lo if field.metadata.get("open_lo") else value < lo)
        if below or (hi is not None and value > hi):
            return f"is {value}, outside its allowed range {range_text(field)}"
    return None


def fail(path: Path | str, field: str, problem: str) -> AtbenchError:
    """The error of one bad protocol field."""
    return AtbenchError(f"protocol file {path}: field '{field}' {problem}",
                        "fix the field (see benchmark/protocols/mnist5k-cnn.toml and docs/protocols.md for the "
                        "allowed values) and bump the protocol's version")


def read_settings(cls: type[S], table: Any, path: Path | str, prefix: str) -> S:
    """An instance of the settings dataclass `cls` from a TOML table: every field without a
    default must be present, no other key may be, and each value must have its field's type
    and lie in its range.

    Raises:
        AtbenchError: naming the file and the field (`prefix` + key).
    """
    if not isinstance(table, dict):
        raise fail(path, prefix.rstrip("."), "must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    types = typing.get_type_hints(cls)
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise fail(path, f"{prefix}{unknown[0]}", f"is not a setting here (known: {', '.join(fields)})")
    values = {}
    for name, field in fields.items():
        if name not in table:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise fail(path, f"{prefix}{name}", "is missing")
            continue
        kind = types[name]
        if dataclasses.is_dataclass(kind):
            values[name] = read_settings(kind, table[name], path, f"{prefix}{name}.")
            continue
        problem = check_value(field, table[name], kind)
        if problem:
            raise fail(path, f"{prefix}{name}", problem)
        values[name] = float(table[name]) if kind is float else table[name]
    return cls(**values)


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(setting, type, allowed range, meaning) for every field of the settings class `cls`."""
    rows = []
    types = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        kind = types[field.name]
        if dataclasses.is_dataclass(kind):
            rows.extend(describe(kind, f"{prefix}{field.name}."))
        else:
            rows.append((f"{prefix}{field.name}", getattr(kind, "__name__", str(kind)), range_text(field),
                         field.metadata.get("doc", "")))
    return rows
