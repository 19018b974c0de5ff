"""A job is a value: one (track, defense or external model, seed) with its loaded protocol,
device, paths and options, frozen and picklable, so it travels unchanged from the CLI to the
local and the Ray executor and into their worker processes.

`plan` builds the grid of jobs a command runs, checked before any work is done.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

from benchmark.core.errors import AtbenchError
from benchmark.core.names import check_name, inside
from benchmark.core.registry import DEFENSES
from benchmark.core.workspace import default, official_records
from benchmark.pipeline.protocol import Protocol
from benchmark.pipeline.tracks import Track
from benchmark.pipeline.train import check_supports, supports

#: The stages a job list can run: training only, evaluation only (of finished trainings or of
#: external models), or both.
STAGES = ("train", "eval", "train+eval")


@dataclasses.dataclass(frozen=True)
class Paths:
    """Where a job reads and writes (the records and boards folders are shared by all jobs;
    defaults: `benchmark.core.workspace`).

    Attributes:
        with_official: the board also admits the official records shipped with atbench.
        attack_records_dir: where the board reads the attack records that give its entries their
            best-known worst case (`leaderboard.build.write_board`); None: it reads none.
    """

    runs_dir: str = default("runs")
    records_dir: str = default("records")
    boards_dir: str = default("boards")
    data_dir: str | None = None
    with_official: bool = False
    attack_records_dir: str | None = None

    @property
    def also_records(self) -> tuple[Path, ...]:
        """The read-only record folders a board admits besides `records_dir`."""
        return (official_records(),) if self.with_official else ()


@dataclasses.dataclass(frozen=True)
class Options:
    """How a job runs.

    Attributes:
        progress: progress bars and per-epoch lines (only with one worker).
        compile: `torch.compile` the model for training (the GPU fast path).
        fast_path: the rest of the GPU fast path (`benchmark.pipeline.fastpath.FAST_PATH_MODES`):
            "auto" (on for CUDA, off on the CPU), "on" or "off".
        precision: the attacks' search precision, "fp32" or "bf16" (`benchmark.pipeline.fastpath`).
        defense_files: `--defense-file`s every worker imports first.
        replace: an evaluation may publish over a record of the same identity from another source.
    """

    progress: bool = True
    compile: bool = False
    fast_path: str = "auto"
    precision: str = "fp32"
    defense_files: tuple[str, ...] = ()
    replace: bool = False


@dataclasses.dataclass(frozen=True)
class ExternalModel:
    """A model trained outside atbench (`atbench eval --model SPEC --checkpoint PATH`)."""

    spec: str
    checkpoint: str | None


@dataclasses.dataclass(frozen=True)
class Job:
    """One unit of work of the grid.

    Attributes:
        track: the training track.
        protocol: the loaded evaluation protocol.
        defense: the defense id, or the board name of an external model.
        seed: the training seed (0 for an external model).
        device: the torch device.
        paths, options: where it reads and writes, and how.
        external: the external model, or None for a registered defense.
    """

    track: Track
    protocol: Protocol
    defense: str
    seed: int
    device: str
    paths: Paths = Paths()
    options: Options = Options()
    external: ExternalModel | None = None

    @property
    def run_dir(self) -> Path:
        """Where the job writes: `<runs_dir>/<track>/<defense>/seed<k>/`."""
        return run_dir_for(self.paths.runs_dir, self.track.name, self.defense, self.seed)

    @property
    def record_name(self) -> str:
        """Base name of its published record files."""
        return record_name(self.defense, self.seed)


def run_dir_for(runs_dir: str | Path, track: str, defense: str, seed: int) -> Path:
    """Where one (track, defense, seed) job writes its outputs; names are slugs, so the path
    never leaves `runs_dir`."""
    for kind, name in (("track", track), ("defense", defense)):
        check_name(name, kind)
    return inside(Path(runs_dir), Path(track) / defense / f"seed{seed}")


def record_name(defense: str, seed: int) -> str:
    """Base file name of a published record (`<name>.json`, `<name>.flags.npz`)."""
    return f"{check_name(defense, 'defense')}-seed{seed}"


def plan(track: Track, protocol: Protocol, defenses: Sequence[str] | None, seeds: Sequence[int], device: str,
         paths: Paths = Paths(), options: Options = Options()) -> list[Job]:
    """The jobs of every (defense, seed) on `track`, most expensive first so that parallel
    workers finish close together. Named defenses are checked against the track (architecture,
    threat model); without names, every registered defense the track can train.

    Raises:
        AtbenchError: an unknown defense, one named twice, or a named one the track cannot train.
    """
    if defenses:
        classes = [DEFENSES.get(check_name(n, "defense")) for n in defenses]
        if len({c.name for c in classes}) != len(classes):
            raise AtbenchError("a defense is named twice", "name each defense once")
        for cls in classes:
            check_supports(cls, track)
    else:
        classes = [cls for cls in map(DEFENSES.get, DEFENSES.names()) if supports(cls, track)]
    classes.sort(key=lambda cls: -cls.relative_cost)
    return [Job(track, protocol, cls.name, seed, device, paths, options) for cls in classes for seed in seeds]


def external_job(track: Track, protocol: Protocol, name: str, model: ExternalModel, device: str,
                 paths: Paths = Paths(), options: Options = Options()) -> Job:
    """The job evaluating an external model under its board name `name` (a slug that no
    registered defense uses).

    Raises:
        AtbenchError: the name is not a slug or is a registered defense's.
    """
    check_name(name, "model")
    if name in DEFENSES:
        raise AtbenchError(f"--name {name} is a registered defense's name: an external model cannot publish as it",
                           "give the model a name of its own (--name my-model)")
    return Job(track, protocol, name, 0, device, paths, options, external=model)
