"""Versioned evaluation protocols, loaded from `benchmark/protocols/<id>.toml`.

A protocol is data: the test subset, the eps list and primary eps, and every attack with its
settings and seed. Any change to a protocol file must bump its `version`; boards never mix
versions. The file's sha256 goes into every record.
"""
from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from fractions import Fraction
from pathlib import Path
from typing import Any

from benchmark.errors import AtbenchError
from benchmark.io import sha256_bytes

PROTOCOL_DIR = Path(__file__).parent / "protocols"
NORMS = ("Linf", "L2")
_TOP_KEYS = {"id", "version", "track", "dataset", "norm", "eps", "primary_eps", "test_subset", "attacks",
             "certified_l2_radii"}


def parse_eps(text: str) -> float:
    """Parse an eps string such as "0.3" or "8/255" into a float."""
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError, AttributeError) as exc:
        raise ValueError(f"{text!r} is not a number or fraction like '8/255'") from exc
    if value <= 0:
        raise ValueError(f"eps {text!r} must be positive")
    return float(value)


@dataclasses.dataclass(frozen=True)
class AttackColumn:
    """One attack column of the protocol: a registered attack with fixed settings.

    Attributes:
        column: the column name in records ("pgd", "tpgd-T2", ...).
        attack: the registered attack id.
        settings: keyword settings for the attack's Config (norm included).
        group: the column group whose per-example worst case is also reported
            (e.g. "tpgd" over its temperatures), or None.
    """

    column: str
    attack: str
    settings: dict[str, Any]
    group: str | None = None


@dataclasses.dataclass(frozen=True)
class Protocol:
    """A loaded, validated protocol."""

    id: str
    version: int
    track: str
    dataset: str
    norm: str
    eps: tuple[str, ...]
    primary_eps: str
    n_examples: int
    subset_seed: int
    columns: tuple[AttackColumn, ...]
    sha256: str
    path: str
    certified_radii: tuple[str, ...] = ()

    def eps_value(self, eps: str) -> float:
        """The float value of one of the protocol's eps strings."""
        return parse_eps(eps)

    def groups(self) -> dict[str, list[str]]:
        """Column groups: group name -> member columns (e.g. "tpgd" -> its temperatures)."""
        out: dict[str, list[str]] = {}
        for col in self.columns:
            if col.group:
                out.setdefault(col.group, []).append(col.column)
        return out

    def for_randomized(self) -> "Protocol":
        """The protocol as applied to a randomized defense: AutoAttack version "rand"
        (APGD-CE and APGD-DLR with EOT over 20 samples); the evaluation also decides every
        prediction by majority vote over repeated forward passes."""
        columns = tuple(dataclasses.replace(c, settings={**c.settings, "version": "rand"})
                        if c.attack == "autoattack" else c for c in self.columns)
        return dataclasses.replace(self, columns=columns)

    def summary(self) -> dict[str, Any]:
        """The protocol block stored in every record."""
        return {
            "id": self.id, "version": self.version, "sha256": self.sha256, "norm": self.norm,
            "eps": list(self.eps), "primary_eps": self.primary_eps, "n_examples": self.n_examples,
        }


def _fail(path: Path, field: str, problem: str) -> AtbenchError:
    return AtbenchError(
        f"protocol file {path}: field '{field}' {problem}",
        "fix the field (see benchmark/protocols/mnist5k-cnn.toml for a valid example) "
        "and bump the protocol's version",
    )


def _require(data: dict, key: str, kind: type | tuple, path: Path, prefix: str = "") -> Any:
    field = f"{prefix}{key}"
    if key not in data:
        raise _fail(path, field, "is missing")
    value = data[key]
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise _fail(path, field, f"must be {getattr(kind, '__name__', kind)}, not a boolean")
    if not isinstance(value, kind):
        raise _fail(path, field, f"must be {getattr(kind, '__name__', kind)}, not {type(value).__name__}")
    return value


def _fits(value: Any, kind: Any) -> bool:
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, kind)


def _check_settings(attack: str, settings: dict, path: Path, prefix: str) -> None:
    """Each setting of an [[attacks]] table must be a field of the attack's `Config`, of its type."""
    from benchmark.registry import ATTACKS

    try:
        config = ATTACKS.get(attack).Config
    except AtbenchError as exc:
        raise _fail(path, f"{prefix}name", f"names no attack: {exc.problem}") from exc
    types = typing.get_type_hints(config)
    known = [f.name for f in dataclasses.fields(config) if f.name not in ("norm", "temperature")]
    for key, value in settings.items():
        if key not in known:
            raise _fail(path, f"{prefix}{key}", f"is not a setting of attack {attack!r} (known: {', '.join(known)})")
        if not _fits(value, types[key]):
            raise _fail(path, f"{prefix}{key}", f"must be {types[key].__name__}, not {value!r}")


def _columns(attacks: Any, norm: str, path: Path) -> tuple[AttackColumn, ...]:
    if not isinstance(attacks, list) or not attacks:
        raise _fail(path, "attacks", "must be a non-empty list of [[attacks]] tables")
    columns: list[AttackColumn] = []
    for i, spec in enumerate(attacks):
        prefix = f"attacks[{i}]."
        if not isinstance(spec, dict):
            raise _fail(path, f"attacks[{i}]", "must be a table")
        name = _require(spec, "name", str, path, prefix)
        settings = {k: v for k, v in spec.items() if k not in ("name", "temperatures")}
        _check_settings(name, settings, path, prefix)
        settings["norm"] = norm
        if "temperatures" in spec:
            temps = spec["temperatures"]
            if not isinstance(temps, list) or not temps or not all(
                isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0 for t in temps
            ):
                raise _fail(path, f"{prefix}temperatures", "must be a non-empty list of positive numbers")
            for t in temps:
                columns.append(AttackColumn(f"{name}-T{t:g}", name, {**settings, "temperature": float(t)}, name))
        else:
            columns.append(AttackColumn(name, name, settings))
    names = [c.column for c in columns]
    if len(set(names)) != len(names):
        raise _fail(path, "attacks", f"has duplicate attack columns: {names}")
    return tuple(columns)


def _eps_list(data: dict, key: str, path: Path) -> list[str]:
    values = _require(data, key, list, path)
    if not values or not all(isinstance(e, str) for e in values):
        raise _fail(path, key, "must be a non-empty list of strings like \"0.3\" or \"8/255\"")
    try:
        numbers = [parse_eps(e) for e in values]
    except ValueError as exc:
        raise _fail(path, key, str(exc)) from exc
    if numbers != sorted(numbers) or len(set(numbers)) != len(numbers):
        raise _fail(path, key, "must be strictly increasing")
    return values


def load_protocol(name_or_path: str | Path) -> Protocol:
    """Load and validate a protocol by id (a file in `benchmark/protocols/`) or by path.

    Raises:
        AtbenchError: the file is missing, is not valid TOML, or has a missing, unknown or
            ill-typed field; the message names the file and the field.
    """
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = PROTOCOL_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in PROTOCOL_DIR.glob("*.toml"))
        raise AtbenchError(f"protocol file {path} does not exist", f"use one of: {', '.join(known)}")
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AtbenchError(f"protocol file {path} is not valid TOML: {exc}", "fix the syntax error") from exc
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise _fail(path, unknown[0], f"is not a protocol field (known: {', '.join(sorted(_TOP_KEYS))})")
    version = _require(data, "version", int, path)
    if version < 1:
        raise _fail(path, "version", "must be a positive integer")
    norm = _require(data, "norm", str, path)
    if norm not in NORMS:
        raise _fail(path, "norm", f"must be one of {NORMS}")
    eps = _eps_list(data, "eps", path)
    radii = _eps_list(data, "certified_l2_radii", path) if "certified_l2_radii" in data else (
        eps if norm == "L2" else [])
    primary = _require(data, "primary_eps", str, path)
    if primary not in eps:
        raise _fail(path, "primary_eps", f"must be one of the eps strings {eps}")
    subset = _require(data, "test_subset", dict, path)
    extra = sorted(set(subset) - {"n", "seed"})
    if extra:
        raise _fail(path, f"test_subset.{extra[0]}", "is not a test_subset field (known: n, seed)")
    n = _require(subset, "n", int, path, "test_subset.")
    if n < 1:
        raise _fail(path, "test_subset.n", "must be positive")
    dataset = _require(data, "dataset", str, path)
    _check_dataset(dataset, path)
    protocol = Protocol(
        id=_require(data, "id", str, path),
        version=version,
        track=_require(data, "track", str, path),
        dataset=dataset,
        norm=norm,
        eps=tuple(eps),
        primary_eps=primary,
        n_examples=n,
        subset_seed=_require(subset, "seed", int, path, "test_subset."),
        columns=_columns(data.get("attacks"), norm, path),
        sha256=sha256_bytes(raw),
        path=str(path),
        certified_radii=tuple(radii),
    )
    for column in protocol.columns:
        build_attack(column, protocol)
    return protocol


def _check_dataset(dataset: str, path: Path) -> None:
    from benchmark.registry import DATASETS

    if dataset not in DATASETS:
        raise _fail(path, "dataset", f"names no registered data set (known: {', '.join(DATASETS.names())})")


def protocol_for(track: Any, override: str | Path | None = None) -> Protocol:
    """The protocol `track` is evaluated under: its own, or `override` (an id or a .toml path),
    which must be one for the track's data set.

    Raises:
        AtbenchError: the protocol cannot be loaded, or is for another data set.
    """
    protocol = load_protocol(override or track.protocol)
    if protocol.dataset != track.dataset:
        raise AtbenchError(f"protocol {protocol.id} ({protocol.path}) is for data set {protocol.dataset!r}, but "
                           f"track {track.name!r} uses {track.dataset!r}",
                           f"pass a protocol of data set {track.dataset!r} (`atbench ls protocols`), or leave out "
                           "--protocol to use the track's own")
    return protocol


def build_attack(column: AttackColumn, protocol: Protocol):
    """Instantiate the registered attack of a protocol column with its settings.

    Raises:
        AtbenchError: unknown attack name or invalid settings, naming the protocol file.
    """
    from benchmark.registry import ATTACKS

    try:
        cls = ATTACKS.get(column.attack)
    except AtbenchError as exc:
        raise AtbenchError(f"protocol file {protocol.path}: {exc.problem}", exc.fix) from exc
    try:
        return cls(**column.settings)
    except (TypeError, ValueError) as exc:
        raise AtbenchError(f"protocol file {protocol.path}: attack {column.attack!r} settings are invalid: {exc}",
                           f"use only the fields of {cls.__name__}.Config with valid values") from exc
    except AtbenchError as exc:
        raise AtbenchError(f"protocol file {protocol.path}: attack {column.attack!r}: {exc.problem}", exc.fix) from exc
