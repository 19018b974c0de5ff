"""The job grid (defenses x seeds on a track) and its local executor.

Each step writes its output atomically into `runs/<track>/<defense>/seed<k>/` and is skipped
on a re-run when its output exists and the hashes of its inputs match, so an interrupted run
resumes where it stopped and a finished one re-trains nothing.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import platform
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from benchmark.analysis import analyse, probe
from benchmark.data import load_dataset
from benchmark.errors import AtbenchError
from benchmark.evaluate import aggregate, check_outputs, flags_npz_bytes, run_protocol, select_test_subset
from benchmark.executor import run_local, worker_count
from benchmark.fastpath import FastPath
from benchmark.io import (
    atomic_write_bytes,
    atomic_write_json,
    load_checkpoint,
    remove_stale_temp_files,
    sha256_bytes,
    sha256_json,
)
from benchmark.lock import folder_lock
from benchmark.models import build_model
from benchmark.plugins import load_defense_files
from benchmark.protocol import Protocol, build_attack, protocol_for
from benchmark.provenance import device_name, git_state, package_versions, utc_now
from benchmark.registry import DEFENSES, TRACKS
from benchmark.run_files import read_train_result
from benchmark.tracks import Track
from benchmark.train import TrainResult, check_supports, effective_track, seeded_generator, train, train_key
from defenses.base import Defense, TrainContext
from leaderboard.schema import SCHEMA_VERSION, validate_record

log = logging.getLogger(__name__)
#: Bumped whenever the evaluation computes something new, so finished runs are re-evaluated.
EVALUATION_VERSION = 4
#: Forward passes whose majority decides each prediction of a randomized defense.
VOTES = 5
#: The executors `run` can hand the job grid to.
EXECUTORS = ("local", "ray")


def run_dir_for(runs_dir: str | Path, track: str, defense: str, seed: int) -> Path:
    """Where one (track, defense, seed) job writes its outputs."""
    return Path(runs_dir) / track / defense / f"seed{seed}"


def record_name(defense: str, seed: int) -> str:
    """Base file name of a published record (`<name>.json`, `<name>.flags.npz`)."""
    return f"{defense}-seed{seed}"


def train_step(track: Track, defense: Defense, seed: int, run_dir: Path, device: str,
               data_dir: str | None, progress: bool, compile: bool = False) -> TrainResult:
    """Train unless `train.json` shows a finished run with the same inputs; `compile` turns on
    `torch.compile` in the device's fast path (`benchmark.fastpath`)."""
    done = run_dir / "train.json"
    key = train_key(track, defense, seed)
    if done.is_file():
        result = read_train_result(done)
        if result.train_key == key and Path(result.checkpoint).is_file():
            log.info("%s seed %d: trained already, skipping", defense.name, seed)
            return result
    result = train(track, defense, seed, run_dir, device=device, data_dir=data_dir, progress=progress,
                   fast=FastPath.for_device(device, compile))
    atomic_write_json(done, result.__dict__)
    return result


def load_trained_model(track: Track, defense: Defense, checkpoint: str, checkpoint_sha256: str,
                       data_dir: str | None, device: str) -> torch.nn.Module:
    """Rebuild the architecture, load the checkpoint (weights only, sha256 checked), calibrate
    on the validation split and return the deployed (wrapped) model."""
    bundle = load_dataset(track.dataset, data_dir)
    model = build_model(track.model, bundle.num_classes, bundle.input_shape, bundle.mean, bundle.std)
    model.load_state_dict(load_checkpoint(checkpoint, checkpoint_sha256)["model"])
    FastPath.for_device(device).prepare_model(model.to(device)).eval()
    val, track = bundle.val, effective_track(track, defense)
    ctx = TrainContext(epoch=track.epochs - 1, step=0, device=torch.device(device), eps=track.eps,
                       attack_steps=track.attack_steps, step_size=track.step_ratio * track.eps,
                       num_classes=bundle.num_classes, generator=seeded_generator(0), norm=track.norm)
    defense.calibrate(model, lambda: zip(val.x.split(500), val.y.split(500)), ctx)
    return defense.wrap(model).eval()


@dataclasses.dataclass(frozen=True)
class Subject:
    """What is evaluated and how its record describes it.

    Attributes:
        name: base name of its record files (the defense id).
        defense: the record's `defense` block.
        architecture: the model's architecture id (or the spec of an external model).
        seed: the training seed (0 for an external model).
        train_seconds: training time (0 for an external model).
        checkpoint_sha256: sha256 of the evaluated checkpoint.
    """

    name: str
    defense: dict
    architecture: str
    seed: int
    train_seconds: float
    checkpoint_sha256: str


def defense_block(defense: Defense, track: Track) -> dict:
    """The record's description of a registered defense trained on `track`."""
    return {
        "id": defense.name, "config": defense.config_dict(), "paper": defense.meta.paper,
        "venue": defense.meta.venue, "link": defense.meta.link, "fidelity": defense.meta.fidelity,
        "randomized": defense.meta.randomized,
        "recipe_overrides": {**defense.overrides(track),
                             **{f"config.{k}": v for k, v in track.defense_configs.get(defense.name, {}).items()}},
    }


def make_record(track: Track, subject: Subject, protocol: Protocol, summary: dict, flags_file: str,
                flags_sha: str, eval_seconds: float, data_sha: str, subset_sha: str, device: str,
                class_names: tuple[str, ...], precision: str = "fp32") -> dict:
    """Assemble the record (docs/record-format.md) from aggregates and provenance. An attack
    that searched in reduced `precision` says so in its `attacks` entry."""
    search = "" if precision == "fp32" else f" [{precision} search, fp32 check]"
    commit, dirty = git_state()
    packages = package_versions()
    return {
        "schema_version": SCHEMA_VERSION, "track": track.name, "seed": subject.seed,
        "defense": subject.defense,
        "architecture": subject.architecture,
        "protocol": protocol.summary(),
        "attacks": {c.column: repr(build_attack(c, protocol)) + search for c in protocol.columns},
        "num_classes": len(class_names), "class_names": list(class_names),
        **summary,
        "flags": {"file": flags_file, "sha256": flags_sha},
        "runtime_s": {"train": round(subject.train_seconds, 3), "eval": round(eval_seconds, 3)},
        "provenance": {
            "atbench_version": packages["atbench"], "git_commit": commit, "git_dirty": dirty,
            "packages": packages, "python": platform.python_version(),
            "device": device_name(torch.device(device)),
            "seeds": {"train": subject.seed, "test_subset": protocol.subset_seed},
            "data_sha256": data_sha, "test_subset_sha256": subset_sha,
            "checkpoint_sha256": subject.checkpoint_sha256, "utc_time": utc_now(),
        },
    }


def evaluate_model(model: torch.nn.Module, subject: Subject, track: Track, protocol: Protocol, run_dir: Path,
                   device: str, data_dir: str | None, progress: bool, precision: str = "fp32") -> Path:
    """Evaluate a deployed model under `protocol` and write `record.json` and the flags file
    into `run_dir`, unless a record for the same checkpoint, description, protocol and search
    `precision` exists. A killed evaluation resumes from `eval_state.json`. Returns the
    record's path."""
    eval_key = sha256_json({"checkpoint": subject.checkpoint_sha256, "protocol": protocol.sha256,
                            "defense": subject.defense, "evaluation": EVALUATION_VERSION,
                            **({"precision": precision} if precision != "fp32" else {})})
    record_path, key_path = run_dir / "record.json", run_dir / "eval_key.txt"
    if record_path.is_file() and key_path.is_file() and key_path.read_text() == eval_key:
        log.info("%s seed %d: evaluated already, skipping", subject.name, subject.seed)
        return record_path
    remove_stale_temp_files(run_dir)
    bundle = load_dataset(track.dataset, data_dir)
    labels = bundle.test.y.numpy()
    indices = select_test_subset(labels, protocol.n_examples, protocol.subset_seed)
    x, y = bundle.test.x[indices], bundle.test.y[indices]
    t0 = time.perf_counter()
    check_outputs(model, x, bundle.num_classes, device)
    probed = probe(model, protocol, x, y, bundle.num_classes, device)
    randomized = subject.defense["randomized"] or probed["stochastic_outputs"]["fired"]
    if randomized:
        protocol = protocol.for_randomized()
        log.info("%s is randomized: AutoAttack version rand, majority vote over %d passes", subject.name, VOTES)
    outcome = run_protocol(model, protocol, x, y, device=device, state_path=run_dir / "eval_state.json",
                           state_key=eval_key, progress=progress, votes=VOTES if randomized else 1,
                           label=subject.name, precision=precision)
    summary = aggregate(outcome.flags, labels[indices], protocol, bundle.num_classes)
    extra = analyse(model, protocol, x, y, outcome, summary, probed, bundle.num_classes, device)
    seconds = time.perf_counter() - t0
    flags_bytes = flags_npz_bytes(outcome.flags, labels[indices], indices, extra.per_example)
    flags_file = f"{record_name(subject.name, subject.seed)}.flags.npz"
    atomic_write_bytes(run_dir / flags_file, flags_bytes)
    record = make_record(track, subject, protocol, {**summary, **extra.record}, flags_file,
                         sha256_bytes(flags_bytes), seconds, bundle.sha256,
                         sha256_bytes(np.asarray(indices, dtype=np.int64).tobytes()), device, bundle.class_names,
                         precision)
    validate_record(record, str(record_path))
    atomic_write_json(record_path, record)
    atomic_write_bytes(key_path, eval_key.encode())
    return record_path


def evaluate_step(track: Track, defense: Defense, seed: int, run_dir: Path, result: TrainResult,
                  device: str, data_dir: str | None, progress: bool, protocol: str | None = None,
                  precision: str = "fp32") -> Path:
    """Evaluate a trained defense under the track's protocol (or the protocol given), the
    attacks searching in `precision`."""
    subject = Subject(defense.name, defense_block(defense, track), effective_track(track, defense).model, seed,
                      result.runtime_s, result.checkpoint_sha256)
    model = load_trained_model(track, defense, result.checkpoint, result.checkpoint_sha256, data_dir, device)
    return evaluate_model(model, subject, track,
                          protocol_for(track, protocol), run_dir, device, data_dir, progress, precision)


def evaluate_external(spec: str, checkpoint: str | None, name: str | None, track_name: str, device: str = "cpu",
                      runs_dir: str = "runs", records_dir: str = "leaderboard/records",
                      boards_dir: str = "leaderboard/boards", data_dir: str | None = None, progress: bool = True,
                      protocol: str | None = None) -> list[Path]:
    """Evaluate a model from outside atbench (`benchmark.external`) under a track's protocol,
    publish its record next to the defenses' and rebuild the board. Returns the record and
    board paths."""
    from benchmark.external import external_name, load_external
    from leaderboard.build import write_board

    track: Track = TRACKS.get(track_name)
    check_device(device)
    chosen = protocol_for(track, protocol)
    bundle = load_dataset(track.dataset, data_dir)
    model, sha = load_external(spec, checkpoint, bundle)
    name = name or external_name(spec, checkpoint)
    block = {"id": name, "config": {"model": spec, "checkpoint": Path(checkpoint).name if checkpoint else None},
             "paper": "", "venue": "", "link": "", "fidelity": "reference", "randomized": False,
             "recipe_overrides": {}}
    subject = Subject(name, block, spec, 0, 0.0, sha)
    record = evaluate_model(model.to(device), subject, track, chosen, run_dir_for(runs_dir, track.name, name, 0),
                            device, data_dir, progress)
    with folder_lock(records_dir):
        publish(record, records_dir, name, 0)
        return [record, *write_board(records_dir, chosen.id, boards_dir)]


def publish(record_path: Path, records_dir: str | Path, defense: str, seed: int) -> None:
    """Copy a record and its flags into `<records_dir>/<protocol id>/` (atomically; unchanged
    bytes when nothing changed)."""
    record = json.loads(record_path.read_text())
    target = Path(records_dir) / record["protocol"]["id"]
    name = record_name(defense, seed)
    atomic_write_bytes(target / f"{name}.json", record_path.read_bytes())
    flags = record_path.parent / record["flags"]["file"]
    atomic_write_bytes(target / flags.name, flags.read_bytes())


def train_job(track_name: str, defense_name: str, seed: int, device: str, runs_dir: str, data_dir: str | None,
              progress: bool, compile: bool = False) -> TrainResult:
    """Train (or resume, or skip when done) one (defense, seed) on a track: a unit of work for
    the executors (plain arguments, so it can run in another process)."""
    track = TRACKS.get(track_name)
    log.info("%s seed %d on %s: training", defense_name, seed, track_name)
    return train_step(track, track.defense(defense_name), seed, run_dir_for(runs_dir, track_name, defense_name, seed),
                      device, data_dir, progress, compile)


def trained_result(run_dir: Path, track_name: str, defense_name: str, seed: int) -> TrainResult:
    """The finished training of one (defense, seed) in `run_dir` (its `train.json`).

    Raises:
        AtbenchError: the run has not finished training.
    """
    done = run_dir / "train.json"
    if not done.is_file():
        raise AtbenchError(f"no trained {defense_name} seed {seed} in {run_dir} ({done.name} is missing)",
                           f"run `atbench train --track {track_name} --defense {defense_name} --seed {seed}` first, "
                           "or pass the --runs-dir it was trained in")
    return read_train_result(done)


def eval_job(track_name: str, defense_name: str, seed: int, device: str, runs_dir: str, data_dir: str | None,
             progress: bool, protocol: str | None, precision: str = "fp32") -> Path:
    """Evaluate one trained (defense, seed) under the track's protocol (or `protocol`), the
    attacks searching in `precision`; returns the record's path in the run directory."""
    track = TRACKS.get(track_name)
    run_dir = run_dir_for(runs_dir, track_name, defense_name, seed)
    result = trained_result(run_dir, track_name, defense_name, seed)
    log.info("%s seed %d on %s: evaluating", defense_name, seed, track_name)
    return evaluate_step(track, track.defense(defense_name), seed, run_dir, result, device, data_dir, progress,
                         protocol, precision)


def run_job(track_name: str, defense_name: str, seed: int, device: str, runs_dir: str, data_dir: str | None,
            progress: bool, protocol: str | None, compile: bool = False, precision: str = "fp32") -> Path:
    """Train and evaluate one (defense, seed); returns the record's path."""
    train_job(track_name, defense_name, seed, device, runs_dir, data_dir, progress, compile)
    return eval_job(track_name, defense_name, seed, device, runs_dir, data_dir, progress, protocol, precision)


def grid(track: Track, defense_names: list[str] | None, seeds: tuple[int, ...]) -> list[tuple[str, int]]:
    """The (defense, seed) pairs to run, checked against the track, most expensive first (so
    that parallel workers finish close together)."""
    classes = [DEFENSES.get(n) for n in (defense_names or default_defenses())]
    for cls in classes:
        check_supports(cls, track)
    classes.sort(key=lambda cls: -cls.relative_cost)
    return [(cls.name, seed) for cls in classes for seed in seeds]


def run(track_name: str, defense_names: list[str] | None = None, seeds: tuple[int, ...] = (0,),
        device: str = "cpu", runs_dir: str = "runs", records_dir: str = "leaderboard/records",
        boards_dir: str = "leaderboard/boards", data_dir: str | None = None, progress: bool = True,
        protocol: str | None = None, jobs: int | None = None, defense_files: Sequence[str] = (),
        compile: bool = False, precision: str = "fp32", executor: str = "local",
        address: str | None = None) -> list[Path]:
    """Train and evaluate every (defense, seed) on a track, publish the records and write
    the board. `protocol` replaces the track's protocol (an id or a .toml path); `jobs` is the
    number of worker processes (default: one per CPU core; progress bars only with one);
    `defense_files` are imported first, here and in every worker (`benchmark.plugins`);
    `compile` and `precision` are the fast path's (`benchmark.fastpath`). `executor` "ray"
    runs the jobs as Ray tasks instead (`benchmark.executor_ray`), on the cluster at `address`
    or on a local Ray instance. Returns the board files."""
    from leaderboard.build import write_board

    check_executor(executor, address, jobs)
    load_defense_files(defense_files)
    track: Track = TRACKS.get(track_name)
    pairs = grid(track, defense_names, seeds)
    protocol_id = protocol_for(track, protocol).id
    load_dataset(track.dataset, data_dir)
    if executor == "ray":
        from benchmark.executor_ray import run_ray

        if address is None:  # on a cluster, the GPUs are its workers', not this machine's
            check_device(device)
        records = run_ray(track.name, pairs, device, str(runs_dir), data_dir, protocol, address, defense_files,
                          compile, precision)
    else:
        check_device(device)
        workers = worker_count(jobs, device, len(pairs))
        args = [(track.name, name, seed, device, str(runs_dir), data_dir, progress and workers == 1, protocol,
                 compile, precision) for name, seed in pairs]
        records = run_local(run_job, args, workers, device, defense_files)
    with folder_lock(records_dir):
        for (name, seed), record_path in zip(pairs, records):
            publish(record_path, records_dir, name, seed)
        return write_board(records_dir, protocol_id, boards_dir)


def default_defenses() -> list[str]:
    """The defenses `atbench run` trains when none is named: every registered one."""
    return DEFENSES.names()


def check_executor(executor: str, address: str | None, jobs: int | None) -> None:
    """Raise unless `executor` is one of EXECUTORS and the options given fit it (`address`
    is Ray's, `jobs` the local executor's)."""
    if executor not in EXECUTORS:
        raise AtbenchError(f"unknown executor {executor!r}", f"use one of: {', '.join(EXECUTORS)}")
    if address is not None and executor != "ray":
        raise AtbenchError(f"--address {address} needs the ray executor", "add --executor ray, or leave out --address")
    if jobs is not None and executor == "ray":
        raise AtbenchError("--jobs sets the local executor's worker processes, not Ray's",
                           "leave out --jobs: Ray runs one task per free CPU (per GPU on cuda); to use fewer, "
                           "start Ray with `ray start --head --num-cpus N` and pass --address auto")


def check_device(device: str) -> None:
    """Raise if `device` cannot be used here."""
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise AtbenchError(f"unknown device {device!r}", "use cpu, cuda or cuda:N") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AtbenchError(f"device {device!r} requested but no CUDA GPU is available", "use --device cpu")

