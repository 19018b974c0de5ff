"""`atbench tune`: an equal, disclosed tuning budget. Every tuned defense declares a search space
of `TUNING_BUDGET` settings of its one or two key hyperparameters (`DefenseMeta.search_space`);
each setting is trained by the harness on the training split and scored on the validation split
by the defense's own objective (`DefenseMeta.selection`: the harness's robust selection rule,
which a masked model cannot win, or certified L2 accuracy for a certified-training method), the
score that also chose each setting's checkpoint; the test points are never read. The sweep record and its Markdown
table go to `leaderboard/sweeps/<track>/<defense>.{json,md}`, and the track takes the winner.
`atbench tune --extend` applies the grid-edge rule to an earlier sweep of the same harness and
recipe without training its settings again (`earlier_sweep`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable


from benchmark.core.errors import AtbenchError
from benchmark.core.cost import device_label
from benchmark.core.io import atomic_write_json, atomic_write_text, sha256_json
from benchmark.core.provenance import git_state, utc_now
from benchmark.core.sweep_files import read_sweep
from benchmark.core.registry import DEFENSES
from benchmark.core.tuning_rules import EDGE_EXTENSIONS, EDGE_RULE, TUNING_BUDGET, next_setting
from benchmark.pipeline.job import Job
from benchmark.pipeline.selection import SELECTION_RULES
from benchmark.pipeline.steps import train_job
from benchmark.pipeline.tracks import Track
from benchmark.pipeline.train import HARNESS_VERSION

OBJECTIVES = {
    "robust": "the selected checkpoint's validation robust accuracy under the selection rule",
    "certified-l2": "the selected checkpoint's certified L2 accuracy (LipLT bound) on the validation points, the mean "
                    "over the track protocol's certified radii",
}


def recipe_sha256(track: Track) -> str:
    """Hash of the track's recipe without its per-defense settings: a sweep is valid for it only."""
    return sha256_json({k: v for k, v in track.to_dict().items() if k != "defense_configs"})


def setting_job(job: Job, index: int, setting: dict) -> Job:
    """The job training setting number `index` of the sweep, into its own folder under
    `<runs_dir>/tune/setting<index>/<track>/<defense>/seed0/`."""
    track = dataclasses.replace(job.track, defense_configs={**job.track.defense_configs, job.defense: setting})
    root = Path(job.paths.runs_dir) / "tune" / f"setting{index}"  # + <track>/<defense>/seed0
    return dataclasses.replace(job, track=track, paths=dataclasses.replace(job.paths, runs_dir=str(root)))


def tune_jobs(job: Job) -> list[Job]:
    """One job per setting of the defense's search space (`setting_job`).

    Raises:
        AtbenchError: the defense declares no search space, or not exactly `TUNING_BUDGET` settings.
    """
    space = DEFENSES.get(job.defense).meta.search_space
    if len(space) != TUNING_BUDGET:
        raise AtbenchError(f"defense {job.defense!r} declares {len(space)} settings to tune, not {TUNING_BUDGET}",
                           f"declare exactly {TUNING_BUDGET} settings in its meta.search_space (none: nothing to tune)")
    return [setting_job(job, i, dict(setting)) for i, setting in enumerate(space)]


def winner_index(rows: list[dict]) -> int:
    """The winning row: highest score, then validation clean accuracy, then the earlier setting."""
    return max(range(len(rows)), key=lambda i: (rows[i]["score"], rows[i]["val_clean_acc"], -i))


def edge_job(job: Job, rows: list[dict]) -> Job | None:
    """The job of the setting the grid-edge rule adds after the scored `rows` (`next_setting`),
    or None when the rule adds none: the winner is at no edge, the extension lost, or the sweep
    already has `EDGE_EXTENSIONS` of them."""
    if len(rows) >= TUNING_BUDGET + EDGE_EXTENSIONS:
        return None
    meta = DEFENSES.get(job.defense).meta
    settings = [row["config"] for row in rows]
    setting = next_setting(settings, settings[winner_index(rows)], meta.search_bounds)
    return None if setting is None else setting_job(job, len(rows), setting)


def earlier_sweep(job: Job, path: Path) -> dict:
    """The sweep record at `path`, an earlier sweep of the job's defense on its track, for
    `atbench tune --extend`: usable only when made by this harness version, for this recipe,
    protocol, seed and selection rule, over the defense's declared settings.

    Raises:
        AtbenchError: no record at `path`, or one that does not match the job.
    """
    if not path.is_file():
        raise AtbenchError(f"--extend: there is no sweep record of {job.defense} at {path}",
                           "run `atbench tune` without --extend, or point --sweeps-dir at the folder that holds it")
    record = read_sweep(path)
    meta = DEFENSES.get(job.defense).meta
    expected = {"harness_version": HARNESS_VERSION, "recipe_sha256": recipe_sha256(job.track),
                "protocol": job.protocol.id, "seed": job.seed, "selection_rule": SELECTION_RULES[meta.selection]}
    differs = [key for key, value in expected.items() if record.get(key) != value]
    declared = [row["config"] for row in record["settings"][:TUNING_BUDGET]]
    if declared != [dict(s) for s in meta.search_space]:
        differs.append("declared settings")
    if differs:
        raise AtbenchError(f"--extend: the sweep record {path} differs from this sweep in {', '.join(differs)}",
                           "run `atbench tune` without --extend: its settings must be trained again")
    return record


def earlier_rows(record: dict) -> list[dict]:
    """The scored rows of an earlier sweep record (`earlier_sweep`), rows made before the
    grid-edge rule counting as its round 0."""
    return [{**row, "edge_round": row.get("edge_round", 0)} for row in record["settings"]]


def tune(jobs: list[Job], run: Callable[[list[Job]], list[dict]],
         earlier: list[list[dict] | None] | None = None) -> list[list[dict]]:
    """Every job's sweep rows: its declared settings, then the grid-edge rule's rounds, each
    round training the next setting of every sweep whose winner is at an edge. `run` trains and
    scores a list of setting jobs (`tune_one` on each, in parallel). A job whose `earlier` rows
    are given (`earlier_rows`) starts from them instead of training its declared settings."""
    earlier = earlier or [None] * len(jobs)
    groups = [tune_jobs(job) if old is None else [] for job, old in zip(jobs, earlier)]
    pending = [s for group in groups for s in group]
    flat = run(pending) if pending else []
    rows, start = [], 0
    for group, old in zip(groups, earlier):
        rows.append(list(old) if old is not None else
                    [{**row, "edge_round": 0} for row in flat[start:start + len(group)]])
        start += len(group)
    for round_ in range(1, EDGE_EXTENSIONS + 1):
        pending = [(i, extra) for i, job in enumerate(jobs) if (extra := edge_job(job, rows[i])) is not None]
        if not pending:
            break
        for (i, _), row in zip(pending, run([extra for _, extra in pending])):
            rows[i].append({**row, "edge_round": round_})
    return rows


def tune_one(job: Job) -> dict:
    """Train one setting and score it: its row of the sweep record."""
    result = train_job(job)
    certified = DEFENSES.get(job.defense).meta.selection == "certified-l2"
    score = result.best_val_certified_acc if certified else result.best_val_robust_acc
    return {"config": job.track.defense_configs[job.defense], "score": round(score, 6),
            "val_robust_acc": round(result.best_val_robust_acc, 6),
            "val_clean_acc": round(result.best_val_clean_acc, 6),
            "best_epoch": result.best_epoch, "checkpoint_sha256": result.checkpoint_sha256}


def _provenance(job: Job) -> dict:
    commit, dirty = git_state()
    return {"git_commit": commit, "git_dirty": dirty, "device": device_label(job.device), "utc_time": utc_now()}


def sweep_record(job: Job, rows: list[dict], earlier: dict | None = None) -> dict:
    """The sweep record: every setting's row (the declared ones, then the grid-edge rule's) and
    the winner (`winner_index`). When `rows` extend the `earlier` record (`--extend`), its
    provenance stays that of the declared settings, and `extended` says where, when and from
    which row on this command added the rest."""
    best = winner_index(rows)
    objective = DEFENSES.get(job.defense).meta.selection
    if earlier is not None:
        known = len(earlier["settings"])
        extended = earlier.get("extended") if len(rows) == known else {**_provenance(job), "from_row": known}
        provenance = earlier["provenance"]
    else:
        extended, provenance = None, _provenance(job)
    record = {
        "track": job.track.name, "defense": job.defense, "protocol": job.protocol.id,
        "harness_version": HARNESS_VERSION, "recipe_sha256": recipe_sha256(job.track), "seed": job.seed,
        "budget": TUNING_BUDGET, "edge_rule": EDGE_RULE, "edge_extensions": len(rows) - TUNING_BUDGET,
        "selection_rule": SELECTION_RULES[objective], "objective": OBJECTIVES[objective],
        "validation_points": job.track.val_size, "settings": rows, "winner": rows[best]["config"],
        "provenance": provenance,
    }
    if extended is not None:
        record["extended"] = extended
    return record


def sweep_markdown(record: dict) -> str:
    """The sweep record as a Markdown table."""
    keys = sorted({k for row in record["settings"] for k in row["config"]})
    extensions = record.get("edge_extensions", 0)
    if "edge_rule" not in record:
        counted = (f"{record['budget']} settings, the declared ones (this sweep predates the grid-edge rule, which "
                   f"was not applied to it)")
    elif extensions:
        counted = (f"{record['budget'] + extensions} settings: the {record['budget']} declared and {extensions} "
                   f"added by the grid-edge rule ({record['edge_rule']})")
    else:
        counted = (f"{record['budget']} settings, the declared ones; the grid-edge rule ({record['edge_rule']}) "
                   f"added none: the winner is not at an edge")
    lines = [f"# Sweep: {record['defense']} on {record['track']}", "",
             f"{counted}. Each was "
             f"trained by the harness (seed {record['seed']}) on the training split and scored on "
             f"{record['validation_points']} validation points by {record['objective']}. "
             f"Checkpoints were selected by the {record['selection_rule']}. The test points were not used."
             f"{_extension_sentence(record)}", "",
             "| " + " | ".join(keys) + " | setting | score | val robust | val clean | best epoch | |",
             "|" + "---|" * (len(keys) + 6)]
    for row in record["settings"]:
        mark = "**winner**" if row["config"] == record["winner"] else ""
        values = [row["config"].get(k, "") for k in keys]
        origin = f"edge {row['edge_round']}" if row.get("edge_round") else "declared"
        lines.append("| " + " | ".join(f"{v:g}" if isinstance(v, float | int) else str(v) for v in values)
                     + f" | {origin} | {row['score']:.3f} | "
                     f"{row['val_robust_acc']:.3f} | {row['val_clean_acc']:.3f} | {row['best_epoch']} | {mark} |")
    return "\n".join(lines) + "\n"


def _made(provenance: dict) -> str:
    commit = provenance["git_commit"]
    source = f"commit {commit[:7]}" if commit else "outside a git checkout"
    source += " with uncommitted changes" if provenance.get("git_dirty") else ""
    return f"{provenance['utc_time'][:10]}, {source}, {provenance['device']}"


def _extension_sentence(record: dict) -> str:
    """Where the settings from row `extended.from_row` on were trained, when `--extend` added
    them to an earlier sweep ("" for a sweep made in one run)."""
    extended = record.get("extended")
    if extended is None:
        return ""
    first, last = extended["from_row"] + 1, len(record["settings"])
    added = f"Setting {first} was" if first == last else f"Settings {first} to {last} were"
    return (f" {added} added to this sweep later by `atbench tune --extend` ({_made(extended)}); the earlier ones "
            f"were trained before ({_made(record['provenance'])}).")


def write_sweep(record: dict, root: Path) -> list[Path]:
    """Write the record and its table into `<root>/<track>/<defense>.{json,md}` (`root` is the
    command's `--sweeps-dir`, never the installed package's sweeps)."""
    base = root / record["track"] / record["defense"]
    atomic_write_json(base.with_suffix(".json"), record)
    atomic_write_text(base.with_suffix(".md"), sweep_markdown(record))
    return [base.with_suffix(".json"), base.with_suffix(".md")]
