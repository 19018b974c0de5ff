"""The attack record: one submitted attack (`atbench attack`) run against one board entry under the
entry's protocol, beside its per-example flags file. No torch here: the leaderboard reads it.

The flags file has the defense records' form and orientation (`benchmark.pipeline.evaluate.
flags_npz_bytes`): `labels`, `indices`, `clean` (the entry's clean correctness, copied from its
record's flags) and one bool array per eps, `<attack>@<eps>`, True where the point is **robust**
under the attack: correct clean and still correct on the attack's adversarial example at that
eps (a point broken at a smaller eps counts as broken at every larger one). The points the attack
broke at eps are `clean & ~flags["<attack>@<eps>"]`; a point misclassified clean is never one.

The record's numbers (`clean_correct`, `broken`) are derived from the flags, and admission
(`leaderboard.attack_admission`) refuses a record whose numbers or hash disagree with its file.
"""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from leaderboard.record import (
    Count,
    Eps,
    FlagsRef,
    Name,
    NonNeg,
    Positive,
    ProtocolBlock,
    Seed,
    Sha256,
    SourceProvenance,
    Utc,
)
from leaderboard.record_rules import dotted, kind_of, message
from leaderboard.record_types import RecordError

ATTACK_SCHEMA_VERSION = 1
_FIX = "regenerate the attack record with `atbench attack` (docs/attacks.md says what it holds)"


def _f(description: str) -> Any:
    return Field(description=description)


class _Part(BaseModel):
    """An attack record object: exactly its fields, strictly typed."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class AttackBlock(_Part):
    """The submitted attack and its configuration."""

    id: Name = _f("the submitted attack's name (`atbench ls attacks`)")
    config: Name = _f("the repr of its Config, as the protocol attacks' entries in records")
    source: Literal["atbench", "file", "package"] = _f("where it came from: atbench's attacks/adaptive, an "
                                                       "--attack-file, or an installed package")
    source_sha256: Sha256 | None = _f("sha256 of its source file (an --attack-file, or the module defining it); "
                                      "null for an installed package's")


class EntryBlock(_Part):
    """The board entry attacked: one defense (or external model) and seed, as its record names them."""

    track: Name = _f("the entry's track")
    defense: Name = _f("the entry's defense id (or external model name)")
    seed: Seed = _f("its training seed")
    external: bool = _f("an external model (`atbench eval --model`)")
    checkpoint_sha256: Sha256 = _f("sha256 of the attacked checkpoint; equal to the entry record's "
                                   "provenance.checkpoint_sha256")


class AttackProvenance(SourceProvenance):
    """Where and from what the attack record was made."""

    seeds: dict[str, Seed] = _f("every seed used: the attack's, the test subset's")
    data_sha256: Sha256 = _f("sha256 of the data set's content")
    test_subset_sha256: Sha256 = _f("sha256 of the test indices")
    utc_time: Utc = _f("when the attack ran")


class AttackRecord(_Part):
    """One submitted attack's result on one board entry."""

    schema_version: Literal[1] = _f("attack record format version")
    attack: AttackBlock = _f("the attack")
    entry: EntryBlock = _f("the entry it attacked")
    protocol: ProtocolBlock = _f("the entry's protocol: its points and eps")
    votes: Positive = _f("forward passes whose majority decided each prediction (the entry record's votes)")
    clean_correct: Count = _f("points the entry classifies correctly clean (its record's clean flags)")
    broken: dict[Eps, Count] = _f("per eps, points correct clean that the attack misclassified at that eps")
    flags: FlagsRef = _f("the per-example flags file beside the record")
    runtime_s: NonNeg = _f("seconds the attack took on this entry")
    provenance: AttackProvenance = _f("where and how it was made")


def attack_record_name(attack: str, defense: str, seed: int) -> str:
    """Base file name of an attack record (`<name>.json`, `<name>.flags.npz`)."""
    return f"{attack}--{defense}-seed{seed}"


def _rules(obj: dict, source: str) -> None:
    """The rules that tie one field to another."""
    eps = obj["protocol"]["eps"]
    if list(obj["broken"]) != eps:
        raise RecordError(source, "broken", f"must have exactly the protocol's eps as keys, in order ({eps})", _FIX)
    counts = [obj["broken"][e] for e in eps]
    if counts != sorted(counts):
        raise RecordError(source, "broken", f"must not decrease with eps (a point broken at a smaller eps is broken "
                                            f"at every larger one), got {counts}", _FIX)
    if counts[-1] > obj["clean_correct"]:
        raise RecordError(source, f"broken.{eps[-1]}", f"is {counts[-1]}, more than the {obj['clean_correct']} points "
                                                        "correct clean", _FIX)
    if obj["clean_correct"] > obj["protocol"]["n_examples"]:
        raise RecordError(source, "clean_correct", f"is {obj['clean_correct']}, more than protocol.n_examples", _FIX)
    numbers = [Fraction(e) for e in eps]
    if numbers != sorted(set(numbers)):
        raise RecordError(source, "protocol.eps", "must be strictly increasing", _FIX)


def validate_attack_record(obj: Any, source: str = "<attack record>") -> dict:
    """Check that `obj` is a valid attack record and return it unchanged.

    Raises:
        RecordError: naming `source` and the offending field's dotted path.
    """
    if not isinstance(obj, dict):
        raise RecordError(source, None, f"the attack record must be an object, got {kind_of(obj)}", _FIX)
    try:
        AttackRecord.model_validate(obj)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        raise RecordError(source, dotted(tuple(error["loc"])) or None, message(error), _FIX) from None
    _rules(obj, source)
    return obj


def build_attack_record(**fields: Any) -> dict:
    """An attack record (plain JSON values) from its top-level fields, checked as it is built."""
    record = AttackRecord.model_validate({"schema_version": ATTACK_SCHEMA_VERSION, **fields}).model_dump(mode="json")
    return validate_attack_record(record, "<new attack record>")


def load_attack_record(path: str | Path) -> dict:
    """Read and validate the attack record at `path`.

    Raises:
        RecordError: the file is unreadable, not JSON, or not a valid attack record.
    """
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(str(path), None, f"cannot be read as JSON: {exc}", _FIX) from exc
    return validate_attack_record(obj, str(path))


def attack_records_beside(records_dir: str | Path) -> Path:
    """The attack-records folder that goes with a records folder: `attack_records` beside it
    (`leaderboard/attack_records` beside `leaderboard/records`), where `atbench attack` writes by
    default and where the boards and exports of those records read."""
    return Path(records_dir).parent / "attack_records"


def find_attack_records(attack_records_dir: str | Path, protocol: str) -> list[tuple[Path, dict]]:
    """Every attack record under `<attack_records_dir>/<protocol>/`, validated, sorted by path
    (empty when the folder does not exist).

    Raises:
        RecordError: a file is not a valid attack record, or is of another protocol.
    """
    root = Path(attack_records_dir) / protocol
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.glob("*.json")):
        record = load_attack_record(path)
        if record["protocol"]["id"] != protocol:
            raise RecordError(str(path), "protocol.id", f"is {record['protocol']['id']!r} but the file lies under "
                                                        f"the {protocol!r} attack records",
                              f"move it to {Path(attack_records_dir) / record['protocol']['id']}/")
        found.append((path, record))
    return found
