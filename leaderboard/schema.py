"""The record schema (docs/record-format.md, schema_version 1): a strict hand-written validator.

Unknown fields, missing fields and wrong types are rejected with a `RecordError` naming the
source file and the dotted field path (`robust_acc.pgd.0.3`, list items as `per_class.n[3]`).
Numbers are JSON numbers (a bool is not a number; an int is accepted where a float is expected),
never NaN or infinite; accuracies are fractions in [0, 1].
"""
from __future__ import annotations

import json
import math
import re
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any, Callable, NoReturn

from benchmark.errors import AtbenchError
from leaderboard.flags import SANITY_FLAGS

SCHEMA_VERSION = 1
FIDELITIES = ("reference", "our-reading")

_FIX = (
    f"correct the record to match docs/record-format.md (schema_version {SCHEMA_VERSION}), "
    "or regenerate it with `atbench run`"
)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_EPS = re.compile(r"\d+/[1-9]\d*|\d+(\.\d+)?([eE]-?\d{1,2})?", re.ASCII)
_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z", re.ASCII)


class RecordError(AtbenchError):
    """A malformed record.

    Attributes:
        source: the file (or other label) the record came from.
        field: the dotted path of the offending field, or None for whole-file problems.
    """

    def __init__(self, source: str, field: str | None, message: str, fix: str = _FIX):
        where = f"{source}: " if field is None else f"{source}: field `{field}` "
        super().__init__(where + message, fix)
        self.source = source
        self.field = field


Check = Callable[[Any, str], None]


def _join(path: str, key: str) -> str:
    return key if not path else f"{path}.{key}"


class _Validator:
    """Validates one record; holds the source label and the protocol facts fields depend on."""

    def __init__(self, source: str):
        self.source = source
        self.eps: list[str] = []
        self.num_classes = 0
        self.attacks: list[str] = []

    def fail(self, path: str, message: str) -> NoReturn:
        if not path:
            raise RecordError(self.source, None, f"the record {message}")
        raise RecordError(self.source, path, message)

    # -- leaf types -------------------------------------------------------------------------
    def string(self, v: Any, path: str, nonempty: bool = True) -> None:
        if not isinstance(v, str):
            self.fail(path, f"must be a string, got {_kind(v)}")
        if nonempty and not v:
            self.fail(path, "must be a non-empty string")

    def fidelity(self, v: Any, path: str) -> None:
        self.string(v, path)
        if v not in FIDELITIES:
            self.fail(path, f"must be one of {', '.join(FIDELITIES)}, got {v!r}")

    def integer(self, v: Any, path: str, lo: int | None = 0, hi: int | None = None) -> None:
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(path, f"must be an integer, got {_kind(v)}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            self.fail(path, f"must be an integer in [{lo}, {'...' if hi is None else hi}], got {v}")

    def number(self, v: Any, path: str, lo: float = 0.0, hi: float = math.inf) -> None:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.fail(path, f"must be a number, got {_kind(v)}")
        if not math.isfinite(v):
            self.fail(path, f"must be a finite number, got {v}")
        if not lo <= v <= hi:
            rng = f"in [{lo:g}, {hi:g}]" if math.isfinite(hi) else f">= {lo:g}"
            self.fail(path, f"must be a number {rng}, got {v}")

    def frac(self, v: Any, path: str) -> None:
        self.number(v, path, 0.0, 1.0)

    def boolean(self, v: Any, path: str) -> None:
        if not isinstance(v, bool):
            self.fail(path, f"must be true or false, got {_kind(v)}")

    def sha256(self, v: Any, path: str) -> None:
        self.string(v, path)
        if not _HEX64.fullmatch(v):
            self.fail(path, f"must be a sha256 (64 lowercase hex digits), got {v!r}")

    def json_value(self, v: Any, path: str) -> None:
        if isinstance(v, dict):
            self.mapping(v, path, self.json_value)
        elif isinstance(v, list):
            for i, item in enumerate(v):
                self.json_value(item, f"{path}[{i}]")
        elif isinstance(v, float) and not math.isfinite(v):
            self.fail(path, f"must be a finite number, got {v}")
        elif not (v is None or isinstance(v, (str, int, float))):
            self.fail(path, f"must be a JSON value, got {_kind(v)}")

    # -- containers -------------------------------------------------------------------------
    def mapping(self, v: Any, path: str, check: Check) -> None:
        """A free-form object: string keys, each value checked by `check`."""
        if not isinstance(v, dict):
            self.fail(path, f"must be an object, got {_kind(v)}")
        for key in sorted(v, key=str):
            if not isinstance(key, str):
                self.fail(path, f"has a non-string key {key!r}")
            check(v[key], _join(path, key))

    def obj(self, v: Any, path: str, fields: dict[str, Check]) -> None:
        """An object with exactly `fields`, checked in the given order."""
        if not isinstance(v, dict):
            self.fail(path, f"must be an object, got {_kind(v)}")
        unknown = sorted(set(v) - set(fields), key=str)
        if unknown:
            self.fail(_join(path, str(unknown[0])), "is not a known field (unknown fields are rejected)")
        for key, check in fields.items():
            if key not in v:
                self.fail(_join(path, key), "is missing")
            check(v[key], _join(path, key))

    def by_eps(self, check: Check) -> Check:
        """An object keyed by exactly the protocol's eps strings."""

        def run(v: Any, path: str) -> None:
            if not isinstance(v, dict):
                self.fail(path, f"must be an object keyed by eps, got {_kind(v)}")
            if set(v) != set(self.eps):
                self.fail(path, f"has eps keys {sorted(v, key=str)} but the protocol's eps are {self.eps}")
            for e in self.eps:
                check(v[e], _join(path, e))

        return run

    def by_attack(self, check: Check) -> Check:
        """An object keyed by exactly the attack columns of `robust_acc`."""

        def run(v: Any, path: str) -> None:
            if not isinstance(v, dict):
                self.fail(path, f"must be an object keyed by attack, got {_kind(v)}")
            if set(v) != set(self.attacks):
                self.fail(path, f"has attacks {sorted(v, key=str)} but `robust_acc` has {self.attacks}")
            for a in self.attacks:
                check(v[a], _join(path, a))

        return run

    def per_class(self, check: Check) -> Check:
        """A list with one item per class."""

        def run(v: Any, path: str) -> None:
            if not isinstance(v, list):
                self.fail(path, f"must be a list with one item per class, got {_kind(v)}")
            if len(v) != self.num_classes:
                self.fail(path, f"has {len(v)} items but num_classes is {self.num_classes}")
            for i, item in enumerate(v):
                check(item, f"{path}[{i}]")

        return run

    # -- record-specific parts --------------------------------------------------------------
    def eps_strings(self, v: Any, path: str) -> None:
        """A non-empty list of distinct positive numbers written as strings ('0.3', '8/255')."""
        if not isinstance(v, list) or not v:
            self.fail(path, f"must be a non-empty list of eps strings, got {_kind(v)}")
        for i, e in enumerate(v):
            self.string(e, f"{path}[{i}]")
            if not _EPS.fullmatch(e) or Fraction(e) <= 0:
                self.fail(f"{path}[{i}]", f"must be a positive number such as '0.3' or '8/255', got {e!r}")
        if len(set(v)) != len(v):
            self.fail(path, f"has duplicate eps: {v}")

    def eps_list(self, v: Any, path: str) -> None:
        self.eps_strings(v, path)
        self.eps = list(v)

    def protocol(self, v: Any, path: str) -> None:
        self.obj(v, path, {
            "id": self.string, "version": partial(self.integer, lo=1),
            "sha256": self.sha256, "norm": self.string, "eps": self.eps_list,
            "primary_eps": self.string, "n_examples": partial(self.integer, lo=1),
        })
        if v["primary_eps"] not in self.eps:
            self.fail(_join(path, "primary_eps"), f"is {v['primary_eps']!r}, not one of the eps {self.eps}")
        self.primary_eps = v["primary_eps"]

    def classes(self, v: Any, path: str) -> None:
        self.integer(v, path, lo=1)
        self.num_classes = v

    def robust_acc(self, v: Any, path: str) -> None:
        if not isinstance(v, dict) or not v:
            self.fail(path, f"must be a non-empty object keyed by attack, got {_kind(v)}")
        self.mapping(v, path, self.by_eps(self.frac))
        self.attacks = sorted(v)

    def class_stats(self, v: Any, path: str) -> None:
        cls = partial(self.integer, lo=0, hi=self.num_classes - 1)
        self.obj(v, path, {
            "worst_class": cls, "worst_class_acc": self.frac, "best_class": cls,
            "best_class_acc": self.frac, "spread": self.frac, "std": self.frac,
        })

    def record(self, r: Any) -> None:
        if isinstance(r, dict) and "schema_version" in r:
            self.integer(r["schema_version"], "schema_version")
            if r["schema_version"] != SCHEMA_VERSION:
                raise RecordError(
                    self.source, "schema_version",
                    f"is {r['schema_version']}, but this atbench reads schema_version {SCHEMA_VERSION}",
                    "regenerate the record with this atbench (`atbench run`), or upgrade atbench",
                )
        text = partial(self.string, nonempty=False)
        free = partial(self.mapping, check=self.json_value)
        self.obj(r, "", {
            "schema_version": self.integer,
            "protocol": self.protocol,
            "num_classes": self.classes,
            "track": self.string,
            "seed": self.integer,
            "defense": partial(self.obj, fields={
                "id": self.string, "config": free, "paper": text, "venue": text, "link": text,
                "fidelity": self.fidelity, "randomized": self.boolean, "recipe_overrides": free,
            }),
            "architecture": self.string,
            "attacks": partial(self.mapping, check=text),
            "class_names": self.per_class(self.string),
            "clean_acc": self.frac,
            "robust_acc": self.robust_acc,
            "worst_case": self.by_eps(self.frac),
            "per_class": partial(self.obj, fields={
                "n": self.per_class(self.integer), "clean_acc": self.per_class(self.frac),
                "robust_acc": self.by_attack(self.by_eps(self.per_class(self.frac))),
                "worst_case": self.by_eps(self.per_class(self.frac)),
            }),
            "classwise": self.by_eps(self.class_stats),
            "certified_l2": self.certified,
            "confusion_adversarial": partial(self.obj, fields={
                "eps": self.primary, "matrix": self.per_class(self.per_class(self.integer)),
            }),
            "margins": partial(self.obj, fields={"logit": self.logit_margins, "input": self.input_margins}),
            "sanity": partial(self.obj, fields={name: self.sanity_flag for name in SANITY_FLAGS}),
            "flags": partial(self.obj, fields={"file": self.string, "sha256": self.sha256}),
            "runtime_s": partial(self.obj, fields={"train": self.number, "eval": self.number}),
            "provenance": partial(self.obj, fields={
                "atbench_version": self.string, "git_commit": self.optional_string,
                "git_dirty": self.boolean, "packages": partial(self.mapping, check=text),
                "python": self.string, "device": self.string,
                "seeds": partial(self.mapping, check=self.integer),
                "data_sha256": self.sha256, "test_subset_sha256": self.sha256,
                "checkpoint_sha256": self.sha256, "utc_time": self.utc_time,
            }),
        })
        n_total = sum(r["per_class"]["n"])
        if n_total != r["protocol"]["n_examples"]:
            self.fail("per_class.n", f"sums to {n_total} but protocol.n_examples is {r['protocol']['n_examples']}")

    def primary(self, v: Any, path: str) -> None:
        self.string(v, path)
        if v != self.primary_eps:
            self.fail(path, f"is {v!r}, not the protocol's primary eps {self.primary_eps!r}")

    def logit_margins(self, v: Any, path: str) -> None:
        self.obj(v, path, {"edges": self.edges, "clean": self.counts, "adversarial": self.counts,
                           "adversarial_eps": self.primary})

    def edges(self, v: Any, path: str) -> None:
        if not isinstance(v, list) or len(v) < 2:
            self.fail(path, f"must be a list of at least 2 bin edges, got {_kind(v)}")
        for i, e in enumerate(v):
            self.number(e, f"{path}[{i}]", -math.inf)
        if any(a >= b for a, b in zip(v, v[1:])):
            self.fail(path, "must be strictly increasing")
        self.n_bins = len(v) - 1

    def counts(self, v: Any, path: str) -> None:
        if not isinstance(v, list) or len(v) != self.n_bins:
            self.fail(path, f"must be a list of {self.n_bins} bin counts")
        for i, c in enumerate(v):
            self.integer(c, f"{path}[{i}]")

    def input_margins(self, v: Any, path: str) -> None:
        self.obj(v, path, {
            "norm": self.string, "method": self.string, "eps_max": self.number, "median": self.number,
            "frac_below_half_primary": self.frac,
            "per_class": partial(self.obj, fields={"median": self.per_class(self.number),
                                                   "frac_below_half_primary": self.per_class(self.frac)}),
        })

    def certified(self, v: Any, path: str) -> None:
        """Certified L2 accuracy (null for models that are not plain networks); never above the
        L2-PGD robust accuracy at the same radius on the same points."""
        if v is None:
            return
        if not isinstance(v, dict):
            self.fail(path, f"must be an object or null, got {_kind(v)}")
        self.eps_strings(v.get("radii"), _join(path, "radii"))
        radii = v["radii"]

        def by_radius(value: Any, where: str) -> None:
            if not isinstance(value, dict) or set(value) != set(radii):
                self.fail(where, f"must be an object keyed by the radii {radii}")
            for r in radii:
                self.frac(value[r], _join(where, r))

        self.obj(v, path, {"radii": lambda *_: None, "certified_acc": by_radius, "pgd_l2_acc": by_radius,
                           "pgd_l2_steps": partial(self.integer, lo=1), "lipschitz_max": self.number,
                           "median_radius": self.number})
        for r in radii:
            if v["certified_acc"][r] > v["pgd_l2_acc"][r]:
                self.fail(_join(_join(path, "certified_acc"), r),
                          f"is {v['certified_acc'][r]} but L2-PGD leaves only {v['pgd_l2_acc'][r]} robust at that "
                          "radius: the Lipschitz bound or the attack is wrong")

    def sanity_flag(self, v: Any, path: str) -> None:
        self.obj(v, path, {"fired": self.boolean, "value": partial(self.number, lo=-math.inf),
                           "threshold": partial(self.number, lo=-math.inf),
                           "detail": partial(self.string, nonempty=False)})

    def optional_string(self, v: Any, path: str) -> None:
        if v is not None:
            self.string(v, path)

    def utc_time(self, v: Any, path: str) -> None:
        self.string(v, path)
        if not _UTC.fullmatch(v):
            self.fail(path, f"must be a UTC time like '2026-11-21T23:59:59Z', got {v!r}")


def _kind(v: Any) -> str:
    """A short description of a value's JSON type, for messages."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"a boolean ({str(v).lower()})"
    names = {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "an object"}
    for t, name in names.items():
        if isinstance(v, t):
            return f"{name} ({v!r})" if t in (int, float, str) and len(repr(v)) <= 40 else name
    return type(v).__name__


def validate_record(obj: dict, source: str = "<record>") -> dict:
    """Check that `obj` is a valid schema_version-1 record and return it unchanged.

    Raises:
        RecordError: naming `source` and the offending field's dotted path.
    """
    _Validator(source).record(obj)
    return obj


def eps_value(eps: str) -> float:
    """The number a protocol eps string stands for ('0.3' -> 0.3, '8/255' -> 0.0313...)."""
    return float(Fraction(eps))


def load_record(path: str | Path) -> dict:
    """Read and validate the record at `path`.

    Raises:
        RecordError: the file is unreadable, not valid JSON (with the error's line and column,
            e.g. a truncated file), or not a valid record (NaN and Infinity are rejected there).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(str(path), None, f"cannot be read: {exc}",
                          "check the path, or regenerate the record with `atbench run`") from exc
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(
            str(path), None,
            f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos})",
            "the file is truncated or corrupted: restore it from git or regenerate it with `atbench run`",
        ) from exc
    return validate_record(obj, source=str(path))
