"""The record format's constants and its error type, shared by the typed record
(`leaderboard.record`), its rules (`leaderboard.record_rules`) and what is generated from it."""
from __future__ import annotations

from benchmark.core.errors import AtbenchError

SCHEMA_VERSION = 2
FIDELITIES = ("reference", "our-reading")

# A positive decimal ('0.3', '1e-2') or fraction ('8/255'): the mantissa or numerator has a non-zero digit.
EPS_PATTERN = (r"^([0-9]*[1-9][0-9]*/[1-9][0-9]*"
               r"|([0-9]*[1-9][0-9]*(\.[0-9]+)?|[0-9]+\.[0-9]*[1-9][0-9]*)([eE]-?[0-9]{1,2})?)$")
SHA256_PATTERN = r"^[0-9a-f]{64}$"
UTC_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z$"
SEED_MAX = 2**31 - 1

_FIX = (f"correct the record to match docs/record-format.md (schema_version {SCHEMA_VERSION}), "
        "or regenerate it with `atbench run`")


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
