"""The board's claims section (`leaderboard.claims`): every claim of the committed mnist5k-cnn and
mnist5k-cnn-l2 records recomputed here from the flags (discordant counts, exact binomial tails,
median margins, class tables, Holm) without the module's helpers; the rows' properties; and
synthetic boards with a planted winner, swapped entries and missing entries."""
from __future__ import annotations

import dataclasses
import json
import math
import re
from fractions import Fraction

import numpy as np
import pytest

from leaderboard.admission import admit
from leaderboard.claims import CERTIFIED_BASELINES, COLUMNS, RESULTS, board_claims
from leaderboard.evidence import ALPHA, BOOTSTRAP_SEED, REPLICATES, Admitted
from leaderboard.records import find_records
from tests.fixtures_records import consistent

KEYS = {"method", "paper_claim", "statement", "test", "unit", "effect", "interval", "p_value", "p_adjusted",
        "result", "reason"}
EPS, PRIMARY = ["0.1", "0.2", "0.3"], "0.3"


def _groups(items: list[Admitted]) -> dict[str, list[Admitted]]:
    groups: dict[str, list[Admitted]] = {}
    for item in sorted(items, key=lambda it: it.record["seed"]):
        groups.setdefault(item.record["defense"]["id"], []).append(item)
    return groups


def _committed(protocol: str):
    items = [Admitted(rec, admit(rec, path)) for path, rec in find_records("leaderboard/records", protocol)]
    proto = items[0].record["protocol"]
    return _groups(items), proto["eps"], proto["primary_eps"], items[0].record["num_classes"]


def _claims(protocol: str) -> list[dict]:
    return board_claims(*_committed(protocol))


def _sig(p: float) -> float:
    return float(f"{p:.6g}")


# --- independent recomputation (numpy, math and fractions only) ---------------------------------

def _worst(item: Admitted, eps: str) -> np.ndarray:
    out = item.flags.flags["clean"].copy()
    for column in item.record["attacks"]:
        out &= item.flags.flags[f"{column}@{eps}"]
    return out


def _margins(item: Admitted, eps: list[str]) -> np.ndarray:
    bound = np.full(len(item.flags.labels), np.inf)
    for e in eps:
        bound = np.where(~_worst(item, e), np.minimum(bound, float(Fraction(e))), bound)
    return np.minimum(item.flags.values["input_margin"].astype(float), bound)


def _mcnemar(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Effect and exact two-sided p of the discordant counts, in exact rational arithmetic."""
    x, y = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = x + y
    tail = Fraction(sum(math.comb(n, k) for k in range(min(x, y) + 1)), 2 ** n)
    p = 1.0 if x == y else float(min(1, 2 * tail))
    return float(a.mean() - b.mean()), p


def _median_bootstrap(a: np.ndarray, b: np.ndarray, replicates: int) -> tuple[float, float]:
    """One seed each: effect and p of the paired bootstrap of the median difference."""
    points = np.random.default_rng(BOOTSTRAP_SEED).integers(0, len(a), size=(replicates, len(a)))
    d = np.median(a[points], axis=1) - np.median(b[points], axis=1)
    tail = min((d <= 0).sum(), (d >= 0).sum())
    return float(np.median(a) - np.median(b)), min(1.0, 2 * (1 + tail) / (1 + replicates))


def _disparity(flags: np.ndarray, labels: np.ndarray, k: int) -> tuple[float, float]:
    sizes = np.bincount(labels, minlength=k)
    robust, total, r = np.bincount(labels, weights=flags, minlength=k), len(flags), int(flags.sum())
    chi = lambda counts: np.sum((total * counts - sizes * r) ** 2 / (sizes * r * (total - r)), axis=-1)
    perms = np.random.default_rng(BOOTSTRAP_SEED).multivariate_hypergeometric(sizes, r, size=REPLICATES)
    p = (1 + np.sum(chi(perms) >= chi(robust) - 1e-12)) / (1 + REPLICATES)
    means = robust / sizes
    return float(means.max() - means.min()), float(p)


def _robust(item: Admitted, column: str, eps: str) -> np.ndarray:
    members = item.record["attack_groups"].get(column, [column])
    return np.logical_and.reduce([item.flags.flags[f"{m}@{eps}"] for m in members])


def _gain(item: Admitted, eps: str, k: int) -> tuple[float, float]:
    labels = item.flags.labels
    others = [a for a in sorted(item.record["robust_acc"]) if a != "pgd"]
    strongest = min(others, key=lambda a: (_robust(item, a, eps).mean(), a))
    base = _robust(item, "pgd", eps)
    gained = base & ~_robust(item, strongest, eps)
    acc = [base[labels == c].mean() for c in range(k)]
    weakest = sorted(range(k), key=lambda c: (acc[c], c))[:round(0.3 * k)]
    on = np.isin(labels, weakest)
    q, n, x = base[on].sum() / base.sum(), int(gained.sum()), int(gained[on].sum())
    p = sum(math.comb(n, j) * q ** j * (1 - q) ** (n - j) for j in range(x, n + 1)) if x else 1.0
    return round(x / n, 4) - round(q, 4), _sig(p)


def _holm(p: list[float]) -> list[float]:
    order = sorted(range(len(p)), key=lambda i: p[i])
    out, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, (len(p) - rank) * p[i])
        out[i] = min(1.0, running)
    return out


def _expected(protocol: str) -> dict[str, tuple[float, float]]:
    """Claim -> (effect, raw p), recomputed from the flags (one seed per defense)."""
    groups, eps, primary, k = _committed(protocol)
    one = {d: items[0] for d, items in groups.items()}
    radii = one["crm-liplt"].record["certified_l2"]["radii"] if "gloro" in one else []
    tests = 7 - 2 * ("dyart" not in one) + len(radii)
    replicates = max(REPLICATES, math.ceil(20 * tests / ALPHA))
    out = {"2": _mcnemar(_worst(one["rat"], primary), _worst(one["trades"], primary))}
    if "dyart" in one:
        out["1a"] = _median_bootstrap(_margins(one["dyart"], eps), _margins(one["pgd-at"], eps), replicates)
        out["1b"] = _mcnemar(_worst(one["dyart"], primary), _worst(one["pgd-at"], primary))
    base = _margins(one["pgd-at"], eps)
    reference = _margins(one["standard"], eps)
    hard = reference <= np.quantile(reference, 0.25)
    out["3a"] = _mcnemar(_worst(one["sovr"], primary)[hard], _worst(one["pgd-at"], primary)[hard])
    out["3b"] = _median_bootstrap(_margins(one["sovr"], eps), base, replicates)
    effect, p = _disparity(_worst(one["pgd-at"], primary), one["pgd-at"].flags.labels, k)
    out["4a"] = (effect, _sig(p))
    out["4b"] = _gain(one["pgd-at"], primary, k)
    for r in radii:  # CRM-LipLT against the certified-training baseline, per radius
        certified = [one[d].flags.values["certified_radius"] >= float(r) for d in ("crm-liplt", "gloro")]
        out[f"5@{r}"] = _mcnemar(*certified)
    return out


def _key(row: dict) -> str:
    """A claim's number, with the radius for the certified claim's rows (one per radius)."""
    radius = re.search(r"at radius (\S+) is", row["statement"])
    return f"{row['claim']}@{radius.group(1)}" if row["claim"] == "5" and radius else row["claim"]


@pytest.mark.golden
@pytest.mark.parametrize("protocol", ["mnist5k-cnn", "mnist5k-cnn-l2"])
def test_committed_claims_recomputed_from_the_flags(protocol):
    rows = {_key(r): r for r in _claims(protocol)}
    expected = _expected(protocol)
    adjusted = dict(zip(expected, _holm([p for _, p in expected.values()])))
    assert set(expected) == {c for c, r in rows.items() if r["result"] != "untestable here"}
    for claim, (effect, p) in expected.items():
        row = rows[claim]
        assert row["effect"] == round(effect, 4), claim
        assert row["p_value"] == pytest.approx(_sig(p), abs=1e-9), claim
        assert row["p_adjusted"] == pytest.approx(_sig(adjusted[claim]), abs=1e-9), claim
        supported = adjusted[claim] < ALPHA and round(effect, 4) > 0
        assert (row["result"] == "supported") == supported, claim
    # GloRo, the earlier certified-training defense, is on both boards: the claim is tested at every radius
    assert {k for k in rows if k.startswith("5@")} == {"5@0.5", "5@1.0", "5@1.5"}
    if protocol == "mnist5k-cnn-l2":
        assert rows["1a"]["reason"] == rows["1b"]["reason"] == "dyart has no entry on this board"


@pytest.mark.golden
@pytest.mark.parametrize("protocol", ["mnist5k-cnn", "mnist5k-cnn-l2", "smoke"])
def test_certified_flags_give_the_records_certified_accuracy(protocol):
    from leaderboard.claims import certified_flags

    groups, *_ = _committed(protocol)
    for items in groups.values():
        for item in items:
            block = item.record["certified_l2"]
            for r in (block or {"radii": []})["radii"]:
                assert certified_flags(item, r).mean() == block["certified_acc"][r]
                assert not np.any(certified_flags(item, r) & ~item.flags.flags["clean"])


def _check_properties(rows: list[dict]) -> None:
    json.dumps(rows)
    tested = [r for r in rows if r["result"] != RESULTS[2]]
    for r in rows:
        assert KEYS <= set(r) <= set(COLUMNS)
        assert r["result"] in RESULTS and r["reason"]
        if r["result"] == RESULTS[2]:
            assert r["effect"] is r["interval"] is r["p_value"] is r["p_adjusted"] is None
            continue
        assert 0 <= r["p_value"] <= r["p_adjusted"] <= 1
        if r["result"] == "supported":
            assert r["p_adjusted"] < ALPHA and r["effect"] > 0
        if r["interval"] is not None:
            assert r["interval"][0] <= r["interval"][1]
    if tested:  # the smallest raw p is multiplied by the number of tests
        low = min(tested, key=lambda r: r["p_value"])
        assert low["p_adjusted"] == pytest.approx(min(1.0, _sig(len(tested) * low["p_value"])), rel=1e-5)


@pytest.mark.golden
@pytest.mark.parametrize("protocol", ["mnist5k-cnn", "mnist5k-cnn-l2", "smoke"])
def test_committed_claims_properties(protocol):
    _check_properties(_claims(protocol))


# --- synthetic boards ------------------------------------------------------------------------------

def _entry(defense: str, margin, *, worse: bool = False, radius: float | None = None, seed: int = 0):
    """A record on the shared random flags (flag seed 0); `worse` breaks 150 points at the primary
    eps; `margin` is the points' searched input margins (or one for all); `radius` adds certified radii."""
    item = consistent(defense, seed, robust=0.95, flips={f"autoattack@{PRIMARY}": range(150)} if worse else None)
    values = {"input_margin": np.broadcast_to(np.asarray(margin, dtype=float), item.flags.labels.shape).copy()}
    if radius is not None:
        values["certified_radius"] = np.where(item.flags.flags["clean"], radius, 0.0)
        item.record["certified_l2"] = {"radii": ["0.25", "0.5"]}
    return Admitted(item.record, dataclasses.replace(item.flags, values=values))


def _board(*items: Admitted) -> list[dict]:
    return board_claims(_groups(list(items)), EPS, PRIMARY, 3)


@pytest.mark.unit
def test_planted_better_dyart_is_supported_and_swapped_is_not():
    rows = {r["claim"]: r for r in _board(_entry("dyart", 0.5), _entry("pgd-at", 0.2, worse=True))}
    _check_properties(list(rows.values()))
    for claim in ("1a", "1b"):
        assert rows[claim]["result"] == "supported", rows[claim]
        assert rows[claim]["effect"] > 0 and rows[claim]["interval"][0] > 0
    swapped = {r["claim"]: r for r in _board(_entry("dyart", 0.2, worse=True), _entry("pgd-at", 0.5))}
    _check_properties(list(swapped.values()))
    for claim in ("1a", "1b"):
        assert swapped[claim]["result"] == "not supported"
        assert swapped[claim]["reason"].startswith("significant in the opposite direction")
        assert swapped[claim]["effect"] == -rows[claim]["effect"]


@pytest.mark.unit
def test_equal_entries_are_not_supported():
    rows = _board(_entry("dyart", 0.5), _entry("pgd-at", 0.5))
    _check_properties(rows)
    for r in rows[:2]:
        assert r["result"] == "not supported" and r["effect"] == 0 and r["p_value"] == 1.0
        assert r["reason"].startswith("not significant")


@pytest.mark.unit
def test_missing_entries_are_untestable_and_named():
    rows = {r["claim"]: r for r in _board(_entry("trades", 0.3), _entry("sovr", 0.3))}
    _check_properties(list(rows.values()))
    assert rows["1a"]["reason"] == "dyart and pgd-at have no entry on this board"
    assert rows["2"]["reason"] == "rat has no entry on this board"
    for claim in ("3a", "3b", "4a", "4b"):
        assert rows[claim]["result"] == "untestable here"
        assert rows[claim]["reason"] == ("pgd-at and standard have no entry on this board" if claim == "3a" else
                                         "pgd-at has no entry on this board")
    assert rows["5"]["reason"] == "crm-liplt has no entry on this board"
    assert all(r["result"] == "untestable here" for r in rows.values())


@pytest.mark.unit
def test_certified_claim_is_one_test_per_radius_and_baseline():
    rows = [r for r in _board(_entry("crm-liplt", 0.3, radius=0.6), _entry(CERTIFIED_BASELINES[0], 0.3, radius=0.3),
                              _entry("pgd-at", 0.3)) if r["claim"] == "5"]
    _check_properties(rows)
    assert [r["statement"] for r in rows] == [f"crm-liplt's certified L2 accuracy at radius {r} is higher than "
                                              f"{CERTIFIED_BASELINES[0]}'s" for r in ("0.25", "0.5")]
    assert rows[0]["result"] == "not supported" and rows[0]["effect"] == 0  # both certify every clean point at 0.25
    assert rows[1]["result"] == "supported" and rows[1]["effect"] > 0.8
    alone = [r for r in _board(_entry("crm-liplt", 0.3, radius=0.6)) if r["claim"] == "5"]
    assert [r["reason"] for r in alone] == ["no earlier certified-training defense is on this board"]


@pytest.mark.unit
def test_several_seeds_use_the_paired_bootstrap():
    planted = (("dyart", 0.5, False), ("pgd-at", 0.2, True))
    items = [_entry(d, m, worse=w, seed=s) for s in (0, 1) for d, m, w in planted]
    rows = {r["claim"]: r for r in _board(*items)}
    _check_properties(list(rows.values()))
    assert rows["1b"]["test"].startswith("paired bootstrap") and rows["1b"]["result"] == "supported"
    assert rows["1a"]["result"] == "supported"


@pytest.mark.unit
def test_margin_claims_use_the_margins_consistent_with_the_attacks():
    # dyart's margin search "failed" (5.0 everywhere) but the attacks broke most of its points
    # at eps <= 0.3: its consistent median is at most 0.3, below pgd-at's 0.35.
    rows = {r["claim"]: r for r in _board(_entry("dyart", 5.0, worse=True), _entry("pgd-at", 0.35))}
    assert rows["1a"]["effect"] < 0 and rows["1a"]["result"] == "not supported"


@pytest.mark.unit
def test_hardest_points_include_the_ties_at_the_quartile():
    standard = _entry("standard", np.repeat([0.05, 0.1, 0.4], 100))  # lowest quartile 0.05, held by 100 points
    row = next(r for r in _board(_entry("sovr", 0.3), _entry("pgd-at", 0.3), standard) if r["claim"] == "3a")
    assert ("on the 100 hardest points (consistent input margin under standard in its lowest quartile, at most "
            "0.05)") in row["statement"]
    assert row["result"] != "untestable here"
    row = next(r for r in _board(_entry("sovr", 0.3), _entry("pgd-at", 0.3)) if r["claim"] == "3a")
    assert row["result"] == "untestable here" and "standard has no entry" in row["reason"]
