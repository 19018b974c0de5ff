"""A record's evaluation setting: what changes its numbers besides its protocol and its source
(checkpoint, configuration, model). Two records that differ here are different results:

- the attacks' search precision (`--eval-precision`): each `attacks` entry of a record whose
  attacks searched in another precision than fp32 ends with `search_suffix(precision)`;
- the GPU fast path (`provenance.fast_path`: the settings on while training and evaluating).

Publishing never replaces a record of another setting without `--replace`, never puts one
beside records of another setting, and a board never mixes settings; it says which one it holds.
"""
from __future__ import annotations

import json
import re

from benchmark.core.errors import AtbenchError

#: The search precision of a record without a mark.
FULL_PRECISION = "fp32"
_MARK = re.compile(r" \[(\w+) search, fp32 check\]$")


def search_suffix(precision: str) -> str:
    """What an `attacks` entry of a record evaluated with the attacks' search in `precision`
    ends with ("" for fp32)."""
    return "" if precision == FULL_PRECISION else f" [{precision} search, fp32 check]"


def search_precision(record: dict) -> str:
    """The precision the record's attacks searched in ("fp32", "bf16"; several joined by "+"
    if its entries disagree)."""
    found = {(m.group(1) if (m := _MARK.search(text)) else FULL_PRECISION) for text in record["attacks"].values()}
    return "+".join(sorted(found))


def setting(record: dict) -> tuple[str, str]:
    """The record's evaluation setting as a comparable value: (search precision, fast path)."""
    return search_precision(record), json.dumps(record["provenance"].get("fast_path"), sort_keys=True)


def describe(record: dict) -> str:
    """The record's evaluation setting in words, e.g. "attacks searched in fp32; plain path
    (no GPU fast path)"."""
    precision = search_precision(record)
    search = (f"attacks searched in {precision}" if precision == FULL_PRECISION else
              f"attacks searched in {precision}, every adversarial example re-checked in fp32")
    fast = record["provenance"].get("fast_path")
    if not fast:
        return f"{search}; plain path (no GPU fast path)"
    training = "external model" if fast["training"] is None else ", ".join(fast["training"]) or "none"
    return f"{search}; GPU fast path (training: {training}; evaluation: {', '.join(fast['evaluation']) or 'none'})"


def check_one_setting(records: list[dict]) -> str:
    """The one evaluation setting of `records` (`describe`).

    Raises:
        AtbenchError: two records of different settings, naming both and the fix.
    """
    first = records[0]
    for record in records[1:]:
        if setting(record) != setting(first):
            raise AtbenchError(
                f"the records mix evaluation settings: {record['defense']['id']} seed {record['seed']} "
                f"({describe(record)}) and {first['defense']['id']} seed {first['seed']} ({describe(first)}); a "
                "board never mixes them",
                "keep the records of each setting in a records folder of their own (--records-dir), or "
                "re-evaluate the odd ones under the others' setting (`atbench eval`, with --eval-precision and "
                "--fast-path as the others were made)")
    return describe(first)
