"""`atbench attack`: a submitted attack against every board entry whose model is at hand.

The command loads the attack (`--attack-file`, atbench's adaptive attacks or an installed package)
in the protocol's norm, finds the board's admitted entries (`--records-dir`) and which of them it
can attack (trained runs in `--runs-dir` or the official checkpoints shipped with atbench; with
`--with-official` the official entries too; or the external `--model`), runs the attack on each,
single-threaded on the CPU as records are made, and writes one attack record per entry into
`--attack-records-dir`. It prints, per entry, the record's path and the entry's best-known worst
case at the primary eps beside the protocol's (`leaderboard.best_known`), and one line per entry
it could not attack, with the reason.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from benchmark.core.errors import AtbenchError
from benchmark.core.lock import folder_lock
from benchmark.core.plugins import ATTACK, load_defense_files, load_file
from benchmark.core.registry import SUBMITTED_ATTACKS
from benchmark.core.workspace import official_checkpoints, official_records
from benchmark.pipeline.attack_run import attack_entry, attack_source
from benchmark.pipeline.attack_targets import board_entries, external_target, trained_targets
from benchmark.pipeline.data import load_dataset
from benchmark.pipeline.executor import run_local
from benchmark.pipeline.external import external_name
from benchmark.pipeline.job import ExternalModel
from benchmark.pipeline.protocol import protocol_for
from benchmark.pipeline.runner import check_device
from leaderboard.attack_admission import admit_attack
from leaderboard.attack_record import load_attack_record
from leaderboard.best_known import best_known


def build_submitted(name: str, norm: str, attack_files: list[str]):
    """The submitted attack `name` (its files imported first) with its default Config in `norm`,
    and the `--attack-file` each file-registered attack came from.

    Raises:
        AtbenchError: an unknown attack, or one that refuses the protocol's norm.
    """
    files = {registered: path for path in attack_files for registered in load_file(path, ATTACK)}
    cls = SUBMITTED_ATTACKS.get(name)
    try:
        return cls(norm=norm), files
    except (AtbenchError, TypeError, ValueError) as exc:
        raise AtbenchError(f"attack {name} cannot run in the protocol's norm {norm}: {exc}",
                           "attack a board of a norm the attack supports") from None


def summary(path: Path, target, primary: str) -> str:
    """One line: the record's path and the entry's best-known worst case at `primary` (this attack
    record only) beside the protocol's, with the paired test."""
    record = load_attack_record(path)
    entry = target.entry
    key = (entry.record["defense"]["id"], entry.record["seed"])
    known = best_known(entry, [admit_attack(record, path, {key: entry})])[primary]
    flag = f"; {known.flag}" if known.flag else ""
    return (f"{target.label}: {path} (eps {primary}: protocol {known.protocol_acc:.3f}, with {record['attack']['id']} "
            f"{known.best_known_acc:.3f}, {len(known.broken_beyond)} points broken beyond the protocol, "
            f"p = {known.p_value:.3g}{flag})")


def _entries(records_dir: str, protocol, with_official: bool) -> dict:
    """The board's admitted entries by (defense, seed): `records_dir`'s, and with `with_official`
    the official ones shipped with atbench too (a folder reached twice counts once).

    Raises:
        AtbenchError: an entry is in both, from two different record files.
    """
    entries = board_entries(records_dir, protocol)
    if with_official and Path(official_records()).resolve() != Path(records_dir).resolve():
        for key, entry in board_entries(official_records(), protocol).items():
            if key in entries:
                raise AtbenchError(f"{key[0]} seed {key[1]} is both an official entry and one of {records_dir}",
                                   "leave out --with-official, or attack your entries from another --records-dir")
            entries[key] = entry
    return entries


def run_attack(args, track, attack_records_dir: str) -> Iterator[str]:
    """Do `atbench attack` for parsed `args` on `track`, writing the attack records under
    `attack_records_dir` (the option's folder, resolved by the CLI), yielding the output's lines.

    Raises:
        AtbenchError: an unknown attack or entry, or no entry whose model is at hand.
    """
    load_defense_files(args.defense_files)
    protocol = protocol_for(track, args.protocol)
    check_device(args.device)
    attack, files = build_submitted(args.attack, protocol.norm, args.attack_files)
    source = attack_source(type(attack), files)
    entries = _entries(args.records_dir, protocol, args.with_official)
    if args.model is not None:
        name = args.name or external_name(args.model, args.checkpoint)
        targets, missing = [external_target(entries, name, ExternalModel(args.model, args.checkpoint), protocol)], []
    else:
        targets, missing = trained_targets(entries, track, args.runs_dir, [official_checkpoints()])
    yield from map(str, missing)
    if not targets:
        where = Path(args.records_dir) / protocol.id
        raise AtbenchError(f"no entry of the {protocol.id} board ({where}) can be attacked: "
                           + ("it has no records" if not entries else "no entry's model is at hand"),
                           "train and evaluate entries first (`atbench run`), pass the --runs-dir and --records-dir "
                           "they are in, attack the official entries with --with-official, or attack an external "
                           "model with --model")
    bundle = load_dataset(track.dataset, args.data_dir)
    jobs = [(attack, source, target, track, protocol, bundle, attack_records_dir, args.device, args.data_dir)
            for target in targets]
    with folder_lock(attack_records_dir):
        paths = run_local(attack_entry, jobs, 1, args.device, args.defense_files)  # one CPU thread
    for path, target in zip(paths, targets):
        yield summary(path, target, protocol.primary_eps)
