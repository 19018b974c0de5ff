"""`atbench regress`: compare current results with reference results per defense, attack and eps.

Results are read from a records folder, a single record, or a board JSON. Each becomes, per
defense, the metrics `clean`, `<attack>@<eps>` and `worst_case@<eps>` (means over the defense's
seeds). Two modes decide what a regression is:

- `--tolerance` (the default, 0.02): a drop of more than the tolerance;
- `--alpha`: a drop that a paired test on both sides' per-example flags finds significant (exact
  McNemar for one seed on each side, a paired bootstrap otherwise; Holm-corrected over every
  compared metric), so that noise at the protocol's number of points is not a regression. It
  needs records (with their flags) on both sides.

A defense or metric of the reference missing from the current results is always a regression.
When `regress` runs the track itself, the reference's records are limited to the seeds it runs
(`--seed 0` compares with the reference's seed-0 records).
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


@dataclasses.dataclass(frozen=True)
class Results:
    """Results to compare: per-defense metrics and the protocol they were evaluated under.

    Attributes:
        source: where they were read from.
        protocol: (id, version, content sha256) of their protocol.
        metrics: defense -> metric -> value (means over seeds).
        items: defense -> its admitted records with their flags (None for a board JSON).
    """

    source: str
    protocol: tuple[str, int, str]
    metrics: Metrics
    items: dict[str, list[Admitted]] | None = None


def _metrics_of_items(items: dict[str, list[Admitted]]) -> Metrics:
    """Per defense, the metrics of its records, averaged over its seeds."""
    return _mean_over_seeds({d: [metrics_of(it.record) for it in its] for d, its in items.items()})


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
    return Results(str(source), protocols.pop(), _metrics_of_items(items), items)


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
                           {e["defense"]: metrics_of(e) for e in body["entries"]})
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise AtbenchError(f"{path}: a board entry lacks clean_acc, robust_acc or worst_case ({exc!r})",
                               "rebuild the board with `atbench leaderboard`") from exc
    return _from_records(path, [path])


def record_files(files: list[str | Path]) -> Results:
    """Per-defense metrics from these record files (each admitted with its flags beside it)."""
    return _from_records(Path(files[0]).parent, [Path(f) for f in files])


def restrict_to_seeds(reference: Results, seeds: set[int]) -> Results:
    """The reference limited to the records of `seeds` (the seeds the current run trains), so
    that a run of fewer seeds is compared with the same seeds' results, not with a mean over
    others. A board JSON (no records) is returned unchanged.

    Raises:
        AtbenchError: the reference holds records, but none of these seeds.
    """
    if reference.items is None:
        return reference
    items = {d: [it for it in its if it.record["seed"] in seeds] for d, its in reference.items.items()}
    items = {d: its for d, its in items.items() if its}
    if not items:
        held = sorted({it.record["seed"] for its in reference.items.values() for it in its})
        raise AtbenchError(f"the reference {reference.source} holds no records of seeds {sorted(seeds)}",
                           f"run seeds it holds ({', '.join(map(str, held))}) with --seed")
    return Results(reference.source, reference.protocol, _metrics_of_items(items), items)


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

    @property
    def regressed(self) -> bool:
        """Missing; or dropped significantly (`--alpha`) or by more than the tolerance."""
        if self.current is None:
            return True
        if self.alpha is not None:
            return self.delta < 0 and self.p_value is not None and self.p_value < self.alpha
        return self.reference - self.current > self.tolerance + 1e-12


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
    shown = [c for c in changes if show_all or c.regressed or (c.delta is not None and abs(c.delta) > 1e-12)]
    tests = any(c.alpha is not None for c in changes)
    lines = ["| defense | metric | reference | current | change |" + (" p (Holm) |" if tests else "") + " status |",
             "|---|---|---|---|---|" + ("---|" if tests else "") + "---|"]
    for c in shown:
        current = "missing" if c.current is None else f"{c.current:.4f}"
        delta = "" if c.delta is None else f"{c.delta:+.4f}"
        p = ("" if c.p_value is None else f" {c.p_value:.3g} |") if tests else ""
        status = "REGRESSION" if c.regressed else ("improved" if c.delta and c.delta > 0 else "ok")
        lines.append(f"| {c.defense} | {c.metric} | {c.reference:.4f} | {current} | {delta} |{p} {status} |")
    failed = sum(c.regressed for c in changes)
    rule = (f"a drop significant at alpha {changes[0].alpha} (paired test on the per-example flags, Holm over "
            f"{len(changes)} metrics)" if tests else
            f"a drop of more than {changes[0].tolerance if changes else TOLERANCE}")
    lines += ["", f"{len(changes)} metrics compared, {len(shown)} changed, {failed} regressions ({rule} or a missing "
                  "result)."]
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
