"""The record rules JSON Schema cannot state (checked on a structurally valid record), and the
house wording of the typed record's validation errors (`leaderboard.record.validate_record`)."""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from leaderboard.record_types import (
    EPS_PATTERN,
    SHA256_PATTERN,
    UTC_PATTERN,
    RecordError,
)

CROSS_FIELD_RULES = (
    "protocol.primary_eps is one of protocol.eps, which are in increasing order without duplicates",
    "worst_case, classwise, every robust_acc.<attack>, per_class.worst_case and every "
    "per_class.robust_acc.<attack> are keyed by exactly protocol.eps",
    "per_class.robust_acc has exactly the attack keys of robust_acc, which are the attack columns and the groups",
    "every attack_groups member is an attack column",
    "class_names, every list under per_class, the margins.input and input_bisection per_class lists and "
    "confusion_adversarial.matrix (its rows and each row) have num_classes items",
    "classwise.<eps>.worst_class and best_class are less than num_classes",
    "the sum of per_class.n equals protocol.n_examples",
    "confusion_adversarial.eps and margins.logit.adversarial_eps equal protocol.primary_eps",
    "margins.logit.edges increase strictly; margins.logit.clean and adversarial have len(edges) - 1 counts",
    "certified_l2.certified_acc and pgd_l2_acc are keyed by exactly certified_l2.radii, and "
    "certified_acc[r] <= pgd_l2_acc[r] for every radius r",
    "numbers inside defense.config and defense.recipe_overrides are finite",
    "training.best_epoch is at most training.epochs",
    "a sanity flag that fired is noted",
    "an integer field holds a JSON integer: the validator rejects 1.0 where JSON Schema's `integer` accepts it",
)



def kind_of(v: Any) -> str:
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


def dotted(loc: tuple) -> str:
    path = ""
    for key in loc:
        path += f"[{key}]" if isinstance(key, int) else (f".{key}" if path else str(key))
    return path


_PATTERNS = {SHA256_PATTERN: "must be a sha256 (64 lowercase hex digits)",
             EPS_PATTERN: "must be a positive number such as '0.3' or '8/255'",
             UTC_PATTERN: "must be a UTC time like '2026-11-21T23:59:59Z'"}


def message(error: dict) -> str:
    """The house wording of one pydantic error."""
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx", {})
    if kind == "missing":
        return "is missing"
    if kind == "extra_forbidden":
        return "is not a known field (unknown fields are rejected)"
    if kind in ("string_type", "string_too_short"):
        return f"must be a non-empty string, got {kind_of(value)}" if kind == "string_too_short" else \
            f"must be a string, got {kind_of(value)}"
    if kind == "int_type":
        return f"must be an integer, got {kind_of(value)}"
    if kind in ("float_type", "finite_number"):
        return f"must be a finite number, got {value}" if kind == "finite_number" else \
            f"must be a number, got {kind_of(value)}"
    if kind == "bool_type":
        return f"must be true or false, got {kind_of(value)}"
    if kind == "less_than_equal":
        return (f"must be a number in [0, 1], got {value}" if ctx["le"] == 1 else
                f"must be at most {ctx['le']}, got {value}")
    if kind == "greater_than_equal":
        return f"must be >= {ctx['ge']}, got {value}"
    if kind == "string_pattern_mismatch":
        return f"{_PATTERNS.get(ctx.get('pattern'), 'has the wrong form')}, got {value!r}"
    if kind in ("dict_type", "model_type"):
        return f"must be an object, got {kind_of(value)}"
    if kind == "list_type":
        return f"must be a list, got {kind_of(value)}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {value!r}"
    if kind == "too_short":
        return f"must be non-empty, got {kind_of(value)}"
    return f"{error['msg']}, got {kind_of(value)}"


class Consistency:
    """The rules JSON Schema cannot state, on a structurally valid record (a plain dict)."""

    def __init__(self, record: dict, source: str):
        self.r, self.source = record, source
        self.eps = record["protocol"]["eps"]
        self.k = record["num_classes"]

    def fail(self, path: str, message: str) -> None:
        raise RecordError(self.source, path, message)

    def keyed_by_eps(self, value: dict, path: str) -> None:
        if set(value) != set(self.eps):
            self.fail(path, f"has eps keys {sorted(value)} but the protocol's eps are {self.eps}")

    def per_class(self, value: list, path: str) -> None:
        if len(value) != self.k:
            self.fail(path, f"has {len(value)} items but num_classes is {self.k}")

    def check(self) -> None:
        r, p = self.r, self.r["protocol"]
        for i, e in enumerate(p["eps"]):
            if Fraction(e) <= 0:
                self.fail(f"protocol.eps[{i}]", f"must be a positive number such as '0.3' or '8/255', got {e!r}")
        if len(set(p["eps"])) != len(p["eps"]):
            self.fail("protocol.eps", f"has duplicate eps: {p['eps']}")
        if [Fraction(e) for e in p["eps"]] != sorted(Fraction(e) for e in p["eps"]):
            self.fail("protocol.eps", f"must be in increasing order, got {p['eps']}")
        if p["primary_eps"] not in self.eps:
            self.fail("protocol.primary_eps", f"is {p['primary_eps']!r}, not one of the eps {self.eps}")
        self.free_json(r["defense"]["config"], "defense.config")
        self.free_json(r["defense"]["recipe_overrides"], "defense.recipe_overrides")
        self.per_class(r["class_names"], "class_names")
        for group, members in r["attack_groups"].items():
            unknown = sorted(set(members) - set(r["attacks"]))
            if unknown or not members:
                self.fail(f"attack_groups.{group}", f"must list attack columns of `attacks`, not {unknown or members}")
        expected = set(r["attacks"]) | set(r["attack_groups"])
        if set(r["robust_acc"]) != expected:
            self.fail("robust_acc", f"has attacks {sorted(r['robust_acc'])} but the columns and groups are "
                                    f"{sorted(expected)}")
        for attack, by_eps in r["robust_acc"].items():
            self.keyed_by_eps(by_eps, f"robust_acc.{attack}")
        self.keyed_by_eps(r["worst_case"], "worst_case")
        self.per_class_block(r["per_class"])
        self.keyed_by_eps(r["classwise"], "classwise")
        for e, stats in r["classwise"].items():
            for key in ("worst_class", "best_class"):
                if stats[key] >= self.k:
                    self.fail(f"classwise.{e}.{key}", f"must be an integer in [0, {self.k - 1}], got {stats[key]}")
        self.certified(r["certified_l2"])
        confusion = r["confusion_adversarial"]
        self.primary(confusion["eps"], "confusion_adversarial.eps")
        self.per_class(confusion["matrix"], "confusion_adversarial.matrix")
        for i, row in enumerate(confusion["matrix"]):
            self.per_class(row, f"confusion_adversarial.matrix[{i}]")
        self.margins(r["margins"])
        for name, entry in r["sanity"].items():
            if entry["fired"] and not entry["noted"]:
                self.fail(f"sanity.{name}.noted", "is false but the flag fired (a flag is always noted)")
        training = r["training"]
        if training is not None and training["best_epoch"] > training["epochs"]:
            self.fail("training.best_epoch",
                      f"is {training['best_epoch']}, beyond training.epochs {training['epochs']}")
        total = sum(r["per_class"]["n"])
        if total != p["n_examples"]:
            self.fail("per_class.n", f"sums to {total} but protocol.n_examples is {p['n_examples']}")

    def free_json(self, value: Any, path: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                self.free_json(item, f"{path}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self.free_json(item, f"{path}[{i}]")
        elif isinstance(value, float) and not math.isfinite(value):
            self.fail(path, f"must be a finite number, got {value}")
        elif not (value is None or isinstance(value, (str, int, float))):
            self.fail(path, f"must be a JSON value, got {kind_of(value)}")

    def per_class_block(self, block: dict) -> None:
        self.per_class(block["n"], "per_class.n")
        self.per_class(block["clean_acc"], "per_class.clean_acc")
        if set(block["robust_acc"]) != set(self.r["robust_acc"]):
            self.fail("per_class.robust_acc", f"has attacks {sorted(block['robust_acc'])} but `robust_acc` has "
                                              f"{sorted(self.r['robust_acc'])}")
        for attack, by_eps in block["robust_acc"].items():
            self.keyed_by_eps(by_eps, f"per_class.robust_acc.{attack}")
            for e, values in by_eps.items():
                self.per_class(values, f"per_class.robust_acc.{attack}.{e}")
        self.keyed_by_eps(block["worst_case"], "per_class.worst_case")
        for e, values in block["worst_case"].items():
            self.per_class(values, f"per_class.worst_case.{e}")

    def primary(self, value: str, path: str) -> None:
        if value != self.r["protocol"]["primary_eps"]:
            self.fail(path, f"is {value!r}, not the protocol's primary eps {self.r['protocol']['primary_eps']!r}")

    def certified(self, block: dict | None) -> None:
        if block is None:
            return
        radii = block["radii"]
        for key in ("certified_acc", "pgd_l2_acc"):
            if set(block[key]) != set(radii):
                self.fail(f"certified_l2.{key}", f"must be an object keyed by the radii {radii}")
        for r in radii:
            if block["certified_acc"][r] > block["pgd_l2_acc"][r]:
                self.fail(f"certified_l2.certified_acc.{r}",
                          f"is {block['certified_acc'][r]} but L2-PGD leaves only {block['pgd_l2_acc'][r]} robust "
                          "at that radius: the Lipschitz bound or the attack is wrong")

    def margins(self, margins: dict) -> None:
        logit = margins["logit"]
        edges = logit["edges"]
        if any(a >= b for a, b in zip(edges, edges[1:])):
            self.fail("margins.logit.edges", "must be strictly increasing")
        for key in ("clean", "adversarial"):
            if len(logit[key]) != len(edges) - 1:
                self.fail(f"margins.logit.{key}", f"must be a list of {len(edges) - 1} bin counts")
        self.primary(logit["adversarial_eps"], "margins.logit.adversarial_eps")
        for block in ("input", "input_bisection"):
            for key, values in margins[block]["per_class"].items():
                self.per_class(values, f"margins.{block}.per_class.{key}")

