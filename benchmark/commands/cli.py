"""The `atbench` console script: thin wrappers over the library functions.

Every value is parsed by a bounded type (`benchmark.commands.arguments`) before any work; the
commands that train or evaluate build `Job`s and hand them to `benchmark.pipeline.runner.execute`.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from benchmark.commands import data_command, os_errors
from benchmark.commands.arguments import check_environment
from benchmark.commands.parser import build_parser
from benchmark.core.errors import AtbenchError
from benchmark.core.folders import check_apart
from benchmark.core.workspace import default

log = logging.getLogger("atbench")


def _jobs(args, stage: str):
    """The jobs the arguments name (defense files imported first), checked before any work."""
    from benchmark.core.plugins import load_defense_files
    from benchmark.pipeline.data import load_dataset
    from benchmark.pipeline.job import Options, Paths, plan
    from benchmark.pipeline.protocol import protocol_for
    from benchmark.pipeline.runner import check_device

    load_defense_files(args.defense_files)
    track = _track(args)
    protocol = protocol_for(track, args.protocol)
    check_device(args.device)
    if stage != "train":
        check_test_split(protocol, load_dataset(track.dataset, args.data_dir))
    paths = Paths(args.runs_dir, args.records_dir, args.boards_dir, args.data_dir,
                  getattr(args, "with_official", False), attack_records_dir(args))
    options = Options(progress=not args.quiet, compile=getattr(args, "compile", False),
                      fast_path=getattr(args, "fast_path", "auto"), precision=getattr(args, "eval_precision", "fp32"),
                      defense_files=tuple(args.defense_files), replace=getattr(args, "replace", False))
    return plan(track, protocol, args.defenses, seeds_of(args, track), args.device, paths, options)


def seeds_of(args, track) -> tuple[int, ...]:
    """The training seeds the arguments name: --seed K..., --seeds N (0..N-1), or the track's."""
    if args.seeds:
        if len(set(args.seeds)) != len(args.seeds):
            raise AtbenchError(f"a seed is given twice ({args.seeds})", "give each --seed once")
        return tuple(args.seeds)
    return tuple(range(args.seed_count or track.seed_count))


def check_test_split(protocol, bundle) -> None:
    """Refuse, before any work, a protocol that asks for more test points than the data set has."""
    if protocol.n_examples > len(bundle.test):
        raise AtbenchError(f"protocol {protocol.id} asks for {protocol.n_examples} test points but data set "
                           f"{bundle.name} has {len(bundle.test)}",
                           "lower test_subset.n in the protocol file (and bump its version)")


def _track(args):
    """The track the arguments name (track files imported first)."""
    from benchmark.core.plugins import load_track_files
    from benchmark.core.registry import TRACKS

    load_track_files(getattr(args, "track_files", ()))
    return TRACKS.get(args.track)


def _executor(args):
    from benchmark.pipeline.runner import Executor

    return Executor(getattr(args, "executor", "local"), args.jobs, getattr(args, "address", None))


def _runs_lock(args):
    """The lock of the runs folder the command writes into (`benchmark.core.lock`)."""
    from benchmark.core.lock import folder_lock

    return folder_lock(args.runs_dir, wait=not args.no_wait)


def attack_records_dir(args) -> str | None:
    """The folder whose attack records a command's board reads (`attack`: writes): `--attack-records-dir`, by
    default the `attack_records` folder beside `--records-dir` (the workspace's
    `leaderboard/attack_records` beside `leaderboard/records`); None for a command without the
    option (its board reads none)."""
    if not hasattr(args, "attack_records_dir"):
        return None
    if args.attack_records_dir is not None:
        return args.attack_records_dir
    from leaderboard.attack_record import attack_records_beside

    records = getattr(args, "records_dir", None)
    return str(attack_records_beside(records)) if records else default("attack_records")


def cmd_run(args) -> None:
    """`atbench run`: train and evaluate every job, publish the records, write the board."""
    from benchmark.pipeline.runner import execute

    executor = _executor(args)  # before the lock creates the runs folder
    jobs = _jobs(args, "train+eval")
    with _runs_lock(args):
        outcome = execute(jobs, "train+eval", executor)
    print("\n".join(str(p) for p in outcome.boards))


def cmd_train(args) -> None:
    """`atbench train`: train (or resume) every job."""
    from benchmark.pipeline.runner import execute

    jobs = _jobs(args, "train")
    with _runs_lock(args):
        results = execute(jobs, "train", _executor(args)).results
    for job, result in zip(jobs, results):
        print(f"{job.defense} seed {job.seed}: {result.checkpoint} (epoch {result.best_epoch}, "
              f"val robust {result.best_val_robust_acc:.3f})")


def _external_jobs(args):
    from benchmark.core.registry import MODELS
    from benchmark.pipeline.data import load_dataset
    from benchmark.pipeline.external import external_name
    from benchmark.pipeline.job import ExternalModel, Options, Paths, external_job
    from benchmark.pipeline.protocol import protocol_for
    from benchmark.pipeline.runner import check_device

    if args.defenses or args.seeds or args.seed_count:
        raise AtbenchError("--defense and --seed select trained defenses, not an external --model",
                           "leave them out with --model (an external model is one entry, seed 0)")
    if args.checkpoint is None and ":" not in args.model:
        MODELS.get(args.model)
        raise AtbenchError(f"--model {args.model} is an architecture: without --checkpoint it would evaluate and "
                           "publish random weights", "pass --checkpoint PATH with the trained weights")
    track = _track(args)
    protocol = protocol_for(track, args.protocol)
    check_device(args.device)
    check_test_split(protocol, load_dataset(track.dataset, args.data_dir))
    name = args.name or external_name(args.model, args.checkpoint)
    options = Options(progress=not args.quiet, precision=args.eval_precision, replace=args.replace)
    return [external_job(track, protocol, name, ExternalModel(args.model, args.checkpoint), args.device,
                         Paths(args.runs_dir, args.records_dir, args.boards_dir, args.data_dir,
                               args.with_official, attack_records_dir(args)), options)]


def cmd_eval(args) -> None:
    """`atbench eval`: evaluate trained runs (or an external model), publish, write the board."""
    from benchmark.pipeline.runner import Executor, execute

    if args.model is None and (args.checkpoint or args.name):
        raise AtbenchError("--checkpoint and --name need --model", "add --model module:callable (or an architecture)")
    jobs = _external_jobs(args) if args.model is not None else _jobs(args, "eval")
    executor = Executor(workers=1) if args.model is not None else _executor(args)
    with _runs_lock(args):
        outcome = execute(jobs, "eval", executor)
    print("\n".join(str(p) for p in [*outcome.results, *outcome.boards]))


def cmd_tune(args) -> None:
    """`atbench tune`: train and score each defense's search space, write its sweep record."""
    from benchmark.pipeline.executor import run_local, worker_count
    from benchmark.core.sweep_files import sweep_path
    from benchmark.pipeline.tune import earlier_rows, earlier_sweep, sweep_record, tune, tune_one, write_sweep

    if args.seeds not in (None, [0]) or args.seed_count not in (None, 1):
        raise AtbenchError("tuning trains seed 0 only", "leave out --seed and --seeds")
    args.seeds = [0]
    if not args.defenses:  # every defense the track can train that declares a search space
        from benchmark.core.plugins import load_defense_files
        from benchmark.core.registry import DEFENSES
        from benchmark.pipeline.train import supports

        load_defense_files(args.defense_files)
        track = _track(args)
        args.defenses = [name for name in DEFENSES.names()
                         if DEFENSES.get(name).meta.search_space and supports(DEFENSES.get(name), track)]
    jobs = _jobs(args, "train")

    def run(settings):
        return run_local(tune_one, [(s,) for s in settings], worker_count(args.jobs, args.device, len(settings)),
                         args.device, args.defense_files)

    earlier = ([earlier_sweep(job, sweep_path(job.track.name, job.defense, Path(args.sweeps_dir))) for job in jobs]
               if args.extend else [None] * len(jobs))
    with _runs_lock(args):
        rows = tune(jobs, run, [None if e is None else earlier_rows(e) for e in earlier])
    for job, sweep, before in zip(jobs, rows, earlier):
        print("\n".join(str(p) for p in write_sweep(sweep_record(job, sweep, before), Path(args.sweeps_dir))))


def cmd_leaderboard(args) -> None:
    """`atbench leaderboard`: rebuild a protocol's board from its published records."""
    from benchmark.core.lock import folder_lock
    from benchmark.core.workspace import official_records
    from benchmark.pipeline.protocol import protocol_for
    from leaderboard.build import write_board

    protocol = protocol_for(_track(args), args.protocol)
    also = (official_records(),) if args.with_official else ()
    with folder_lock(args.records_dir, shared=True):
        paths = write_board(args.records_dir, protocol.id, args.boards_dir, also, attack_records_dir(args))
    print("\n".join(str(p) for p in paths))


def cmd_bench(args) -> None:
    """`atbench bench`: time ours against a reference on the same work."""
    from benchmark.commands.bench import (
        markdown,
        run_cases,
        trained_workload,
        write_json,
    )
    from benchmark.core.registry import TRACKS
    from benchmark.pipeline.runner import check_device

    check_device(args.device)
    work = trained_workload(TRACKS.get(args.track), args.defense, args.seed, args.runs_dir, args.data_dir,
                            args.device, args.points, args.repeats, args.train_model, args.compile)
    results = run_cases(work, args.cases)
    print(markdown(work, results))
    if args.json:
        try:
            write_json(args.json, work, results)
        except OSError as exc:
            raise os_errors.user_error(exc, "the results are in the table printed above") or exc


def cmd_verify(args) -> int:
    """`atbench verify`: check a record against its flags, checkpoint and a re-evaluation."""
    from benchmark.commands.verify import report, verify
    from benchmark.pipeline.executor import run_local
    from benchmark.pipeline.runner import check_device

    check_device(args.device)
    job = (args.record, args.checkpoint, args.runs_dir, args.data_dir, args.device, args.points, args.tolerance,
           args.model)
    checks = run_local(verify, [job], 1, args.device, args.defense_files)[0]  # one CPU thread, as records are made
    print(report(args.record, checks))
    return 0 if all(c.ok for c in checks) else 1


def cmd_regress(args) -> int:
    """`atbench regress`: compare current results with a reference; 1 on a regression."""
    from benchmark.commands.regress import (
        align_seeds,
        check_request,
        compare,
        compared_seeds,
        defenses_to_run,
        load_results,
        markdown,
        planned,
        record_files,
        same_protocol,
        scratch_folders,
        write_junit,
    )
    from benchmark.core.plugins import load_defense_files
    from benchmark.core.registry import DEFENSES
    from benchmark.pipeline.runner import execute

    reference = load_results(args.against)
    check_request(reference, args.alpha, args.defenses)
    wanted = None
    if args.current is not None:
        current = load_results(args.current)
        wanted = set(args.seeds or range(args.seed_count or 0)) or None
    else:  # run the reference's defenses that can be trained here (not its external models)
        load_defense_files(args.defense_files)
        args.defenses = defenses_to_run(reference, args.defenses, set(DEFENSES.names()) | set(DEFENSES.installed()))
        args.records_dir, args.boards_dir = scratch_folders(args.runs_dir, args.records_dir, args.boards_dir,
                                                            args.against)
        args.replace = True  # regress owns its records folder: each run replaces its earlier results
        jobs = _jobs(args, "train+eval")
        compared_seeds(reference, planned(reference, [(job.defense, job.seed) for job in jobs]), args.defenses)
        with _runs_lock(args):
            outcome = execute(jobs, "train+eval", _executor(args))
        current = record_files(outcome.results)
    same_protocol(reference, current)
    reference, current, seed_lines = align_seeds(reference, current, args.defenses, wanted)
    for line in seed_lines:
        print(line)
    changes = compare(reference, current, args.tolerance, args.alpha, args.defenses)
    print(markdown(changes, args.show_all))
    if args.junit:
        try:
            write_junit(args.junit, changes)
        except OSError as exc:
            raise os_errors.user_error(exc, "the comparison is in the table printed above") or exc
    return 1 if any(c.regressed for c in changes) else 0


def cmd_compare(args) -> int:
    """`atbench compare`: paired comparison of two defenses, records or board entries."""
    from benchmark.commands.compare import comparison, markdown, resolve
    from benchmark.pipeline.protocol import protocol_for

    protocol = protocol_for(_track(args), args.protocol).id
    result = comparison(resolve(args.a, args.records_dir, protocol), resolve(args.b, args.records_dir, protocol))
    print(json.dumps(result, indent=2, sort_keys=True) if args.format == "json" else markdown(result))
    return 1 if args.require_better and not result["a_significantly_better"] else 0


def cmd_validate(args) -> int:
    """`atbench validate`: the checks a submitted defense must pass."""
    from benchmark.commands.validate import report
    from benchmark.pipeline.executor import run_local

    job = (args.defense, print)
    return 0 if run_local(report, [job], 1, "cpu", args.defense_files)[0] else 1  # one CPU thread, as records are made


def cmd_attack(args) -> None:
    """`atbench attack`: run a submitted attack against every board entry at hand, write attack records."""
    from benchmark.commands.attack import run_attack

    if args.model is None and (args.checkpoint or args.name):
        raise AtbenchError("--checkpoint and --name need --model", "add --model module:callable (or an architecture)")
    track = _track(args)
    for line in run_attack(args, track, attack_records_dir(args)):  # beside --records-dir, where its board reads
        print(line)


def cmd_validate_attack(args) -> int:
    """`atbench validate-attack`: the checks a submitted attack must pass."""
    from benchmark.commands.validate_attack import report
    from benchmark.core.plugins import load_attack_files
    from benchmark.pipeline.executor import run_local

    load_attack_files(args.attack_files)
    return 0 if run_local(report, [(args.attack, print)], 1, "cpu")[0] else 1  # one CPU thread, as records are made


def cmd_export(args) -> None:
    """`atbench export`: RobustBench entries or the record's JSON Schema."""
    if args.format == "json-schema":
        from benchmark.core.io import atomic_write_json
        from leaderboard.record_docs import json_schema

        if Path(args.out).is_dir():
            raise AtbenchError(f"--out {args.out} is a folder, not a file", "pass the schema file to write")
        atomic_write_json(args.out, json_schema())
        print(args.out)
        return
    from leaderboard.robustbench import export_robustbench

    if not args.records:
        raise AtbenchError("no records to export", "pass record files or records folders, e.g. "
                                                   "leaderboard/records/mnist5k-cnn")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise AtbenchError(f"--out {args.out} is a file, not a folder", "pass the folder to write the entries into")
    # by default, the attack records beside each exported record's records folder (not beside --records-dir)
    print("\n".join(str(p) for p in export_robustbench(args.records, args.out, args.attack_records_dir)))


def cmd_ls(args) -> None:
    """`atbench ls`: list what is registered."""
    from benchmark.core.registry import ATTACKS, DATASETS, DEFENSES, MODELS, SUBMITTED_ATTACKS, TRACKS
    from benchmark.pipeline.protocol import shipped_ids

    kinds = {"defenses": lambda: DEFENSES.names() + [f"{n} (installed)" for n in DEFENSES.installed()],
             "attacks": lambda: ATTACKS.names() + [f"{n} (submitted)" for n in SUBMITTED_ATTACKS.names()]
             + [f"{n} (submitted, installed)" for n in SUBMITTED_ATTACKS.installed()], "tracks": TRACKS.names,
             "datasets": DATASETS.names, "models": MODELS.names, "protocols": shipped_ids}
    for kind, names in kinds.items():
        if args.what in ("all", kind):
            print(f"{kind}: {', '.join(names())}")


COMMANDS = {"run": cmd_run, "train": cmd_train, "eval": cmd_eval, "tune": cmd_tune, "leaderboard": cmd_leaderboard,
            "bench": cmd_bench, "verify": cmd_verify, "regress": cmd_regress, "compare": cmd_compare,
            "validate": cmd_validate, "attack": cmd_attack, "validate-attack": cmd_validate_attack,
            "data": data_command.cmd_data,
            "export": cmd_export, "ls": cmd_ls}

#: The folder options whose folders must lie apart (`benchmark.core.folders.check_apart`).
OUTPUT_FOLDERS = ("--runs-dir", "--records-dir", "--boards-dir", "--sweeps-dir", "--attack-records-dir")


def _report(exc: AtbenchError) -> int:
    """Print a user error as one `atbench: error:` line and its fix; the exit code, 2."""
    print(f"atbench: error: {exc.problem}\n  fix: {exc.fix}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `atbench` console script. Returns the exit code: 0 on success, 1 when
    a check fails (validate, verify, regress), 2 on a user error (one message naming the
    problem and the fix, no traceback; an OS error naming a path the user gave is one,
    `os_errors`), 141 when stdout's reader left early."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a bad value (2), already printed
        return int(exc.code or 0)
    quiet = getattr(args, "quiet", False)
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="atbench: %(message)s")
    logging.getLogger("auto-attack").setLevel(logging.ERROR)
    try:
        check_environment(args)
        check_apart({option: getattr(args, option[2:].replace("-", "_"), None) for option in OUTPUT_FOLDERS})
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # here, so that a reader that left early is met below
    except AtbenchError as exc:
        return _report(exc)
    except BrokenPipeError:  # stdout's reader left early (`atbench compare A B | head`): stop quietly
        os_errors.silence_stdout()
        return 141
    except OSError as exc:  # a path the user gave cannot be used: one message; any other OSError is a bug
        error = os_errors.user_error(exc)
        if error is None:
            raise
        return _report(error)
    except KeyboardInterrupt:
        print("atbench: interrupted; finished work is kept and a re-run resumes", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
