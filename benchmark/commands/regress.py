"""`atbench regress`: compare current results with reference results per defense, attack and eps.

Results are read from a records folder, a single record, or a board JSON. Each becomes, per
defense, the metrics `clean`, `<attack>@<eps>` and `worst_case@<eps>` (means over the defense's
seeds).

Seeds are compared with seeds: per defense, only the seeds both sides hold (and `--seed` names)
are compared, and a line names them and the seeds left out (`align_seeds`). A board JSON holds
means over its seeds, which cannot be limited: its seeds must be exactly the compared ones. A
defense with no seed in common stops the comparison (exit 2).

Two modes decide what changed:

- `--tolerance` (the default, 0.02): a drop of more than the tolerance is a regression, a rise
  of more than it an improvement, anything else is "within tolerance";
- `--alpha`: a drop (rise) that a paired test on both sides' per-example flags finds significant
  (exact McNemar for one seed on each side, a paired bootstrap otherwise; Holm-corrected over
  every compared metric) is a regression (an improvement), anything else "not significant", so
  that noise at the protocol's number of points is neither. It needs records on both sides.

A defense or metric of the reference missing from the current results is always a regression.
When `regress` runs the track itself, it publishes its records and board into scratch folders
it owns (`<runs-dir>/regress/records` and `.../boards`, or `--records-dir`/`--boards-dir`),
replacing its earlier results there, so a re-run after a change of the defense just works.
Both sides must be of one protocol (id, version and content). The comparison is printed as a
Markdown table and written as JUnit XML for CI systems.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from xml.etree import ElementTree

from benchmark.core.errors import AtbenchError
from benchmark.core.io import atomic_write_bytes
from leaderboard import stats
from leaderboard.admission import admit
from leaderboard.evidence import Admitted, column_flags, worst_flags
from leaderboard.evidence import compare as paired
from leaderboard.record import load_record

#: Default largest allowed drop of any accuracy (absolute).
TOLERANCE = 0.02

Metrics = dict[str, dict[str, float]]  # defense -> metric -> value


def metrics_of(entry: dict) -> dict[str, float]:
    """The compared metrics of one record or board entry (both have these fields)."""
    out = {"clean": float(entry["clean_acc"])}
    for attack, by_eps in entry["robust_acc"].items():
        out.update({f"{attack}@{eps}": float(v) for eps, v in by_eps.items()})
    out.update({f"worst_case@{eps}": float(v) for eps, v in entry["worst_case"].items()})
    return out


def _mean_over_seeds(per_seed: dict[str, list[dict[str, float]]]) -> Metrics:
    return {d: {k: sum(m[k] for m in ms) / len(ms) for k in ms[0]} for d, ms in per_seed.items()}


def _seed_list(seeds) -> str:
    return ", ".join(map(str, sorted(seeds)))


@dataclasses.dataclass(frozen=True)
class Results:
    """Results to compare: per-defense metrics and the protocol they were evaluated under.

    Attributes:
        source: where they were read from.
        protocol: (id, version, content sha256) of their protocol.
        metrics: defense -> metric -> value (means over seeds).
        items: defense -> its admitted records with their flags (None for a board JSON).
        seeds: defense -> the seeds its metrics are the mean over.
    """

    source: str
    protocol: tuple[str, int, str]
    metrics: Metrics
    items: dict[str, list[Admitted]] | None = None
    seeds: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)


def _of_items(source: str, protocol: tuple[str, int, str], items: dict[str, list[Admitted]]) -> Results:
    """Results of these records: per defense, their metrics averaged over its seeds."""
    metrics = _mean_over_seeds({d: [metrics_of(it.record) for it in its] for d, its in items.items()})
    seeds = {d: tuple(sorted(it.record["seed"] for it in its)) for d, its in items.items()}
    return Results(source, protocol, metrics, items, seeds)


def _protocol_of(block: dict, path: Path) -> tuple[str, int, str]:
    try:
        return str(block["id"]), int(block["version"]), str(block["sha256"])
    except (KeyError, TypeError, ValueError) as exc:
        raise AtbenchError(f"{path}: its protocol block lacks id, version or sha256 ({exc!r})",
                           "rebuild the board with `atbench leaderboard`") from exc


def _from_records(source: Path, files: list[Path]) -> Results:
    items: dict[str, list[Admitted]] = {}
    protocols = set()
    for f in files:
        record = load_record(f)
        protocols.add(_protocol_of(record["protocol"], f))
        items.setdefault(record["defense"]["id"], []).append(Admitted(record, admit(record, f)))
    if len(protocols) > 1:
        raise AtbenchError(f"the records in {source} mix protocols: {sorted(protocols)}",
                           "keep one protocol version per records folder")
    return _of_items(str(source), protocols.pop(), items)


def load_results(path: str | Path) -> Results:
    """Per-defense metrics from a records folder (`*.json` records of one protocol, each admitted
    with its flags), one record file, or a board JSON (`leaderboard/boards/<protocol>.json`)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.glob("*.json"))
        if not files:
            raise AtbenchError(f"{path} holds no records (*.json)", "pass a records folder, a record or a board JSON")
        return _from_records(path, files)
    if not path.is_file():
        raise AtbenchError(f"{path} does not exist", "pass a records folder, a record or a board JSON")
    try:
        body = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AtbenchError(f"{path} is not valid JSON ({exc})",
                           "pass a records folder, a record or a board JSON") from exc
    if isinstance(body, dict) and "entries" in body:
        try:
            return Results(str(path), _protocol_of(body["protocol"], path),
                           {e["defense"]: metrics_of(e) for e in body["entries"]}, None,
                           {e["defense"]: tuple(sorted(int(k) for k in e["seeds"])) for e in body["entries"]})
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise AtbenchError(f"{path}: a board entry lacks clean_acc, robust_acc, worst_case or seeds ({exc!r})",
                               "rebuild the board with `atbench leaderboard`") from exc
    return _from_records(path, [path])


def record_files(files: list[str | Path]) -> Results:
    """Per-defense metrics from these record files (each admitted with its flags beside it)."""
    return _from_records(Path(files[0]).parent, [Path(f) for f in files])


def defenses_to_run(reference: Results, named: list[str] | None, trainable: set[str]) -> list[str]:
    """The defenses a regress run trains: those `named`, else the reference's that atbench can
    train here (`trainable`; not its external models).

    Raises:
        AtbenchError: none named and none of the reference's is trainable here.
    """
    chosen = named or sorted(set(reference.metrics) & trainable)
    if not chosen:
        raise AtbenchError(f"the reference {reference.source} holds no defense atbench can train here "
                           f"({', '.join(sorted(reference.metrics))})",
                           "pass the defense's file with --defense-file, or compare with --current")
    return chosen


def planned(reference: Results, jobs: list[tuple[str, int]]) -> Results:
    """The results a run of these (defense, seed) jobs will produce, without numbers yet: what
    `compared_seeds` needs to refuse, before any training, a run that shares no seed with the
    reference."""
    seeds: dict[str, tuple[int, ...]] = {}
    for defense, seed in jobs:
        seeds[defense] = (*seeds.get(defense, ()), seed)
    return Results("this run", reference.protocol, {}, {}, seeds)


def compared_seeds(reference: Results, current: Results, defenses: list[str] | None = None,
                   wanted: set[int] | None = None) -> dict[str, tuple[int, ...]]:
    """Per defense that both sides hold (of `defenses`, default all), the seeds compared: those
    both sides hold and `wanted` names (default: any).

    Raises:
        AtbenchError: a defense with no such seed; or a board JSON side (means over its seeds,
            which cannot be limited) whose seeds are not exactly the compared ones.
    """
    out = {}
    for d in sorted(set(reference.seeds) & set(current.seeds)):
        if defenses is not None and d not in defenses:
            continue
        shared = set(reference.seeds[d]) & set(current.seeds[d])
        if wanted is not None:
            shared &= wanted
        asked = "" if wanted is None else f" and --seed names {_seed_list(wanted)}"
        if not shared:
            raise AtbenchError(f"{d}: the reference {reference.source} holds seeds {_seed_list(reference.seeds[d])}, "
                               f"the current results ({current.source}) seeds {_seed_list(current.seeds[d])}{asked}: "
                               "no seed to compare", "compare results of a seed both sides hold (--seed K)")
        for side in (reference, current):
            if side.items is None and set(side.seeds[d]) != shared:
                raise AtbenchError(f"{d}: the board {side.source} holds the mean over seeds "
                                   f"{_seed_list(side.seeds[d])}, which cannot be limited to the seeds compared "
                                   f"({_seed_list(shared)})",
                                   "compare records folders (they keep each seed), or results of the same seeds")
        out[d] = tuple(sorted(shared))
    return out


def _limited(results: Results, seeds: dict[str, tuple[int, ...]]) -> Results:
    """`results` with each defense of `seeds` limited to those seeds' records (a board JSON,
    already checked to hold exactly them, and other defenses are kept as they are)."""
    if results.items is None:
        return results
    items = {d: [it for it in its if d not in seeds or it.record["seed"] in seeds[d]]
             for d, its in results.items.items()}
    return _of_items(results.source, results.protocol, items)


def seed_lines(reference: Results, current: Results, seeds: dict[str, tuple[int, ...]]) -> list[str]:
    """One line per group of defenses alike: the seeds compared and the seeds of either side
    left out."""
    groups: dict[tuple, list[str]] = {}
    for d, shared in seeds.items():
        left = (tuple(sorted(set(reference.seeds[d]) - set(shared))),
                tuple(sorted(set(current.seeds[d]) - set(shared))))
        groups.setdefault((shared, *left), []).append(d)
    lines = []
    for (shared, ref_left, cur_left), names in groups.items():
        out = [f"{_seed_list(s)} of the {side}" for s, side in ((ref_left, "reference"), (cur_left, "current results"))
               if s]
        lines.append(f"seeds compared for {', '.join(names)}: {_seed_list(shared)}; left out: "
                     f"{'; '.join(out) if out else 'none'}")
    return lines


def align_seeds(reference: Results, current: Results, defenses: list[str] | None = None,
                wanted: set[int] | None = None) -> tuple[Results, Results, list[str]]:
    """Both sides limited, per defense, to the seeds compared (`compared_seeds`), and the lines
    that say which (`seed_lines`).

    Raises:
        AtbenchError: as `compared_seeds`.
    """
    seeds = compared_seeds(reference, current, defenses, wanted)
    return _limited(reference, seeds), _limited(current, seeds), seed_lines(reference, current, seeds)


def scratch_folders(runs_dir: str, records_dir: str | None, boards_dir: str | None,
                    against: str) -> tuple[str, str]:
    """Where a regress run publishes its records and board: `--records-dir`/`--boards-dir`, by
    default `<runs-dir>/regress/records` and `<runs-dir>/regress/boards`. Regress owns these
    folders and replaces its earlier records and board there.

    Raises:
        AtbenchError: the reference lies inside one of them (the run would overwrite it).
    """
    records = records_dir or str(Path(runs_dir) / "regress" / "records")
    boards = boards_dir or str(Path(runs_dir) / "regress" / "boards")
    for folder, option in ((records, "--records-dir"), (boards, "--boards-dir")):
        if Path(against).resolve().is_relative_to(Path(folder).resolve()):
            raise AtbenchError(f"the reference {against} lies inside {folder}, where regress writes (and replaces) "
                               "the current results", f"copy the reference elsewhere, or pass another {option}")
    return records, boards


def check_request(reference: Results, alpha: float | None, defenses: list[str] | None) -> None:
    """Refuse, before any work, what the reference cannot answer: `alpha` against a board JSON
    (no per-example flags), or a named defense the reference does not hold.

    Raises:
        AtbenchError: naming the problem.
    """
    if alpha is not None and reference.items is None:
        raise AtbenchError("--alpha compares per-example flags, and a board JSON has none",
                           "pass records folders (or records) on both sides, or use --tolerance")
    missing = sorted(set(defenses or ()) - set(reference.metrics))
    if missing:
        raise AtbenchError(f"the reference {reference.source} has no results for {', '.join(missing)}",
                           f"name defenses it holds ({', '.join(sorted(reference.metrics))}), or another reference")


def same_protocol(reference: Results, current: Results) -> None:
    """Refuse to compare results of different protocols (id, version or content).

    Raises:
        AtbenchError: naming both sides' protocols.
    """
    if reference.protocol != current.protocol:
        (rid, rv, rs), (cid, cv, cs) = reference.protocol, current.protocol
        raise AtbenchError(f"the reference {reference.source} is of protocol {rid} v{rv} (sha256 {rs[:12]}...) but "
                           f"the current results {current.source} are of protocol {cid} v{cv} (sha256 {cs[:12]}...): "
                           "their numbers are not comparable",
                           "compare results of one protocol (run the reference's track, or pass --protocol)")


@dataclasses.dataclass(frozen=True)
class Change:
    """One (defense, metric) comparison; `current` is None when the current results lack it.
    In the `--alpha` mode, `p_value` is the Holm-adjusted p-value of the paired test."""

    defense: str
    metric: str
    reference: float
    current: float | None
    tolerance: float
    alpha: float | None = None
    p_value: float | None = None

    @property
    def delta(self) -> float | None:
        """current - reference (None when missing)."""
        return None if self.current is None else self.current - self.reference

    def _beyond(self, sign: int) -> bool:
        """Moved in direction `sign` significantly (`--alpha`) or by more than the tolerance."""
        if self.alpha is not None:
            return sign * self.delta > 0 and self.p_value is not None and self.p_value < self.alpha
        return sign * self.delta > self.tolerance + 1e-12

    @property
    def regressed(self) -> bool:
        """Missing; or dropped significantly (`--alpha`) or by more than the tolerance."""
        return self.current is None or self._beyond(-1)

    @property
    def improved(self) -> bool:
        """Rose significantly (`--alpha`) or by more than the tolerance."""
        return self.current is not None and self._beyond(+1)

    @property
    def status(self) -> str:
        """REGRESSION, improved, unchanged, or (changed, but neither) "not significant" with
        `--alpha`, "within tolerance" without."""
        if self.regressed:
            return "REGRESSION"
        if self.improved:
            return "improved"
        if abs(self.delta) <= 1e-12:
            return "unchanged"
        return "not significant" if self.alpha is not None else "within tolerance"


def _flags_of(metric: str):
    name, _, eps = metric.partition("@")
    if name == "clean":
        return lambda item: item.flags.flags["clean"]
    if name == "worst_case":
        return lambda item: worst_flags(item, eps)
    return lambda item: column_flags(item, name, eps)


def compare(reference: Results, current: Results, tolerance: float = TOLERANCE,
            alpha: float | None = None, defenses: list[str] | None = None) -> list[Change]:
    """Every (defense, metric) of the reference (or of `defenses`) compared with the current
    results: by `tolerance`, or, with `alpha`, by Holm-corrected paired tests on the flags.

    Raises:
        AtbenchError: a tolerance or alpha outside [0, 1] (NaN included), or `alpha` without
            records on both sides.
    """
    if not 0 <= tolerance <= 1:  # also refuses NaN
        raise AtbenchError(f"--tolerance {tolerance} is not a number in [0, 1]", "pass a tolerance such as 0.02")
    if alpha is not None and not (0 < alpha < 1 and math.isfinite(alpha)):
        raise AtbenchError(f"--alpha {alpha} is not a number in (0, 1)", "pass an alpha such as 0.05")
    if alpha is not None and (reference.items is None or current.items is None):
        raise AtbenchError("--alpha compares per-example flags, and a board JSON has none",
                           "pass records folders (or records) on both sides, or use --tolerance")
    chosen = sorted(d for d in reference.metrics if defenses is None or d in defenses)
    rows = [(d, m, v, current.metrics.get(d, {}).get(m))
            for d in chosen for m, v in sorted(reference.metrics[d].items())]
    if alpha is None:
        return [Change(d, m, v, c, tolerance) for d, m, v, c in rows]
    tested = [i for i, (d, m, v, c) in enumerate(rows) if c is not None]
    raw = [paired(current.items[rows[i][0]], reference.items[rows[i][0]], _flags_of(rows[i][1]))["p_value"]
           for i in tested]
    adjusted = dict(zip(tested, stats.holm(raw)))
    return [Change(d, m, v, c, tolerance, alpha, adjusted.get(i)) for i, (d, m, v, c) in enumerate(rows)]


def markdown(changes: list[Change], show_all: bool = False) -> str:
    """A Markdown table of the changed (or, with `show_all`, every) metrics and a summary line."""
    changed = [c for c in changes if c.status != "unchanged"]
    shown = changes if show_all else changed
    tests = any(c.alpha is not None for c in changes)
    lines = ["| defense | metric | reference | current | change |" + (" p (Holm) |" if tests else "") + " status |",
             "|---|---|---|---|---|" + ("---|" if tests else "") + "---|"]
    for c in shown:
        current = "missing" if c.current is None else f"{c.current:.4f}"
        delta = "" if c.delta is None else f"{c.delta:+.4f}"
        p = ("" if c.p_value is None else f" {c.p_value:.3g} |") if tests else ""
        lines.append(f"| {c.defense} | {c.metric} | {c.reference:.4f} | {current} | {delta} |{p} {c.status} |")
    failed, improved = sum(c.regressed for c in changes), sum(c.improved for c in changes)
    rule = (f"a change significant at alpha {changes[0].alpha} (paired test on the per-example flags, Holm over "
            f"{len(changes)} metrics)" if tests else
            f"a change of more than {changes[0].tolerance if changes else TOLERANCE}")
    lines += ["", f"{len(changes)} metrics compared, {len(changed)} changed, {improved} improved, {failed} regressions "
                  f"(a regression or improvement is {rule}; a missing result is a regression)."]
    return "\n".join(lines)


def junit_xml(changes: list[Change], suite: str = "atbench regress") -> bytes:
    """JUnit XML: one test case per (defense, metric), a failure for each regression naming the
    test that decided it and its p-value."""
    root = ElementTree.Element("testsuites")
    failures = sum(c.regressed for c in changes)
    node = ElementTree.SubElement(root, "testsuite", name=suite, tests=str(len(changes)), failures=str(failures),
                                  errors="0", skipped="0")
    for c in changes:
        case = ElementTree.SubElement(node, "testcase", classname=f"{suite}.{c.defense}", name=c.metric)
        if c.regressed:
            if c.current is None:
                message = f"{c.defense} {c.metric}: missing from the current results"
            elif c.alpha is not None:
                message = (f"{c.defense} {c.metric} dropped from {c.reference:.4f} to {c.current:.4f} "
                           f"({c.delta:+.4f}); paired test on the per-example flags, "
                           f"Holm-adjusted p = {c.p_value:.3g} < alpha {c.alpha}")
            else:
                message = (f"{c.defense} {c.metric} dropped from {c.reference:.4f} to {c.current:.4f} "
                           f"({c.delta:+.4f}, tolerance {c.tolerance})")
            ElementTree.SubElement(case, "failure", message=message, type="regression").text = message
    return ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)


def write_junit(path: str | Path, changes: list[Change]) -> None:
    """Write `junit_xml(changes)` atomically."""
    atomic_write_bytes(Path(path), junit_xml(changes))
