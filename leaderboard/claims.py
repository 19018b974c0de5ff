"""The board's claims section: the founding methods' headline claims, each stated as a testable
statement on this track and tested on the records' paired per-example flags.

The comparators are fixed here, before any result is seen. Every test made on a board is
Holm-corrected with the others (untestable claims are not tests and stay out of the correction);
a claim is "supported" only when its Holm-adjusted p is below ALPHA and its effect (the method
minus its comparator) is in the claimed direction. Margin claims use the input margins bounded
by the protocol's attacks (`leaderboard.input_margins.consistent_margins`), never the raw ones.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Callable

import numpy as np

from leaderboard import stats
from leaderboard.evidence import (ALPHA, BOOTSTRAP_SEED, REPLICATES, Admitted, _paired, _sig, attack_gain,
                                  disparity, pair_replicates, seed_class_means, worst_flags)
from leaderboard.input_margins import consistent_margins

#: Earlier certified-training defenses that CRM-LipLT's certified accuracy is compared with.
CERTIFIED_BASELINES = ("gloro", "lipschitz-margin")
#: The three results a claim can have.
RESULTS = ("supported", "not supported", "untestable here")
ACCURACY = "points of accuracy"
#: What each key of a claim row means.
COLUMNS = {
    "claim": "the claim's number (1a, 1b, 2, 3a, ...) in the list of founding methods' claims",
    "method": "the defense id whose paper makes the claim",
    "comparator": "the entry the method is compared with (for 4a/4b: the entry tested)",
    "paper_claim": "what the paper claims, in one sentence",
    "statement": "the claim as a testable statement on this board",
    "test": "the test of the statement on the paired per-example data",
    "unit": f"the effect's unit; '{ACCURACY}' are fractions of the test points (0.05 = 5 points)",
    "effect": "the claimed-direction difference, method minus comparator (positive = as claimed)",
    "interval": "95% interval of the effect (paired percentile bootstrap; for 4b a Wilson interval of the share "
                "minus the expected share; None for 4a, where the best-minus-worst class spread has no "
                "calibrated interval, and for untestable claims)",
    "p_value": "the test's p-value (two-sided, except 4a's permutation test and 4b's one-sided binomial test)",
    "p_adjusted": "the p-value Holm-adjusted over every test made on the board",
    "result": f"one of {', '.join(RESULTS)}: supported when p_adjusted < {ALPHA} and effect > 0",
    "reason": "why the result is what it is, in one sentence",
}

Run = Callable[[int], tuple]  # replicates -> (effect, low, high, raw p)


def median_margin_bootstrap(a: np.ndarray, b: np.ndarray, replicates: int, seed: int) -> stats.PairedBootstrap:
    """A paired bootstrap of the difference in median input margin of two defenses, `a` and `b`
    being (seeds, points) margin matrices on the same points. A defense's statistic is the mean
    over its seeds of each seed's median margin. Each replicate resamples the points once, shared
    by both (drawn as one (replicates, points) block when it fits `stats`' block size), then
    a's seeds and then b's seeds with replacement (not drawn for a defense with one seed). The
    p-value is `stats.paired_bootstrap`'s: min(1, 2 (1 + min(#d <= 0, #d >= 0)) / (1 + replicates))."""
    stat = lambda m: float(np.mean(np.median(m, axis=1)))
    rng, n = np.random.default_rng(seed), a.shape[1]

    def resampled(m: np.ndarray, points: np.ndarray) -> np.ndarray:
        medians = np.median(m[:, points], axis=-1)  # (seeds, size)
        if m.shape[0] == 1:
            return medians[0]
        draws = rng.integers(0, m.shape[0], size=(points.shape[0], m.shape[0]))
        return np.take_along_axis(medians.T, draws, axis=1).mean(axis=1)

    diffs = []
    for size in stats._blocks(replicates, n * max(a.shape[0], b.shape[0])):
        points = rng.integers(0, n, size=(size, n))
        diffs.append(resampled(a, points) - resampled(b, points))
    d = np.concatenate(diffs)
    p = min(1.0, 2.0 * (1 + min(np.sum(d <= 0), np.sum(d >= 0))) / (1 + replicates))
    low, high = np.quantile(d, [0.025, 0.975])
    return stats.PairedBootstrap(stat(a) - stat(b), float(low), float(high), float(p))


def margin_matrix(items: list[Admitted], eps: list[str]) -> np.ndarray:
    """A defense's consistent input margins, (seeds, points)."""
    return np.stack([consistent_margins(it, eps).margins for it in items])


def certified_flags(item: Admitted, radius: str) -> np.ndarray:
    """Per point, certified at L2 `radius`: its certified radius (0 where misclassified) is at
    least the radius, as the record's `certified_l2.certified_acc` counts it."""
    return np.asarray(item.flags.values["certified_radius"]) >= float(Fraction(radius))


#: The entry whose consistent input margins define SOVR's "hardest examples": outside the comparison.
HARDNESS_REFERENCE = "standard"


def _row(claim, method, comparator, paper_claim, statement, test, unit, run: Run | None = None, missing=None):
    return {"claim": claim, "method": method, "comparator": comparator, "paper_claim": paper_claim,
            "statement": statement, "test": test, "unit": unit, "_run": run, "_missing": missing}


def _absent(groups, *ids) -> str | None:
    gone = [d for d in ids if d not in groups]
    return f"{' and '.join(gone)} {'has' if len(gone) == 1 else 'have'} no entry on this board" if gone else None


MCNEMAR = "exact McNemar test on the paired per-example {what}"
BOOTSTRAP = ("paired bootstrap over seeds and test points of the {what} ({replicates} replicates, "
             f"seed {BOOTSTRAP_SEED})")


def _accuracy_test(a, b, flags_of, what: str) -> tuple[str, Run]:
    def run(replicates):
        boot, p = _paired(a, b, flags_of, replicates)
        return boot.effect, boot.low, boot.high, p
    return (MCNEMAR if len(a) == len(b) == 1 else BOOTSTRAP).replace("{what}", what), run


def _accuracy(claim, method, comp, paper, groups, primary, mask=None, scope="", needs=()):
    statement = f"{method}'s worst-case robust accuracy at eps {primary}{scope} is higher than {comp}'s"
    what = f"worst-case flags at eps {primary}"
    missing = _absent(groups, method, comp, *needs)
    if missing:
        return _row(claim, method, comp, paper, statement, MCNEMAR.replace("{what}", what), ACCURACY, missing=missing)
    flags_of = (lambda it: worst_flags(it, primary)[slice(None) if mask is None else mask])
    test, run = _accuracy_test(groups[method], groups[comp], flags_of, what)
    return _row(claim, method, comp, paper, statement, test, ACCURACY, run)


def _margin(claim, method, comp, paper, groups, eps, unit):
    statement = f"{method}'s median consistent input margin is larger than {comp}'s"
    test = ("paired bootstrap over test points (and seeds) of the median consistent input margin "
            f"({{replicates}} replicates, seed {BOOTSTRAP_SEED}; two-sided)")
    missing = _absent(groups, method, comp)
    if missing:
        return _row(claim, method, comp, paper, statement, test, unit, missing=missing)

    def run(replicates):
        boot = median_margin_bootstrap(margin_matrix(groups[method], eps), margin_matrix(groups[comp], eps),
                                       replicates, BOOTSTRAP_SEED)
        return boot.effect, boot.low, boot.high, boot.p_value
    return _row(claim, method, comp, paper, statement, test, unit, run)


PERMUTATION = (f"permutation test of the class x robust table ({REPLICATES} permutations, seed {BOOTSTRAP_SEED}; "
               "several seeds as the points' seed means)")
BINOMIAL = "one-sided exact binomial test of the share of the gained points on the weakest classes"


def _classwise(groups, primary, num_classes) -> list[dict]:
    paper = "Tian et al. (KDD 2021): adversarially trained models are much less robust on some classes than others"
    gain_paper = "Tian et al. (KDD 2021): stronger attacks gain mostly on the classes that are already weak"
    base, method = "pgd-at", "classwise-at"
    if base not in groups:
        why = _absent(groups, base)
        return [_row("4a", method, base, paper, f"{base}'s worst-case robust accuracy differs by class",
                     PERMUTATION, ACCURACY, missing=why),
                _row("4b", method, base, gain_paper, f"on {base}, the strongest attack's gains over PGD fall on "
                     "the weakest classes", BINOMIAL, "share of points", missing=why)]
    items = groups[base]
    worst, labels = np.stack([worst_flags(it, primary) for it in items]), items[0].flags.labels

    def spread(_):
        means = seed_class_means(worst, labels, num_classes)
        return float(np.nanmax(means) - np.nanmin(means)), None, None, disparity(worst, labels, num_classes)["p_value"]
    rows = [_row("4a", method, base, paper, f"{base}'s worst-case robust accuracy at eps {primary} differs by class "
                 "(effect: best minus worst class)", PERMUTATION, ACCURACY, spread)]
    gain = attack_gain(items, primary, "pgd", sorted(items[0].record["robust_acc"]), num_classes)
    if gain["attack"] is None:
        return rows + [_row("4b", method, base, gain_paper, f"on {base} at eps {primary}, the strongest attack's gains "
                            "over PGD fall on the weakest classes", BINOMIAL, "share of points",
                            missing=f"{base} has no pgd column and another attack to compare")]
    statement = (f"on {base} at eps {primary}, the points {gain['attack']} breaks but PGD does not fall on {base}'s "
                 f"weakest classes ({', '.join(items[0].record['class_names'][k] for k in gain['weakest_classes'])}) "
                 "more often than their share of PGD-robust points")

    def share(_):
        on_weak = sum(gain["per_class"][k] for k in gain["weakest_classes"])
        low, high = stats.wilson_interval(on_weak, gain["points"])
        expected = gain["expected_share"]
        return gain["share_on_weakest"] - expected, low - expected, high - expected, gain["p_value"]
    return rows + [_row("4b", method, base, gain_paper, statement, BINOMIAL, "share of points", share)]


def _certified(groups) -> list[dict]:
    paper = "CRM-LipLT (NeurIPS 2023): higher certified L2 accuracy than earlier certified-training methods"
    test = MCNEMAR.replace("{what}", "certified-at-radius flags")
    missing = _absent(groups, "crm-liplt")
    block = None if missing else groups["crm-liplt"][0].record["certified_l2"]
    if not missing and block is None:
        missing = "crm-liplt has no certified radii on this board"
    present = [b for b in CERTIFIED_BASELINES if b in groups]
    if not missing and not present:
        missing = "no earlier certified-training defense is on this board"
    statement = "crm-liplt's certified L2 accuracy is higher than an earlier certified-training defense's"
    if missing:
        return [_row("5", "crm-liplt", None, paper, statement, test, ACCURACY, missing=missing)]
    rows = []
    for comp in present:
        for r in block["radii"]:
            statement = f"crm-liplt's certified L2 accuracy at radius {r} is higher than {comp}'s"
            lacking = [d for d in ("crm-liplt", comp) if any("certified_radius" not in it.flags.values
                                                             for it in groups[d])]
            if lacking:
                rows.append(_row("5", "crm-liplt", comp, paper, statement, test, ACCURACY,
                                 missing=f"{lacking[0]} has no certified radii on this board"))
                continue
            test, run = _accuracy_test(groups["crm-liplt"], groups[comp], lambda it, r=r: certified_flags(it, r),
                                       f"certified-at-radius-{r} flags")
            rows.append(_row("5", "crm-liplt", comp, paper, statement, test, ACCURACY, run))
    return rows


def _verdict(effect: float, adjusted: float) -> tuple[str, str]:
    if adjusted >= ALPHA:
        return "not supported", f"not significant (Holm-adjusted p = {adjusted:.3g} ≥ {ALPHA})"
    if effect > 0:
        return "supported", f"significant after Holm (adjusted p = {adjusted:.3g}) and in the claimed direction"
    if effect < 0:
        return "not supported", f"significant in the opposite direction (Holm-adjusted p = {adjusted:.3g})"
    return "not supported", "no difference in the claimed direction"


def board_claims(groups: dict[str, list[Admitted]], eps: list[str], primary: str, num_classes: int) -> list[dict]:
    """The founding methods' claims on one board, tested on the paired per-example data and
    Holm-corrected over every test made (see `COLUMNS` for the keys). `groups` maps a defense id
    to its seeds' admitted records, `eps` is the protocol's eps list and `primary` its primary
    eps. A claim whose method or comparator has no entry is "untestable here", its numbers None.

    SOVR's "hardest examples" are the points whose consistent input margin under `standard` (the
    mean over its seeds) is at most its lowest quartile: chosen by a model outside the
    comparison, since points chosen by the comparator's own margins are ones it fails by
    construction, which would favour any method."""
    any_item = next(iter(groups.values()))[0]
    unit = f"input margin ({any_item.record['protocol']['norm']})"
    dyart = "Xu et al. (ICLR 2023): DyART"
    sovr = "SOVR (ICML 2023)"
    rows = [_margin("1a", "dyart", "pgd-at", f"{dyart} gives larger input margins than PGD-AT", groups, eps, unit),
            _accuracy("1b", "dyart", "pgd-at", f"{dyart} is more robust than PGD-AT", groups, primary),
            _accuracy("2", "rat", "trades", "RAT (CVPR 2023) is more robust than TRADES", groups, primary)]
    hard_paper = f"{sovr} is more robust than PGD-AT on the hardest examples"
    if HARDNESS_REFERENCE in groups:
        h = margin_matrix(groups[HARDNESS_REFERENCE], eps).mean(axis=0)
        cut = float(np.quantile(h, 0.25))
        mask = h <= cut
        scope = (f" on the {int(mask.sum())} hardest points (consistent input margin under {HARDNESS_REFERENCE} in "
                 f"its lowest quartile, at most {cut:.4g})")
        rows.append(_accuracy("3a", "sovr", "pgd-at", hard_paper, groups, primary, mask=mask, scope=scope))
    else:
        rows.append(_accuracy("3a", "sovr", "pgd-at", hard_paper, groups, primary, needs=(HARDNESS_REFERENCE,),
                              scope=f" on the hardest points (by {HARDNESS_REFERENCE}'s margins)"))
    rows += [_margin("3b", "sovr", "pgd-at", f"{sovr} gives larger margins than PGD-AT (logit margins in the paper, "
                     "input margins here)", groups, eps, unit),
             *_classwise(groups, primary, num_classes), *_certified(groups)]
    tested = [r for r in rows if r["_run"] is not None]
    replicates = pair_replicates(len(tested))
    results = [r["_run"](replicates) for r in tested]
    adjusted = iter(stats.holm([res[3] for res in results]) if results else [])
    results = iter(results)
    out = []
    for r in rows:
        run, missing = r.pop("_run"), r.pop("_missing")
        r["test"] = r["test"].replace("{replicates}", str(replicates))
        if run is None:
            out.append({**r, "effect": None, "interval": None, "p_value": None, "p_adjusted": None,
                        "result": RESULTS[2], "reason": missing})
            continue
        effect, low, high, p = next(results)
        adj, effect = next(adjusted), round(float(effect), 4)
        result, reason = _verdict(effect, adj)
        interval = None if low is None else [round(float(low), 4), round(float(high), 4)]
        out.append({**r, "effect": effect, "interval": interval, "p_value": _sig(p),
                    "p_adjusted": _sig(adj), "result": result, "reason": reason})
    return out
