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
- `external`, RobustBench's best-known robust accuracy under attacks from outside AutoAttack, is
  present only when submitted attacks (`atbench attack`, docs/attacks.md) broke points of the
  record beyond the protocol's attacks at the primary eps, so that its best-known worst case
  (`leaderboard.best_known`: per point, the worst over the protocol's attack columns and every
  admitted attack record of the record) is below its AutoAttack accuracy. It then holds that
  best-known accuracy, in `autoattack_acc`'s units and format, and the `footnote` says, as
  RobustBench's files do, "<external>% robust accuracy is due to" the attacks that broke those
  points. Otherwise the field is absent, as in RobustBench's files without an external
  evaluation: a worst case below AutoAttack from the protocol's own columns alone stays in the
  footnote (it is the protocol's number, not an external evaluation).
"""
from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Iterable

from benchmark.core.errors import AtbenchError
from benchmark.core.io import atomic_write_json
from leaderboard.admission import admit
from leaderboard.attack_admission import admit_attack
from leaderboard.attack_record import attack_records_beside, find_attack_records
from leaderboard.best_known import BestKnown, best_known
from leaderboard.evidence import Admitted
from leaderboard.flags import SANITY_FLAGS
from leaderboard.formats import p_is
from leaderboard.record import load_record

ROBUSTBENCH_FIELDS = ("link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue",
                      "architecture", "eps", "clean_acc", "reported", "autoattack_acc", "footnote", "unreliable")
#: RobustBench's field for the best-known robust accuracy, present only with an external evaluation.
EXTERNAL = "external"
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


def _external(known: BestKnown) -> str:
    """The footnote's sentence for `external`: its number and the attacks it is due to."""
    counts: dict[str, int] = {}
    for names in known.broken_beyond.values():
        for name in names:
            counts[name] = counts.get(name, 0) + 1
    points = len(known.broken_beyond)
    attacks = ", ".join(f"{name} ({n} point{'s' if n != 1 else ''})" for name, n in sorted(counts.items()))
    return (f"{percent(known.best_known_acc)}% robust accuracy is due to the submitted "
            f"attack{'s' if len(counts) > 1 else ''} {attacks} beside the protocol's attack columns (atbench attack "
            f"records): {points} point{'s' if points != 1 else ''} the protocol's attacks left robust "
            f"{'were' if points != 1 else 'was'} broken (one-sided exact paired test p {p_is(known.p_value)}).")


def robustbench_entry(record: dict, known: BestKnown | None = None) -> dict:
    """The RobustBench `model_info` entry of a valid record (see the module docstring for what each
    field holds). `autoattack_acc` is the record's AutoAttack robust accuracy at the protocol's
    primary eps, `eps` that eps as the protocol writes it ("0.3", "8/255"). `known` is the
    record's best-known worst case at the primary eps (`leaderboard.best_known.best_known`, from
    its admitted attack records): when submitted attacks broke points beyond the protocol and it
    is below the AutoAttack accuracy, `external` holds it and the footnote names the attacks.

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
    external = bool(known is not None and known.broken_beyond
                    and known.best_known_acc < record["robust_acc"][AUTOATTACK][primary])
    footnote = _footnote(record, fired) + (" " + _external(known) if external else "")
    entry = {
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
        "footnote": footnote,
        "unreliable": bool(fired),
    }
    if external:
        entry[EXTERNAL] = percent(known.best_known_acc)
    return entry


def _record_files(records: str | Path | Iterable[str | Path]) -> list[Path]:
    """Record files: a directory gives every `*.json` under it (sorted), a file itself."""
    items = [records] if isinstance(records, (str, Path)) else list(records)
    return [f for item in map(Path, items) for f in (sorted(item.rglob("*.json")) if item.is_dir() else [item])]


def attack_records_of(record_file: str | Path) -> Path | None:
    """The attack-records folder of a record published as `<root>/records/<protocol>/<entry>.json`:
    `<root>/attack_records`, beside its records folder (`attack_records_beside`), as every other
    command reads; None for a path too short to have one."""
    parents = Path(record_file).absolute().parents
    return attack_records_beside(parents[1]) if len(parents) > 2 else None


def _best_known(loaded: list[tuple[Path, Admitted]],
                attack_records_dir: str | Path | None) -> dict[tuple[str, int], BestKnown]:
    """Per exported record (defense, seed) that admitted attack records name, its best-known worst
    case at the primary eps. A record's attack records are read from `<folder>/<protocol>/`, where
    the folder is `attack_records_dir`, or when it is None the folder beside the record's own
    records folder (`attack_records_of`); those naming an exported record are admitted against
    it (a refusal is an error naming the file), those naming a record not exported are left out
    (an export may take any subset of a board's records)."""
    groups: dict[tuple[str, str], dict[tuple[str, int], Admitted]] = {}
    for path, item in loaded:
        folder = attack_records_dir if attack_records_dir is not None else attack_records_of(path)
        if folder is not None:
            group = groups.setdefault((str(folder), item.record["protocol"]["id"]), {})
            group[(item.record["defense"]["id"], item.record["seed"])] = item
    out = {}
    for (folder, protocol), entries in sorted(groups.items()):
        admitted: dict[tuple[str, int], list] = {}
        for path, record in find_attack_records(folder, protocol):
            key = (record["entry"]["defense"], record["entry"]["seed"])
            if key in entries:
                admitted.setdefault(key, []).append(admit_attack(record, path, entries))
        for key, attacks in admitted.items():
            item = entries[key]
            out[key] = best_known(item, attacks)[item.record["protocol"]["primary_eps"]]
    return out


def export_robustbench(records: str | Path | Iterable[str | Path], out_dir: str | Path,
                       attack_records_dir: str | Path | None = None) -> list[Path]:
    """Write one RobustBench entry per record, as `<out_dir>/<defense>-seed<k>.json`, atomically.

    `records` is a directory (every `*.json` under it, at any depth), one record file, or an
    iterable of such paths. Every record is loaded, validated, admitted (`leaderboard.admission.
    admit`: its flags file, the regular file beside it, has the record's sha256 and gives every
    number it states) and converted before anything is written, so a bad record leaves `out_dir`
    untouched. Returns the written paths in input order.

    The admitted attack records of the exported records (`<attack_records_dir>/<protocol>/`, as
    the board reads them; by default, None, the `attack_records` folder beside each record's
    records folder, as `attack_records_of` derives it; a missing folder holds none) give each
    record its best-known worst case, which fills `external` when submitted attacks
    broke points beyond the protocol (module docstring).

    Raises:
        AtbenchError: no record found, an invalid record (`RecordError`), one that fails its
            admission (naming the record and the field), a record without an AutoAttack column,
            two records that would share an output file (e.g. two tracks), or an attack record of
            an exported record that is malformed or fails its admission (naming its file).
    """
    files = _record_files(records)
    if not files:
        raise AtbenchError(f"no records (*.json) to export in {records}",
                           "pass a track's records directory, e.g. leaderboard/records/mnist5k-cnn")
    out_dir = Path(out_dir)
    loaded: dict[Path, tuple[Path, Admitted]] = {}
    for path in files:
        record = load_record(path)
        item = Admitted(record, admit(record, path))
        out = out_dir / f"{record['defense']['id']}-seed{record['seed']}.json"
        if out in loaded:
            raise AtbenchError(f"{loaded[out][0]} and {path} both export to {out.name}",
                               "export one track (and protocol) at a time: pass its records directory")
        loaded[out] = (path, item)
    known = _best_known(list(loaded.values()), attack_records_dir)
    entries = {out: (path, robustbench_entry(item.record, known.get((item.record["defense"]["id"],
                                                                     item.record["seed"]))))
               for out, (path, item) in loaded.items()}
    for out, (_, entry) in entries.items():
        atomic_write_json(out, entry)
    return list(entries)
