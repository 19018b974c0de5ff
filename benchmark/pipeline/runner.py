"""The runner: one entry, `execute`, runs a list of jobs for a stage (train, eval, or both) on
an executor, then publishes the records and writes the board.

The local executor (`benchmark.pipeline.executor`) runs the job functions of
`benchmark.pipeline.steps` in worker processes; the Ray executor
(`benchmark.pipeline.executor_ray`) receives the same functions and never imports this module.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import torch

from benchmark.core.errors import AtbenchError
from benchmark.core.io import atomic_write_bytes
from benchmark.core.lock import folder_lock
from benchmark.pipeline.executor import run_local, worker_count
from benchmark.pipeline.job import STAGES, Job
from benchmark.pipeline.publish_checks import check_precision, check_settings
from benchmark.pipeline.steps import eval_job, full_job, train_job
from leaderboard.record import RecordError, load_record

log = logging.getLogger(__name__)
#: The executors jobs can be handed to.
EXECUTORS = ("local", "ray")


@dataclasses.dataclass(frozen=True)
class Executor:
    """Where the jobs run.

    Attributes:
        kind: "local" (worker processes) or "ray".
        workers: local worker processes (None: one per CPU core, one on a GPU).
        address: the Ray cluster (None: a local Ray instance).
    """

    kind: str = "local"
    workers: int | None = None
    address: str | None = None

    def __post_init__(self):
        if self.kind not in EXECUTORS:
            raise AtbenchError(f"unknown executor {self.kind!r}", f"use one of: {', '.join(EXECUTORS)}")
        if self.address is not None and self.kind != "ray":
            raise AtbenchError(f"--address {self.address} needs the ray executor",
                               "add --executor ray, or leave out --address")
        if self.workers is not None and self.kind == "ray":
            raise AtbenchError("--jobs sets the local executor's worker processes, not Ray's",
                               "leave out --jobs: Ray runs one task per free CPU (per GPU on cuda); to use fewer, "
                               "start Ray with `ray start --head --num-cpus N` and pass --address auto")


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What `execute` produced: per job its `TrainResult` (stage "train") or its record's path
    in the run folder, and the board files written (after an evaluation)."""

    results: list[Any]
    boards: list[Path]


def execute(jobs: Sequence[Job], stage: str = "train+eval", executor: Executor = Executor()) -> Outcome:
    """Run `stage` ("train", "eval" or "train+eval") of every job. After an evaluation the
    records are published into the records folder and the board of the jobs' protocol is
    rewritten.

    Raises:
        AtbenchError: no jobs, an unknown stage, a device that cannot be used, a stage the
            executor cannot run, an evaluation whose records would meet published ones of another
            evaluation setting (`benchmark.pipeline.publish_checks`; the search precision is
            checked before any work), or the first error a job raised (finished work stays on disk).
    """
    if stage not in STAGES:
        raise AtbenchError(f"unknown stage {stage!r}", f"use one of: {', '.join(STAGES)}")
    if not jobs:
        raise AtbenchError("there is nothing to run", "name a defense (`atbench ls defenses`)")
    first = jobs[0]
    if stage != "train":
        check_precision(jobs)
    if executor.kind == "ray":
        if stage != "train+eval":
            raise AtbenchError("the ray executor runs whole jobs (train and evaluate)", "use `atbench run`")
        from benchmark.pipeline.executor_ray import run_ray

        if executor.address is None:  # on a cluster, the GPUs are its workers', not this machine's
            check_device(first.device)
        results = run_ray(jobs, train_job, eval_job, executor.address)
    else:
        check_device(first.device)
        workers = worker_count(executor.workers, first.device, len(jobs))
        if workers > 1:
            jobs = [dataclasses.replace(j, options=dataclasses.replace(j.options, progress=False)) for j in jobs]
        fn = {"train": train_job, "eval": eval_job, "train+eval": full_job}[stage]
        results = run_local(fn, [(job,) for job in jobs], workers, first.device, first.options.defense_files)
    if stage == "train":
        return Outcome(results, [])
    return Outcome(results, publish_all(jobs, results))


def publish_all(jobs: Sequence[Job], records: Sequence[Path]) -> list[Path]:
    """Publish every job's record into its records folder and rewrite the board of its
    protocol (under the records folder's lock; every record is checked against the published
    ones' evaluation settings before any is copied, `check_settings`); returns the board files."""
    from leaderboard.build import write_board

    first = jobs[0]
    with folder_lock(first.paths.records_dir):
        check_settings(jobs, records)
        for job, record in zip(jobs, records):
            publish(record, job)
        return write_board(first.paths.records_dir, first.protocol.id, first.paths.boards_dir,
                           first.paths.also_records, first.paths.attack_records_dir)


def _source(record: dict) -> tuple:
    """What makes a record's result: its checkpoint, its configuration and its model."""
    return (record["provenance"]["checkpoint_sha256"], json.dumps(record["defense"]["config"], sort_keys=True),
            record["architecture"], record["defense"]["external"])


#: What may differ between a record and its reproduction: when and where it was made, and what it cost.
MEASUREMENT_FIELDS = ("runtime_s", "cost")
PROVENANCE_MEASUREMENT_FIELDS = ("utc_time", "git_commit", "git_dirty")


def result_of(record: dict) -> dict:
    """The record without its measurement fields (`MEASUREMENT_FIELDS`, and the provenance's
    time and commit): two records with the same result are the same result made twice."""
    out = {k: v for k, v in record.items() if k not in MEASUREMENT_FIELDS}
    out["provenance"] = {k: v for k, v in record["provenance"].items() if k not in PROVENANCE_MEASUREMENT_FIELDS}
    return out


def publish(record_path: Path, job: Job) -> Path:
    """Copy a record and its flags into `<records_dir>/<protocol id>/` (atomically). A record
    whose result is already published (`result_of` equal: a reproduction) leaves the published
    files as they are, so the first measurement stands and a reproduction rewrites no byte. A
    published record of the same identity (protocol id, version and content, name, seed) from
    another source (checkpoint, configuration or model) is replaced only with `job.options.replace`.

    Raises:
        AtbenchError: the record would silently replace another result.
    """
    record = load_record(record_path)
    target = Path(job.paths.records_dir) / job.protocol.id
    published = target / f"{job.record_name}.json"
    if published.is_file():
        try:
            old = load_record(published)
        except RecordError:
            old = None  # an unreadable or older-format record: the new one takes its place
        if (old is not None and old["protocol"] == record["protocol"] and _source(old) != _source(record)
                and not job.options.replace):
            raise AtbenchError(f"{published} already holds {job.defense} seed {job.seed} under protocol "
                               f"{job.protocol.id} v{job.protocol.version} from another checkpoint, configuration or "
                               f"model; publishing would replace it (the new record is kept at {record_path}; with "
                               "unchanged code and settings, another checkpoint means another machine's arithmetic: "
                               "CPU results are bit-identical only between machines of one CPU vendor)",
                               "publish into another folder (--records-dir DIR), give a new model a name of its own "
                               "(--name), or pass --replace to replace the published record")
        if old is not None and result_of(old) == result_of(record):
            return published
    flags = record_path.parent / record["flags"]["file"]
    atomic_write_bytes(target / flags.name, flags.read_bytes())
    atomic_write_bytes(published, record_path.read_bytes())
    return published


def check_device(device: str) -> None:
    """Raise if `device` cannot be used here."""
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise AtbenchError(f"unknown device {device!r}", "use cpu, cuda or cuda:N") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AtbenchError(f"device {device!r} requested but no CUDA GPU is available", "use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise AtbenchError(f"device {device!r} requested but this machine has {torch.cuda.device_count()} CUDA GPU(s)",
                           f"use cuda:0..cuda:{torch.cuda.device_count() - 1}, or cuda")
