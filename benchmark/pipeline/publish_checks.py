"""What publishing must never do with records of another evaluation setting
(`leaderboard.evaluation_setting`: the attacks' search precision, the GPU fast path): replace one
without `--replace`, or put a record beside one, so that the board would average both. Checked
for the precision before any work (`check_precision`) and for the whole setting before any record
is copied (`check_settings`)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from benchmark.core.errors import AtbenchError
from benchmark.pipeline.job import Job
from leaderboard.evaluation_setting import describe, search_precision, setting
from leaderboard.record import RecordError, load_record


def _published(folder: Path) -> list[tuple[Path, dict]]:
    """The readable records under `folder` (a protocol's records folder); unreadable ones are
    the board's to report."""
    found = []
    for path in sorted(folder.rglob("*.json")):
        try:
            found.append((path, load_record(path)))
        except RecordError:
            continue
    return found


def _folder(job: Job) -> Path:
    return Path(job.paths.records_dir) / job.protocol.id


def _targets(jobs: Sequence[Job]) -> set[Path]:
    return {_folder(job) / f"{job.record_name}.json" for job in jobs}


def _refuse(job: Job, path: Path, theirs: str, ours: str) -> AtbenchError:
    own = path == _folder(job) / f"{job.record_name}.json"
    what = ("would replace it" + ("" if job.options.replace else " without --replace") if own else
            "would put it beside it, and a board never mixes evaluation settings")
    return AtbenchError(f"{path} was evaluated with {theirs}; the {job.defense} seed {job.seed} record is evaluated "
                        f"with {ours}: publishing it {what}",
                        "publish it into a records folder of its own (--records-dir DIR --boards-dir DIR2), "
                        "evaluate it as the folder's records were (--eval-precision, --fast-path), or replace them "
                        "with `atbench eval ... --replace` (which replaces only the records of the defenses and "
                        "seeds it evaluates)")


def check_precision(jobs: Sequence[Job]) -> None:
    """Before any work: refuse jobs whose records would meet published records of their protocol
    evaluated in another search precision (allowed only for the records they replace with
    `--replace`).

    Raises:
        AtbenchError: naming the published record, both precisions and the fix.
    """
    targets, published = _targets(jobs), {folder: _published(folder) for folder in set(map(_folder, jobs))}
    for job in jobs:
        protocol = job.protocol.summary()
        for path, other in published[_folder(job)]:
            if other["protocol"] != protocol or search_precision(other) == job.options.precision:
                continue
            if not (job.options.replace and path in targets):
                raise _refuse(job, path, f"attacks searched in {search_precision(other)}",
                              f"attacks searched in {job.options.precision} (--eval-precision)")


def check_settings(jobs: Sequence[Job], records: Sequence[Path]) -> None:
    """Before any record is copied: refuse a job's record whose evaluation setting differs from
    a published record of its protocol (allowed only for the records it replaces with `--replace`).

    Raises:
        AtbenchError: naming the published record, both settings and the fix.
    """
    targets, published = _targets(jobs), {folder: _published(folder) for folder in set(map(_folder, jobs))}
    for job, record_path in zip(jobs, records):
        record = load_record(record_path)
        for path, other in published[_folder(job)]:
            if other["protocol"] != record["protocol"] or setting(other) == setting(record):
                continue
            if not (job.options.replace and path in targets):
                raise _refuse(job, path, describe(other), describe(record))
