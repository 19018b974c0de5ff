"""`atbench compare A B`: what a reviewer asks of a paper that claims to beat a baseline. For every
(attack, eps) and for the worst case, the paired difference A - B on the same test points, its
95% interval and its p-value (exact McNemar for one seed on each side, a paired bootstrap over
seeds and points otherwise; `leaderboard.evidence.compare`).

Each side is a defense name (its records under the records folder of the protocol: `--records-dir`,
else the workspace's `leaderboard/records`, else the official records shipped with atbench), a
record file, or a board entry written `BOARD.json:NAME` (the entry's records, found by the
board's protocol in the records folder beside the board's folder, then as a defense name). Both sides must be of one protocol and share their points.
"""
from __future__ import annotations

import json
from pathlib import Path

from benchmark.core.errors import AtbenchError
from benchmark.core.names import is_slug
from benchmark.core.workspace import default, official_records
from leaderboard.admission import admit
from leaderboard.evidence import (
    ALPHA,
    Admitted,
    check_same_points,
    column_flags,
    compare,
    worst_flags,
)
from leaderboard.formats import p_text
from leaderboard.markdown import table
from leaderboard.record import load_record
from leaderboard.records import find_records


def _of_defense(roots: list[Path], protocol: str, name: str) -> list[Admitted]:
    """The admitted records of `name` in the first of `roots` that holds any."""
    for root in roots:
        found = [Admitted(r, admit(r, p)) for p, r in find_records(root, protocol) if r["defense"]["id"] == name]
        if found:
            return found
    where = ", ".join(str(root / protocol) for root in roots)
    raise AtbenchError(f"no records of {name!r} under {where}",
                       "name an entry of that protocol's board, a record file, or BOARD.json:NAME; "
                       "--records-dir names the folder that holds <protocol>/ with its records")


def _roots(records_dir: str | Path | None) -> list[Path]:
    """Where defense names are looked up: --records-dir if given, else the workspace's records
    and then the official records shipped with atbench."""
    if records_dir is not None:
        return [Path(records_dir)]
    return [Path(default("records")), official_records()]


def _board_protocol(board: str) -> str:
    try:
        protocol = json.loads(Path(board).read_text())["protocol"]["id"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AtbenchError(f"{board} is not a board JSON ({exc!r})",
                           "pass leaderboard/boards/<protocol>.json:NAME") from exc
    if not isinstance(protocol, str) or not is_slug(protocol):
        raise AtbenchError(f"{board}: its protocol id {str(protocol)[:80]!r} is not a name",
                           "pass a board JSON written by `atbench leaderboard`")
    return protocol


def resolve(side: str, records_dir: str | Path | None, protocol: str) -> list[Admitted]:
    """The admitted records a side names (see the module docstring). A defense name is looked
    up under `records_dir` (default: the workspace's records, then the official ones); a
    `BOARD.json:NAME` entry first in the records folder beside the board's folder
    (`<board>/../../records`, the layout `atbench run` writes), then as a defense name.

    Raises:
        AtbenchError: the side names nothing that exists, or a record that fails admission.
    """
    board, sep, name = side.rpartition(":")
    if sep and board.endswith(".json") and Path(board).is_file():
        beside = Path(board).resolve().parent.parent / "records"
        return _of_defense([beside, *_roots(records_dir)], _board_protocol(board), name)
    if side.endswith(".json"):
        if not Path(side).is_file():
            raise AtbenchError(f"record {side} does not exist", "pass a record file, a defense name or BOARD.json:NAME")
        record = load_record(side)
        return [Admitted(record, admit(record, Path(side)))]
    if not is_slug(side):
        raise AtbenchError(f"{side!r} names no defense, record or board entry",
                           "pass a defense name, a record file or BOARD.json:NAME")
    return _of_defense(_roots(records_dir), protocol, side)


def comparison(a: list[Admitted], b: list[Admitted]) -> dict:
    """Every (attack, eps) row and the worst case of A - B, and the verdict on the worst case at
    the primary eps."""
    ra, rb = a[0].record, b[0].record
    if (ra["protocol"]["id"], ra["protocol"]["version"], ra["protocol"]["sha256"]) != (
            rb["protocol"]["id"], rb["protocol"]["version"], rb["protocol"]["sha256"]):
        raise AtbenchError(f"{ra['defense']['id']} is of protocol {ra['protocol']['id']} v{ra['protocol']['version']} "
                           f"and {rb['defense']['id']} of {rb['protocol']['id']} v{rb['protocol']['version']}",
                           "compare two results of one protocol")
    check_same_points([*a, *b])
    eps, primary = ra["protocol"]["eps"], ra["protocol"]["primary_eps"]
    rows = [{"attack": attack, "eps": e, **compare(a, b, lambda it, at=attack, e=e: column_flags(it, at, e))}
            for attack in sorted(ra["robust_acc"]) for e in eps]
    rows += [{"attack": "worst case", "eps": e, **compare(a, b, lambda it, e=e: worst_flags(it, e))} for e in eps]
    decisive = next(r for r in rows if r["attack"] == "worst case" and r["eps"] == primary)
    better = decisive["effect"] > 0 and decisive["p_value"] < ALPHA
    return {"a": {"name": ra["defense"]["id"], "seeds": len(a)}, "b": {"name": rb["defense"]["id"], "seeds": len(b)},
            "protocol": {k: ra["protocol"][k] for k in ("id", "version", "n_examples")}, "primary_eps": primary,
            "test": "exact McNemar" if len(a) == len(b) == 1 else "paired bootstrap over seeds and points",
            "alpha": ALPHA, "rows": rows, "a_significantly_better": better}


def markdown(result: dict) -> str:
    """The comparison as a Markdown table and its verdict."""
    a, b = result["a"]["name"], result["b"]["name"]
    rows = [[r["attack"], r["eps"], f"{r['effect'] * 100:+.2f}", f"[{r['low'] * 100:+.2f}, {r['high'] * 100:+.2f}]",
             p_text(r["p_value"])] for r in result["rows"]]
    verdict = "is" if result["a_significantly_better"] else "is not"
    return "\n".join([
        f"# {a} vs {b} (protocol {result['protocol']['id']} v{result['protocol']['version']}, "
        f"{result['protocol']['n_examples']} points; {result['a']['seeds']} vs {result['b']['seeds']} seeds)", "",
        f"Difference {a} minus {b} in robust accuracy (points), 95% interval (paired bootstrap) and p-value "
        f"({result['test']}, not corrected for the {len(rows)} rows).", "",
        table(["attack", "eps", "difference", "95% interval", "p"], rows, "llrrr"), "",
        f"On the worst case at eps={result['primary_eps']}, {a} {verdict} significantly better than {b} "
        f"(alpha {result['alpha']}).", ""])
