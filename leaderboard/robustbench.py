"""Export records as RobustBench `model_info` entries (one JSON per model, RobustBench's field names).

RobustBench stores accuracies as percentage strings with two decimals and ranks by
`autoattack_acc`. What atbench puts in the fields it has no data for:

- `reported` is null: RobustBench's field holds the robust accuracy a paper claims and allows
  null; an atbench record has no paper number, and repeating our AutoAttack number there would
  pass it off as the paper's.
- `authors` is "N/A" (records carry the paper's title, venue and link, not its authors);
  `venue` is "N/A" when the record has none.
- `additional_data` is false: a track trains every defense on its own data set only.
- `number_forward_passes` is 1, or for a randomized defense the number of forward passes
  atbench's majority vote takes per prediction.
- `unreliable` is true when any of atbench's sanity flags fired; the `footnote` names them and
  says where the numbers come from (track, protocol, test points, seed, worst case over attacks).
"""
from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Iterable

from benchmark.core.errors import AtbenchError
from benchmark.core.io import atomic_write_json
from leaderboard.admission import admit
from leaderboard.flags import SANITY_FLAGS
from leaderboard.record import load_record

ROBUSTBENCH_FIELDS = ("link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue",
                      "architecture", "eps", "clean_acc", "reported", "autoattack_acc", "footnote", "unreliable")
AUTOATTACK = "autoattack"
# atbench data-set ids whose name RobustBench (or common usage) spells differently.
_DATASET_NAMES = {"mnist5k": "mnist"}


def percent(fraction: float) -> str:
    """A fraction as RobustBench writes accuracies: a percentage with two decimals ('0.735' -> '73.50'),
    rounded half-even from the fraction's shortest decimal form."""
    return str(Decimal(repr(fraction)).scaleb(2).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))


def _dataset(track: str) -> str:
    from benchmark.core.registry import TRACKS

    dataset = TRACKS.get(track).dataset
    return _DATASET_NAMES.get(dataset, dataset)


def _forward_passes(record: dict) -> int:
    return record["votes"]


def _footnote(record: dict, fired: list[str]) -> str:
    proto, primary = record["protocol"], record["protocol"]["primary_eps"]
    parts = [
        f"atbench track {record['track']}, protocol {proto['id']} v{proto['version']} "
        f"({proto['n_examples']} test points, {proto['norm']} eps {primary}), training seed {record['seed']}.",
        f"Worst case over its attack columns ({', '.join(sorted(record['robust_acc']))}): "
        f"{percent(record['worst_case'][primary])}%.",
        "No paper-reported number (reported is null).",
    ]
    if fired:
        parts.append(f"atbench sanity flags fired: {', '.join(fired)}.")
    return " ".join(parts)


def robustbench_entry(record: dict) -> dict:
    """The RobustBench `model_info` entry of a valid record (see the module docstring for what each
    field holds). `autoattack_acc` is the record's AutoAttack robust accuracy at the protocol's
    primary eps, `eps` that eps as the protocol writes it ("0.3", "8/255").

    Raises:
        AtbenchError: the record has no `autoattack` column, or its track is unknown.
    """
    primary = record["protocol"]["primary_eps"]
    if AUTOATTACK not in record["robust_acc"]:
        raise AtbenchError(
            f"the {record['defense']['id']} seed {record['seed']} record of {record['track']} has no "
            f"{AUTOATTACK!r} column (attacks: {', '.join(sorted(record['robust_acc']))}); "
            "RobustBench ranks by AutoAttack",
            "export records of a protocol that runs AutoAttack, or re-run the record under such a protocol",
        )
    defense = record["defense"]
    fired = [name for name in SANITY_FLAGS if record["sanity"][name]["fired"]]
    return {
        "link": defense["link"],
        "name": defense["paper"] or defense["id"],
        "authors": "N/A",
        "additional_data": False,
        "number_forward_passes": _forward_passes(record),
        "dataset": _dataset(record["track"]),
        "venue": defense["venue"] or "N/A",
        "architecture": record["architecture"],
        "eps": primary,
        "clean_acc": percent(record["clean_acc"]),
        "reported": None,
        "autoattack_acc": percent(record["robust_acc"][AUTOATTACK][primary]),
        "footnote": _footnote(record, fired),
        "unreliable": bool(fired),
    }


def _record_files(records: str | Path | Iterable[str | Path]) -> list[Path]:
    """Record files: a directory gives every `*.json` under it (sorted), a file itself."""
    items = [records] if isinstance(records, (str, Path)) else list(records)
    return [f for item in map(Path, items) for f in (sorted(item.rglob("*.json")) if item.is_dir() else [item])]


def export_robustbench(records: str | Path | Iterable[str | Path], out_dir: str | Path) -> list[Path]:
    """Write one RobustBench entry per record, as `<out_dir>/<defense>-seed<k>.json`, atomically.

    `records` is a directory (every `*.json` under it, at any depth), one record file, or an
    iterable of such paths. Every record is loaded, validated, admitted (`leaderboard.admission.
    admit`: its flags file, the regular file beside it, has the record's sha256 and gives every
    number it states) and converted before anything is written, so a bad record leaves `out_dir`
    untouched. Returns the written paths in input order.

    Raises:
        AtbenchError: no record found, an invalid record (`RecordError`), one that fails its
            admission (naming the record and the field), a record without an AutoAttack column,
            or two records that would share an output file (e.g. two tracks).
    """
    files = _record_files(records)
    if not files:
        raise AtbenchError(f"no records (*.json) to export in {records}",
                           "pass a track's records directory, e.g. leaderboard/records/mnist5k-cnn")
    out_dir = Path(out_dir)
    entries: dict[Path, tuple[Path, dict]] = {}
    for path in files:
        record = load_record(path)
        admit(record, path)
        out = out_dir / f"{record['defense']['id']}-seed{record['seed']}.json"
        if out in entries:
            raise AtbenchError(f"{entries[out][0]} and {path} both export to {out.name}",
                               "export one track (and protocol) at a time: pass its records directory")
        entries[out] = (path, robustbench_entry(record))
    for out, (_, entry) in entries.items():
        atomic_write_json(out, entry)
    return list(entries)
