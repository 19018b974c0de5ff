"""`atbench tune`: an equal, disclosed tuning budget. Every tuned defense declares a search space
of `TUNING_BUDGET` settings of its one or two key hyperparameters (`DefenseMeta.search_space`);
each setting is trained by the harness on the training split and scored on the validation split
by the defense's own objective (`DefenseMeta.selection`: the harness's robust selection rule,
which a masked model cannot win, or certified L2 accuracy for a certified-training method), the
score that also chose each setting's checkpoint; the test points are never read. The sweep record and its Markdown
table go to `leaderboard/sweeps/<track>/<defense>.{json,md}`, and the track takes the winner.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch


from benchmark.core.errors import AtbenchError
from benchmark.core.io import atomic_write_json, atomic_write_text, sha256_json
from benchmark.core.provenance import device_name, git_state, utc_now
from benchmark.core.registry import DEFENSES
from benchmark.pipeline.job import Job
from benchmark.pipeline.selection import SELECTION_RULES
from benchmark.pipeline.steps import train_job
from benchmark.pipeline.tracks import Track
from benchmark.pipeline.train import HARNESS_VERSION

#: Settings every tuned defense gets (the issue's cap is 6; every defense gets the same number).
TUNING_BUDGET = 4
OBJECTIVES = {
    "robust": "the selected checkpoint's validation robust accuracy under the selection rule",
    "certified-l2": "the selected checkpoint's certified L2 accuracy (LipLT bound) on the validation points, the mean "
                    "over the track protocol's certified radii",
}


def recipe_sha256(track: Track) -> str:
    """Hash of the track's recipe without its per-defense settings: a sweep is valid for it only."""
    return sha256_json({k: v for k, v in track.to_dict().items() if k != "defense_configs"})


def tune_jobs(job: Job) -> list[Job]:
    """One job per setting of the defense's search space, each training into its own folder
    under `<runs_dir>/tune/setting<i>/<track>/<defense>/seed0/`.

    Raises:
        AtbenchError: the defense declares no search space, or not exactly `TUNING_BUDGET` settings.
    """
    space = DEFENSES.get(job.defense).meta.search_space
    if len(space) != TUNING_BUDGET:
        raise AtbenchError(f"defense {job.defense!r} declares {len(space)} settings to tune, not {TUNING_BUDGET}",
                           f"declare exactly {TUNING_BUDGET} settings in its meta.search_space (none: nothing to tune)")
    out = []
    for i, setting in enumerate(space):
        track = dataclasses.replace(job.track, defense_configs={**job.track.defense_configs, job.defense: setting})
        root = Path(job.paths.runs_dir) / "tune" / f"setting{i}"  # + <track>/<defense>/seed0
        out.append(dataclasses.replace(job, track=track, paths=dataclasses.replace(job.paths, runs_dir=str(root))))
    return out


def tune_one(job: Job) -> dict:
    """Train one setting and score it: its row of the sweep record."""
    result = train_job(job)
    certified = DEFENSES.get(job.defense).meta.selection == "certified-l2"
    score = result.best_val_certified_acc if certified else result.best_val_robust_acc
    return {"config": job.track.defense_configs[job.defense], "score": round(score, 6),
            "val_robust_acc": round(result.best_val_robust_acc, 6),
            "val_clean_acc": round(result.best_val_clean_acc, 6),
            "best_epoch": result.best_epoch, "checkpoint_sha256": result.checkpoint_sha256}


def sweep_record(job: Job, rows: list[dict]) -> dict:
    """The sweep record: every setting's row and the winner (highest score, then validation
    clean accuracy, then the earlier setting)."""
    best = max(range(len(rows)), key=lambda i: (rows[i]["score"], rows[i]["val_clean_acc"], -i))
    objective = DEFENSES.get(job.defense).meta.selection
    commit, dirty = git_state()
    return {
        "track": job.track.name, "defense": job.defense, "protocol": job.protocol.id,
        "harness_version": HARNESS_VERSION, "recipe_sha256": recipe_sha256(job.track), "seed": job.seed,
        "budget": TUNING_BUDGET, "selection_rule": SELECTION_RULES[objective], "objective": OBJECTIVES[objective],
        "validation_points": job.track.val_size, "settings": rows, "winner": rows[best]["config"],
        "provenance": {"git_commit": commit, "git_dirty": dirty, "device": device_name(torch.device(job.device)),
                       "utc_time": utc_now()},
    }


def sweep_markdown(record: dict) -> str:
    """The sweep record as a Markdown table."""
    keys = sorted({k for row in record["settings"] for k in row["config"]})
    lines = [f"# Sweep: {record['defense']} on {record['track']}", "",
             f"{record['budget']} settings, each trained by the harness (seed {record['seed']}) on the training "
             f"split and scored on {record['validation_points']} validation points by {record['objective']}. "
             f"Checkpoints were selected by the {record['selection_rule']}. The test points were not used.", "",
             "| " + " | ".join(keys) + " | score | val robust | val clean | best epoch | |",
             "|" + "---|" * (len(keys) + 5)]
    for row in record["settings"]:
        mark = "**winner**" if row["config"] == record["winner"] else ""
        values = [row["config"].get(k, "") for k in keys]
        lines.append("| " + " | ".join(f"{v:g}" if isinstance(v, float | int) else str(v) for v in values)
                     + f" | {row['score']:.3f} | "
                     f"{row['val_robust_acc']:.3f} | {row['val_clean_acc']:.3f} | {row['best_epoch']} | {mark} |")
    return "\n".join(lines) + "\n"


def write_sweep(record: dict, root: Path) -> list[Path]:
    """Write the record and its table into `<root>/<track>/<defense>.{json,md}` (`root` is the
    command's `--sweeps-dir`, never the installed package's sweeps)."""
    base = root / record["track"] / record["defense"]
    atomic_write_json(base.with_suffix(".json"), record)
    atomic_write_text(base.with_suffix(".md"), sweep_markdown(record))
    return [base.with_suffix(".json"), base.with_suffix(".md")]
