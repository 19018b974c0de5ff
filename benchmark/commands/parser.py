"""The `atbench` argument parser: every command and option, each value parsed by a bounded type
(`benchmark.commands.arguments`) before any work."""
from __future__ import annotations

import argparse

from benchmark.commands import arguments as arg
from benchmark.commands import data_command

DEFAULT_TRACK = "mnist5k-cnn"


def _defense_file(p: argparse.ArgumentParser) -> None:
    p.add_argument("--defense-file", action="append", dest="defense_files", default=[], metavar="PATH",
                   type=arg.existing_file,
                   help="a .py file whose @register-ed defenses become available by name, repeatable")


def _track(p: argparse.ArgumentParser) -> None:
    p.add_argument("--track", default=DEFAULT_TRACK, type=arg.slug("track"),
                   help=f"track id (default: {DEFAULT_TRACK}); see `atbench ls tracks`")
    p.add_argument("--track-file", action="append", dest="track_files", default=[], metavar="PATH",
                   type=arg.existing_file,
                   help="a .py file whose TRACKS.register-ed tracks become available, repeatable")


def _common(p: argparse.ArgumentParser, defenses: bool = True) -> None:
    _track(p)
    if defenses:
        p.add_argument("--defense", action="append", dest="defenses", metavar="NAME", type=arg.slug("defense"),
                       help="defense id, repeatable (default: every registered defense the track can train)")
        _defense_file(p)
        seeds = p.add_mutually_exclusive_group()
        seeds.add_argument("--seed", action="append", type=arg.seed, dest="seeds", metavar="K",
                           help="training seed in 0..2^31-1, repeatable (default: the track's seeds, 0, 1, ...)")
        seeds.add_argument("--seeds", type=arg.seed_count, dest="seed_count", metavar="N",
                           help="train seeds 0..N-1 (default: the track's number of seeds)")
        p.add_argument("--device", default="cpu", type=arg.device,
                       help="torch device: cpu, cuda, cuda:N (default: cpu)")
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
    _common(sub.add_parser("leaderboard", help="rebuild a protocol's board (the track's, or --protocol's) from its "
                                               "published records"), defenses=False)
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
                       help="at-step on this model with CIFAR-10-shaped data (e.g. preact-resnet18) instead of "
                            "the track's")
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
                         help="read the current results from here instead of running the track (same kinds); "
                              "when it runs the track, the reference is limited to the seeds it runs")
    regress.add_argument("--tolerance", type=arg.fraction, default=0.02,
                         help="largest allowed drop, a number in [0, 1] (default: 0.02)")
    regress.add_argument("--alpha", type=arg.level, default=None,
                         help="instead of --tolerance: a drop is a regression only if a paired test on both sides' "
                              "per-example flags finds it significant at this level (Holm-corrected; needs records)")
    regress.add_argument("--junit", default=None, metavar="PATH", type=arg.output_file,
                         help="also write the comparison as JUnit XML")
    regress.add_argument("--all", action="store_true", dest="show_all", help="list unchanged metrics too")
    regress.set_defaults(records_dir="runs/regress/records", boards_dir="runs/regress/boards")
    compare = sub.add_parser("compare", help="paired comparison of two defenses, records or board entries on one "
                                             "protocol: per attack and eps, the difference, its interval and p-value")
    compare.add_argument("a", metavar="A", help="a defense name, a record file, or BOARD.json:NAME")
    compare.add_argument("b", metavar="B", help="the same kinds")
    _track(compare)
    compare.add_argument("--protocol", default=None, metavar="ID_OR_PATH", type=arg.protocol,
                         help="the protocol (default: the track's)")
    compare.add_argument("--records-dir", default="leaderboard/records", type=arg.folder,
                         help="published records (default: leaderboard/records)")
    compare.add_argument("--format", choices=["md", "json"], default="md", help="output format (default: md)")
    compare.add_argument("--require-better", action="store_true",
                         help="exit 1 unless A is significantly better than B on the worst case at the primary eps")
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
    data_command.add_parser(sub)
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
