"""The `atbench` console script: thin wrappers over the library functions.

Every value is parsed by a bounded type (`benchmark.commands.arguments`) before any work; the
commands that train or evaluate build `Job`s and hand them to `benchmark.pipeline.runner.execute`.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from benchmark.commands import arguments as arg
from benchmark.core.errors import AtbenchError

DEFAULT_TRACK = "mnist5k-cnn"
log = logging.getLogger("atbench")


def _defense_file(p: argparse.ArgumentParser) -> None:
    p.add_argument("--defense-file", action="append", dest="defense_files", default=[], metavar="PATH",
                   type=arg.existing_file,
                   help="a .py file whose @register-ed defenses become available by name, repeatable")


def _common(p: argparse.ArgumentParser, defenses: bool = True) -> None:
    p.add_argument("--track", default=DEFAULT_TRACK, type=arg.slug("track"),
                   help=f"track id (default: {DEFAULT_TRACK}); see `atbench ls tracks`")
    if defenses:
        p.add_argument("--defense", action="append", dest="defenses", metavar="NAME", type=arg.slug("defense"),
                       help="defense id, repeatable (default: every registered defense)")
        _defense_file(p)
        p.add_argument("--seed", action="append", type=arg.seed, dest="seeds", metavar="K",
                       help="training seed in 0..2^31-1, repeatable (default: 0)")
        p.add_argument("--device", default="cpu", type=arg.device, help="torch device: cpu, cuda, cuda:N (default: cpu)")
        p.add_argument("--data-dir", default=None, type=arg.folder,
                       help="folder with local data sets (default: $ATBENCH_DATA_DIR or ./data)")
        p.add_argument("--runs-dir", default="runs", type=arg.folder,
                       help="where checkpoints, logs and records go (default: runs)")
        p.add_argument("--jobs", type=arg.jobs, default=None, metavar="N",
                       help="worker processes (default: one per CPU core, one on a GPU); CPU jobs are "
                            "single-threaded, so results do not depend on N")
        p.add_argument("--no-wait", action="store_true",
                       help="stop with an error, instead of waiting, when another atbench process is working "
                            "in the same --runs-dir")
    p.add_argument("--protocol", default=None, metavar="ID_OR_PATH", type=arg.protocol,
                   help="use this protocol (an id or a .toml file) instead of the track's; "
                        "each protocol has its own records folder and board")
    p.add_argument("--records-dir", default="leaderboard/records", type=arg.folder,
                   help="published records (default: leaderboard/records)")
    p.add_argument("--boards-dir", default="leaderboard/boards", type=arg.folder,
                   help="boards (default: leaderboard/boards)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or per-epoch lines")


def _fast_path(p: argparse.ArgumentParser, compile: bool, precision: bool) -> None:
    if compile:
        p.add_argument("--compile", action="store_true", help="torch.compile the model for training (GPU fast path)")
    if precision:
        p.add_argument("--eval-precision", choices=["fp32", "bf16"], default="fp32",
                       help="precision of the attacks' search (default fp32); every adversarial example is "
                            "re-checked in fp32, and bf16 records say so in their attacks entries")


def _commands(sub) -> None:
    run = sub.add_parser("run", help="train + evaluate every (defense, seed) on a track, then write the board")
    _common(run)
    _fast_path(run, compile=True, precision=True)
    run.add_argument("--executor", choices=["local", "ray"], default="local",
                     help="local worker processes (default), or Ray tasks (docs/ray.md)")
    run.add_argument("--address", default=None, metavar="ADDR",
                     help="with --executor ray: the Ray cluster (auto, host:port, ray://host:port; "
                          "default: a local Ray instance)")
    train = sub.add_parser("train", help="train (or resume) without evaluating")
    _common(train)
    _fast_path(train, compile=True, precision=False)
    evaluate = sub.add_parser("eval", help="evaluate trained runs (or an external model) under the track's protocol, "
                                           "publish the records and write the board")
    _common(evaluate)
    _fast_path(evaluate, compile=False, precision=True)
    evaluate.add_argument("--model", default=None, metavar="SPEC",
                          help="evaluate this model instead of trained defenses: module:callable (returning an "
                               "nn.Module on [0, 1] inputs) or a registered architecture (needs --checkpoint)")
    evaluate.add_argument("--checkpoint", default=None, metavar="PATH", type=arg.existing_file,
                          help="weights for --model (a state_dict, loaded weights-only)")
    evaluate.add_argument("--name", default=None, type=arg.slug("model"),
                          help="the board name of the --model entry (not a registered defense's)")
    evaluate.add_argument("--replace", action="store_true",
                          help="publish over a record of the same name, seed and protocol that came from another "
                               "checkpoint or model")
    _common(sub.add_parser("leaderboard", help="rebuild a track's board from its published records"), defenses=False)
    tune = sub.add_parser("tune", help="train and score each defense's declared search space on the validation split "
                                       "and write its sweep record (the track takes the winner)")
    _common(tune)
    tune.add_argument("--sweeps-dir", default=None, type=arg.folder,
                      help="where sweep records go (default: leaderboard/sweeps)")
    bench = sub.add_parser("bench", help="time our evaluation against a reference doing the same work (ratios in "
                                         "one run) on a trained defense")
    bench.add_argument("cases", nargs="*", metavar="CASE", type=arg.slug("bench case"),
                       help="cases to run (default: all): multi-eps, pgd-vs-torchattacks, autoattack-adapter, at-step")
    bench.add_argument("--track", default=DEFAULT_TRACK, type=arg.slug("track"),
                       help=f"track id (default: {DEFAULT_TRACK})")
    bench.add_argument("--defense", default="pgd-at", type=arg.slug("defense"),
                       help="the trained defense to bench on (default: pgd-at)")
    bench.add_argument("--seed", type=arg.seed, default=0, help="its training seed (default: 0)")
    bench.add_argument("--points", type=arg.points, default=None, help="test points (default: the protocol's subset)")
    bench.add_argument("--device", default="cpu", type=arg.device, help="torch device (default: cpu)")
    bench.add_argument("--data-dir", default=None, type=arg.folder,
                       help="folder with local data sets (default: $ATBENCH_DATA_DIR or ./data)")
    bench.add_argument("--runs-dir", default="runs", type=arg.folder, help="where the trained run is (default: runs)")
    bench.add_argument("--repeats", type=arg.repeats, default=1,
                       help="runs of each side; the fastest counts (default: 1)")
    bench.add_argument("--train-model", default=None, metavar="MODEL", type=arg.slug("model"),
                       help="at-step on this model with CIFAR-10-shaped data (e.g. preact-resnet18) instead of the track's")
    bench.add_argument("--compile", action="store_true", help="at-step: torch.compile the harness's model")
    bench.add_argument("--json", default=None, metavar="PATH", type=arg.output_file,
                       help="also write the results as JSON")
    verify = sub.add_parser("verify", help="check a record against its flags, its checkpoint and a re-evaluation "
                                           "on a fixed subset of the protocol's points (exit 1 on a mismatch)")
    verify.add_argument("record", type=arg.existing_file, help="a record (.json) with its .flags.npz beside it")
    verify.add_argument("--checkpoint", default=None, metavar="PATH", type=arg.existing_file,
                        help="the evaluated checkpoint (default: <runs-dir>/<track>/<defense>/seed<k>/best.pt)")
    verify.add_argument("--runs-dir", default="runs", type=arg.folder, help="where the run was trained (default: runs)")
    verify.add_argument("--points", type=arg.points, default=40, help="points re-evaluated (default: 40)")
    verify.add_argument("--tolerance", type=arg.fraction, default=0.05,
                        help="largest allowed gap of any (attack, eps) robust accuracy on those points (default: 0.05)")
    verify.add_argument("--device", default="cpu", type=arg.device, help="torch device (default: cpu)")
    verify.add_argument("--data-dir", default=None, type=arg.folder, help="folder with local data sets")
    verify.add_argument("-q", "--quiet", action="store_true", help="no per-attack lines")
    verify.add_argument("--model", default=None, metavar="SPEC",
                        help="the module:callable of an external model's record: its code is imported only when "
                             "named here")
    _defense_file(verify)
    regress = sub.add_parser("regress", help="compare current results with reference ones per defense, attack and "
                                             "eps; exit 1 when an accuracy drops by more than the tolerance")
    _common(regress)
    regress.add_argument("--against", required=True, metavar="PATH", type=arg.existing_path,
                         help="the reference: a records folder, a record, or a board JSON")
    regress.add_argument("--current", default=None, metavar="PATH", type=arg.existing_path,
                         help="read the current results from here instead of running the track (same kinds)")
    regress.add_argument("--tolerance", type=arg.fraction, default=0.02,
                         help="largest allowed drop, a number in [0, 1] (default: 0.02)")
    regress.add_argument("--junit", default=None, metavar="PATH", type=arg.output_file,
                         help="also write the comparison as JUnit XML")
    regress.add_argument("--all", action="store_true", dest="show_all", help="list unchanged metrics too")
    regress.set_defaults(records_dir="runs/regress/records", boards_dir="runs/regress/boards")
    validate = sub.add_parser("validate", help="the checks a submitted defense must pass (on synthetic-tiny): "
                                               "PASS/FAIL per check, exit 1 when any fails")
    validate.add_argument("defense", type=arg.slug("defense"), help="the defense id")
    _defense_file(validate)
    validate.add_argument("-q", "--quiet", action="store_true", help="no per-attack lines")
    export = sub.add_parser("export", help="export records: RobustBench model_info entries, or the record JSON Schema")
    export.add_argument("format", choices=["robustbench", "json-schema"])
    export.add_argument("records", nargs="*", metavar="PATH", type=arg.existing_path,
                        help="robustbench: records or records folders")
    export.add_argument("--out", required=True, metavar="PATH", type=arg.output_path,
                        help="robustbench: the output folder; json-schema: the output file")
    ls = sub.add_parser("ls", help="list registered names")
    ls.add_argument("what", nargs="?", default="all",
                    choices=["all", "defenses", "attacks", "tracks", "datasets", "models", "protocols"])


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `atbench`."""
    parser = arg.Parser(prog="atbench", description="Benchmark adversarial-training defenses under one "
                                                    "training harness and a fixed, versioned attack protocol.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=arg.Parser)
    _commands(sub)
    return parser


def _jobs(args, stage: str):
    """The jobs the arguments name (defense files imported first), checked before any work."""
    from benchmark.core.plugins import load_defense_files
    from benchmark.core.registry import TRACKS
    from benchmark.pipeline.data import load_dataset
    from benchmark.pipeline.job import Options, Paths, plan
    from benchmark.pipeline.protocol import protocol_for
    from benchmark.pipeline.runner import check_device

    load_defense_files(args.defense_files)
    track = TRACKS.get(args.track)
    protocol = protocol_for(track, args.protocol)
    check_device(args.device)
    if stage != "train":
        check_test_split(protocol, load_dataset(track.dataset, args.data_dir))
    paths = Paths(args.runs_dir, args.records_dir, args.boards_dir, args.data_dir)
    options = Options(progress=not args.quiet, compile=getattr(args, "compile", False),
                      precision=getattr(args, "eval_precision", "fp32"), defense_files=tuple(args.defense_files),
                      replace=getattr(args, "replace", False))
    return plan(track, protocol, args.defenses, _unique(args.seeds or [0]), args.device, paths, options)


def _unique(seeds: list[int]) -> tuple[int, ...]:
    if len(set(seeds)) != len(seeds):
        raise AtbenchError(f"a seed is given twice ({seeds})", "give each --seed once")
    return tuple(seeds)


def check_test_split(protocol, bundle) -> None:
    """Refuse, before any work, a protocol that asks for more test points than the data set has."""
    if protocol.n_examples > len(bundle.test):
        raise AtbenchError(f"protocol {protocol.id} asks for {protocol.n_examples} test points but data set "
                           f"{bundle.name} has {len(bundle.test)}",
                           "lower test_subset.n in the protocol file (and bump its version)")


def _executor(args):
    from benchmark.pipeline.runner import Executor

    return Executor(getattr(args, "executor", "local"), args.jobs, getattr(args, "address", None))


def _runs_lock(args):
    """The lock of the runs folder the command writes into (`benchmark.core.lock`)."""
    from benchmark.core.lock import folder_lock

    return folder_lock(args.runs_dir, wait=not args.no_wait)


def cmd_run(args) -> None:
    from benchmark.pipeline.runner import execute

    executor = _executor(args)  # before the lock creates the runs folder
    jobs = _jobs(args, "train+eval")
    with _runs_lock(args):
        outcome = execute(jobs, "train+eval", executor)
    print("\n".join(str(p) for p in outcome.boards))


def cmd_train(args) -> None:
    from benchmark.pipeline.runner import execute

    jobs = _jobs(args, "train")
    with _runs_lock(args):
        results = execute(jobs, "train", _executor(args)).results
    for job, result in zip(jobs, results):
        print(f"{job.defense} seed {job.seed}: {result.checkpoint} (epoch {result.best_epoch}, "
              f"val robust {result.best_val_robust_acc:.3f})")


def _external_jobs(args):
    from benchmark.core.registry import MODELS, TRACKS
    from benchmark.pipeline.data import load_dataset
    from benchmark.pipeline.external import external_name
    from benchmark.pipeline.job import ExternalModel, Options, Paths, external_job
    from benchmark.pipeline.protocol import protocol_for
    from benchmark.pipeline.runner import check_device

    if args.defenses or args.seeds:
        raise AtbenchError("--defense and --seed select trained defenses, not an external --model",
                           "leave them out with --model (an external model is one entry, seed 0)")
    if args.checkpoint is None and ":" not in args.model:
        MODELS.get(args.model)
        raise AtbenchError(f"--model {args.model} is an architecture: without --checkpoint it would evaluate and "
                           "publish random weights", "pass --checkpoint PATH with the trained weights")
    track = TRACKS.get(args.track)
    protocol = protocol_for(track, args.protocol)
    check_device(args.device)
    check_test_split(protocol, load_dataset(track.dataset, args.data_dir))
    name = args.name or external_name(args.model, args.checkpoint)
    options = Options(progress=not args.quiet, precision=args.eval_precision, replace=args.replace)
    return [external_job(track, protocol, name, ExternalModel(args.model, args.checkpoint), args.device,
                         Paths(args.runs_dir, args.records_dir, args.boards_dir, args.data_dir), options)]


def cmd_eval(args) -> None:
    from benchmark.pipeline.runner import Executor, execute

    if args.model is None and (args.checkpoint or args.name):
        raise AtbenchError("--checkpoint and --name need --model", "add --model module:callable (or an architecture)")
    jobs = _external_jobs(args) if args.model is not None else _jobs(args, "eval")
    executor = Executor(workers=1) if args.model is not None else _executor(args)
    with _runs_lock(args):
        outcome = execute(jobs, "eval", executor)
    print("\n".join(str(p) for p in [*outcome.results, *outcome.boards]))


def cmd_tune(args) -> None:
    from benchmark.pipeline.executor import run_local, worker_count
    from benchmark.pipeline.runner import check_device
    from benchmark.pipeline.sweeps import SWEEPS_DIR
    from benchmark.pipeline.tune import sweep_record, tune_jobs, tune_one, write_sweep

    if args.seeds not in (None, [0]):
        raise AtbenchError("tuning trains seed 0 only", "leave out --seed")
    jobs = _jobs(args, "train")
    check_device(args.device)
    settings = [tune_jobs(job) for job in jobs]
    flat = [s for group in settings for s in group]
    with _runs_lock(args):
        rows = run_local(tune_one, [(s,) for s in flat], worker_count(args.jobs, args.device, len(flat)), args.device,
                         args.defense_files)
    root = Path(args.sweeps_dir) if args.sweeps_dir else SWEEPS_DIR
    start = 0
    for job, group in zip(jobs, settings):
        record = sweep_record(job, rows[start:start + len(group)])
        start += len(group)
        print("\n".join(str(p) for p in write_sweep(record, root)))


def cmd_leaderboard(args) -> None:
    from benchmark.core.lock import folder_lock
    from benchmark.core.registry import TRACKS
    from benchmark.pipeline.protocol import protocol_for
    from leaderboard.build import write_board

    protocol = protocol_for(TRACKS.get(args.track), args.protocol)
    with folder_lock(args.records_dir):
        paths = write_board(args.records_dir, protocol.id, args.boards_dir)
    print("\n".join(str(p) for p in paths))


def cmd_bench(args) -> None:
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
        write_json(args.json, work, results)


def cmd_verify(args) -> int:
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
    from benchmark.commands.regress import (
        compare,
        load_results,
        markdown,
        same_protocol,
        write_junit,
    )
    from benchmark.pipeline.runner import execute

    reference = load_results(args.against)
    if args.current is not None:
        current = load_results(args.current)
    else:
        args.defenses = args.defenses or sorted(reference.metrics)
        jobs = _jobs(args, "train+eval")
        with _runs_lock(args):
            execute(jobs, "train+eval", _executor(args))
        current = load_results(f"{args.records_dir}/{jobs[0].protocol.id}")
    same_protocol(reference, current)
    metrics = reference.metrics
    if args.defenses:
        metrics = {d: m for d, m in metrics.items() if d in args.defenses}
    changes = compare(metrics, current.metrics, args.tolerance)
    print(markdown(changes, args.show_all))
    if args.junit:
        write_junit(args.junit, changes)
    return 1 if any(c.regressed for c in changes) else 0


def cmd_validate(args) -> int:
    from benchmark.commands.validate import report
    from benchmark.pipeline.executor import run_local

    job = (args.defense, print)
    return 0 if run_local(report, [job], 1, "cpu", args.defense_files)[0] else 1  # one CPU thread, as records are made


def cmd_export(args) -> None:
    if args.format == "json-schema":
        from benchmark.core.io import atomic_write_json
        from leaderboard.record import json_schema

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
    print("\n".join(str(p) for p in export_robustbench(args.records, args.out)))


def cmd_ls(args) -> None:
    from benchmark.core.registry import ATTACKS, DATASETS, DEFENSES, MODELS, TRACKS
    from benchmark.pipeline.protocol import shipped_ids

    kinds = {"defenses": lambda: DEFENSES.names() + [f"{n} (installed)" for n in DEFENSES.installed()],
             "attacks": ATTACKS.names, "tracks": TRACKS.names,
             "datasets": DATASETS.names, "models": MODELS.names, "protocols": shipped_ids}
    for kind, names in kinds.items():
        if args.what in ("all", kind):
            print(f"{kind}: {', '.join(names())}")


COMMANDS = {"run": cmd_run, "train": cmd_train, "eval": cmd_eval, "tune": cmd_tune, "leaderboard": cmd_leaderboard,
            "bench": cmd_bench, "verify": cmd_verify, "regress": cmd_regress, "validate": cmd_validate,
            "export": cmd_export, "ls": cmd_ls}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `atbench` console script. Returns the exit code: 0 on success, 1 when
    a check fails (validate, verify, regress), 2 on a user error (one message naming the
    problem and the fix, no traceback)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a bad value (2), already printed
        return int(exc.code or 0)
    quiet = getattr(args, "quiet", False)
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="atbench: %(message)s")
    logging.getLogger("auto-attack").setLevel(logging.ERROR)
    try:
        code = COMMANDS[args.command](args)
    except AtbenchError as exc:
        print(f"atbench: error: {exc.problem}\n  fix: {exc.fix}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("atbench: interrupted; finished work is kept and a re-run resumes", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
