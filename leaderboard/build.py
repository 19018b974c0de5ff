"""The leaderboard: a pure function of the records, written as Markdown, JSON and a PNG plot."""
from __future__ import annotations

import copy
import json
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

from tabulate import tabulate

from benchmark.core.errors import AtbenchError
from benchmark.core.io import atomic_write_bytes, atomic_write_text, dumps_json
from leaderboard.admission import admit
from leaderboard.flags import FLAG_DOCS, SANITY_FLAGS
from leaderboard.plot import plot_classwise, plot_robustness
from leaderboard.record import validate_record
from leaderboard.records import find_records

DIGITS = 4


def _r(x: float) -> float:
    return round(x, DIGITS)


def _mean(values: list[float]) -> float:
    """Mean that does not depend on the order of `values` (fsum is exactly rounded)."""
    return math.fsum(values) / len(values)


def _meta(rec: dict) -> dict:
    d = rec["defense"]
    return {"architecture": rec["architecture"], "fidelity": d["fidelity"], "config": d["config"],
            "recipe_overrides": d["recipe_overrides"], "paper": d["paper"], "venue": d["venue"],
            "link": d["link"], "external": d["external"]}


def _check_one_board(records: list[dict]) -> dict:
    """The shared protocol of `records`; raises if they mix tracks, protocols or attack columns."""
    tracks = sorted({r["track"] for r in records})
    if len(tracks) > 1:
        raise AtbenchError(f"the records mix tracks: {', '.join(tracks)}",
                           "build one board per track, from that track's records only")
    protos = sorted({(r["protocol"]["id"], r["protocol"]["version"]) for r in records})
    if len(protos) > 1:
        names = ", ".join(f"{pid} v{ver}" for pid, ver in protos)
        raise AtbenchError(
            f"the {tracks[0]} records mix protocols: {names} (leaderboards never mix protocol versions)",
            f"re-run the older records under the current protocol (`atbench run --track {tracks[0]}`) "
            "or move the old version's records out of the records directory",
        )
    first = records[0]
    for r in records:
        if r["versions"] != first["versions"]:
            raise AtbenchError(
                f"records of protocol {protos[0][0]} v{protos[0][1]} were made by different atbench code "
                f"({r['defense']['id']} seed {r['seed']}: {r['versions']}; {first['defense']['id']} seed "
                f"{first['seed']}: {first['versions']})",
                "re-run the older records with this atbench (`atbench run` re-evaluates records of another "
                "evaluation version)",
            )
        if (r["protocol"] != first["protocol"] or set(r["robust_acc"]) != set(first["robust_acc"])
                or r["class_names"] != first["class_names"]):
            raise AtbenchError(
                f"records of protocol {protos[0][0]} v{protos[0][1]} disagree on its content "
                f"({r['defense']['id']} seed {r['seed']} vs {first['defense']['id']} seed {first['seed']}): "
                "sha256, eps, attacks, n_examples or class names differ",
                "a changed protocol must bump its version; re-run the stale records with `atbench run`",
            )
    return first["protocol"]


def _entry(defense: str, recs: list[dict], eps: list[str], attacks: list[str]) -> dict:
    """One defense's board entry: every number is the mean over its seeds."""
    seeds = sorted(r["seed"] for r in recs)
    if len(set(seeds)) != len(seeds):
        raise AtbenchError(f"defense {defense} has several records for one seed (seeds {seeds})",
                           "keep one record per (track, defense, seed)")
    meta = _meta(recs[0])
    for r in recs:
        if _meta(r) != meta:
            raise AtbenchError(
                f"the seeds of defense {defense} differ in config, architecture, recipe or paper "
                f"(seed {r['seed']} vs seed {recs[0]['seed']})",
                f"re-run every seed of {defense} with one configuration (`atbench run --defense {defense}`)",
            )
    return {
        "defense": defense, "n_seeds": len(seeds), "seeds": seeds,
        "clean_acc": _r(_mean([r["clean_acc"] for r in recs])),
        "robust_acc": {a: {e: _r(_mean([r["robust_acc"][a][e] for r in recs])) for e in eps} for a in attacks},
        "worst_case": {e: _r(_mean([r["worst_case"][e] for r in recs])) for e in eps},
        "worst_class_robust_acc": {e: _r(_mean([r["classwise"][e]["worst_class_acc"] for r in recs]))
                                   for e in eps},
        "per_class_worst_case": {e: [_r(_mean([r["per_class"]["worst_case"][e][c] for r in recs]))
                                     for c in range(recs[0]["num_classes"])] for e in eps},
        "median_input_margin": _r(_mean([r["margins"]["input"]["median"] for r in recs])),
        "frac_margin_below_half_primary": _r(_mean([r["margins"]["input"]["frac_below_half_primary"] for r in recs])),
        "sanity_fired": _fired(recs),
        "certified_l2": _certified(recs),
        **copy.deepcopy({k: v for k, v in meta.items() if k != "config"}),
    }


def _fired(recs: list[dict]) -> dict[str, str]:
    """Sanity flags fired in any seed of a defense -> the detail of the first seed that fired it."""
    fired: dict[str, str] = {}
    for r in sorted(recs, key=lambda r: r["seed"]):
        for name in SANITY_FLAGS:
            if r["sanity"][name]["fired"] and name not in fired:
                fired[name] = f"seed {r['seed']}: {r['sanity'][name]['detail']}"
    return fired


def _certified(recs: list[dict]) -> dict | None:
    """Mean certified and L2-PGD accuracy per radius over the seeds; None unless every seed has them."""
    blocks = [r["certified_l2"] for r in recs]
    if any(b is None for b in blocks):
        return None
    return {radius: {"certified": _r(_mean([b["certified_acc"][radius] for b in blocks])),
                     "pgd_l2": _r(_mean([b["pgd_l2_acc"][radius] for b in blocks]))}
            for radius in blocks[0]["radii"]}


def build_json(records: list[dict]) -> dict:
    """The JSON board of `records` (one track and protocol version); see `build`."""
    if not records:
        raise AtbenchError("no records to build a leaderboard from", "run `atbench run` first")
    for i, r in enumerate(records):
        validate_record(r, source=f"records[{i}]")
    proto = _check_one_board(records)
    eps, primary = proto["eps"], proto["primary_eps"]
    attacks = sorted(records[0]["robust_acc"])
    by_defense: dict[str, list[dict]] = {}
    for r in records:
        by_defense.setdefault(r["defense"]["id"], []).append(r)
    entries = [_entry(d, recs, eps, attacks) for d, recs in by_defense.items()]
    entries.sort(key=lambda x: (-x["worst_case"][primary], -x["clean_acc"], x["defense"]))
    for i, x in enumerate(entries):
        prev = entries[i - 1] if i else None
        tied = prev is not None and (prev["worst_case"][primary], prev["clean_acc"]) == (
            x["worst_case"][primary], x["clean_acc"])
        x["rank"] = prev["rank"] if tied else i + 1
    return {
        "track": records[0]["track"],
        "protocol": {k: proto[k] for k in ("id", "version", "sha256", "norm", "n_examples")},
        "primary_eps": primary, "eps": list(eps), "attacks": attacks,
        "class_names": list(records[0]["class_names"]), "entries": entries,
    }


def _pct(x: float) -> str:
    """A fraction (already rounded to DIGITS) as an exact percentage with DIGITS-2 decimals."""
    return f"{Decimal(repr(x)).scaleb(2):.{DIGITS - 2}f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _defense_cell(x: dict) -> str:
    if x["external"]:
        return _cell(f"{x['defense']} (external model)")
    if not x["link"]:
        return _cell(x["defense"])
    link = x["link"].replace(" ", "%20").replace("(", "%28").replace(")", "%29")
    return _cell(f"[{x['defense']}]({link})")


_FLAG_MARK = {name: chr(ord("a") + i) for i, name in enumerate(SANITY_FLAGS)}


def _flag_marks(fired: dict[str, str]) -> str:
    return " ".join(f"[{_FLAG_MARK[n]}]" for n in SANITY_FLAGS if n in fired) or "-"


def _overrides(overrides: dict[str, Any]) -> str:
    if not overrides:
        return "-"
    items = (f"{k}={v if isinstance(v, str) else json.dumps(v, sort_keys=True, separators=(',', ':'))}"
             for k, v in sorted(overrides.items()))
    return _cell(", ".join(items))


def _table(headers: list[str], rows: list[list[str]], align: str) -> str:
    """A GitHub table; `align` has one letter per column: l(eft) or r(ight)."""
    colalign = ["left" if a == "l" else "right" for a in align]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True, colalign=colalign)


def render_markdown(board: dict) -> str:
    """The Markdown form of a JSON board (from `build_json`)."""
    p, primary, eps, attacks = board["protocol"], board["primary_eps"], board["eps"], board["attacks"]
    entries = board["entries"]
    main_headers = (["rank", "defense", "seeds", "clean (%)"] + [f"{a} (%)" for a in attacks]
                    + ["worst case (%)", "worst class (%)", "median margin", "flags", "fidelity",
                       "recipe overrides", "architecture"])
    main_rows = [
        [str(x["rank"]), _defense_cell(x), str(x["n_seeds"]), _pct(x["clean_acc"])]
        + [_pct(x["robust_acc"][a][primary]) for a in attacks]
        + [_pct(x["worst_case"][primary]), _pct(x["worst_class_robust_acc"][primary]),
           f"{x['median_input_margin']:.4f}", _flag_marks(x["sanity_fired"]),
           _cell(x["fidelity"]), _overrides(x["recipe_overrides"]), _cell(x["architecture"])]
        for x in entries
    ]
    main = _table(main_headers, main_rows, "rlrr" + "r" * len(attacks) + "rrrllll")
    certified = [x for x in entries if x["certified_l2"]]
    radii = list(certified[0]["certified_l2"]) if certified else []
    certified_table = _table(
        ["rank", "defense"] + [f"L2 r={r}: certified / PGD (%)" for r in radii],
        [[str(x["rank"]), _cell(x["defense"])]
         + [f"{_pct(x['certified_l2'][r]['certified'])} / {_pct(x['certified_l2'][r]['pgd_l2'])}" for r in radii]
         for x in certified], "rl" + "r" * len(radii)) if certified else ""
    flagged = [f"- **{x['defense']}**: [{_FLAG_MARK[name]}] `{name}`: {_cell(detail)}"
               for x in entries for name, detail in x["sanity_fired"].items()]
    eps_rows = [[str(x["rank"]), _cell(x["defense"]), _pct(x["clean_acc"])]
                + [_pct(x["worst_case"][e]) for e in eps] for x in entries]
    per_eps = _table(["rank", "defense", "clean"] + [f"eps={e}" for e in eps], eps_rows, "rlr" + "r" * len(eps))
    n = p["n_examples"]
    return "\n".join([
        f"# Leaderboard: {board['track']} (protocol {p['id']} v{p['version']})",
        "",
        f"Ranked by worst-case robust accuracy at eps={primary} ({p['norm']}), then clean accuracy, "
        f"then defense id. Accuracies in % of the protocol's {n} test points; robust columns at "
        f"eps={primary}; each number is the mean over the defense's seeds. "
        f"Protocol sha256 `{p['sha256']}`.",
        "",
        main,
        "",
        "## Sanity flags",
        "",
        *(flagged or ["No sanity flag fired."]),
        "",
        *(["## Certified L2 accuracy (LipLT bound) beside L2-PGD robust accuracy", "", certified_table, ""]
          if certified else []),
        "## Worst-case robust accuracy (%) per eps",
        "",
        per_eps,
        "",
        "## Class-wise worst-case robust accuracy",
        "",
        f"![Class-wise worst-case robust accuracy at eps={primary}]({p['id']}.classwise.png)",
        "",
        f"One row per defense in rank order, one column per class: the percentage of that class's test "
        f"points that survive every attack at eps={primary} (mean over seeds); a dark cell is a class the "
        "defense leaves exposed even when its overall number looks good.",
        "",
        "## How to read this board",
        "",
        "*Worst case*: a test point counts as robust only if it survives every attack column at "
        "that eps. *Worst class*: the lowest per-class worst-case robust accuracy (the class the "
        "defense protects least; with several seeds, the mean of each seed's worst class). "
        f"Accuracies are percentages of the protocol's {n} test points (the worst class: of that "
        "class's points), all taken from the committed records, which derive them from per-example "
        "flags; *seeds* is the number of training seeds averaged. *Fidelity* says how closely the "
        "implementation follows the paper; "
        "*recipe overrides* are the defense's departures from the track's training recipe. "
        f"*Median margin*: the median over test points of the smallest {p['norm']} eps at which PGD "
        "breaks a point (bisection; 0 for misclassified points, capped at twice the largest eps), an upper "
        "bound on the true margin. *Flags* mark suspicious evaluations: "
        + "; ".join(f"[{_FLAG_MARK[n]}] `{n}`: {FLAG_DOCS[n]}" for n in SANITY_FLAGS) + ".",
        "",
    ])


def build(records: list[dict]) -> tuple[str, dict]:
    """Build the leaderboard of `records`: a pure function (no I/O, no clock).

    All records must share one track and one protocol (id, version and content). The seeds of a
    defense are averaged; entries are ranked by worst-case robust accuracy at the primary eps
    (descending), then clean accuracy (descending), then defense id, on the numbers as shown
    (rounded to 4 decimals); entries equal on both numbers share a rank. The output does not
    depend on the order of `records`.

    Returns:
        (markdown, board): the Markdown text and the JSON board (a dict of plain values).

    Raises:
        AtbenchError: no records, mixed tracks or protocols, two records for one (defense, seed),
            seeds of one defense with different configurations, or an invalid record.
    """
    board = build_json(records)
    return render_markdown(board), board


def write_board(records_dir: str | Path, protocol: str, boards_dir: str | Path) -> list[Path]:
    """Build the board of `protocol` (a track's default protocol has the track's name) from
    `<records_dir>/<protocol>/`, each record admitted first (`leaderboard.admission.admit`: its
    flags file's hash and every number re-derived from it; nothing is written when one fails),
    and atomically write `<boards_dir>/<protocol>.md`, `.json`,
    `.png` (robust accuracy against eps) and `.classwise.png` (per-class heatmap). Returns those paths."""
    found = find_records(records_dir, protocol)
    if not found:
        raise AtbenchError(f"no records for protocol {protocol!r} under {Path(records_dir) / protocol}",
                           f"run `atbench run` on its track (with `--protocol {protocol}` for a variant) first")
    for path, record in found:
        admit(record, path)
    markdown, board = build([rec for _, rec in found])
    boards_dir = Path(boards_dir)
    paths = [boards_dir / f"{protocol}.md", boards_dir / f"{protocol}.json", boards_dir / f"{protocol}.png",
             boards_dir / f"{protocol}.classwise.png"]
    atomic_write_text(paths[0], markdown)
    atomic_write_text(paths[1], dumps_json(board))
    atomic_write_bytes(paths[2], plot_robustness(board))
    atomic_write_bytes(paths[3], plot_classwise(board))
    return paths
