"""`atbench data download NAME` and `atbench data ls`: fetch the real data sets into a data
folder and list what it holds (`benchmark.pipeline.datasets.download`)."""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from benchmark.commands import arguments as arg
from benchmark.pipeline.datasets.download import VERIFIED, download, status
from benchmark.pipeline.datasets.sources import SOURCES

_DATA_DIR_HELP = "the data folder (default: $ATBENCH_DATA_DIR or ./data)"


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the `data` command and its `download` and `ls` sub-commands to `sub`."""
    data = sub.add_parser("data", help="download the real data sets (mnist, cifar10, cifar100, svhn) or list them")
    actions = data.add_subparsers(dest="data_command", required=True, parser_class=arg.Parser)
    get = actions.add_parser("download", help="download a data set from its official source, check its sha256 and "
                                              "unpack it where its loader reads it (resumes a partial download)")
    get.add_argument("name", choices=sorted(SOURCES), help="the data set")
    get.add_argument("--data-dir", default=None, type=arg.folder, help=_DATA_DIR_HELP)
    get.add_argument("--mirror", default=None, metavar="URL",
                     help="fetch the files from this URL instead (each file's name is appended to it)")
    get.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    ls = actions.add_parser("ls", help="list the downloadable data sets: verified, present but unverified, or missing")
    ls.add_argument("--data-dir", default=None, type=arg.folder, help=_DATA_DIR_HELP)


def cmd_data(args: argparse.Namespace) -> int:
    """Run `atbench data download` or `atbench data ls`. Returns the exit code (0)."""
    if args.data_dir is not None:
        data_dir = Path(args.data_dir)
    else:
        from benchmark.pipeline.data import (
            default_data_dir,  # imports torch: only when needed
        )

        data_dir = default_data_dir()
    if args.data_command == "download":
        folder = download(args.name, data_dir, mirror=args.mirror, progress=not args.quiet)
        print(f"{args.name}: verified, in {folder}")
        return 0
    quoted = shlex.quote(str(data_dir))
    for name, state in status(data_dir).items():
        hint = "" if state == VERIFIED else f"  (get it: atbench data download {name} --data-dir {quoted})"
        print(f"{name:<9} {state:<22} {data_dir / SOURCES[name].folder}{hint}")
    return 0
