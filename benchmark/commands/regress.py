"""`atbench regress`: compare current results with reference results per defense, attack and eps.

Results are read from a records folder, a single record, or a board JSON. Each becomes, per
defense, the metrics `clean`, `<attack>@<eps>` and `worst_case@<eps>` (means over the defense's
seeds). A metric that drops by more than the tolerance, or a defense or metric of the reference
missing from the current results, is a regression. The comparison is printed as a Markdown
table and written as JUnit XML for CI systems.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from xml.etree import ElementTree

from benchmark.core.errors import AtbenchError
from benchmark.core.io import atomic_write_bytes
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
    """

    source: str
    protocol: tuple[str, int, str]
    metrics: Metrics


def _protocol_of(block: dict, path: Path) -> tuple[str, int, str]:
    try:
        return str(block["id"]), int(block["version"]), str(block["sha256"])
    except (KeyError, TypeError, ValueError) as exc:
        raise AtbenchError(f"{path}: its protocol block lacks id, version or sha256 ({exc!r})",
                           "rebuild the board with `atbench leaderboard`") from exc


def load_results(path: str | Path) -> Results:
    """Per-defense metrics from a records folder (`*.json` records, validated, of one
    protocol), one record file, or a board JSON (`leaderboard/boards/<protocol>.json`)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.glob("*.json"))
        if not files:
            raise AtbenchError(f"{path} holds no records (*.json)", "pass a records folder, a record or a board JSON")
        per_seed: dict[str, list[dict[str, float]]] = {}
        protocols = set()
        for f in files:
            record = load_record(f)
            protocols.add(_protocol_of(record["protocol"], f))
            per_seed.setdefault(record["defense"]["id"], []).append(metrics_of(record))
        if len(protocols) > 1:
            raise AtbenchError(f"the records in {path} mix protocols: {sorted(protocols)}",
                               "keep one protocol version per records folder")
        return Results(str(path), protocols.pop(), _mean_over_seeds(per_seed))
    if not path.is_file():
        raise AtbenchError(f"{path} does not exist", "pass a records folder, a record or a board JSON")
    try:
        body = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AtbenchError(f"{path} is not valid JSON ({exc})", "pass a records folder, a record or a board JSON") from exc
    if isinstance(body, dict) and "entries" in body:
        try:
            return Results(str(path), _protocol_of(body["protocol"], path),
                           {e["defense"]: metrics_of(e) for e in body["entries"]})
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise AtbenchError(f"{path}: a board entry lacks clean_acc, robust_acc or worst_case ({exc!r})",
                               "rebuild the board with `atbench leaderboard`") from exc
    record = load_record(path)
    return Results(str(path), _protocol_of(record["protocol"], path), {record["defense"]["id"]: metrics_of(record)})


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
    """One (defense, metric) comparison; `current` is None when the current results lack it."""

    defense: str
    metric: str
    reference: float
    current: float | None
    tolerance: float

    @property
    def delta(self) -> float | None:
        """current - reference (None when missing)."""
        return None if self.current is None else self.current - self.reference

    @property
    def regressed(self) -> bool:
        """Missing, or dropped by more than the tolerance."""
        return self.current is None or self.reference - self.current > self.tolerance + 1e-12


def compare(reference: Metrics, current: Metrics, tolerance: float = TOLERANCE) -> list[Change]:
    """Every (defense, metric) of `reference` compared with `current`."""
    if not 0 <= tolerance <= 1:  # also refuses NaN
        raise AtbenchError(f"--tolerance {tolerance} is not a number in [0, 1]", "pass a tolerance such as 0.02")
    return [Change(d, m, v, current.get(d, {}).get(m), tolerance)
            for d in sorted(reference) for m, v in sorted(reference[d].items())]


def markdown(changes: list[Change], show_all: bool = False) -> str:
    """A Markdown table of the changed (or, with `show_all`, every) metrics and a summary line."""
    shown = [c for c in changes if show_all or c.regressed or (c.delta is not None and abs(c.delta) > 1e-12)]
    lines = ["| defense | metric | reference | current | change | status |", "|---|---|---|---|---|---|"]
    for c in shown:
        current = "missing" if c.current is None else f"{c.current:.4f}"
        delta = "" if c.delta is None else f"{c.delta:+.4f}"
        status = "REGRESSION" if c.regressed else ("improved" if c.delta and c.delta > 0 else "ok")
        lines.append(f"| {c.defense} | {c.metric} | {c.reference:.4f} | {current} | {delta} | {status} |")
    failed = sum(c.regressed for c in changes)
    tolerance = changes[0].tolerance if changes else TOLERANCE
    lines += ["", f"{len(changes)} metrics compared, {len(shown)} changed, {failed} regressions "
                  f"(a drop of more than {tolerance} or a missing result)."]
    return "\n".join(lines)


def junit_xml(changes: list[Change], suite: str = "atbench regress") -> bytes:
    """JUnit XML: one test case per (defense, metric), a failure for each regression."""
    root = ElementTree.Element("testsuites")
    failures = sum(c.regressed for c in changes)
    node = ElementTree.SubElement(root, "testsuite", name=suite, tests=str(len(changes)), failures=str(failures),
                                  errors="0", skipped="0")
    for c in changes:
        case = ElementTree.SubElement(node, "testcase", classname=f"{suite}.{c.defense}", name=c.metric)
        if c.regressed:
            message = (f"{c.defense} {c.metric}: missing from the current results" if c.current is None else
                       f"{c.defense} {c.metric} dropped from {c.reference:.4f} to {c.current:.4f} "
                       f"({c.delta:+.4f}, tolerance {c.tolerance})")
            ElementTree.SubElement(case, "failure", message=message, type="regression").text = message
    return ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)


def write_junit(path: str | Path, changes: list[Change]) -> None:
    """Write `junit_xml(changes)` atomically."""
    atomic_write_bytes(Path(path), junit_xml(changes))
