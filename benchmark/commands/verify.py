"""`atbench verify`: check a published record against its flags file, its checkpoint and a
re-evaluation of that checkpoint on a fixed subset of the protocol's points.

Four checks, each reported with its reason:
1. the flags file beside the record has the sha256 the record names;
2. every number of the record equals the one derived from those flags (`aggregate`), so a
   number edited by hand fails;
3. the checkpoint has the sha256 the record names;
4. the checkpoint, re-evaluated under the record's protocol on the first `points` points of the
   record's test subset, gives per (attack, eps) a robust accuracy within `tolerance` of the
   flags' on the same points (AutoAttack's random draws depend on the batch, PGD's do not).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from benchmark.core.errors import AtbenchError
from benchmark.core.io import sha256_file
from benchmark.pipeline.evaluate import run_protocol
from benchmark.pipeline.protocol import Protocol, load_protocol
from leaderboard.admission import hash_problem, number_problems, read_flags
from leaderboard.derive import attack_flag_names
from leaderboard.record import load_record

#: Default number of the subset's points re-evaluated, and the default tolerance on each
#: (attack, eps) robust accuracy over them.
POINTS, TOLERANCE = 40, 0.05


@dataclasses.dataclass(frozen=True)
class Check:
    """One verification check: its name, whether it passed, and why."""

    name: str
    ok: bool
    detail: str


def record_protocol(record: dict) -> Protocol:
    """The protocol the record was evaluated under (randomized variant if the record's defense
    is), refused if the protocol file has changed since."""
    protocol = load_protocol(record["protocol"]["id"])
    if protocol.sha256 != record["protocol"]["sha256"]:
        raise AtbenchError(f"protocol {protocol.id!r} has changed since the record was made (sha256 differs)",
                           f"check out the record's commit ({record['provenance']['git_commit']}) to verify it")
    return protocol.for_randomized() if randomized(record) else protocol


def randomized(record: dict) -> bool:
    """Whether the record's model was evaluated as randomized (declared, or detected by the
    stochastic-outputs probe)."""
    return record["defense"]["randomized"] or record["sanity"]["stochastic_outputs"]["fired"]


def _numbers_check(record: dict, flags) -> Check:
    diffs = number_problems(record, flags)
    detail = "every accuracy equals the one derived from the flags" if not diffs else \
        f"{len(diffs)} number(s) differ from the flags, e.g. " + "; ".join(diffs[:3])
    return Check("numbers match the flags", not diffs, detail)


def _load_model(record: dict, checkpoint: Path, data_dir: str | None, device: str):
    """The deployed model of the record: a registered defense rebuilt from the record's config,
    or an external `--model` entry (its spec is in the record's config)."""
    from benchmark.core.registry import DEFENSES, TRACKS
    from benchmark.pipeline.steps import load_trained_model

    block, track = record["defense"], TRACKS.get(record["track"])
    sha = record["provenance"]["checkpoint_sha256"]
    if block["id"] in DEFENSES:
        cls = DEFENSES.get(block["id"])
        try:
            defense = cls(cls.Config(**block["config"]))
        except (TypeError, ValueError) as exc:
            raise AtbenchError(f"the record's field 'defense.config' is not a valid {block['id']} Config: {exc}",
                               "restore the record as it was published (`atbench verify` checks it as made)") from exc
        return load_trained_model(track, defense, str(checkpoint), sha, data_dir, device)
    if "model" in block["config"]:
        from benchmark.pipeline.data import load_dataset
        from benchmark.pipeline.external import load_external

        return load_external(block["config"]["model"], str(checkpoint), load_dataset(track.dataset, data_dir))[0]
    raise AtbenchError(f"defense {block['id']!r} of the record is not registered",
                       "pass its file with --defense-file or install its package, then verify again")


def _reevaluation_check(record: dict, protocol: Protocol, flags: dict[str, np.ndarray], indices: np.ndarray,
                        checkpoint: Path, data_dir: str | None, device: str, points: int, tolerance: float) -> Check:
    from benchmark.core.registry import TRACKS
    from benchmark.pipeline.data import load_dataset

    bundle = load_dataset(TRACKS.get(record["track"]).dataset, data_dir)
    chosen = indices[:points]
    model = _load_model(record, checkpoint, data_dir, device)
    fresh = run_protocol(model, protocol, bundle.test.x[chosen], bundle.test.y[chosen], device, progress=False,
                         votes=record["votes"]).flags
    worst, where = 0.0, ""
    for name in ["clean", *attack_flag_names(flags)]:
        stored = flags[name]
        gap = abs(float(fresh[name].mean()) - float(stored[: len(chosen)].mean()))
        if gap > worst:
            worst, where = gap, name
    ok = worst <= tolerance
    detail = (f"re-evaluated {len(chosen)} points: largest robust-accuracy gap {worst:.3f}"
              f"{f' ({where})' if where else ''}, tolerance {tolerance}")
    return Check("re-evaluation matches", ok, detail)


def check_named_model(record: dict, record_path: Path, model: str | None) -> None:
    """Refuse to re-evaluate an external model whose code (a `module:callable` spec in the
    record) the user has not named with `model`: a record never makes atbench import anything.

    Raises:
        AtbenchError: the record's model is imported code and `model` is not its spec.
    """
    spec = record["defense"]["config"].get("model")
    if isinstance(spec, str) and ":" in spec and spec != model:
        raise AtbenchError(f"{record_path} is the record of an external model, {spec!r}: re-evaluating it imports "
                           "and runs that module", f"if you trust that code, pass --model {spec}")


def _default_checkpoint(record: dict, runs_dir: str) -> Path:
    """The record's run's `best.pt` in `runs_dir`; when there is none, the official checkpoint
    shipped with atbench for the record's protocol, defense and seed, if there is one (its hash
    is then checked like any checkpoint's)."""
    from benchmark.core.workspace import official_checkpoints
    from benchmark.pipeline.attack_targets import shipped_checkpoint
    from benchmark.pipeline.job import run_dir_for

    run = run_dir_for(runs_dir, record["track"], record["defense"]["id"], record["seed"]) / "best.pt"
    shipped = shipped_checkpoint(official_checkpoints(), record)
    return shipped if not run.is_file() and shipped.is_file() else run


def verify(record_path: str | Path, checkpoint: str | Path | None = None, runs_dir: str = "runs",
           data_dir: str | None = None, device: str = "cpu", points: int = POINTS,
           tolerance: float = TOLERANCE, model: str | None = None) -> list[Check]:
    """Run the checks on the record at `record_path` (see the module docstring). The checkpoint
    defaults to `<runs_dir>/<track>/<defense>/seed<k>/best.pt`, else the shipped official one
    (`_default_checkpoint`). The re-evaluation runs only when
    the checkpoint's hash matches. An external model's code is imported only when `model` names
    it (`check_named_model`)."""
    record_path = Path(record_path)
    record = load_record(record_path)
    check_named_model(record, record_path, model)
    if points < 1:
        raise AtbenchError(f"--points {points} is below 1", "pass --points 1 or more")
    flags = read_flags(record, record_path)
    protocol = record_protocol(record)
    problem = hash_problem(record, flags)
    checks = [Check("flags file hash", problem is None, problem or "matches the record")]
    checks.append(_numbers_check(record, flags))
    path = Path(checkpoint) if checkpoint else _default_checkpoint(record, runs_dir)
    if not path.is_file():
        raise AtbenchError(f"checkpoint {path} of {record_path} does not exist",
                           "pass --checkpoint PATH, or --runs-dir where the run was trained")
    ckpt_ok = sha256_file(path) == record["provenance"]["checkpoint_sha256"]
    checks.append(Check("checkpoint hash", ckpt_ok, f"{path} " + ("matches the record" if ckpt_ok else
                                                                 "is not the checkpoint the record was made from")))
    if ckpt_ok:
        checks.append(_reevaluation_check(record, protocol, flags.flags, flags.indices, path, data_dir, device,
                                          min(points, len(flags.indices)), tolerance))
    return checks


def report(record_path: str | Path, checks: list[Check]) -> str:
    """A readable pass/fail report of `checks`."""
    lines = [f"verify {record_path}"]
    lines += [f"  {'PASS' if c.ok else 'FAIL'}  {c.name}: {c.detail}" for c in checks]
    failed = sum(not c.ok for c in checks)
    lines.append(f"{'verified' if not failed else f'NOT verified: {failed} check(s) failed'}")
    return "\n".join(lines)

