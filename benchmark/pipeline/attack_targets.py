"""The board entries a submitted attack can run against (`atbench attack`): each admitted record of
the protocol whose model is at hand, either its trained run in the runs folder or a shipped
checkpoint (`<checkpoints>/<protocol>/<defense>-seed<k>.pt`, e.g. the official entries'), each
found only when its sha256 is the record's `provenance.checkpoint_sha256`, or an external model
named with `--model`. An entry whose model is not at hand is reported with the reason, not attacked.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

from torch import nn

from benchmark.core.errors import AtbenchError
from benchmark.core.io import sha256_file
from benchmark.core.registry import DEFENSES
from benchmark.pipeline.data import DataBundle
from benchmark.pipeline.external import load_external
from benchmark.pipeline.job import ExternalModel, record_name, run_dir_for
from benchmark.pipeline.protocol import Protocol
from benchmark.pipeline.run_files import read_train_result
from benchmark.pipeline.steps import load_trained_model
from benchmark.pipeline.tracks import Track
from leaderboard.admission import admit
from leaderboard.evidence import Admitted
from leaderboard.records import find_records


@dataclasses.dataclass(frozen=True)
class Target:
    """An entry whose model is at hand.

    Attributes:
        entry: its admitted record.
        checkpoint: the trained run's checkpoint, or the external model's (None: its own weights).
        external: the external model, or None for a trained run.
    """

    entry: Admitted
    checkpoint: str | None
    external: ExternalModel | None = None

    @property
    def label(self) -> str:
        """"<defense> seed <k>", as the output names the entry."""
        return f"{self.entry.record['defense']['id']} seed {self.entry.record['seed']}"

    def model(self, track: Track, bundle: DataBundle, data_dir: str | None, device: str) -> nn.Module:
        """The deployed model, in eval mode on `device` (weights only, sha256 checked).

        Raises:
            AtbenchError: the external model's weights are not the ones its record was made from.
        """
        record = self.entry.record
        sha = record["provenance"]["checkpoint_sha256"]
        if self.external is None:
            defense = track.defense(record["defense"]["id"])
            return load_trained_model(track, defense, self.checkpoint, sha, data_dir, device)
        model, found = load_external(self.external.spec, self.external.checkpoint, bundle)
        if found != sha:
            raise AtbenchError(f"--model {self.external.spec} with --checkpoint {self.external.checkpoint} has sha256 "
                               f"{found[:12]}..., but the record of {self.label} was made from {sha[:12]}...",
                               "pass the checkpoint the entry was evaluated with (`atbench eval --model`), or "
                               "re-evaluate the model first")
        return model.to(device).eval()


@dataclasses.dataclass(frozen=True)
class Missing:
    """An entry whose model is not at hand, and why."""

    label: str
    reason: str

    def __str__(self) -> str:
        return f"{self.label}: not attacked: {self.reason}"


def board_entries(records_dir: str | Path, protocol: Protocol) -> dict[tuple[str, int], Admitted]:
    """(defense id, seed) -> the admitted record of every entry of `protocol`'s board in `records_dir`.

    Raises:
        AtbenchError: a record is malformed or fails admission.
    """
    return {(record["defense"]["id"], record["seed"]): Admitted(record, admit(record, path))
            for path, record in find_records(records_dir, protocol.id)}


def trained_checkpoint(runs_dir: str | Path, record: dict) -> str | None:
    """The checkpoint of the record's trained run in `runs_dir` (`runs/<track>/<defense>/seed<k>/`)
    when it has the record's `provenance.checkpoint_sha256`, else None."""
    done = run_dir_for(runs_dir, record["track"], record["defense"]["id"], record["seed"]) / "train.json"
    if not done.is_file():
        return None
    result = read_train_result(done)
    ok = result.checkpoint_sha256 == record["provenance"]["checkpoint_sha256"] and Path(result.checkpoint).is_file()
    return result.checkpoint if ok else None


def shipped_checkpoint(checkpoints_dir: str | Path, record: dict) -> Path:
    """Where a checkpoints folder keeps the record's checkpoint: `<folder>/<protocol>/<defense>-seed<k>.pt`
    (the official ones: `benchmark.core.workspace.official_checkpoints`)."""
    return Path(checkpoints_dir) / record["protocol"]["id"] / f"{record_name(record['defense']['id'], record['seed'])}.pt"


def verified_shipped_checkpoint(checkpoints_dir: str | Path, record: dict) -> Path | None:
    """The record's `shipped_checkpoint` in `checkpoints_dir` when it is there with the record's
    `provenance.checkpoint_sha256`, else None."""
    path = shipped_checkpoint(checkpoints_dir, record)
    return path if path.is_file() and sha256_file(path) == record["provenance"]["checkpoint_sha256"] else None


def _shipped(entry: Admitted, checkpoints_dirs: Sequence[str | Path]) -> str | None:
    """The first `verified_shipped_checkpoint` of `checkpoints_dirs` for the entry, or None."""
    found = (verified_shipped_checkpoint(folder, entry.record) for folder in checkpoints_dirs)
    path = next((p for p in found if p is not None), None)
    return None if path is None else str(path)


def _trained(entry: Admitted, track: Track, runs_dir: str | Path,
             checkpoints_dirs: Sequence[str | Path]) -> Target | Missing:
    record = entry.record
    defense, seed = record["defense"]["id"], record["seed"]
    label = f"{defense} seed {seed}"
    if record["defense"]["external"]:
        return Missing(label, "an external model: pass --model SPEC --checkpoint PATH --name " + defense)
    if record["track"] != track.name:
        return Missing(label, f"its record is of track {record['track']}, not {track.name}")
    if defense not in DEFENSES and defense not in DEFENSES.installed():
        return Missing(label, f"defense {defense} is not registered here (pass its --defense-file)")
    found = trained_checkpoint(runs_dir, record) or _shipped(entry, checkpoints_dirs)
    if found is not None:
        return Target(entry, found)
    done = run_dir_for(runs_dir, track.name, defense, seed) / "train.json"
    if not done.is_file():
        return Missing(label, f"no trained run in {done.parent}, and no shipped checkpoint of the record's")
    return Missing(label, f"the run in {done.parent} holds checkpoint {read_train_result(done).checkpoint_sha256[:12]}"
                          f"..., the record was made from {record['provenance']['checkpoint_sha256'][:12]}..., and no "
                          "shipped checkpoint has it")


def trained_targets(entries: dict[tuple[str, int], Admitted], track: Track, runs_dir: str | Path,
                    checkpoints_dirs: Sequence[str | Path] = ()) -> tuple[list[Target], list[Missing]]:
    """The entries whose model is at hand, in a trained run of `runs_dir` or a checkpoint of
    `checkpoints_dirs` (`_shipped`), and the others with the reason."""
    found = [_trained(entries[key], track, runs_dir, checkpoints_dirs) for key in sorted(entries)]
    return [t for t in found if isinstance(t, Target)], [m for m in found if isinstance(m, Missing)]


def external_target(entries: dict[tuple[str, int], Admitted], name: str, model: ExternalModel,
                    protocol: Protocol) -> Target:
    """The entry of the external model published as `name` (seed 0).

    Raises:
        AtbenchError: no such entry, or the entry is not an external model's.
    """
    entry = entries.get((name, 0))
    if entry is None:
        raise AtbenchError(f"the {protocol.id} board has no entry {name!r} to attack",
                           f"evaluate the model under the protocol first: `atbench eval --model {model.spec} "
                           f"--checkpoint PATH --name {name}`, then attack it with the same --records-dir")
    if not entry.record["defense"]["external"]:
        raise AtbenchError(f"entry {name!r} of the {protocol.id} board is a trained defense, not an external model",
                           "leave out --model to attack trained runs, or give the external model's --name")
    return Target(entry, model.checkpoint, model)
