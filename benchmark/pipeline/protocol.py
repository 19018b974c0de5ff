"""Versioned evaluation protocols, loaded from `benchmark/protocols/<id>.toml`.

A protocol is wholly data: the test subset, the eps list and primary eps, every attack with its
settings and seed (usually from an included suite, `benchmark/protocols/suites/`), and the
[analysis] table (randomized defenses, the certified table, margins, sanity thresholds). Every
number has a documented range (docs/protocols.md). Any change to a protocol's content must bump
its `version`; boards never mix versions, and records carry the resolved content's sha256.
"""
from __future__ import annotations

import dataclasses
import typing
from fractions import Fraction
from pathlib import Path
from typing import Any

from attacks.pgd import NORMS
from benchmark.core.errors import AtbenchError
from benchmark.core.names import is_slug
from benchmark.core.settings import SEED_MAX, check_value, fail, read_settings
from benchmark.pipeline.analysis.settings import AnalysisSettings
from benchmark.pipeline.protocol_files import (
    PROTOCOL_DIR,
    content_sha256,
    protocol_path,
    resolve,
    shipped_ids,
)

__all__ = ["PROTOCOL_DIR", "AttackColumn", "Protocol", "build_attack", "load_protocol", "parse_eps", "protocol_for",
           "shipped_ids"]

#: The largest eps of each norm: Linf eps 1 reaches every [0, 1] image; L2 eps 64 is above
#: sqrt(d) of every shipped data set (CIFAR: sqrt(3072) = 55.4).
EPS_MAX = {"Linf": 1.0, "L2": 64.0}
#: The most test points a protocol may name (and at most the data set's test split).
MAX_POINTS = 1_000_000
_TOP_KEYS = {"id", "version", "dataset", "norm", "eps", "primary_eps", "test_subset", "attacks",
             "certified_l2_radii", "analysis"}


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
        group: the column group whose per-example worst case is also reported (the columns of
            one swept attack, e.g. "tpgd" over its temperatures), or None.
    """

    column: str
    attack: str
    settings: dict[str, Any]
    group: str | None = None


@dataclasses.dataclass(frozen=True)
class Protocol:
    """A loaded, validated protocol (frozen and picklable: it travels inside every job)."""

    id: str
    version: int
    dataset: str
    norm: str
    eps: tuple[str, ...]
    primary_eps: str
    n_examples: int
    subset_seed: int
    columns: tuple[AttackColumn, ...]
    analysis: AnalysisSettings
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

    def attack_class(self, column: AttackColumn) -> type:
        """The registered attack class of a column."""
        from benchmark.core.registry import ATTACKS

        return ATTACKS.get(column.attack)

    def for_randomized(self) -> "Protocol":
        """The protocol as applied to a randomized defense: every attack that declares a
        randomized variant uses it (`Attack.randomized_settings`; AutoAttack: version "rand",
        APGD with EOT); the evaluation also decides every prediction by majority vote over
        `analysis.votes` forward passes."""
        columns = tuple(dataclasses.replace(c, settings=self.attack_class(c).randomized_settings(
            c.settings, self.analysis.eot_samples)) for c in self.columns)
        return dataclasses.replace(self, columns=columns)

    def summary(self) -> dict[str, Any]:
        """The protocol block stored in every record."""
        return {
            "id": self.id, "version": self.version, "sha256": self.sha256, "norm": self.norm,
            "eps": list(self.eps), "primary_eps": self.primary_eps, "n_examples": self.n_examples,
        }


def _require(data: dict, key: str, kind: type | tuple, path: Path, prefix: str = "") -> Any:
    field = f"{prefix}{key}"
    if key not in data:
        raise fail(path, field, "is missing")
    value = data[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise fail(path, field, f"must be {getattr(kind, '__name__', kind)}, not a boolean")
    if not isinstance(value, kind):
        raise fail(path, field, f"must be {getattr(kind, '__name__', kind)}, not {type(value).__name__}")
    return value


def _check_settings(cls: type, settings: dict, path: Path, prefix: str, swept: str | None) -> None:
    """Each setting of an [[attacks]] table must be a field of the attack's `Config`, of its
    type and within its documented range (`benchmark.core.settings.bounded`)."""
    config = cls.Config
    types = typing.get_type_hints(config)
    fields = {f.name: f for f in dataclasses.fields(config) if f.name not in ("norm", swept)}
    for key, value in settings.items():
        if key not in fields:
            raise fail(path, f"{prefix}{key}", f"is not a setting of attack {cls.name!r} (known: {', '.join(fields)})")
        problem = check_value(fields[key], value, types[key])
        if problem:
            raise fail(path, f"{prefix}{key}", problem)


def _columns(attacks: Any, norm: str, path: Path) -> tuple[AttackColumn, ...]:
    from benchmark.core.registry import ATTACKS

    if not isinstance(attacks, list) or not attacks:
        raise fail(path, "attacks", "must be a non-empty list of [[attacks]] tables")
    columns: list[AttackColumn] = []
    for i, spec in enumerate(attacks):
        prefix = f"attacks[{i}]."
        if not isinstance(spec, dict):
            raise fail(path, f"attacks[{i}]", "must be a table")
        name = _require(spec, "name", str, path, prefix)
        try:
            cls = ATTACKS.get(name)
        except AtbenchError as exc:
            raise fail(path, f"{prefix}name", f"names no attack: {exc.problem}") from exc
        sweep = cls.sweep
        settings = {k: v for k, v in spec.items() if k != "name" and (sweep is None or k != sweep.key)}
        _check_settings(cls, settings, path, prefix, sweep.field if sweep else None)
        settings["norm"] = norm
        if sweep is not None and sweep.key in spec:
            values = spec[sweep.key]
            field = next(f for f in dataclasses.fields(cls.Config) if f.name == sweep.field)
            if not isinstance(values, list) or not values or any(
                    check_value(field, v, float) for v in values):
                raise fail(path, f"{prefix}{sweep.key}", f"must be a non-empty list of numbers in the range of "
                                                         f"{sweep.field}")
            for v in values:
                columns.append(AttackColumn(f"{name}-{sweep.label}{v:g}", name, {**settings, sweep.field: float(v)},
                                            name))
        else:
            columns.append(AttackColumn(name, name, settings))
    names = [c.column for c in columns]
    if len(set(names)) != len(names):
        raise fail(path, "attacks", f"has duplicate attack columns: {names}")
    return tuple(columns)


def _eps_list(data: dict, key: str, path: Path, norm: str) -> list[str]:
    values = _require(data, key, list, path)
    if not values or not all(isinstance(e, str) for e in values):
        raise fail(path, key, "must be a non-empty list of strings like \"0.3\" or \"8/255\"")
    try:
        numbers = [parse_eps(e) for e in values]
    except ValueError as exc:
        raise fail(path, key, str(exc)) from exc
    if numbers != sorted(numbers) or len(set(numbers)) != len(numbers):
        raise fail(path, key, "must be strictly increasing")
    if numbers[-1] > EPS_MAX[norm]:
        raise fail(path, key, f"goes up to {values[-1]}, outside the {norm} domain (0, {EPS_MAX[norm]:g}]")
    return values


def _test_subset(data: dict, path: Path) -> tuple[int, int]:
    subset = _require(data, "test_subset", dict, path)
    extra = sorted(set(subset) - {"n", "seed"})
    if extra:
        raise fail(path, f"test_subset.{extra[0]}", "is not a test_subset field (known: n, seed)")
    n = _require(subset, "n", int, path, "test_subset.")
    if not 1 <= n <= MAX_POINTS:
        raise fail(path, "test_subset.n", f"is {n}, outside its allowed range [1, {MAX_POINTS}] (and at most the "
                                          "data set's test split)")
    seed = _require(subset, "seed", int, path, "test_subset.")
    if not 0 <= seed <= SEED_MAX:
        raise fail(path, "test_subset.seed", f"is {seed}, outside its allowed range [0, {SEED_MAX}]")
    return n, seed


def load_protocol(name_or_path: str | Path) -> Protocol:
    """Load and validate a protocol by id (a file in `benchmark/protocols/`) or by path.

    Raises:
        AtbenchError: the file (or one it includes) is missing or not valid TOML, or a field is
            missing, unknown, ill-typed or out of range; the message names the file and the field.
    """
    path = protocol_path(name_or_path)
    data = resolve(path)
    sha = content_sha256(data)
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise fail(path, unknown[0], f"is not a protocol field (known: include, {', '.join(sorted(_TOP_KEYS))})")
    protocol_id = _require(data, "id", str, path)
    if not is_slug(protocol_id):
        raise fail(path, "id", "must be lowercase letters, digits and single hyphens (it names a records folder)")
    version = _require(data, "version", int, path)
    if not 1 <= version <= 1_000_000:
        raise fail(path, "version", "must be an integer in [1, 1000000]")
    norm = _require(data, "norm", str, path)
    if norm not in NORMS:
        raise fail(path, "norm", f"must be one of {NORMS}")
    eps = _eps_list(data, "eps", path, norm)
    radii = _eps_list(data, "certified_l2_radii", path, "L2") if "certified_l2_radii" in data else (
        eps if norm == "L2" else [])
    primary = _require(data, "primary_eps", str, path)
    if primary not in eps:
        raise fail(path, "primary_eps", f"must be one of the eps strings {eps}")
    n, seed = _test_subset(data, path)
    dataset = _require(data, "dataset", str, path)
    _check_dataset(dataset, path)
    protocol = Protocol(
        id=protocol_id, version=version, dataset=dataset, norm=norm, eps=tuple(eps), primary_eps=primary,
        n_examples=n, subset_seed=seed, columns=_columns(data.get("attacks"), norm, path),
        analysis=read_settings(AnalysisSettings, _require(data, "analysis", dict, path), path, "analysis."),
        sha256=sha, path=str(path), certified_radii=tuple(radii),
    )
    for column in protocol.columns:
        build_attack(column, protocol)
    return protocol


def _check_dataset(dataset: str, path: Path) -> None:
    from benchmark.core.registry import DATASETS

    if dataset not in DATASETS:
        raise fail(path, "dataset", f"names no registered data set (known: {', '.join(DATASETS.names())})")


def check_registered(protocol: Protocol) -> None:
    """Refuse a protocol file that takes the id of a shipped protocol without being it: same id
    must mean the same version and content (a variant needs an id of its own).

    Raises:
        AtbenchError: naming both files.
    """
    shipped = PROTOCOL_DIR / f"{protocol.id}.toml"
    if not shipped.is_file() or Path(protocol.path).resolve() == shipped.resolve():
        return
    official = load_protocol(shipped)
    if (official.version, official.sha256) != (protocol.version, protocol.sha256):
        raise AtbenchError(f"protocol file {protocol.path} calls itself {protocol.id!r} (version {protocol.version}) "
                           f"but differs from the shipped protocol {shipped} (version {official.version}, content "
                           "sha256 differs); its results would be filed as the official ones",
                           f"give the variant an id of its own (id = \"{protocol.id}-my-variant\"), or use "
                           f"--protocol {protocol.id}")


def protocol_for(track: Any, override: str | Path | None = None) -> Protocol:
    """The protocol `track` is evaluated under: its own, or `override` (an id or a .toml path),
    which must be one for the track's data set and may not pose as a shipped protocol.

    Raises:
        AtbenchError: the protocol cannot be loaded, is for another data set, or takes a
            shipped protocol's id without its content.
    """
    protocol = load_protocol(override or track.protocol)
    check_registered(protocol)
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
    from benchmark.core.registry import ATTACKS

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
