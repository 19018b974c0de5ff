"""The price of admission to a board: a record's flags file exists, has the sha256 the record
names, and gives every number the record states (`leaderboard.derive`). `atbench leaderboard`,
every board build and `atbench verify` run these checks; a record that fails one is refused,
naming the record and the field.
"""
from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np

from benchmark.core.errors import AtbenchError
from benchmark.core.io import sha256_bytes
from leaderboard.derive import aggregate_record, differences


@dataclasses.dataclass(frozen=True)
class FlagsFile:
    """A record's per-example flags file, read.

    Attributes:
        data: its bytes.
        flags: "clean", "<column>@<eps>" (and AutoAttack's "<column>@<eps>/<part>") -> bool array.
        labels, indices: the points' labels and test-set indices.
        values: the per-point measurements beside the flags ("input_margin", "certified_radius", ...),
            by name; empty when the file holds none.
    """

    data: bytes
    flags: dict[str, np.ndarray]
    labels: np.ndarray
    indices: np.ndarray
    values: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


def read_flags(record: dict, record_path: Path) -> FlagsFile:
    """The flags file named by the record: a regular file beside it (a name with a folder part,
    or a link, which could lead anywhere, is refused).

    Raises:
        AtbenchError: the file is not beside the record, is a link, is missing or is not a
            readable flags file.
    """
    name = record["flags"]["file"]
    path = record_path.parent / name
    if Path(name).name != name or name in (".", ".."):
        raise AtbenchError(f"{record_path}: field `flags.file`: {name!r} is not a file name beside the record; "
                           "the record is refused",
                           "keep the .flags.npz file beside its record and name it there, or regenerate the record "
                           "with `atbench run`")
    if path.is_symlink():
        raise AtbenchError(f"{record_path}: field `flags.file`: its flags file {path} is a link (to "
                           f"{path.resolve()}), not the regular file beside the record; the record is refused",
                           "replace the link with the record's own .flags.npz file (publish copies both), or "
                           "regenerate the record with `atbench run`")
    if not path.is_file():
        raise AtbenchError(f"{record_path}: field `flags.file`: its flags file {path} does not exist",
                           "keep the .flags.npz file beside its record (publish copies both), or regenerate the "
                           "record with `atbench run`")
    data = path.read_bytes()
    try:
        npz = np.load(io.BytesIO(data))
        arrays = {k: npz[k] for k in npz.files}
        flags = {k: v for k, v in arrays.items() if v.dtype == bool}
        values = {k: v for k, v in arrays.items() if v.dtype != bool and k not in ("labels", "indices")}
        return FlagsFile(data, flags, arrays["labels"], arrays["indices"], values)
    except Exception as exc:  # numpy raises several types for a broken archive
        raise AtbenchError(f"{path} is not a readable flags file ({type(exc).__name__}: {exc})",
                           "restore it from git or regenerate the record with `atbench run`") from exc


def hash_problem(record: dict, flags: FlagsFile) -> str | None:
    """Why the flags file is not the one the record was written with, or None."""
    if sha256_bytes(flags.data) != record["flags"]["sha256"]:
        return "the flags file's sha256 differs from `flags.sha256`: it is not the file the record was written with"
    return None


def number_problems(record: dict, flags: FlagsFile) -> list[str]:
    """Every number of the record that differs from the one its flags give (dotted paths with
    both values); empty when they all agree."""
    n = record["protocol"]["n_examples"]
    if len(flags.labels) != n or any(len(v) != n for v in flags.flags.values()):
        return [f"flags: the flags file holds arrays of another length than protocol.n_examples ({n})"]
    try:
        derived = aggregate_record(record, flags.flags, flags.labels)
    except KeyError as exc:
        return [f"flags: the flags file lacks the array {exc.args[0]!r} the record's attacks need"]
    return differences(derived, record)


def admit(record: dict, record_path: Path) -> FlagsFile:
    """Check a record against its flags file: hash, then every number.

    Raises:
        AtbenchError: naming the record and the first field that disagrees.
    """
    flags = read_flags(record, record_path)
    problem = hash_problem(record, flags)
    if problem:
        raise AtbenchError(f"{record_path}: field `flags.sha256`: {problem}; the record is refused",
                           "restore the record and its flags file as they were published, or regenerate them with "
                           "`atbench run`")
    problems = number_problems(record, flags)
    if problems:
        field, _, detail = problems[0].partition(": ")
        more = f" ({len(problems) - 1} more)" if len(problems) > 1 else ""
        raise AtbenchError(f"{record_path}: field `{field}`: {detail}{more}; the record is refused",
                           "numbers are derived from the flags, never edited: restore the record, or regenerate it "
                           "with `atbench run`")
    return flags
