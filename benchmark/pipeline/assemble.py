"""The one place a record is assembled: the evaluated subject, the protocol, the accuracies
derived from the flags, the analysis blocks and the provenance, checked against the typed record
(`leaderboard.record`) as it is built.
"""
from __future__ import annotations

import dataclasses
import platform

import torch

from benchmark.core.cost import device_label, phase_cost
from benchmark.core.provenance import device_name, git_state, package_versions, utc_now
from benchmark.pipeline.evaluate import EVALUATION_VERSION
from benchmark.pipeline.protocol import Protocol, build_attack
from benchmark.pipeline.selection import SELECTION_RULES
from benchmark.pipeline.sweeps import sweep_source
from benchmark.pipeline.tracks import Track
from benchmark.pipeline.train import HARNESS_VERSION, TrainResult
from defenses.base import Defense
from leaderboard.evaluation_setting import search_suffix
from leaderboard.record import build_record


@dataclasses.dataclass(frozen=True)
class Subject:
    """What is evaluated and how its record describes it.

    Attributes:
        name: base name of its record files (the defense id, or the external model's name).
        defense: the record's `defense` block.
        architecture: the model's architecture id (or the spec of an external model).
        seed: the training seed (0 for an external model).
        train_seconds: training time (0 for an external model).
        checkpoint_sha256: sha256 of the evaluated checkpoint.
        training: the record's `training` block (how the checkpoint was chosen), None for an
            external model.
        code_sha256: the defense's source hash (`benchmark.pipeline.train.defense_source_sha256`;
            not recorded, but part of the evaluation's key), None for an external model.
        fast_path: the fast-path settings the checkpoint was trained with (`TrainResult.fast_path`;
            empty for the plain path and for an external model).
        train_peak_mib: training's peak memory in MiB (`TrainResult.peak_memory_mib`; None for
            an external model, or a run trained before atbench kept it).
    """

    name: str
    defense: dict
    architecture: str
    seed: int
    train_seconds: float
    checkpoint_sha256: str
    training: dict | None = None
    code_sha256: str | None = None
    fast_path: tuple[str, ...] = ()
    train_peak_mib: float | None = None


def defense_block(defense: Defense, track: Track) -> dict:
    """The record's description of a registered defense trained on `track` (after `calibrate`:
    what its deployed model adds, `Defense.deployment`, is part of it)."""
    configured = defense.name in track.defense_configs
    deployed = defense.deployment()
    return {
        "id": defense.name, "external": False, "sweep": sweep_source(track.name, defense.name) if configured else None,
        "config": defense.config_dict(), "paper": defense.meta.paper,
        "venue": defense.meta.venue, "link": defense.meta.link, "fidelity": defense.meta.fidelity,
        "randomized": defense.meta.randomized,
        "recipe_overrides": {**defense.overrides(track),
                             **{f"config.{k}": v for k, v in track.defense_configs.get(defense.name, {}).items()}},
        **({} if deployed is None else {"deployed": deployed}),
    }


def training_block(result: TrainResult, defense: Defense) -> dict:
    """The record's description of how the harness chose the evaluated checkpoint (by the
    defense's own objective, `DefenseMeta.selection`)."""
    certified = {} if result.best_val_certified_acc is None else {"val_certified_acc": result.best_val_certified_acc}
    return {"selection_rule": SELECTION_RULES[defense.meta.selection], "best_epoch": result.best_epoch,
            "epochs": result.epochs, "val_robust_acc": result.best_val_robust_acc,
            "val_clean_acc": result.best_val_clean_acc, **certified}


def external_block(name: str, spec: str, checkpoint_name: str | None) -> dict:
    """The record's description of an external model (`atbench eval --model`)."""
    return {"id": name, "external": True, "sweep": None, "config": {"model": spec, "checkpoint": checkpoint_name},
            "paper": "", "venue": "", "link": "", "fidelity": "reference", "randomized": False,
            "recipe_overrides": {}}


@dataclasses.dataclass(frozen=True)
class Evidence:
    """What the evaluation measured, for `assemble`.

    Attributes:
        accuracies: `benchmark.pipeline.evaluate.aggregate`'s blocks.
        analysis: `benchmark.pipeline.analysis.run.Analysis.record`'s blocks.
        flags_file, flags_sha256: the per-example flags file and its hash.
        eval_seconds: evaluation time.
        data_sha256, subset_sha256: hashes of the data set and of the test indices.
        class_names: the data set's class names.
        precision: the attacks' search precision.
        votes: forward passes deciding each prediction (1 unless evaluated as randomized).
        fast_path: the fast-path settings the evaluation ran with (`FastPath.for_evaluation`).
    """

    accuracies: dict
    analysis: dict
    flags_file: str
    flags_sha256: str
    eval_seconds: float
    data_sha256: str
    subset_sha256: str
    class_names: tuple[str, ...]
    precision: str = "fp32"
    votes: int = 1
    fast_path: tuple[str, ...] = ()
    eval_peak_mib: float | None = None


def fast_path_block(subject: Subject, evidence: Evidence) -> dict | None:
    """The record's `provenance.fast_path`: the settings on while training (None for an
    external model) and while evaluating; None when both ran the plain path."""
    if not subject.fast_path and not evidence.fast_path:
        return None
    return {"training": None if subject.training is None else list(subject.fast_path),
            "evaluation": list(evidence.fast_path)}


def cost_block(subject: Subject, evidence: Evidence, device: str) -> dict:
    """The record's `cost`: where it was paid, and training's (None for an external model) and
    evaluation's seconds, device-seconds and peak memory (`benchmark.core.cost`)."""
    trained = subject.training is not None
    return {"device": device_label(device),
            "train": phase_cost(subject.train_seconds, subject.train_peak_mib, device) if trained else None,
            "eval": phase_cost(evidence.eval_seconds, evidence.eval_peak_mib, device)}


def assemble(track: Track, subject: Subject, protocol: Protocol, evidence: Evidence, device: str) -> dict:
    """The record of `subject` evaluated under `protocol` (docs/record-format.md). An attack
    that searched in reduced precision says so in its `attacks` entry, and a run with the fast
    path on in its `provenance.fast_path`.

    Raises:
        RecordError: the assembled record does not match `leaderboard.record.Record`.
    """
    search = search_suffix(evidence.precision)
    commit, dirty = git_state()
    packages = package_versions()
    fast = fast_path_block(subject, evidence)
    return build_record(
        versions={"evaluation": EVALUATION_VERSION, "harness": HARNESS_VERSION},
        track=track.name, seed=subject.seed, defense=subject.defense, training=subject.training,
        architecture=subject.architecture,
        protocol=protocol.summary(),
        attacks={c.column: repr(build_attack(c, protocol)) + search for c in protocol.columns},
        attack_groups=protocol.groups(), votes=evidence.votes,
        num_classes=len(evidence.class_names), class_names=list(evidence.class_names),
        **evidence.accuracies, **evidence.analysis,
        flags={"file": evidence.flags_file, "sha256": evidence.flags_sha256},
        runtime_s={"train": round(subject.train_seconds, 3), "eval": round(evidence.eval_seconds, 3)},
        cost=cost_block(subject, evidence, device),
        provenance={
            "atbench_version": packages["atbench"], "git_commit": commit, "git_dirty": dirty,
            "packages": packages, "python": platform.python_version(),
            "device": device_name(torch.device(device)),
            "seeds": {"train": subject.seed, "test_subset": protocol.subset_seed},
            "data_sha256": evidence.data_sha256, "test_subset_sha256": evidence.subset_sha256,
            "checkpoint_sha256": subject.checkpoint_sha256, "utc_time": utc_now(),
            **({"fast_path": fast} if fast else {}),
        },
    )
