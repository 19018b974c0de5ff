"""The record format as a JSON Schema (draft 2020-12), for tools outside atbench.

It states the structure `leaderboard.schema.validate_record` checks: exact field sets, types,
ranges, sha256 and eps patterns. Rules that tie one field to another (eps keys equal to
`protocol.eps`, list lengths equal to `num_classes`, certified <= PGD, ...) cannot be written in
JSON Schema; they are listed in the schema's `description` and stay in the hand validator, which
remains the authority. The committed copy is `leaderboard/schema/record.schema.json`;
regenerate it with `python -m leaderboard.json_schema`.
"""
from __future__ import annotations

import copy
from pathlib import Path

from benchmark.io import atomic_write_json
from leaderboard.flags import SANITY_FLAGS
from leaderboard.schema import FIDELITIES, SCHEMA_VERSION

SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "record.schema.json"

# A positive decimal ('0.3', '1e-2') or fraction ('8/255'): the mantissa or numerator has a
# non-zero digit, exactly the strings the hand validator's `_EPS` pattern and `Fraction(e) > 0` accept.
EPS_PATTERN = (r"^([0-9]*[1-9][0-9]*/[1-9][0-9]*"
               r"|([0-9]*[1-9][0-9]*(\.[0-9]+)?|[0-9]+\.[0-9]*[1-9][0-9]*)([eE]-?[0-9]{1,2})?)$")
SHA256_PATTERN = r"^[0-9a-f]{64}$"
UTC_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z$"

CROSS_FIELD_RULES = (
    "protocol.primary_eps is one of protocol.eps",
    "worst_case, classwise, every robust_acc.<attack>, per_class.worst_case and every "
    "per_class.robust_acc.<attack> are keyed by exactly protocol.eps",
    "per_class.robust_acc has exactly the attack keys of robust_acc",
    "class_names, every list under per_class, margins.input.per_class.median and "
    "frac_below_half_primary, and confusion_adversarial.matrix (its rows and each row) have num_classes items",
    "classwise.<eps>.worst_class and best_class are less than num_classes",
    "the sum of per_class.n equals protocol.n_examples",
    "confusion_adversarial.eps and margins.logit.adversarial_eps equal protocol.primary_eps",
    "margins.logit.edges increase strictly; margins.logit.clean and adversarial have len(edges) - 1 counts",
    "certified_l2.certified_acc and pgd_l2_acc are keyed by exactly certified_l2.radii, and "
    "certified_acc[r] <= pgd_l2_acc[r] for every radius r",
    "an integer field holds a JSON integer: the validator rejects 1.0 where JSON Schema's "
    "`integer` accepts it",
)

_TEXT = {"type": "string"}
_NAME = {"type": "string", "minLength": 1}
_COUNT = {"type": "integer", "minimum": 0}
_POSITIVE = {"type": "integer", "minimum": 1}
_BOOL = {"type": "boolean"}
_NUMBER = {"type": "number"}
_NONNEG = {"type": "number", "minimum": 0}
_FRAC = {"$ref": "#/$defs/fraction"}
_SHA = {"$ref": "#/$defs/sha256"}
_EPS = {"$ref": "#/$defs/eps"}
_ANY_OBJECT = {"type": "object"}


def _obj(fields: dict[str, dict], description: str | None = None) -> dict:
    """An object with exactly `fields`, all required."""
    schema = {"type": "object", "properties": fields, "required": list(fields), "additionalProperties": False}
    if description:
        schema["description"] = description
    return schema


def _map(values: dict, min_properties: int = 0) -> dict:
    """A free-form object whose values all match `values`."""
    schema = {"type": "object", "additionalProperties": values}
    if min_properties:
        schema["minProperties"] = min_properties
    return schema


def _by_eps(values: dict) -> dict:
    """An object keyed by eps strings (exactly protocol.eps: checked by the validator)."""
    return {"type": "object", "propertyNames": _EPS, "minProperties": 1, "additionalProperties": values}


def _per_class(items: dict) -> dict:
    """A list with one item per class (num_classes items: checked by the validator)."""
    return {"type": "array", "minItems": 1, "items": items}


def _eps_list() -> dict:
    return {"type": "array", "minItems": 1, "uniqueItems": True, "items": _EPS}


def _certified_l2() -> dict:
    by_radius = {"type": "object", "propertyNames": _EPS, "additionalProperties": _FRAC}
    return {"oneOf": [{"type": "null"}, _obj({
        "radii": _eps_list(), "certified_acc": by_radius, "pgd_l2_acc": by_radius,
        "pgd_l2_steps": _POSITIVE, "lipschitz_max": _NONNEG, "median_radius": _NONNEG,
    })]}


def _margins() -> dict:
    counts = {"type": "array", "items": _COUNT}
    return _obj({
        "logit": _obj({"edges": {"type": "array", "minItems": 2, "items": _NUMBER}, "clean": counts,
                       "adversarial": counts, "adversarial_eps": _EPS}),
        "input": _obj({
            "norm": _NAME, "method": _NAME, "eps_max": _NONNEG, "median": _NONNEG, "frac_below_half_primary": _FRAC,
            "per_class": _obj({"median": _per_class(_NONNEG), "frac_below_half_primary": _per_class(_FRAC)}),
        }),
    })


def record_json_schema() -> dict:
    """The JSON Schema (draft 2020-12) of a schema_version-1 record (docs/record-format.md).

    Every fixed-field object lists all its fields as required and rejects others; eps-keyed
    objects constrain their keys with the eps pattern. The top-level `description` lists the
    cross-field rules only atbench's validator checks. Returns a fresh dict on every call.
    """
    class_stats = _obj({"worst_class": _COUNT, "worst_class_acc": _FRAC, "best_class": _COUNT,
                        "best_class_acc": _FRAC, "spread": _FRAC, "std": _FRAC})
    sanity_flag = _obj({"fired": _BOOL, "value": _NUMBER, "threshold": _NUMBER, "detail": _TEXT})
    record = _obj({
        "schema_version": {"type": "integer", "const": SCHEMA_VERSION},
        "track": _NAME,
        "seed": _COUNT,
        "defense": _obj({"id": _NAME, "config": _ANY_OBJECT, "paper": _TEXT, "venue": _TEXT, "link": _TEXT,
                         "fidelity": {"enum": list(FIDELITIES)}, "randomized": _BOOL,
                         "recipe_overrides": _ANY_OBJECT}),
        "architecture": _NAME,
        "protocol": _obj({"id": _NAME, "version": _POSITIVE, "sha256": _SHA, "norm": _NAME, "eps": _eps_list(),
                          "primary_eps": _EPS, "n_examples": _POSITIVE}),
        "attacks": _map(_TEXT),
        "num_classes": _POSITIVE,
        "class_names": _per_class(_NAME),
        "clean_acc": _FRAC,
        "robust_acc": _map(_by_eps(_FRAC), min_properties=1),
        "worst_case": _by_eps(_FRAC),
        "per_class": _obj({"n": _per_class(_COUNT), "clean_acc": _per_class(_FRAC),
                           "robust_acc": _map(_by_eps(_per_class(_FRAC))),
                           "worst_case": _by_eps(_per_class(_FRAC))}),
        "classwise": _by_eps(class_stats),
        "certified_l2": _certified_l2(),
        "confusion_adversarial": _obj({"eps": _EPS, "matrix": _per_class(_per_class(_COUNT))}),
        "margins": _margins(),
        "sanity": _obj({name: sanity_flag for name in SANITY_FLAGS}),
        "flags": _obj({"file": _NAME, "sha256": _SHA}),
        "runtime_s": _obj({"train": _NONNEG, "eval": _NONNEG}),
        "provenance": _obj({
            "atbench_version": _NAME, "git_commit": {"type": ["string", "null"], "minLength": 1},
            "git_dirty": _BOOL, "packages": _map(_TEXT), "python": _NAME, "device": _NAME,
            "seeds": _map(_COUNT), "data_sha256": _SHA, "test_subset_sha256": _SHA,
            "checkpoint_sha256": _SHA, "utc_time": {"type": "string", "pattern": UTC_PATTERN},
        }),
    })
    return copy.deepcopy({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"atbench record (schema_version {SCHEMA_VERSION})",
        "description": (
            "One atbench result record per (track, defense, seed); see docs/record-format.md. "
            "Accuracies are fractions in [0, 1]. Checked by atbench's validator "
            "(leaderboard/schema.py), not expressible here: " + "; ".join(CROSS_FIELD_RULES) + "."
        ),
        "$defs": {
            "fraction": {"type": "number", "minimum": 0, "maximum": 1},
            "sha256": {"type": "string", "pattern": SHA256_PATTERN},
            "eps": {"type": "string", "pattern": EPS_PATTERN,
                    "description": "a positive decimal ('0.3') or fraction ('8/255')"},
        },
        **record,
    })


def write_json_schema(path: str | Path = SCHEMA_PATH) -> Path:
    """Atomically write `record_json_schema()` to `path` as canonical JSON; returns the path."""
    path = Path(path)
    atomic_write_json(path, record_json_schema())
    return path


if __name__ == "__main__":
    print(f"wrote {write_json_schema()}")
