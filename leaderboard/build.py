"""The leaderboard: a pure function of the admitted records and their flags (and of the admitted
attack records of its entries, `leaderboard.attack_admission`), written as JSON, Markdown
(`leaderboard.markdown`) and PNG plots; with attack records, also the attack board
(`leaderboard.attack_board`)."""
from __future__ import annotations

import copy
import json
import math
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from benchmark.core.errors import AtbenchError
from benchmark.core.io import atomic_write_bytes, dumps_json
from leaderboard.admission import admit
from leaderboard.attack_admission import AdmittedAttack, admitted_attacks
from leaderboard.attack_board import (
    ATTACK_BOARD_JSON,
    ATTACK_BOARD_SUFFIXES,
    attack_board_files,
    build_attack_board,
    has_attack_board,
)
from leaderboard.attack_record import attack_records_beside
from leaderboard.best_known import entry_best_known
from leaderboard.claims import board_claims
from leaderboard.entry_cost import entry_cost, pareto_front
from leaderboard.evaluation_setting import check_one_setting
from leaderboard.evidence import (
    ALPHA,
    BOOTSTRAP_SEED,
    REPLICATES,
    Admitted,
    attack_gain,
    check_same_points,
    entry_evidence,
    pair_replicates,
    significance,
    tied_ranks,
)
from leaderboard.flags import SANITY_FLAGS, board_detail
from leaderboard.formats import DIGITS
from leaderboard.html import render_board_page, render_index
from leaderboard.input_margins import consistent_margins
from leaderboard.markdown import render_markdown
from leaderboard.plot import plot_classwise, plot_cost, plot_robustness, plot_significance
from leaderboard.record import validate_record
from leaderboard.records import find_records
from leaderboard.tuning import tuning_summary
from leaderboard.view import board_view


def _r(x: float) -> float:
    return round(x, DIGITS)


def _mean(values: list[float]) -> float:
    """Mean that does not depend on the order of `values` (fsum is exactly rounded)."""
    return math.fsum(values) / len(values)


def _meta(rec: dict) -> dict:
    d = rec["defense"]
    return {"architecture": rec["architecture"], "fidelity": fidelity(d), "config": d["config"],
            "recipe_overrides": d["recipe_overrides"], "paper": d["paper"], "venue": d["venue"],
            "link": d["link"], "external": d["external"], "sweep": d["sweep"]}


def fidelity(defense: dict) -> dict[str, str]:
    """How closely an entry follows its paper, in two parts: the loss ("reference": it matches the
    authors' code; "our-reading": the paper's text; "external": a model trained outside atbench)
    and the recipe ("track": the track's common recipe with the entry's overrides, never the
    paper's own schedule; "own": an external model's). docs/defenses.md gives each paper's recipe."""
    if defense["external"]:
        return {"loss": "external", "recipe": "own"}
    return {"loss": defense["fidelity"], "recipe": "track"}


def _margins(items: list[Admitted], eps: list[str], primary: str) -> dict:
    """The input-margin numbers of an entry from its consistent margins
    (`leaderboard.input_margins`): the mean over seeds of the median, the share below half the
    primary eps, and the points (summed over seeds) whose searched margin an attack corrected."""
    found = [consistent_margins(it, eps) for it in items]
    half = float(Fraction(primary)) / 2
    return {"median_input_margin": _r(_mean([float(np.median(m.margins)) for m in found])),
            "frac_margin_below_half_primary": _r(_mean([float((m.margins < half).mean()) for m in found])),
            "margin_corrected": {"points": int(sum(int(m.corrected.sum()) for m in found)),
                                 "of": int(sum(len(m.margins) for m in found))}}


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


def _entry(defense: str, items: list[Admitted], eps: list[str], primary: str, attacks: list[str],
           submitted: Sequence[AdmittedAttack] = ()) -> dict:
    """One defense's board entry: every number is the mean over its seeds, with its evidence
    (`leaderboard.evidence`) and its best-known worst case from the admitted attack records of
    its seeds, `submitted` (`leaderboard.best_known.entry_best_known`; None without any)."""
    items = sorted(items, key=lambda it: it.record["seed"])
    recs = [it.record for it in items]
    seeds = [r["seed"] for r in recs]
    if len(set(seeds)) != len(seeds):
        raise AtbenchError(f"defense {defense} has several records for one seed (seeds {seeds})",
                           "keep one record per (track, defense, seed)")
    meta = _meta(recs[0])
    evidence_of = entry_evidence(items, eps, primary, attacks, recs[0]["num_classes"])
    per_class = {e: [_r(_mean([r["per_class"]["worst_case"][e][c] for r in recs]))
                     for c in range(recs[0]["num_classes"])] for e in eps}
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
        "best_known": entry_best_known(items, submitted),
        "per_class_worst_case": per_class,
        "worst_class_robust_acc": {e: per_class[e][evidence_of["worst_class"][e]] for e in eps},
        **_margins(items, eps, primary),
        "logit_margin_percentiles": {
            side: {p: _r(_mean([r["margins"]["logit"][f"{side}_percentiles"][p] for r in recs]))
                   for p in ("p10", "p50")}
            for side in ("clean", "adversarial")},
        "sanity_fired": _flag_details(recs, "fired"),
        "sanity_noted": {k: v for k, v in _flag_details(recs, "noted").items()
                         if k not in _flag_details(recs, "fired")},
        "certified_l2": _certified(recs),
        "attack_gain": attack_gain(items, primary, "pgd", attacks, recs[0]["num_classes"]),
        **evidence_of,
        "training": [r["training"] for r in recs],
        "tuning": tuning_summary(meta["sweep"]),
        "cost": entry_cost(recs),
        **copy.deepcopy({k: v for k, v in meta.items() if k != "config"}),
    }


def _flag_details(recs: list[dict], level: str) -> dict[str, dict]:
    """Sanity flags at `level` ("fired" or "noted") in any seed of a defense -> the first such
    seed's evidence: its detail (in the board's units, `leaderboard.flags.board_detail`), value,
    threshold and p-value."""
    found: dict[str, dict] = {}
    for r in sorted(recs, key=lambda r: r["seed"]):
        for name in SANITY_FLAGS:
            s = r["sanity"][name]
            if s[level] and name not in found:
                found[name] = {"seed": r["seed"], "detail": board_detail(s["detail"]), "value": s["value"],
                               "threshold": s["threshold"], "p_value": s["p_value"]}
    return found


def _certified(recs: list[dict]) -> dict | None:
    """Mean certified and L2-PGD accuracy per radius over the seeds; None unless every seed has them."""
    blocks = [r["certified_l2"] for r in recs]
    if any(b is None for b in blocks):
        return None
    return {radius: {"certified": _r(_mean([b["certified_acc"][radius] for b in blocks])),
                     "pgd_l2": _r(_mean([b["pgd_l2_acc"][radius] for b in blocks]))}
            for radius in blocks[0]["radii"]}


def build_json(admitted: list[Admitted], submitted: Sequence[AdmittedAttack] = ()) -> dict:
    """The JSON board of admitted records (one track and protocol version) and the admitted attack
    records of its entries; see `build`."""
    if not admitted:
        raise AtbenchError("no records to build a leaderboard from", "run `atbench run` first")
    records = [item.record for item in admitted]
    for i, r in enumerate(records):
        validate_record(r, source=f"records[{i}]")
    proto = _check_one_board(records)
    evaluation = check_one_setting(sorted(records, key=lambda r: (r["defense"]["id"], r["seed"])))
    check_same_points(admitted)
    eps, primary = proto["eps"], proto["primary_eps"]
    attacks = sorted(records[0]["robust_acc"])
    groups: dict[str, list[Admitted]] = {}
    for item in sorted(admitted, key=lambda it: it.record["seed"]):
        groups.setdefault(item.record["defense"]["id"], []).append(item)
    entries = [_entry(d, items, eps, primary, attacks, [a for a in submitted if a.record["entry"]["defense"] == d])
               for d, items in groups.items()]
    entries.sort(key=lambda x: (-x["worst_case"][primary], -x["clean_acc"], x["defense"]))
    order = [x["defense"] for x in entries]
    pairs = significance(groups, order, primary)
    ranks = tied_ranks(order, [x["worst_case"][primary] for x in entries], pairs)
    for x in entries:
        x["rank"] = ranks[x["defense"]]
    seeds = {x["n_seeds"] == 1 for x in entries}
    board = {
        "track": records[0]["track"],
        "protocol": {k: proto[k] for k in ("id", "version", "sha256", "norm", "n_examples")},
        "primary_eps": primary, "eps": list(eps), "attacks": attacks,
        "attack_groups": {g: list(m) for g, m in sorted(records[0]["attack_groups"].items())},
        "class_names": list(records[0]["class_names"]), "entries": entries,
        "statistics": statistics_block(seeds == {True}, seeds == {False}, len(pairs), evaluation),
        "significance": pairs,
        "claims": board_claims(groups, list(eps), primary, records[0]["num_classes"]),
        "cost_comparison": pareto_front(entries, primary),
    }
    board["view"] = board_view(board)
    return board


def statistics_block(one_seed: bool, all_seeded: bool, pairs: int, evaluation: str) -> dict:
    """What the board's intervals, tests and ranks are (docs/statistics.md): `one_seed` when every
    defense has one training seed, `all_seeded` when every one has several (else a mix); and
    the records' one `evaluation` setting (`leaderboard.evaluation_setting.describe`)."""
    wilson = "95% Wilson score interval over the test points"
    bootstrap = (f"95% two-level percentile bootstrap (training seeds, then test points; {REPLICATES} replicates, "
                 f"seed {BOOTSTRAP_SEED}), never narrower than one seed's Wilson interval at the mean")
    mcnemar = "exact McNemar test on the paired per-example worst-case flags at the primary eps"
    paired = (f"paired bootstrap over seeds and test points of the worst-case flags at the primary eps "
              f"({pair_replicates(pairs)} replicates, seed {BOOTSTRAP_SEED})")
    if one_seed:
        interval, test, variance = (f"{wilson} (one training seed per defense)", mcnemar,
                                    "not measured: one training seed per defense, so the intervals cover the "
                                    "test points only")
    elif all_seeded:
        interval, test, variance = (bootstrap, paired,
                                    "measured: the intervals take the seeds' spread in")
    else:
        interval = f"{wilson} for a defense with one training seed; {bootstrap} for one with several"
        test = f"{mcnemar} for two single-seed defenses; otherwise a {paired}"
        variance = "measured only for the defenses with several seeds (see the seeds column)"
    correction = f"Holm over all {pairs} pairs" if pairs > 1 else ("no correction (one pair)" if pairs else
                                                                   "none (one entry: no pair to compare)")
    return {"interval": interval, "comparison": test, "correction": correction, "alpha": ALPHA,
            "rank_rule": "rank = 1 + the number of entries significantly better at the primary eps, so entries "
                         "with the same count share a rank; ranks are tiers, not pairwise verdicts: two entries in "
                         "different tiers need not differ significantly from each other (the significance matrix says "
                         "which pairs do)",
            "training_variance": variance, "evaluation": evaluation}


def build(admitted: list[Admitted], submitted: Sequence[AdmittedAttack] = ()) -> tuple[str, dict]:
    """Build the leaderboard of admitted records (with their flags) and of the admitted attack
    records of its entries, `submitted` (`board_attacks`): a pure function (no I/O, no clock).

    All records must share one track, one protocol (id, version and content), one code version
    and the same test points. The seeds of a defense are averaged; entries are ordered by
    worst-case robust accuracy at the primary eps (descending), then clean accuracy, then
    defense id; a defense's rank is 1 + the number of defenses significantly better than it
    (paired tests, Holm-corrected), so ties share a rank. The output does not depend on the
    order of `admitted` or `submitted`. Submitted attacks change no rank: each entry gets a
    `best_known` block beside its worst case (None when no attack record names it).

    Returns:
        (markdown, board): the Markdown text and the JSON board (a dict of plain values).

    Raises:
        AtbenchError: no records, mixed tracks, protocols or evaluation settings (search precision,
            GPU fast path), two records for one (defense, seed),
            seeds of one defense with different configurations, or an invalid record.
    """
    board = build_json(admitted, submitted)
    return render_markdown(board), board


def board_files(markdown: str, board: dict, records: list[dict]) -> dict[str, bytes]:
    """Every file of a board, by suffix: the Markdown, the JSON, the web page (with every
    record's detail) and the plots (robust accuracy against eps, the class-wise heatmap, the
    significance heatmap, worst case against training cost)."""
    return {".md": markdown.encode(), ".json": dumps_json(board).encode(),
            ".html": render_board_page(board, records).encode(), ".png": plot_robustness(board),
            ".classwise.png": plot_classwise(board), ".significance.png": plot_significance(board),
            ".cost.png": plot_cost(board)}


def admitted_records(records_dir: str | Path, protocol: str, also: Sequence[str | Path] = ()) -> list[Admitted]:
    """The records of `protocol` under `records_dir` and the read-only record folders `also`
    (e.g. the official records shipped with atbench), each admitted
    (`leaderboard.admission.admit`). A file reached through two folders counts once.

    Raises:
        AtbenchError: there are none, or one fails its admission (named with its field).
    """
    roots = [Path(records_dir), *map(Path, also)]
    found, seen = [], set()
    for root in roots:
        for path, record in find_records(root, protocol):
            if path.resolve() not in seen:
                seen.add(path.resolve())
                found.append((path, record))
    if not found:
        where = " or ".join(str(root / protocol) for root in roots)
        raise AtbenchError(f"no records for protocol {protocol!r} under {where}",
                           f"run `atbench run` on its track (with `--protocol {protocol}` for a variant) first")
    return [Admitted(record, admit(record, path)) for path, record in found]


def board_attacks(attack_records_dir: str | Path | None, protocol: str, admitted: list[Admitted],
                  also: Sequence[str | Path] = ()) -> list[AdmittedAttack]:
    """Every attack record of `protocol` under `<attack_records_dir>/<protocol>/` and under the
    attack-records folder beside each read-only records folder in `also` (`attack_records_beside`:
    the official attack records beside the official records), each admitted against the board's
    admitted records (`leaderboard.attack_admission.admit_attack`); a file reached through two
    folders counts once; none when `attack_records_dir` is None, and a missing folder holds none.

    Raises:
        AtbenchError: the first attack record that is malformed, fails its admission, or names an
            entry (defense and seed) that is not on the board, naming its file.
    """
    if attack_records_dir is None:
        return []
    entries = {(it.record["defense"]["id"], it.record["seed"]): it for it in admitted}
    found: dict[Path, AdmittedAttack] = {}
    for folder in [Path(attack_records_dir), *map(attack_records_beside, also)]:
        for attack in admitted_attacks(folder, protocol, entries):
            found.setdefault(attack.path.resolve(), attack)
    return list(found.values())


def write_board(records_dir: str | Path, protocol: str, boards_dir: str | Path,
                also: Sequence[str | Path] = (), attack_records_dir: str | Path | None = None) -> list[Path]:
    """Build the board of `protocol` (a track's default protocol has the track's name) from
    `<records_dir>/<protocol>/` (and `<also>/<protocol>/` for each read-only records folder in
    `also`), each record admitted first (its flags file's hash and every number re-derived from
    it; nothing is written when one fails), atomically write `<boards_dir>/<protocol><suffix>`
    for every file of `board_files`, and rewrite the boards folder's `index.html`. Returns the
    board's paths.

    With `attack_records_dir`, the attack records of `<attack_records_dir>/<protocol>/` (and of the
    attack-records folder beside each folder in `also`) are admitted against the board's entries
    (`board_attacks`; a missing folder holds none) and give
    each entry its best-known worst case; when there are any (`has_attack_board`), the attack
    board is written too (`<protocol>.attacks.md`, `.json` and `.html`, `leaderboard.attack_board`),
    and when there are none an
    earlier attack board of the protocol is removed. Without it (None) attack records are not
    read, and an attack board already there is left as it is."""
    admitted = admitted_records(records_dir, protocol, also)
    submitted = board_attacks(attack_records_dir, protocol, admitted, also)
    markdown, board = build(admitted, submitted)
    files = board_files(markdown, board, [item.record for item in admitted])
    if has_attack_board(board):
        files.update(attack_board_files(build_attack_board(board, submitted)))
    paths = []
    for suffix, data in files.items():
        paths.append(Path(boards_dir) / f"{protocol}{suffix}")
        atomic_write_bytes(paths[-1], data)
    if attack_records_dir is not None and not has_attack_board(board):
        for suffix in ATTACK_BOARD_SUFFIXES:
            (Path(boards_dir) / f"{protocol}{suffix}").unlink(missing_ok=True)
    write_index([records_dir, *also], boards_dir)
    return paths


def write_index(records_dirs: Sequence[str | Path], boards_dir: str | Path) -> Path:
    """Rewrite `<boards_dir>/index.html`: every board JSON there (attack boards,
    `<protocol>.attacks.json`, left out), with the date of its newest record under any of
    `records_dirs` (the day it was last evaluated)."""
    boards = []
    for path in sorted(Path(boards_dir).glob("*.json")):
        if path.name.endswith(ATTACK_BOARD_JSON):  # an attack board, not a board of entries
            continue
        board = json.loads(path.read_text())
        found = [rec for root in records_dirs for _, rec in find_records(root, board["protocol"]["id"])]
        date = max((record["provenance"]["utc_time"][:10] for record in found), default="")
        boards.append((board, date))
    index = Path(boards_dir) / "index.html"
    atomic_write_bytes(index, render_index(boards).encode())
    return index
