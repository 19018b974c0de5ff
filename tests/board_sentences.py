"""Every sentence of a board's view (`leaderboard.view`), checked against the numbers it describes
(tests/test_board_sentences.py). `sentences(view)` lists them with where they stand;
`problems(board, view)` returns one line per sentence that its data contradicts (the best-known
column and sentences included: a flag exactly where p < alpha, counts equal to the data)."""
from __future__ import annotations

import json
import re
from fractions import Fraction
from pathlib import Path

from leaderboard.formats import class_list, p_is, pct
from leaderboard.view_tables import claim_interval_text

_WITHIN = re.compile(r"within chance \(p = ([0-9.e-]+) ≥ ([0-9.]+)\)")
_THRESHOLD = re.compile(r"not above the flag's threshold \(([0-9.]+)(?: points|% of the points)? ≤ ([0-9.]+)")
_HOLM_PAIRS = re.compile(r"Holm over all (\d+) pairs")
_TESTS = re.compile(r"Holm-corrected over the (\d+) tests? made here")
_DISAGREE = re.compile(r"claim (\w+) \([^)]*\): interval ([+-][0-9.]+ to [+-][0-9.]+) (excludes|contains) 0")
_ALL_SINGLE = re.compile(r"with 1 seed per entry on this board")
_SOME_SINGLE = re.compile(r"(\d+) entr(?:y|ies) of the (\d+) on this board ha(?:s|ve) 1 seed")
_SWEEP = re.compile(r"\[sweep\]\(\.\./sweeps/([^)]+)\.md\) of (\d+) settings?([^|]*)")
_FRONT = re.compile(r"the Pareto front \(.*?\) is: ([^.]+)\.")
_UNCOSTED = re.compile(r"Records made before atbench kept costs \(([^)]+)\)")
_BEST = re.compile(r"eps=([^:]+): best known ([0-9.]+)% against the protocol's ([0-9.]+)%, "
                   r"(no point|\d+ points?) broken beyond the protocol(?: \(([^)]*)\))?, p ([=<] [^:]+): "
                   r"(.*?)(?=; eps=|\.$)")
_OVERSTATED = "**the protocol's attacks overstate this entry**"
SWEEPS = Path(__file__).resolve().parent.parent / "leaderboard" / "sweeps"


def sentences(view: dict) -> list[tuple[str, str]]:
    """(where, text) of every sentence-bearing text of a view: paragraphs, items, table captions
    and headers, and the text cells of the claims table and the certified notes."""
    found = []
    for section in view["sections"]:
        for i, block in enumerate(section["blocks"]):
            where = f"{section['id']}[{i}]"
            if block["kind"] == "paragraph":
                found.append((where, block["text"]))
            elif block["kind"] == "items":
                found += [(f"{where}.item{j}", text) for j, text in enumerate(block["items"])]
            elif block["kind"] == "table":
                found.append((f"{where}.caption", block["caption"]))
                found += [(f"{where}.header.{c['id']}", c["label"]) for c in block["columns"]]
                if block["id"] == "claims":
                    found += [(f"{where}.row{j}", " | ".join(c["text"] for c in row))
                              for j, row in enumerate(block["rows"])]
    return found


def _section(view: dict, ident: str) -> dict | None:
    return next((s for s in view["sections"] if s["id"] == ident), None)


def _notes(board: dict, view: dict, alpha: float) -> list[str]:
    found = []
    entries = {x["defense"]: x for x in board["entries"]}
    flags = _section(view, "flags")
    items = [t for b in flags["blocks"] if b["kind"] == "items" for t in b["items"] if not t.startswith("**")]
    noted = [(x["defense"], name) for x in board["entries"] for name in x["sanity_noted"]]
    if len(items) != len(noted):
        found.append(f"flags: {len(items)} note lines for {len(noted)} noted flags")
    for text in items:
        defense, name = text.split(":", 1)[0], re.search(r"`([a-z_]+)`", text).group(1)
        evidence = entries[defense]["sanity_noted"].get(name)
        if evidence is None:
            found.append(f"flags: a note on {defense} {name}, which its records do not note")
            continue
        if "Not a flag: " not in text:
            found.append(f"flags: the note on {defense} {name} gives no reason")
        m = _WITHIN.search(text)
        if "within chance" in text and not (m and evidence["p_value"] is not None and evidence["p_value"] >= alpha):
            found.append(f"flags: the note on {defense} {name} says within chance, but p = {evidence['p_value']}")
        if "not above the flag's threshold" in text and not evidence["value"] <= evidence["threshold"]:
            found.append(f"flags: the note on {defense} {name} says not above the threshold, but "
                         f"{evidence['value']} > {evidence['threshold']}")
        if re.search(r"by 0\.\d{3}\b", text):
            found.append(f"flags: the note on {defense} {name} gives a fraction where the tables give points")
    intro = " ".join(b["text"] for b in flags["blocks"] if b["kind"] == "paragraph")
    if noted and ("within chance" not in intro or "threshold" not in intro):
        found.append("flags: the notes' heading does not name both reasons a note may have")
    return found


def _ranks(board: dict, view: dict) -> list[str]:
    found = []
    significant = {frozenset((r["a"], r["b"])) for r in board["significance"] if r["significant"]}
    score = {x["defense"]: x["worst_case"][board["primary_eps"]] for x in board["entries"]}
    for x in board["entries"]:
        better = sum(1 for y in board["entries"] if frozenset((x["defense"], y["defense"])) in significant
                     and score[y["defense"]] > score[x["defense"]])
        if x["rank"] != 1 + better:
            found.append(f"ranking: {x['defense']} has rank {x['rank']}, but {better} entries are significantly better")
    text = " ".join(b["text"] for b in _section(view, "ranking")["blocks"] if b["kind"] == "paragraph")
    if "tiers" not in text or "need not differ significantly" not in text:
        found.append("ranking: the rank rule does not say that ranks are tiers, not pairwise verdicts")
    if "a rank gap is a significant difference" in " ".join(t for _, t in sentences(view)):
        found.append("a sentence says a rank gap is a significant difference")
    return found


def _counts(board: dict, view: dict) -> list[str]:
    found = []
    k = len(board["entries"])
    for where, text in sentences(view):
        if re.search(r"(?<![\d.])1 (points|classes|tests|pairs|entries)\b", text):
            found.append(f"{where}: a plural after 1: {text[:80]!r}")
        m = _HOLM_PAIRS.search(text)
        if m and (int(m.group(1)) != len(board["significance"]) or int(m.group(1)) != k * (k - 1) // 2
                  or int(m.group(1)) < 2):
            found.append(f"{where}: says Holm over {m.group(1)} pairs; the board has {len(board['significance'])}")
        if re.search(r"=\d+\.\d{5,}", text):
            found.append(f"{where}: an unrounded number: {text[:80]!r}")
    return found


def _tables(board: dict, view: dict) -> list[str]:
    """Every entry is in every table, or listed under it with a reason."""
    found = []
    names = [x["defense"] for x in board["entries"]]
    for section in view["sections"]:
        tables = [b for b in section["blocks"] if b["kind"] == "table" and b["id"] != "claims"]
        listed = [t.split(":", 1)[0] for b in section["blocks"] if b["kind"] == "items" for t in b["items"]
                  if ": " in t]
        for table in tables:
            ids = [c["id"] for c in table["columns"]]
            at = ids.index("defense") if "defense" in ids else 0
            shown = [re.sub(r"^\[([^\]]+)\].*$|^(\S+) \(external model\)$", lambda m: m.group(1) or m.group(2),
                            row[at]["text"]) for row in table["rows"]]
            for name in names:
                if name not in shown and name not in (listed if table["id"] == "certified" else []):
                    found.append(f"{section['id']}: {name} is missing from the table without a reason")
    return found


def _worst_classes(board: dict, view: dict) -> list[str]:
    found = []
    primary, names = board["primary_eps"], board["class_names"]
    table = _section(view, "ranking")["blocks"][0]
    column = [c["id"] for c in table["columns"]].index("worst-class")
    for x, row in zip(board["entries"], table["rows"]):
        accs = x["per_class_worst_case"][primary]
        lowest = [k for k, a in enumerate(accs) if a == min(accs)]
        if f"({class_list(names, lowest)})" not in row[column]["text"]:
            found.append(f"ranking: {x['defense']}'s worst class cell does not name every class at the minimum "
                         f"({lowest})")
        low, high = x["intervals"]["worst_class_robust_acc"][primary]
        if not low <= min(accs) <= high:
            found.append(f"ranking: {x['defense']}'s worst-class interval misses its estimate")
    return found


def _claims(board: dict, view: dict, alpha: float) -> list[str]:
    found = []
    section = _section(view, "claims")
    table = next(b for b in section["blocks"] if b["kind"] == "table")
    tested = [c for c in board["claims"] if c["result"] != "untestable here"]
    m = _TESTS.search(section["blocks"][0]["text"])
    if not m or int(m.group(1)) != len(tested):
        found.append(f"claims: the count of tests corrected over is not {len(tested)}")
    text = section["blocks"][0]["text"]
    single = sum(x["n_seeds"] == 1 for x in board["entries"])
    every, some = _ALL_SINGLE.search(text), _SOME_SINGLE.search(text)
    said = len(board["entries"]) if every else int(some.group(1)) if some else 0
    if said != single or (some and int(some.group(2)) != len(board["entries"])):
        found.append(f"claims: the entries with 1 seed are said to be {said}, the board has {single}")
    split = sorted((c["claim"], claim_interval_text(c), "excludes" if c["p_value"] >= alpha else "contains")
                   for c in board["claims"] if c["interval"] is not None and c["p_value"] is not None
                   and (c["interval"][0] > 0 or c["interval"][1] < 0) != (c["p_value"] < alpha))
    named = sorted(_DISAGREE.findall(text.split("They disagree here:")[1]) if "They disagree here:" in text else [])
    if named != split:
        found.append(f"claims: the interval and the test disagree about 0 on {split or 'no claim'}, "
                     f"the text names {named or 'none'}")
    for claim, row in zip(board["claims"], table["rows"]):
        result = row[[c["id"] for c in table["columns"]].index("result")]["text"].strip("*")
        if result == "supported" and not (claim["p_adjusted"] < alpha and claim["effect"] > 0):
            found.append(f"claims: {claim['method']} {claim['statement']!r} is called supported, adjusted p = "
                         f"{claim['p_adjusted']}, effect {claim['effect']}")
        if result == "not supported" and claim["p_adjusted"] is not None and claim["p_adjusted"] < alpha \
                and claim["effect"] > 0:
            found.append(f"claims: {claim['statement']!r} is called not supported, yet significant in its direction")
        if result == "untestable here" and claim["p_value"] is not None:
            found.append(f"claims: {claim['statement']!r} is called untestable, yet has a p-value")
        if result not in ("supported", "not supported", "untestable here"):
            found.append(f"claims: unknown result {result!r}")
    return found


def _classwise(board: dict, view: dict, alpha: float) -> list[str]:
    found = []
    lines = next(b for b in _section(view, "classwise")["blocks"] if b["kind"] == "items")["items"]
    for x, text in zip(board["entries"], lines):
        real = x["class_disparity"]["p_value"] < alpha
        if ("class disparity real" in text) != real:
            found.append(f"classwise: {x['defense']}'s disparity sentence disagrees with p = "
                         f"{x['class_disparity']['p_value']}")
        gain = x["attack_gain"]
        if gain.get("points") and ("concentrated there" in text and "not shown" not in text) != gain["concentrated"]:
            found.append(f"classwise: {x['defense']}'s concentration sentence disagrees with its test")
    return found


def _significance(board: dict, view: dict, alpha: float) -> list[str]:
    table = _section(view, "significance")["blocks"][1]
    order = [x["defense"] for x in board["entries"]]
    pairs = {(r["a"], r["b"]): r for r in board["significance"]}
    found = []
    for a, row in zip(order, table["rows"]):
        for b, cell in zip(order, row[1:]):
            pair = pairs.get((a, b)) or pairs.get((b, a))
            if pair and cell["text"].endswith("*") != (pair["p_adjusted"] < alpha):
                found.append(f"significance: {a} vs {b} is starred against its adjusted p = {pair['p_adjusted']}")
            if pair:
                effect = pair["effect"] if (a, b) in pairs else -pair["effect"]
                sign = "+" if effect >= 0 else "-"  # a zero difference is +0.0, never -0.0
                if not cell["text"].startswith(sign):
                    found.append(f"significance: {a} minus {b} is {effect}, the cell says {cell['text']!r}")
    return found


def _margins(board: dict, view: dict) -> list[str]:
    found = []
    cap = max(float(Fraction(e)) for e in board["eps"])
    for x in board["entries"]:
        if x["margin_corrected"]["points"] > x["margin_corrected"]["of"]:
            found.append(f"ranking: {x['defense']} lowers more margins than it has points")
        if x["worst_case"][board["primary_eps"]] == 0 and x["median_input_margin"] > cap:
            found.append(f"ranking: {x['defense']}'s median margin is above the eps at which every point broke")
    return found


def _cells(view: dict) -> list[str]:
    return [cell["text"] for section in view["sections"] for block in section["blocks"] if block["kind"] == "table"
            for row in block["rows"] for cell in row]


def _tuning(view: dict) -> list[str]:
    """The settings count beside a sweep link is the shipped sweep's, read here independently."""
    found = []
    for text in _cells(view):
        for name, n, rest in _SWEEP.findall(text):
            sweep = json.loads((SWEEPS / f"{name}.json").read_text())
            configs = [row["config"] for row in sweep["settings"]]
            axes = {k: sorted({c[k] for c in configs}) for k in sweep["winner"]}
            at_edge = any(len(v) > 1 and sweep["winner"][k] in (v[0], v[-1]) for k, v in axes.items())
            if "edge_rule" in sweep:
                want = f", {len(configs) - sweep['budget']} by the grid-edge rule"
            else:
                want = ", before the grid-edge rule" + (", winner at an edge" if at_edge else "")
            if int(n) != len(configs) or not rest.startswith(want) or rest[len(want):len(want) + 1] not in ("", ",", " "):
                found.append(f"tuning: {name}'s sweep tried {len(configs)} settings{want}, the board says {n}{rest}")
    return found


def _cost(board: dict, view: dict) -> list[str]:
    """The Pareto front the cost section names is the front of the compared entries' numbers, and
    the records it says were made before costs were kept are exactly those."""
    primary, comparison = board["primary_eps"], board["cost_comparison"]
    compared = [x for x in board["entries"] if x["defense"] in comparison["compared"]]
    front = [x["defense"] for x in compared
             if not any(y["cost"]["train"]["device_seconds"] <= x["cost"]["train"]["device_seconds"]
                        and y["worst_case"][primary] >= x["worst_case"][primary] and
                        (y["cost"]["train"]["device_seconds"], y["worst_case"][primary])
                        != (x["cost"]["train"]["device_seconds"], x["worst_case"][primary]) for y in compared)]
    found = []
    if any(len(set(x["cost"]["devices"])) != 1 or x["cost"]["devices"][0] != comparison["device"] for x in compared):
        found.append("cost: an entry paid on another device is compared")
    uncosted = sorted(x["defense"] for x in board["entries"]
                      if any(d.endswith(", CPU model not recorded") for d in x["cost"]["devices"]))
    for where, text in sentences(view):
        match = _FRONT.search(text)
        if match and sorted(match.group(1).split(", ")) != sorted(front):
            found.append(f"cost: {where} names the front {match.group(1)}, the numbers give {', '.join(front)}")
        named = _UNCOSTED.search(text)
        if "Costs compare" in text and sorted(named.group(1).split(", ") if named else []) != uncosted:
            found.append(f"cost: {where} names the records without costs {named.group(1) if named else 'nowhere'}, "
                         f"the data {', '.join(uncosted) or 'none'}")
    return found


def _best_known_segments(x: dict, text: str, alpha: float) -> list[str]:
    """One entry's best-known sentence against its `best_known` block, eps by eps."""
    found, block = [], x["best_known"]
    segments = {m.group(1): m for m in _BEST.finditer(text)}
    if sorted(segments) != sorted(block):
        found.append(f"best known: {x['defense']}'s sentence covers eps {sorted(segments)}, its block {sorted(block)}")
    for eps, m in segments.items():
        at = block.get(eps)
        if at is None:
            continue
        if (m.group(2), m.group(3)) != (pct(at["best_known"]), pct(at["protocol"])):
            found.append(f"best known: {x['defense']} at eps={eps} says {m.group(2)}% against {m.group(3)}%, the data "
                         f"{pct(at['best_known'])}% against {pct(at['protocol'])}%")
        said = 0 if m.group(4) == "no point" else int(m.group(4).split()[0])
        if said != at["points_beyond"] or said != sum(len(v) for v in at["best_known_attacks"].values()):
            found.append(f"best known: {x['defense']} at eps={eps} says {said} points broken beyond the protocol, "
                         f"the data {at['points_beyond']}")
        per_attack: dict[str, int] = {}
        for points in at["best_known_attacks"].values():
            for point in points:
                for name in point["attacks"]:
                    per_attack[name] = per_attack.get(name, 0) + 1
        stated = {k: int(n) for k, n in re.findall(r"`([^`]+)` (\d+)", m.group(5) or "")}
        if stated != per_attack:
            found.append(f"best known: {x['defense']} at eps={eps} credits the attacks {stated}, the data {per_attack}")
        if m.group(6) != p_is(at["p_value"]):
            found.append(f"best known: {x['defense']} at eps={eps} says p {m.group(6)}, the data {at['p_value']}")
        flagged = _OVERSTATED in m.group(7)
        if flagged != (at["p_value"] < alpha) or flagged != (at["flag"] is not None):
            found.append(f"best known: {x['defense']} at eps={eps} is {'' if flagged else 'not '}flagged with "
                         f"p = {at['p_value']} (alpha {alpha})")
    return found


def _best_known(board: dict, view: dict, alpha: float) -> list[str]:
    """The best-known column and section: `-` exactly where no attack record names the entry, the
    number at the primary eps otherwise (marked overstated iff flagged), a section only with
    attack records that keeps the protocol's ranking, and every sentence's numbers and flag."""
    found, primary = [], board["primary_eps"]
    table = _section(view, "ranking")["blocks"][0]
    ids = [c["id"] for c in table["columns"]]
    if "best-known" not in ids or ids.index("best-known") != ids.index("worst-case") + 1:
        found.append("ranking: no best-known column right after the worst case")
        return found
    for x, row in zip(board["entries"], table["rows"]):
        text, block = row[ids.index("best-known")]["text"], x.get("best_known")
        want = "-" if not block else pct(block[primary]["best_known"]) + (
            " (overstated)" if block[primary]["flag"] else "")
        if text != want:
            found.append(f"ranking: {x['defense']}'s best-known cell says {text!r}, the data {want!r}")
    attacked = {x["defense"]: x for x in board["entries"] if x.get("best_known")}
    section = _section(view, "best-known")
    if section is None:
        if attacked:
            found.append(f"best known: no section, though {', '.join(attacked)} have attack records")
        return found
    if not attacked:
        found.append("best known: a section on a board without attack records")
    text = " ".join(b["text"] for b in section["blocks"] if b["kind"] == "paragraph")
    if "The ranking stays the protocol's" not in text:
        found.append("best known: the section does not say that the ranking stays the protocol's")
    lines = [t for b in section["blocks"] if b["kind"] == "items" for t in b["items"]]
    named = [re.match(r"\*\*([^*]+)\*\*", t).group(1) if t.startswith("**") else t for t in lines]
    if sorted(named) != sorted(attacked):
        found.append(f"best known: sentences on {sorted(named)}, attack records on {sorted(attacked)}")
    for name, line in zip(named, lines):
        if name in attacked:
            found += _best_known_segments(attacked[name], line, alpha)
    return found


def problems(board: dict, view: dict) -> list[str]:
    """Every sentence of `view` that the numbers of `board` contradict, one line each."""
    alpha = board["statistics"]["alpha"]
    return (_notes(board, view, alpha) + _ranks(board, view) + _counts(board, view) + _tables(board, view)
            + _worst_classes(board, view) + _claims(board, view, alpha) + _classwise(board, view, alpha)
            + _significance(board, view, alpha) + _margins(board, view) + _tuning(view) + _cost(board, view)
            + _best_known(board, view, alpha))
