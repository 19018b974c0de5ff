"""The price of admission for an attack record (`leaderboard.attack_record`): it names an admitted
entry of the board and that entry's checkpoint and protocol, its flags file has the record's sha256
and the protocol's shape, agrees with the entry on the points and their clean correctness, and
gives every number the record states. A record that fails any check is refused, naming the file,
the field and both values.

Clean correctness is the entry's own (its record's `clean` flags), so a point misclassified clean
can never count as broken by a submitted attack, let alone as broken beyond the protocol.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from benchmark.core.errors import AtbenchError
from leaderboard.admission import FlagsFile, hash_problem, read_flags
from leaderboard.attack_record import attack_record_name, find_attack_records
from leaderboard.derive import flag_key
from leaderboard.evidence import Admitted

_FIX = "regenerate it with `atbench attack` against the entry's current record and checkpoint"


@dataclasses.dataclass(frozen=True)
class AdmittedAttack:
    """An admitted attack record, its flags and the entry record it attacked."""

    path: Path
    record: dict
    flags: FlagsFile
    entry: Admitted

    @property
    def attack(self) -> str:
        """The submitted attack's name."""
        return self.record["attack"]["id"]

    def robust(self, eps: str) -> np.ndarray:
        """Per point: correct clean and still correct under the attack at `eps`."""
        return self.flags.flags[flag_key(self.attack, eps)]


def _refuse(path: Path, field: str, problem: str, fix: str = _FIX) -> AtbenchError:
    return AtbenchError(f"{path}: field `{field}`: {problem}; the attack record is refused", fix)


def _entry(record: dict, path: Path, entries: dict[tuple[str, int], Admitted]) -> Admitted:
    """The admitted entry record the attack record names, checked field by field."""
    entry = record["entry"]
    item = entries.get((entry["defense"], entry["seed"]))
    if item is None:
        raise _refuse(path, "entry", f"{entry['defense']} seed {entry['seed']} is no admitted entry of protocol "
                                     f"{record['protocol']['id']}",
                      "publish the entry's record first (`atbench run` or `atbench eval`), or remove the attack record")
    target = item.record
    theirs = {"track": target["track"], "external": target["defense"]["external"],
              "checkpoint_sha256": target["provenance"]["checkpoint_sha256"]}
    for field, expected in theirs.items():
        if entry[field] != expected:
            raise _refuse(path, f"entry.{field}", f"is {entry[field]!r}, but the entry's record has {expected!r}")
    if record["protocol"] != target["protocol"]:
        raise _refuse(path, "protocol", f"differs from the entry record's protocol block ({target['protocol']['id']} "
                                        f"v{target['protocol']['version']}, sha256 {target['protocol']['sha256'][:12]})")
    if record["votes"] != target["votes"]:
        raise _refuse(path, "votes", f"is {record['votes']}, but the entry's record has {target['votes']}")
    return item


def _check_flags(record: dict, path: Path, flags: FlagsFile, entry: Admitted) -> None:
    """The flags' names, lengths, points, clean flags and nesting over eps."""
    attack, eps, n = record["attack"]["id"], record["protocol"]["eps"], record["protocol"]["n_examples"]
    expected = {"clean", *(flag_key(attack, e) for e in eps)}
    if set(flags.flags) != expected:
        raise _refuse(path, "flags.file", f"holds the arrays {sorted(flags.flags)}, not {sorted(expected)}")
    if any(len(v) != n for v in (flags.labels, flags.indices, *flags.flags.values())):
        raise _refuse(path, "flags.file", f"holds arrays of another length than protocol.n_examples ({n})")
    if not (np.array_equal(flags.indices, entry.flags.indices) and np.array_equal(flags.labels, entry.flags.labels)):
        raise _refuse(path, "flags.file", "holds other test points (indices or labels) than the entry's flags")
    differ = int((flags.flags["clean"] != entry.flags.flags["clean"]).sum())
    if differ:
        raise _refuse(path, "flags.file", f"its clean flags differ from the entry's at {differ} points: clean "
                                          "correctness is the entry's own")
    alive = flags.flags["clean"]
    for e in eps:
        robust = flags.flags[flag_key(attack, e)]
        if (robust & ~alive).any():
            raise _refuse(path, "flags.file", f"{flag_key(attack, e)} is True at {int((robust & ~alive).sum())} "
                                              "points broken at a smaller eps or misclassified clean")
        alive = robust


def _check_numbers(record: dict, path: Path, flags: FlagsFile) -> None:
    """`clean_correct` and every `broken` count equal the counts in the flags."""
    clean = flags.flags["clean"]
    if record["clean_correct"] != int(clean.sum()):
        raise _refuse(path, "clean_correct", f"the record claims {record['clean_correct']} points correct clean, its "
                                             f"flags show {int(clean.sum())}")
    for e, claimed in record["broken"].items():
        actual = int((clean & ~flags.flags[flag_key(record["attack"]["id"], e)]).sum())
        if claimed != actual:
            raise _refuse(path, f"broken.{e}", f"the record claims {claimed} broken points, its flags show {actual}",
                          "numbers are derived from the flags, never edited: restore the record, or regenerate it "
                          "with `atbench attack`")


def admit_attack(record: dict, path: Path, entries: dict[tuple[str, int], Admitted]) -> AdmittedAttack:
    """Check an attack record against the board's admitted entries and its flags file.

    Args:
        record: a valid attack record (`leaderboard.attack_record.validate_attack_record`).
        path: its file; the flags file lies beside it.
        entries: (defense id, seed) -> the board's admitted entry records.

    Raises:
        AtbenchError: naming the file, the first field that disagrees and both values.
    """
    path = Path(path)
    entry = record["entry"]
    name = attack_record_name(record["attack"]["id"], entry["defense"], entry["seed"])
    if record["flags"]["file"] != f"{name}.flags.npz":
        raise _refuse(path, "flags.file", f"is {record['flags']['file']!r}, not {name}.flags.npz")
    item = _entry(record, path, entries)
    flags = read_flags(record, path)
    problem = hash_problem(record, flags)
    if problem:
        raise _refuse(path, "flags.sha256", problem, "restore the record and its flags file as they were written, "
                                                     "or regenerate them with `atbench attack`")
    _check_flags(record, path, flags, item)
    _check_numbers(record, path, flags)
    return AdmittedAttack(path, record, flags, item)


def admitted_attacks(attack_records_dir: str | Path, protocol: str,
                     entries: dict[tuple[str, int], Admitted]) -> list[AdmittedAttack]:
    """Every attack record of `protocol` under `attack_records_dir`, each admitted (`admit_attack`).

    Raises:
        AtbenchError: the first record that is malformed or fails admission.
    """
    return [admit_attack(record, path, entries) for path, record in find_attack_records(attack_records_dir, protocol)]
