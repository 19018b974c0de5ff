"""The `atbench` console script: thin wrappers over the library functions."""
from __future__ import annotations

import argparse
import logging
import sys

from benchmark.errors import AtbenchError

DEFAULT_TRACK = "mnist5k-cnn"
log = logging.getLogger("atbench")


def _defense_file(p: argparse.ArgumentParser) -> None:
    p.add_argument("--defense-file", action="append", dest="defense_files", default=[], metavar="PATH",
                   help="a .py file whose @register-ed defenses become available by name, repeatable")


def _common(p: argparse.ArgumentParser, defenses: bool = True) -> None:
    p.add_argument("--track", default=DEFAULT_TRACK, help=f"track id (default: {DEFAULT_TRACK}); see `atbench ls tracks`")
    if defenses:
        p.add_argument("--defense", action="append", dest="defenses", metavar="NAME",
                       help="defense id, repeatable (default: every registered defense)")
        _defense_file(p)
        p.add_argument("--seed", action="append", type=int, dest="seeds", metavar="K", help="training seed, repeatable (default: 0)")
        p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:N (default: cpu)")
        p.add_argument("--data-dir", default=None, help="folder with local data sets (default: $ATBENCH_DATA_DIR or ./data)")
        p.add_argument("--runs-dir", default="runs", help="where checkpoints, logs and records go (default: runs)")
        p.add_argument("--jobs", type=int, default=None, metavar="N",
                       help="worker processes (default: one per CPU core, one on a GPU); CPU jobs are "
                            "single-threaded, so results do not depend on N")
        p.add_argument("--no-wait", action="store_true",
                       help="stop with an error, instead of waiting, when another atbench process is working "
                            "in the same --runs-dir")
    p.add_argument("--protocol", default=None, metavar="ID_OR_PATH",
                   help="use this protocol (an id or a .toml file) instead of the track's; "
                        "each protocol has its own records folder and board")
    p.add_argument("--records-dir", default="leaderboard/records", help="published records (default: leaderboard/records)")
    p.add_argument("--boards-dir", default="leaderboard/boards", help="boards (default: leaderboard/boards)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or per-epoch lines")


def _fast_path(p: argparse.ArgumentParser, compile: bool, precision: bool) -> None:
    if compile:
        p.add_argument("--compile", action="store_true", help="torch.compile the model for training (GPU fast path)")
    if precision:
        p.add_argument("--eval-precision", choices=["fp32", "bf16"], default="fp32",
                       help="precision of the attacks' search (default fp32); every adversarial example is "
                            "re-checked in fp32, and bf16 records say so in their attacks entries")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `atbench`."""
    parser = argparse.ArgumentParser(prog="atbench", description="Benchmark adversarial-training defenses under one "
                                     "training harness and a fixed, versioned attack protocol.")
    sub = parser.add_subparsers(dest="command", required=True)
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
    evaluate = sub.add_parser("eval", help="evaluate trained runs (or an external model) under the track's protocol "
                                           "and publish the records")
    _common(evaluate)
    _fast_path(evaluate, compile=False, precision=True)
    evaluate.add_argument("--model", default=None, metavar="SPEC",
                          help="evaluate this model instead of trained defenses: module:callable (returning an "
                               "nn.Module on [0, 1] inputs) or a registered architecture")
    evaluate.add_argument("--checkpoint", default=None, metavar="PATH",
                          help="weights for --model (a state_dict, loaded weights-only)")
    evaluate.add_argument("--name", default=None, help="the board name of the --model entry")
    _common(sub.add_parser("leaderboard", help="rebuild a track's board from its published records"), defenses=False)
    bench = sub.add_parser("bench", help="time our evaluation against a reference doing the same work (ratios in "
                                         "one run) on a trained defense")
    bench.add_argument("cases", nargs="*", metavar="CASE", help="cases to run (default: all): multi-eps, "
                       "pgd-vs-torchattacks, autoattack-adapter, at-step")
    bench.add_argument("--track", default=DEFAULT_TRACK, help=f"track id (default: {DEFAULT_TRACK})")
    bench.add_argument("--defense", default="pgd-at", help="the trained defense to bench on (default: pgd-at)")
    bench.add_argument("--seed", type=int, default=0, help="its training seed (default: 0)")
    bench.add_argument("--points", type=int, default=None, help="test points (default: the protocol's subset)")
    bench.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    bench.add_argument("--data-dir", default=None, help="folder with local data sets (default: $ATBENCH_DATA_DIR or ./data)")
    bench.add_argument("--runs-dir", default="runs", help="where the trained run is (default: runs)")
    bench.add_argument("--repeats", type=int, default=1, help="runs of each side; the fastest counts (default: 1)")
    bench.add_argument("--train-model", default=None, metavar="MODEL",
                       help="at-step on this model with CIFAR-10-shaped data (e.g. preact-resnet18) instead of the track's")
    bench.add_argument("--compile", action="store_true", help="at-step: torch.compile the harness's model")
    bench.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")
    verify = sub.add_parser("verify", help="check a record against its flags, its checkpoint and a re-evaluation "
                                           "on a fixed subset of the protocol's points (exit 1 on a mismatch)")
    verify.add_argument("record", help="a record (.json) with its .flags.npz beside it")
    verify.add_argument("--checkpoint", default=None, metavar="PATH",
                        help="the evaluated checkpoint (default: <runs-dir>/<track>/<defense>/seed<k>/best.pt)")
    verify.add_argument("--runs-dir", default="runs", help="where the run was trained (default: runs)")
    verify.add_argument("--points", type=int, default=40, help="points re-evaluated (default: 40)")
    verify.add_argument("--tolerance", type=float, default=0.05,
                        help="largest allowed gap of any (attack, eps) robust accuracy on those points (default: 0.05)")
    verify.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    verify.add_argument("--data-dir", default=None, help="folder with local data sets")
    verify.add_argument("-q", "--quiet", action="store_true", help="no per-attack lines")
    verify.add_argument("--model", default=None, metavar="SPEC",
                        help="the module:callable of an external model's record: its code is imported only when "
                             "named here")
    _defense_file(verify)
    regress = sub.add_parser("regress", help="compare current results with reference ones per defense, attack and "
                                             "eps; exit 1 when an accuracy drops by more than the tolerance")
    _common(regress)
    regress.add_argument("--against", required=True, metavar="PATH",
                         help="the reference: a records folder, a record, or a board JSON")
    regress.add_argument("--current", default=None, metavar="PATH",
                         help="read the current results from here instead of running the track (same kinds)")
    regress.add_argument("--tolerance", type=float, default=0.02, help="largest allowed drop (default: 0.02)")
    regress.add_argument("--junit", default=None, metavar="PATH", help="also write the comparison as JUnit XML")
    regress.add_argument("--all", action="store_true", dest="show_all", help="list unchanged metrics too")
    regress.set_defaults(records_dir="runs/regress/records", boards_dir="runs/regress/boards")
    validate = sub.add_parser("validate", help="the checks a submitted defense must pass (on synthetic-tiny): "
                                               "PASS/FAIL per check, exit 1 when any fails")
    validate.add_argument("defense", help="the defense id")
    _defense_file(validate)
    validate.add_argument("-q", "--quiet", action="store_true", help="no per-attack lines")
    export = sub.add_parser("export", help="export records: RobustBench model_info entries, or the record JSON Schema")
    export.add_argument("format", choices=["robustbench", "json-schema"])
    export.add_argument("records", nargs="*", metavar="PATH", help="robustbench: records or records folders")
    export.add_argument("--out", required=True, metavar="PATH",
                        help="robustbench: the output folder; json-schema: the output file")
    ls = sub.add_parser("ls", help="list registered names")
    ls.add_argument("what", nargs="?", default="all", choices=["all", "defenses", "attacks", "tracks", "datasets", "models", "protocols"])
    return parser


def _grid(args):
    from benchmark.executor import worker_count
    from benchmark.plugins import load_defense_files
    from benchmark.registry import TRACKS
    from benchmark.runner import check_device, grid

    load_defense_files(args.defense_files)
    track = TRACKS.get(args.track)
    check_device(args.device)
    pairs = grid(track, args.defenses, tuple(args.seeds or [0]))
    workers = worker_count(args.jobs, args.device, len(pairs))
    return track, pairs, workers, not args.quiet and workers == 1


def _runs_lock(args):
    """The lock of the runs folder the command writes into (`benchmark.lock`)."""
    from benchmark.lock import folder_lock

    return folder_lock(args.runs_dir, wait=not args.no_wait)


def cmd_run(args) -> None:
    from benchmark.runner import check_executor, run

    check_executor(args.executor, args.address, args.jobs)  # before the lock creates the runs folder
    with _runs_lock(args):
        paths = run(args.track, args.defenses, tuple(args.seeds or [0]), args.device, args.runs_dir,
                    args.records_dir, args.boards_dir, args.data_dir, progress=not args.quiet,
                    protocol=args.protocol, jobs=args.jobs, defense_files=args.defense_files, compile=args.compile,
                    precision=args.eval_precision, executor=args.executor, address=args.address)
    print("\n".join(str(p) for p in paths))


def cmd_train(args) -> None:
    from benchmark.executor import run_local
    from benchmark.runner import train_job

    track, pairs, workers, progress = _grid(args)
    jobs = [(track.name, name, seed, args.device, args.runs_dir, args.data_dir, progress, args.compile)
            for name, seed in pairs]
    with _runs_lock(args):
        results = run_local(train_job, jobs, workers, args.device, args.defense_files)
    for (name, seed), result in zip(pairs, results):
        print(f"{name} seed {seed}: {result.checkpoint} (epoch {result.best_epoch}, "
              f"val robust {result.best_val_robust_acc:.3f})")


def cmd_eval(args) -> None:
    from benchmark.executor import run_local
    from benchmark.lock import folder_lock
    from benchmark.runner import eval_job, evaluate_external, publish

    if args.model is None and (args.checkpoint or args.name):
        raise AtbenchError("--checkpoint and --name need --model", "add --model module:callable (or an architecture)")
    if args.model is not None:
        job = (args.model, args.checkpoint, args.name, args.track, args.device, args.runs_dir, args.records_dir,
               args.boards_dir, args.data_dir, not args.quiet, args.protocol)
        with _runs_lock(args):
            paths = run_local(evaluate_external, [job], 1, args.device)[0]
        print("\n".join(str(p) for p in paths))
        return
    track, pairs, workers, progress = _grid(args)
    jobs = [(track.name, name, seed, args.device, args.runs_dir, args.data_dir, progress, args.protocol,
             args.eval_precision) for name, seed in pairs]
    with _runs_lock(args):
        records = run_local(eval_job, jobs, workers, args.device, args.defense_files)
        with folder_lock(args.records_dir):
            for (name, seed), record in zip(pairs, records):
                publish(record, args.records_dir, name, seed)
    print("\n".join(str(r) for r in records))


def cmd_leaderboard(args) -> None:
    from benchmark.lock import folder_lock
    from benchmark.protocol import load_protocol
    from benchmark.registry import TRACKS
    from leaderboard.build import write_board

    protocol = load_protocol(args.protocol or TRACKS.get(args.track).protocol)
    with folder_lock(args.records_dir):
        paths = write_board(args.records_dir, protocol.id, args.boards_dir)
    print("\n".join(str(p) for p in paths))


def cmd_bench(args) -> None:
    from benchmark.bench import markdown, run_cases, trained_workload, write_json
    from benchmark.registry import TRACKS
    from benchmark.runner import check_device

    check_device(args.device)
    work = trained_workload(TRACKS.get(args.track), args.defense, args.seed, args.runs_dir, args.data_dir,
                            args.device, args.points, args.repeats, args.train_model, args.compile)
    results = run_cases(work, args.cases)
    print(markdown(work, results))
    if args.json:
        write_json(args.json, work, results)


def cmd_verify(args) -> int:
    from benchmark.executor import run_local
    from benchmark.runner import check_device
    from benchmark.verify import report, verify

    check_device(args.device)
    job = (args.record, args.checkpoint, args.runs_dir, args.data_dir, args.device, args.points, args.tolerance,
           args.model)
    checks = run_local(verify, [job], 1, args.device, args.defense_files)[0]  # one CPU thread, as records are made
    print(report(args.record, checks))
    return 0 if all(c.ok for c in checks) else 1


def cmd_regress(args) -> int:
    from benchmark.protocol import protocol_for
    from benchmark.registry import TRACKS
    from benchmark.regress import compare, load_results, markdown, write_junit
    from benchmark.runner import run

    reference = load_results(args.against)
    if args.current is not None:
        current_path = args.current
    else:
        names = args.defenses or sorted(reference)
        with _runs_lock(args):
            run(args.track, names, tuple(args.seeds or [0]), args.device, args.runs_dir, args.records_dir,
                args.boards_dir, args.data_dir, progress=not args.quiet, protocol=args.protocol, jobs=args.jobs,
                defense_files=args.defense_files)
        current_path = f"{args.records_dir}/{protocol_for(TRACKS.get(args.track), args.protocol).id}"
    if args.defenses:
        reference = {d: m for d, m in reference.items() if d in args.defenses}
    changes = compare(reference, load_results(current_path), args.tolerance)
    print(markdown(changes, args.show_all))
    if args.junit:
        write_junit(args.junit, changes)
    return 1 if any(c.regressed for c in changes) else 0


def cmd_validate(args) -> int:
    from benchmark.executor import run_local
    from benchmark.validate import report

    job = (args.defense, print)
    return 0 if run_local(report, [job], 1, "cpu", args.defense_files)[0] else 1  # one CPU thread, as records are made


def cmd_export(args) -> None:
    if args.format == "json-schema":
        from leaderboard.json_schema import write_json_schema

        print(write_json_schema(args.out))
        return
    from leaderboard.robustbench import export_robustbench

    if not args.records:
        raise AtbenchError("no records to export", "pass record files or records folders, e.g. "
                                                   "leaderboard/records/mnist5k-cnn")
    print("\n".join(str(p) for p in export_robustbench(args.records, args.out)))


def cmd_ls(args) -> None:
    from benchmark.protocol import PROTOCOL_DIR
    from benchmark.registry import ATTACKS, DATASETS, DEFENSES, MODELS, TRACKS

    kinds = {"defenses": lambda: DEFENSES.names() + [f"{n} (installed)" for n in DEFENSES.installed()],
             "attacks": ATTACKS.names, "tracks": TRACKS.names,
             "datasets": DATASETS.names, "models": MODELS.names,
             "protocols": lambda: sorted(p.stem for p in PROTOCOL_DIR.glob("*.toml"))}
    for kind, names in kinds.items():
        if args.what in ("all", kind):
            print(f"{kind}: {', '.join(names())}")


COMMANDS = {"run": cmd_run, "train": cmd_train, "eval": cmd_eval, "leaderboard": cmd_leaderboard,
            "bench": cmd_bench, "verify": cmd_verify, "regress": cmd_regress, "validate": cmd_validate,
            "export": cmd_export, "ls": cmd_ls}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `atbench` console script. Returns the exit code: 0 on success, 1 when
    a check fails (validate, verify, regress), 2 on a user error (one message naming the
    problem and the fix, no traceback)."""
    args = build_parser().parse_args(argv)
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
