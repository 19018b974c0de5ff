"""The `atbench` argument parser: every command and option, each value parsed by a bounded type
(`benchmark.commands.arguments`) before any work."""
from __future__ import annotations

import argparse

from benchmark.commands import arguments as arg
from benchmark.commands import data_command
from benchmark.core.workspace import default

DEFAULT_TRACK = "mnist5k-cnn"
#: The help text's note on where a default folder lies (`benchmark.core.workspace`).
HERE = "under the current folder"


def _folder_help(what: str, kind: str) -> str:
    return f"{what} (default: {default(kind)} {HERE})"


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
                       help="folder with local data sets (default: $ATBENCH_DATA_DIR, else data "
                            f"{HERE})")
        p.add_argument("--runs-dir", default=default("runs"), type=arg.folder,
                       help=_folder_help("where checkpoints, logs and each run's record go", "runs"))
        p.add_argument("--jobs", type=arg.jobs, default=None, metavar="N",
                       help="worker processes (default: one per CPU core, one on a GPU); CPU jobs are "
                            "single-threaded, so results do not depend on N")
        p.add_argument("--no-wait", action="store_true",
                       help="stop with an error, instead of waiting, when another atbench process is working "
                            "in the same --runs-dir")
    p.add_argument("--protocol", default=None, metavar="ID_OR_PATH", type=arg.protocol,
                   help="use this protocol (an id or a .toml file) instead of the track's; "
                        "each protocol has its own records folder and board")
    p.add_argument("--records-dir", default=default("records"), type=arg.folder,
                   help=_folder_help("where records are published, <records-dir>/<protocol>/", "records"))
    p.add_argument("--boards-dir", default=default("boards"), type=arg.folder,
                   help=_folder_help("where boards are written, <boards-dir>/<protocol>.md|json|html|png", "boards"))
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or per-epoch lines")


_BESIDE_RECORDS_DIR = "the attack_records folder beside --records-dir: ./leaderboard/attack_records beside " \
                     "./leaderboard/records"


def _attack_records(p: argparse.ArgumentParser, what: str, default_folder: str = _BESIDE_RECORDS_DIR) -> None:
    p.add_argument("--attack-records-dir", default=None, type=arg.folder,
                   help=f"{what} <attack-records-dir>/<protocol>/ (docs/attacks.md): each is admitted against its "
                        f"entry, and a missing folder holds none (default: {default_folder})")


def _official(p: argparse.ArgumentParser) -> None:
    p.add_argument("--with-official", action="store_true",
                   help="build the board from the official records shipped with atbench as well as "
                        "--records-dir's: your entries beside the official ones (each record admitted, "
                        "with the official attack records of the official entries; nothing is copied)")


def _fast_path(p: argparse.ArgumentParser, compile: bool, precision: bool) -> None:
    p.add_argument("--fast-path", choices=["auto", "on", "off"], default="auto",
                   help="the GPU fast path (benchmark/pipeline/fastpath.py): training data and augmentation on the "
                        "device, channels_last, bf16 autocast for training; evaluation uses only the "
                        "channels_last layout. auto (default): on for CUDA, off on the CPU; on forces it (records "
                        "and train.json say so, and a fast-path run never reuses a plain run's checkpoint)")
    if compile:
        p.add_argument("--compile", action="store_true", help="torch.compile the model for training (GPU fast path)")
    if precision:
        p.add_argument("--eval-precision", choices=["fp32", "bf16"], default="fp32",
                       help="precision of the attacks' search (default fp32); every adversarial example is "
                            "re-checked in fp32, and bf16 records say so in their attacks entries")


def _commands(sub) -> None:
    run = sub.add_parser("run", help="train + evaluate every (defense, seed) on a track, then write the board")
    _common(run)
    _official(run)
    _attack_records(run, "the attack records that give the board's entries their best-known worst case,")
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
    _official(evaluate)
    _attack_records(evaluate, "the attack records that give the board's entries their best-known worst case,")
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
    board = sub.add_parser("leaderboard", help="rebuild a protocol's board (the track's, or --protocol's) from its "
                                               "published records")
    _common(board, defenses=False)
    _official(board)
    _attack_records(board, "the attack records that give the board's entries their best-known worst case (and "
                           "the attack board, <boards-dir>/<protocol>.attacks.md|json|html),")
    tune = sub.add_parser("tune", help="train and score each defense's declared search space on the validation split "
                                       "and write its sweep record (the track takes the winner)")
    _common(tune)
    tune.add_argument("--sweeps-dir", default=default("sweeps"), type=arg.folder,
                      help=_folder_help("where the sweep records are written, <sweeps-dir>/<track>/<defense>.json|md "
                                        "(the tracks' own settings come from the sweeps shipped with atbench)",
                                        "sweeps"))
    tune.add_argument("--extend", action="store_true",
                      help="apply the grid-edge rule to the sweep records already in --sweeps-dir (same harness, "
                           "recipe and declared settings) without training their settings again")
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
                       help=f"folder with local data sets (default: $ATBENCH_DATA_DIR, else data {HERE})")
    bench.add_argument("--runs-dir", default=default("runs"), type=arg.folder,
                       help=_folder_help("where the trained run is", "runs"))
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
                        help="the evaluated checkpoint (default: <runs-dir>/<track>/<defense>/seed<k>/best.pt, "
                             "else the official checkpoint shipped with atbench for the record's entry)")
    verify.add_argument("--runs-dir", default=default("runs"), type=arg.folder,
                        help=_folder_help("where the run was trained", "runs"))
    verify.add_argument("--points", type=arg.points, default=40, help="points re-evaluated (default: 40)")
    verify.add_argument("--tolerance", type=arg.fraction, default=0.05,
                        help="largest allowed gap of any (attack, eps) robust accuracy on those points (default: 0.05)")
    verify.add_argument("--device", default="cpu", type=arg.device, help="torch device (default: cpu)")
    verify.add_argument("--data-dir", default=None, type=arg.folder,
                        help=f"folder with local data sets (default: $ATBENCH_DATA_DIR, else data {HERE})")
    verify.add_argument("-q", "--quiet", action="store_true", help="no per-attack lines")
    verify.add_argument("--model", default=None, metavar="SPEC",
                        help="the module:callable of an external model's record: its code is imported only when "
                             "named here")
    _defense_file(verify)
    regress = sub.add_parser("regress", help="compare current results (a run of the track, or --current) with "
                                             "reference ones per defense, seed, attack and eps; exit 1 on a "
                                             "regression", conflict_handler="resolve")
    _common(regress)  # the options below replace the common ones of the same name: regress means more by them
    regress.add_argument("--defense", action="append", dest="defenses", metavar="NAME", type=arg.slug("defense"),
                         help="compare only this defense, repeatable (default: every defense of the reference; when "
                              "running the track, those of them atbench can train here)")
    regress_seeds = regress.add_mutually_exclusive_group()
    regress_seeds.add_argument("--seed", action="append", type=arg.seed, dest="seeds", metavar="K",
                               help="seed in 0..2^31-1, repeatable: the seeds trained and evaluated (default: the "
                                    "track's), or with --current the seeds compared (default: all); only seeds both "
                                    "sides hold are compared, and a line names them and those left out")
    regress_seeds.add_argument("--seeds", type=arg.seed_count, dest="seed_count", metavar="N",
                               help="seeds 0..N-1, as --seed")
    regress.add_argument("--runs-dir", default=default("runs"), type=arg.folder,
                         help=_folder_help("where the runs' checkpoints, logs and records go, and (unless "
                                           "--records-dir/--boards-dir) regress's own records and board, "
                                           "<runs-dir>/regress/records|boards", "runs"))
    regress.add_argument("--records-dir", default=None, type=arg.folder,
                         help="where regress publishes the current records, <records-dir>/<protocol>/, replacing "
                              "its earlier ones (default: <runs-dir>/regress/records)")
    regress.add_argument("--boards-dir", default=None, type=arg.folder,
                         help="where regress writes the board of those records (default: <runs-dir>/regress/boards)")
    regress.add_argument("--against", required=True, metavar="PATH", type=arg.existing_path,
                         help="the reference: a records folder, a record, or a board JSON (a board holds means over "
                              "its seeds: the current results must be of exactly those seeds)")
    regress.add_argument("--current", default=None, metavar="PATH", type=arg.existing_path,
                         help="read the current results from here (same kinds) instead of training and evaluating the "
                              "track; the options that only steer a run (--track, --protocol, --defense-file, "
                              "--device, --jobs, the folders) then have no effect")
    regress.add_argument("--tolerance", type=arg.fraction, default=0.02,
                         help="without --alpha: a drop (rise) of more than this, a number in [0, 1], is a regression "
                              "(an improvement); a smaller change is 'within tolerance' (default: 0.02)")
    regress.add_argument("--alpha", type=arg.level, default=None,
                         help="instead of --tolerance: a drop (rise) is a regression (an improvement) only if a paired "
                              "test on both sides' per-example flags finds it significant at this level "
                              "(Holm-corrected; needs records), otherwise 'not significant'")
    regress.add_argument("--junit", default=None, metavar="PATH", type=arg.output_file,
                         help="also write the comparison as JUnit XML (a test per defense and metric, a failure per "
                              "regression)")
    regress.add_argument("--all", action="store_true", dest="show_all",
                         help="list unchanged metrics too (default: only the changed ones)")
    compare = sub.add_parser("compare", help="paired comparison of two defenses, records or board entries on one "
                                             "protocol: per attack and eps, the difference, its interval and p-value")
    compare.add_argument("a", metavar="A", help="a defense name, a record file, or BOARD.json:NAME")
    compare.add_argument("b", metavar="B", help="the same kinds")
    _track(compare)
    compare.add_argument("--protocol", default=None, metavar="ID_OR_PATH", type=arg.protocol,
                         help="the protocol (default: the track's)")
    compare.add_argument("--records-dir", default=None, type=arg.folder,
                         help="where a defense name's records are looked up, <records-dir>/<protocol>/ (default: "
                              f"{default('records')} {HERE}, else the official records shipped with atbench; a "
                              "BOARD.json:NAME entry is looked up in the records folder beside the board's folder "
                              "first)")
    compare.add_argument("--format", choices=["md", "json"], default="md", help="output format (default: md)")
    compare.add_argument("--require-better", action="store_true",
                         help="exit 1 unless A is significantly better than B on the worst case at the primary eps")
    validate = sub.add_parser("validate", help="the checks a submitted defense must pass (on synthetic-tiny): "
                                               "PASS/FAIL per check, exit 1 when any fails")
    validate.add_argument("defense", type=arg.slug("defense"), help="the defense id")
    _defense_file(validate)
    validate.add_argument("-q", "--quiet", action="store_true", help="no per-attack lines")
    _attack_commands(sub)
    export = sub.add_parser("export", help="export records: RobustBench model_info entries, or the record JSON Schema")
    export.add_argument("format", choices=["robustbench", "json-schema"])
    export.add_argument("records", nargs="*", metavar="PATH", type=arg.existing_path,
                        help="robustbench: records or records folders")
    export.add_argument("--out", required=True, metavar="PATH", type=arg.output_path,
                        help="robustbench: the output folder; json-schema: the output file")
    _attack_records(export, "robustbench: the attack records of the exported records, whose best-known worst case "
                            "fills `external` when a submitted attack broke points beyond the protocol,",
                    "the attack_records folder beside each exported record's records folder: "
                    "<root>/attack_records for <root>/records/<protocol>/<entry>.json")
    data_command.add_parser(sub)
    ls = sub.add_parser("ls", help="list registered names")
    ls.add_argument("what", nargs="?", default="all",
                    choices=["all", "defenses", "attacks", "tracks", "datasets", "models", "protocols"])


VALIDATE_ATTACK_DESCRIPTION = (
    "Runs the attack with its default Config on 20 synthetic test points against a small CNN trained here. "
    "Checked: interface (an attacks.base.Attack subclass with perturb, the base __call__, a frozen AttackConfig "
    "whose repr shows every field, a Linf or L2 norm); input-range (outputs in [0, 1]) and budget (outputs in the "
    "eps ball, tolerance attacks.base.BUDGET_TOL) at three eps per norm; seed (the same seed twice gives "
    "bit-identical outputs; another seed may differ); labels-of-others (an example's output is unchanged when the "
    "other examples' labels change); labels-copy (an equal copy of the label tensor gives the same output, and "
    "neither x nor y is modified in place). Not checkable, left to review: that labels are used only in the "
    "attack's own loss beyond those two consequences (it may still read files, globals or the data set), its "
    "strength or fidelity to its paper, determinism on other devices or thread counts, and the budget on models "
    "and eps not tried (every call in a run asserts it). docs/attacks.md.")


def _attack_file(p: argparse.ArgumentParser) -> None:
    p.add_argument("--attack-file", action="append", dest="attack_files", default=[], metavar="PATH",
                   type=arg.existing_file,
                   help="a .py file whose attacks (registered with attacks.submitted.register) become available by "
                        "name, repeatable")


def _attack_commands(sub) -> None:
    attack = sub.add_parser("attack", help="run a submitted attack against every board entry whose model is at "
                                           "hand (or an external --model), on the protocol's points and eps, and "
                                           "write an attack record per entry")
    _track(attack)
    attack.add_argument("--attack", required=True, type=arg.slug("attack"), metavar="NAME",
                        help="the submitted attack (`atbench ls attacks`: atbench's adaptive attacks, an "
                             "--attack-file's, an installed package's)")
    _attack_file(attack)
    _defense_file(attack)
    attack.add_argument("--protocol", default=None, metavar="ID_OR_PATH", type=arg.protocol,
                        help="the board's protocol (an id or a .toml file; default: the track's)")
    attack.add_argument("--runs-dir", default=default("runs"), type=arg.folder,
                        help=_folder_help("where the entries' trained runs are", "runs"))
    attack.add_argument("--records-dir", default=default("records"), type=arg.folder,
                        help=_folder_help("where the board's records are, <records-dir>/<protocol>/", "records"))
    attack.add_argument("--attack-records-dir", default=None, type=arg.folder,
                        help="where the attack records go, <attack-records-dir>/<protocol>/<attack>--<defense>-"
                             "seed<k>.json|flags.npz (default: the attack_records folder beside --records-dir, "
                             "where the board of those records reads them: ./leaderboard/attack_records beside "
                             "./leaderboard/records)")
    attack.add_argument("--with-official", action="store_true",
                        help="attack the official entries shipped with atbench as well as --records-dir's, with "
                             "the official checkpoints shipped beside them (nothing to train); their attack records "
                             "go to --attack-records-dir, where `atbench leaderboard --with-official` reads them")
    attack.add_argument("--model", default=None, metavar="SPEC",
                        help="attack this external model's entry instead of the trained runs: module:callable or a "
                             "registered architecture (with --checkpoint), as `atbench eval --model` evaluated it")
    attack.add_argument("--checkpoint", default=None, metavar="PATH", type=arg.existing_file,
                        help="weights for --model (a state_dict, loaded weights-only)")
    attack.add_argument("--name", default=None, type=arg.slug("model"),
                        help="the --model entry's board name (default: as `atbench eval` names it)")
    attack.add_argument("--device", default="cpu", type=arg.device,
                        help="torch device: cpu, cuda, cuda:N (default: cpu)")
    attack.add_argument("--data-dir", default=None, type=arg.folder,
                        help=f"folder with local data sets (default: $ATBENCH_DATA_DIR, else data {HERE})")
    attack.add_argument("-q", "--quiet", action="store_true", help="no per-entry log lines")
    check = sub.add_parser("validate-attack", help="the checks a submitted attack must pass (input range, budget, "
                                                   "determinism under its seed, labels used per example): PASS/FAIL "
                                                   "per check, exit 1 when any fails",
                           description=VALIDATE_ATTACK_DESCRIPTION)
    check.add_argument("attack", type=arg.slug("attack"), help="the submitted attack's name")
    _attack_file(check)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `atbench`."""
    parser = arg.Parser(prog="atbench", description="Benchmark adversarial-training defenses under one "
                                                    "training harness and a fixed, versioned attack protocol.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=arg.Parser)
    _commands(sub)
    return parser
