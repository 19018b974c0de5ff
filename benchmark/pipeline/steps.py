"""The work of one job: train (or resume, or skip), then evaluate and write the record.

Each step writes its output atomically into the job's run folder and is skipped on a re-run
when its output exists and the hashes of its inputs match, so an interrupted run resumes where
it stopped and a finished one re-trains nothing. `train_job`, `eval_job` and `full_job` take a
`Job` and are what the executors run (in this process, in worker processes or as Ray tasks).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from benchmark.core.cost import peak_memory_mib, reset_peak_memory
from benchmark.core.errors import AtbenchError
from benchmark.core.io import (
    atomic_write_bytes,
    atomic_write_json,
    load_checkpoint,
    remove_stale_temp_files,
    sha256_bytes,
    sha256_json,
)
from benchmark.models.architectures import build_model
from benchmark.pipeline.analysis.run import analyse, probe
from benchmark.pipeline.assemble import (
    Evidence,
    Subject,
    assemble,
    defense_block,
    external_block,
    training_block,
)
from benchmark.pipeline.data import load_dataset
from benchmark.pipeline.evaluate import (
    EVALUATION_VERSION,
    aggregate,
    check_outputs,
    flags_npz_bytes,
    run_protocol,
    select_test_subset,
)
from benchmark.pipeline.fastpath import FastPath
from benchmark.pipeline.job import Job
from benchmark.pipeline.protocol import Protocol
from benchmark.pipeline.run_files import read_train_result
from benchmark.pipeline.tracks import Track
from benchmark.pipeline.train import (
    TrainResult,
    defense_source_sha256,
    effective_track,
    seeded_generator,
    train,
    train_key,
)
from defenses.base import Defense, TrainContext
from leaderboard.record import validate_record

log = logging.getLogger(__name__)


def train_step(track: Track, defense: Defense, seed: int, run_dir: Path, device: str,
               data_dir: str | None, progress: bool, fast: FastPath | None = None) -> TrainResult:
    """Train unless `train.json` shows a finished run with the same inputs (the fast path's
    settings included); `fast` is how training uses the device (`benchmark.pipeline.fastpath`;
    default: `FastPath.for_device(device)`)."""
    done = run_dir / "train.json"
    fast = fast or FastPath.for_device(device)
    key = train_key(track, defense, seed, fast)
    if done.is_file():
        result = read_train_result(done)
        if result.train_key == key and Path(result.checkpoint).is_file():
            log.info("%s seed %d: trained already, skipping", defense.name, seed)
            return result
    result = train(track, defense, seed, run_dir, device=device, data_dir=data_dir, progress=progress, fast=fast)
    atomic_write_json(done, result.__dict__)
    return result


def load_trained_model(track: Track, defense: Defense, checkpoint: str, checkpoint_sha256: str,
                       data_dir: str | None, device: str, fast: FastPath | None = None) -> torch.nn.Module:
    """Rebuild the architecture, load the checkpoint (weights only, sha256 checked), put it in
    the memory layout of `fast` (default: `FastPath.for_device(device)`), calibrate on the
    validation split and return the deployed (wrapped) model."""
    bundle, track = load_dataset(track.dataset, data_dir), effective_track(track, defense)
    model = build_model(track.model, bundle.num_classes, bundle.input_shape, bundle.mean, bundle.std)
    model.load_state_dict(load_checkpoint(checkpoint, checkpoint_sha256)["model"])
    (fast or FastPath.for_device(device)).prepare_model(model.to(device)).eval()
    val = bundle.val
    ctx = TrainContext(epoch=track.epochs - 1, step=0, device=torch.device(device), eps=track.eps,
                       attack_steps=track.attack_steps, step_size=track.step_ratio * track.eps,
                       num_classes=bundle.num_classes, generator=seeded_generator(0), norm=track.norm)
    defense.calibrate(model, lambda: zip(val.x.split(500), val.y.split(500)), ctx)
    return defense.wrap(model).eval()


def evaluate_model(model: torch.nn.Module, subject: Subject, track: Track, protocol: Protocol, run_dir: Path,
                   device: str, data_dir: str | None, progress: bool, precision: str = "fp32",
                   fast: FastPath = FastPath()) -> Path:
    """Evaluate a deployed model under `protocol` and write `record.json` and the flags file
    into `run_dir`, unless a record for the same checkpoint, description, defense source,
    protocol and search `precision` exists. A killed evaluation resumes from `eval_state.json`.
    `fast` is the fast path the model was prepared with (`FastPath.for_evaluation`): when a
    setting is on, the key and the record's `provenance.fast_path` say so. Returns the record's
    path."""
    eval_key = sha256_json({"checkpoint": subject.checkpoint_sha256, "protocol": protocol.sha256,
                            "defense": subject.defense, "evaluation": EVALUATION_VERSION,
                            **({"code": subject.code_sha256} if subject.code_sha256 else {}),
                            **({"precision": precision} if precision != "fp32" else {}),
                            **({"fast_path": list(fast.settings())} if fast.settings() else {})})
    record_path, key_path = run_dir / "record.json", run_dir / "eval_key.txt"
    if record_path.is_file() and key_path.is_file() and key_path.read_text() == eval_key:
        log.info("%s seed %d: evaluated already, skipping", subject.name, subject.seed)
        return record_path
    remove_stale_temp_files(run_dir)
    bundle = load_dataset(track.dataset, data_dir)
    labels = bundle.test.y.numpy()
    indices = select_test_subset(labels, protocol.n_examples, protocol.subset_seed)
    x, y = bundle.test.x[indices], bundle.test.y[indices]
    reset_peak_memory(torch.device(device))
    t0 = time.perf_counter()
    check_outputs(model, x, bundle.num_classes, device)
    probed = probe(model, protocol, x, y, bundle.num_classes, device)
    randomized = subject.defense["randomized"] or probed["stochastic_outputs"]["fired"]
    if randomized:
        protocol = protocol.for_randomized()
        log.info("%s is randomized: randomized attack variants, majority vote over %d passes", subject.name,
                 protocol.analysis.votes)
    votes = protocol.analysis.votes if randomized else 1
    outcome = run_protocol(model, protocol, x, y, device=device, state_path=run_dir / "eval_state.json",
                           state_key=eval_key, progress=progress, votes=votes, label=subject.name,
                           precision=precision)
    summary = aggregate(outcome.flags, labels[indices], protocol, bundle.num_classes)
    extra = analyse(model, protocol, x, y, outcome, summary, probed, bundle.num_classes, device)
    seconds = time.perf_counter() - t0
    flags_bytes = flags_npz_bytes(outcome.flags, labels[indices], indices, extra.per_example)
    flags_file = f"{subject.name}-seed{subject.seed}.flags.npz"
    atomic_write_bytes(run_dir / flags_file, flags_bytes)
    evidence = Evidence(summary, extra.record, flags_file, sha256_bytes(flags_bytes), seconds, bundle.sha256,
                        sha256_bytes(np.asarray(indices, dtype=np.int64).tobytes()), bundle.class_names, precision,
                        votes, fast.settings(), eval_peak_mib=peak_memory_mib(torch.device(device)))
    record = validate_record(assemble(track, subject, protocol, evidence, device), str(record_path))
    atomic_write_json(record_path, record)
    atomic_write_bytes(key_path, eval_key.encode())
    return record_path


def trained_result(job: Job) -> TrainResult:
    """The finished training of a job (its `train.json`).

    Raises:
        AtbenchError: the run has not finished training.
    """
    done = job.run_dir / "train.json"
    if not done.is_file():
        raise AtbenchError(f"no trained {job.defense} seed {job.seed} in {job.run_dir} ({done.name} is missing)",
                           f"run `atbench train --track {job.track.name} --defense {job.defense} --seed {job.seed}` "
                           "first, or pass the --runs-dir it was trained in")
    return read_train_result(done)


def train_job(job: Job) -> TrainResult:
    """Train (or resume, or skip when done) the job's defense and seed on its track."""
    log.info("%s seed %d on %s: training", job.defense, job.seed, job.track.name)
    fast = FastPath.for_device(job.device, job.options.compile, job.options.fast_path)
    return train_step(job.track, job.track.defense(job.defense), job.seed, job.run_dir, job.device,
                      job.paths.data_dir, job.options.progress, fast)


def _evaluate_external(job: Job) -> Path:
    from benchmark.pipeline.external import load_external

    bundle = load_dataset(job.track.dataset, job.paths.data_dir)
    model, sha = load_external(job.external.spec, job.external.checkpoint, bundle)
    checkpoint = Path(job.external.checkpoint).name if job.external.checkpoint else None
    subject = Subject(job.defense, external_block(job.defense, job.external.spec, checkpoint), job.external.spec,
                      0, 0.0, sha)
    return evaluate_model(model.to(job.device), subject, job.track, job.protocol, job.run_dir, job.device,
                          job.paths.data_dir, job.options.progress, job.options.precision)


def eval_job(job: Job, trained: TrainResult | None = None) -> Path:
    """Evaluate the job under its protocol (an external model, or the finished training:
    `trained`, or the run folder's) and write its record; returns the record's path."""
    if job.external is not None:
        return _evaluate_external(job)
    result = trained if trained is not None else trained_result(job)
    defense = job.track.defense(job.defense)
    log.info("%s seed %d on %s: evaluating", job.defense, job.seed, job.track.name)
    fast = FastPath.for_device(job.device, mode=job.options.fast_path).for_evaluation()
    model = load_trained_model(job.track, defense, result.checkpoint, result.checkpoint_sha256, job.paths.data_dir,
                               job.device, fast)
    subject = Subject(defense.name, defense_block(defense, job.track), effective_track(job.track, defense).model,
                      job.seed, result.runtime_s, result.checkpoint_sha256, training_block(result, defense),
                      defense_source_sha256(type(defense)), fast_path=result.fast_path,
                      train_peak_mib=result.peak_memory_mib)
    return evaluate_model(model, subject, job.track, job.protocol, job.run_dir, job.device, job.paths.data_dir,
                          job.options.progress, job.options.precision, fast)


def full_job(job: Job) -> Path:
    """Train and evaluate the job; returns the record's path."""
    return eval_job(job, train_job(job))
