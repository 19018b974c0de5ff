"""The board's view model: every sentence and every table cell of a board, written once.

`board_view(board)` turns the numbers of a JSON board (`leaderboard.build.build_json`) into
sections of blocks (paragraphs, bullet items, tables, images) whose text uses four inline marks:
`code`, *emphasis*, **strong** and [links](target). The JSON board carries the view under
"view"; `leaderboard.markdown` and `leaderboard.html` render it, adding only layout (the web
page's sorting, filters and per-entry panels). A sentence therefore exists in one place, and
tests check it against the numbers it describes (tests/test_board_sentences.py). Its parts: the
tables and the block constructors (`leaderboard.view_tables`), best known (`leaderboard.view_best_known`:
the section, and each attacked entry's blocks for its panel on the web page) and the cost section
(`leaderboard.view_cost`).

Blocks: {"kind": "paragraph", "text"}, {"kind": "items", "items": [text]}, {"kind": "image",
"src", "alt"}, {"kind": "table", "id", "caption", "columns": [{"id", "label", "align"}],
"rows": [[cell]]}, a cell being {"text"} with optional "value" (what the web page sorts by),
"tone" ("better", "worse", "none", "diag") and "title" (a tooltip).
"""
from __future__ import annotations

from benchmark.core.tuning_rules import EDGE_RULE, TUNING_BUDGET
from leaderboard.flags import FLAG_DOCS, SANITY_FLAGS
from leaderboard.formats import count, p_is
from leaderboard.view_best_known import best_known_sections
from leaderboard.view_cost import cost_blocks
from leaderboard.view_tables import (
    certified_table,
    claim_interval_text,
    claims_table,
    flag_letter,
    items,
    paragraph,
    per_eps_table,
    ranked_table,
    section,
    significance_table,
    worst_class_text,
)

#: Flags whose value and threshold are accuracy differences (shown in points); the others' are rates.
_POINT_FLAGS = ("tpgd_much_stronger_than_pgd", "accuracy_rises_with_eps")


def _measure(name: str, value: float) -> str:
    if name in _POINT_FLAGS:
        return f"{value * 100:.1f} points"
    return f"{value * 100:.2g}% of the points" if name == "square_beats_white_box" else f"{value:.3g}"


def note_reason(name: str, evidence: dict, alpha: float) -> str:
    """Why a noted flag did not fire: within chance (p at or above alpha) and/or not above the
    flag's threshold, each stated with its numbers."""
    reasons = []
    p = evidence["p_value"]
    if p is not None and p >= alpha:
        reasons.append(f"within chance (p {p_is(p)} ≥ {alpha})")
    if evidence["value"] <= evidence["threshold"]:
        tail = f", although p {p_is(p)} < {alpha}" if p is not None and p < alpha else ""
        reasons.append(f"not above the flag's threshold ({_measure(name, evidence['value'])} ≤ "
                       f"{_measure(name, evidence['threshold'])}{tail})")
    return "; ".join(reasons) or "below the flag's level"


def _intro(board: dict) -> dict:
    p, stats, primary = board["protocol"], board["statistics"], board["primary_eps"]
    return section(
        "summary", "Summary",
        paragraph(f"Accuracies in % of the protocol's {p['n_examples']} test points with their 95% interval (± half "
                  f"its width, in points): {stats['interval']}; robust columns at eps={primary} ({p['norm']}); each "
                  f"number is the mean over the defense's seeds. Training variance: {stats['training_variance']}. "
                  f"Protocol sha256 `{p['sha256']}`."),
        paragraph(f"Evaluation: {stats['evaluation']}; every record of this board was made so."))


def _ranking(board: dict) -> dict:
    stats = board["statistics"]
    return section(
        "ranking", "Ranking", ranked_table(board),
        paragraph(f"**Ranks.** {stats['rank_rule'][0].upper()}{stats['rank_rule'][1:]}. Test: {stats['comparison']}; "
                  f"{stats['correction']}; alpha {stats['alpha']}. Rows are ordered by worst-case accuracy, then clean "
                  "accuracy, then id."))


def _flags(board: dict) -> dict:
    alpha = board["statistics"]["alpha"]
    fired = [f"**{x['defense']}**: [{flag_letter(name)}] `{name}`: seed {ev['seed']}: {ev['detail']}"
             for x in board["entries"] for name, ev in x["sanity_fired"].items()]
    noted = [f"{x['defense']}: `{name}`: seed {ev['seed']}: {ev['detail']}. Not a flag: "
             f"{note_reason(name, ev, alpha)}"
             for x in board["entries"] for name, ev in x["sanity_noted"].items()]
    return section(
        "flags", "Sanity flags",
        items(fired) if fired else paragraph("No sanity flag fired."),
        paragraph("Notes: evidence that did not fire its flag, each with the reason (within chance at this number of "
                  "points, or not above the flag's threshold):" if noted else "Notes: none."),
        *([items(noted)] if noted else []))


def _claims(board: dict) -> dict:
    alpha = board["statistics"]["alpha"]
    tested = [c for c in board["claims"] if c["result"] != "untestable here"]
    return section(
        "claims", "The founding methods' claims",
        paragraph("Each founding method's headline claim, stated as what this board can test, tested on the paired "
                  "per-example results of the entries it names. The effect is the method minus its comparator, with "
                  f"its 95% interval; p-values are Holm-corrected over the {count(len(tested), 'test')} made here; "
                  f"a claim is *supported* when its adjusted p is below {alpha} and the effect has the claimed "
                  "sign, *not supported* otherwise, and *untestable here* when the board lacks what it needs."
                  + _training_caveat(board) + _interval_caveat(board, alpha)),
        claims_table(board))


def _interval_caveat(board: dict, alpha: float) -> str:
    """Where a claim's interval and its test disagree about 0 (they are different procedures),
    the sentence that says so and names the claims; empty where none does."""
    split = [c for c in board["claims"] if c["interval"] is not None and c["p_value"] is not None
             and (c["interval"][0] > 0 or c["interval"][1] < 0) != (c["p_value"] < alpha)]
    if not split:
        return ""
    cases = "; ".join(
        f"claim {c['claim']} ({c['method']}'s): interval {claim_interval_text(c)} "
        f"{'excludes' if c['p_value'] >= alpha else 'contains'} 0, p {p_is(c['p_value'])}" for c in split)
    return (" An interval and its test are different procedures (a percentile bootstrap or Wilson interval beside "
            "an exact or permutation test, and the exact McNemar test is conservative when few points are "
            "discordant), so near the threshold they can disagree about 0; the result follows the test. "
            f"They disagree here: {cases}.")


def _training_caveat(board: dict) -> str:
    """What the claims' tests do not sample when an entry has one seed: the training. Empty when
    every entry has several seeds (the test column says what each test resamples)."""
    single = [x for x in board["entries"] if x["n_seeds"] == 1]
    if not single:
        return ""
    who = ("with 1 seed per entry on this board, a verdict is about these trained models"
           if len(single) == len(board["entries"]) else
           f"{count(len(single), 'entry', 'entries')} of the {len(board['entries'])} on this board "
           f"{'has' if len(single) == 1 else 'have'} 1 seed, and a verdict that involves one is about that "
           "trained model")
    return (f" A single seed's training is not sampled: {who}, and a retraining (another seed, or the same seed "
            "on a machine of another CPU vendor) can move a verdict that lies near the threshold.")


def _significance(board: dict) -> dict:
    p, stats = board["protocol"], board["statistics"]
    return section(
        "significance", "Significance of every pair",
        paragraph(f"Row minus column: the difference in worst-case robust accuracy at eps={board['primary_eps']} in "
                  f"points and the p-value after correction ({stats['comparison']}; {stats['correction']}); * marks "
                  f"a significant pair. Heatmap: [{p['id']}.significance.png]({p['id']}.significance.png)."),
        significance_table(board))


def _certified(board: dict) -> list[dict]:
    table = certified_table(board)
    if table is None:
        return []
    missing = [f"{x['defense']}: " + ("an external model without a certified block in its records"
                                     if x["external"] else "its records have no certified block: the LipLT bound is "
                                     "computed for plain networks (convolutions, linear layers and ReLUs) only, and "
                                     "this entry's model is not one")
               for x in board["entries"] if not x["certified_l2"]]
    blocks = [paragraph("Certified L2 accuracy (the LipLT bound on the network's Lipschitz constant) beside L2-PGD "
                        "robust accuracy at the same radius, on the same points."), table]
    if missing:
        blocks += [paragraph("Not in this table:"), items(missing)]
    return [section("certified", "Certified L2 accuracy (LipLT bound) beside L2-PGD robust accuracy", *blocks)]


def _classwise(board: dict) -> dict:
    primary, names, p = board["primary_eps"], board["class_names"], board["protocol"]
    lines = []
    for x in board["entries"]:
        d, gain = x["class_disparity"], x["attack_gain"]
        line = (f"**{x['defense']}**: {worst_class_text(x, names, primary)}; class disparity "
                f"{'real' if d['real'] else 'not shown'} (permutation p {p_is(d['p_value'])})")
        if gain["attack"] and gain["points"]:
            weak = ", ".join(names[k] for k in gain["weakest_classes"])
            line += (f"; `{gain['attack']}` breaks {count(gain['points'], 'point')} PGD leaves robust, "
                     f"{gain['share_on_weakest'] * 100:.0f}% of them in PGD's weakest classes ({weak}, "
                     f"{gain['expected_share'] * 100:.0f}% expected; p {p_is(gain['p_value'])}: "
                     f"{'concentrated there' if gain['concentrated'] else 'not shown to be concentrated there'})")
        lines.append(line)
    return section(
        "classwise", "Class-wise worst-case robust accuracy",
        {"kind": "image", "src": f"{p['id']}.classwise.png",
         "alt": f"Class-wise worst-case robust accuracy at eps={primary}"},
        items(lines))


def _groups_sentence(board: dict) -> str:
    return " ".join(f"*{g}*: per point, the worst case over the columns {', '.join(f'`{m}`' for m in members)} "
                    "(shown beside it)." for g, members in board["attack_groups"].items())


def _how_to_read(board: dict) -> dict:
    p = board["protocol"]
    k = len(board["class_names"])
    return section(
        "how-to-read", "How to read this board",
        paragraph("*Worst case*: a test point counts as robust only if it survives every attack column at that eps. "
                  + _groups_sentence(board) + " *Rank*: 1 + the number of entries a paired test on the same test "
                  "points finds significantly better; ranks are tiers, and two entries in different tiers need not "
                  "differ significantly from each other (the significance matrix says which pairs do). "
                  f"*Worst class*: the lowest of the {k} classes' worst-case accuracies (tied classes all named); "
                  "being the minimum of several estimates, it is biased low, so its interval is simultaneous over "
                  f"the classes (each class's interval at level 1 − 0.05/{k}), which covers the true lowest class "
                  "accuracy with 95% confidence. *Class disparity p*: a permutation test of whether robustness "
                  "differs between classes at all. *Seeds* is the number of training seeds averaged (with their "
                  "spread)."),
        paragraph("*Best known*: per point, the worst case over the protocol's attack columns and every admitted "
                  "submitted attack (attack records, docs/attacks.md), the mean over the seeds; `-` where no "
                  "submitted attack was run against the entry. It is never above the worst case, has no interval, and "
                  "changes no rank (the ranking stays the protocol's)."),
        paragraph("*Loss fidelity*: `reference` when the defense's loss follows the authors' code, `our-reading` "
                  "when it follows the paper's text, `external` for a model trained outside atbench. *Recipe*: "
                  "`track` when it was trained with the track's common recipe (its departures listed under *recipe "
                  "overrides*, and `config.*` the hyperparameters its sweep chose, linked), not the paper's own "
                  "schedule; docs/defenses.md gives each paper's recipe beside the track's. Every sweep scores "
                  f"the same {TUNING_BUDGET} declared settings, by the defense's own selection score on validation "
                  f"points, and then the grid-edge rule: {EDGE_RULE}; the count of settings tried is given beside "
                  "each sweep link, and a sweep made before the rule says so."),
        paragraph(f"*Median margin*: the median over test points of the smallest {p['norm']} perturbation FAB finds "
                  "(0 for misclassified points, capped at the search limit), lowered to the smallest eps at which an "
                  "attack of the protocol broke the point, since an adversarial example exists there; beside it, the "
                  "number of points so lowered (where the search failed and an attack did not). It is an upper bound "
                  "on the true margin."),
        paragraph("*Flags* mark suspicious evaluations beyond chance; *notes* show evidence that did not fire its "
                  "flag: " + "; ".join(f"[{flag_letter(n)}] `{n}`: {FLAG_DOCS[n]}" for n in SANITY_FLAGS) + "."))


def board_view(board: dict) -> dict:
    """The view of a JSON board: its title and sections, every sentence and cell as text (see the
    module docstring). A pure function of the board's numbers (its "view" key is ignored)."""
    p = board["protocol"]
    return {
        "title": f"Leaderboard: {board['track']} (protocol {p['id']} v{p['version']})",
        "sections": [_intro(board), _ranking(board), *best_known_sections(board), _claims(board), _flags(board),
                     _significance(board), *_certified(board),
                     section("per-eps", "Worst-case robust accuracy (%) per eps", per_eps_table(board)),
                     _classwise(board), section("cost", "Cost", *cost_blocks(board)), _how_to_read(board)],
    }

