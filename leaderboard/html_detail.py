"""The detail panel of one board entry (`leaderboard.html`): robust accuracy against eps, the
per-class worst case, flags and notes, recipe, certified accuracy, best known (for an entry a
submitted attack was run against: the view's blocks,
`leaderboard.view_best_known.entry_best_known_blocks`), and per seed the confusion matrix, margins,
training and provenance with links to the record and its flags file."""
from __future__ import annotations

from fractions import Fraction

from leaderboard.evidence import ALPHA
from leaderboard.flags import FLAG_DOCS, SANITY_FLAGS
from leaderboard.formats import count, override_value, p_is, pct
from leaderboard.html_parts import (
    definition_list,
    esc,
    interval_html,
    num,
    path_href,
    safe_href,
    simple_table,
)
from leaderboard.html_svg import (
    PALETTE,
    WORST_COLOUR,
    Series,
    class_bars,
    eps_chart,
    legend,
)
from leaderboard.html_view import block_html
from leaderboard.view import note_reason
from leaderboard.view_best_known import TITLE, entry_best_known_blocks
from leaderboard.view_tables import flag_letter, worst_class_text


def _eps_section(board: dict, x: dict) -> str:
    eps, attacks = board["eps"], board["attacks"]
    clean, clean_interval = [x["clean_acc"]], [x["intervals"]["clean_acc"]]
    series = [Series(a, PALETTE[i % len(PALETTE)], clean + [x["robust_acc"][a][e] for e in eps],
                     clean_interval + [x["intervals"]["robust_acc"][a][e] for e in eps]) for i, a in enumerate(attacks)]
    series.append(Series("worst case", WORST_COLOUR, clean + [x["worst_case"][e] for e in eps],
                         clean_interval + [x["intervals"]["worst_case"][e] for e in eps], heavy=True))
    rows = [[esc(a)] + [interval_html(x["robust_acc"][a][e], x["intervals"]["robust_acc"][a][e]) for e in eps]
            for a in attacks]
    rows.append(["worst case"] + [interval_html(x["worst_case"][e], x["intervals"]["worst_case"][e]) for e in eps])
    norm = board["protocol"]["norm"]
    title = f"{x['defense']}: robust accuracy (%) against {norm} eps, with 95% intervals"
    return ("<section><h4>Robust accuracy against eps</h4>"
            + eps_chart(["0", *eps], series, title, f"eps ({norm}); eps 0 is clean accuracy") + legend(series)
            + simple_table(f"Robust accuracy (%) of {esc(x['defense'])} per eps, ± half the 95% interval",
                           ["attack"] + [f"eps={e}" for e in eps], rows, cls="data eps-table")
            + "</section>")


def _best_known_section(board: dict, x: dict, anchor: str) -> str:
    """The entry's best-known blocks of the view (their tables' ids prefixed by the panel's
    `anchor`); nothing when no submitted attack was run against it."""
    blocks = entry_best_known_blocks(x, board["eps"], board["statistics"]["alpha"])
    if not blocks:
        return ""
    return (f'<section class="best-known"><h4>{esc(TITLE)}</h4>'
            + "".join(block_html(b, f"{anchor}-") for b in blocks) + "</section>")


def _class_sentence(board: dict, x: dict) -> str:
    names, primary = board["class_names"], board["primary_eps"]
    d, gain = x["class_disparity"], x["attack_gain"]
    text = (f"At eps={esc(primary)}: {esc(worst_class_text(x, names, primary))} (95% interval simultaneous over "
            f"the classes). Class disparity {'real' if d['real'] else 'not shown'} "
            f"(permutation p {p_is(d['p_value'])}).")
    if gain["attack"] and gain["points"]:
        weak = ", ".join(esc(names[k]) for k in gain["weakest_classes"])
        text += (f" <code>{esc(gain['attack'])}</code> breaks {count(gain['points'], 'point')} PGD leaves robust, "
                 f"{gain['share_on_weakest'] * 100:.0f}% of them in PGD's weakest classes ({weak}; "
                 f"{gain['expected_share'] * 100:.0f}% expected; p {p_is(gain['p_value'])}: "
                 f"{'concentrated there' if gain['concentrated'] else 'not shown to be concentrated there'}).")
    return f"<p>{text}</p>"


def _class_section(board: dict, x: dict) -> str:
    eps, primary, names = board["eps"], board["primary_eps"], board["class_names"]
    worst = x["worst_classes"][primary]
    rows = [[esc(name) + (' <span class="tag">worst</span>' if c in worst else "")]
            + [pct(x["per_class_worst_case"][e][c]) for e in eps] for c, name in enumerate(names)]
    title = f"{x['defense']}: worst-case robust accuracy (%) per class at eps={primary}"
    return ("<section><h4>Per-class worst-case accuracy</h4>"
            + class_bars(names, x["per_class_worst_case"][primary], worst[0], title) + _class_sentence(board, x)
            + simple_table(f"Worst-case robust accuracy (%) of {esc(x['defense'])} per class",
                           ["class"] + [f"eps={e}" for e in eps], rows, cls="data class-table")
            + "</section>")


def _flags_section(x: dict) -> str:
    def evidence(ev: dict) -> str:
        return f"seed {ev['seed']}: {esc(ev['detail'])}"

    def doc(name: str) -> str:
        return f'<br><span class="muted">{esc(FLAG_DOCS[name])}</span></li>'

    fired, noted = x["sanity_fired"], x["sanity_noted"]
    items = [f'<li class="flag"><strong>[{flag_letter(n)}] flag <code>{esc(n)}</code></strong>: '
             f"{evidence(fired[n])}{doc(n)}" for n in SANITY_FLAGS if n in fired]
    items += [f"<li><strong>note <code>{esc(n)}</code></strong>: {evidence(noted[n])}. Not a flag: "
              f"{esc(note_reason(n, noted[n], ALPHA))}{doc(n)}" for n in SANITY_FLAGS if n in noted]
    body = f'<ul class="flags">{"".join(items)}</ul>' if items else "<p>No flag fired and nothing was noted.</p>"
    return f"<section><h4>Sanity flags and notes</h4>{body}</section>"


def _recipe_section(x: dict) -> str:
    link = safe_href(x["link"])
    paper = f'<a href="{link}">{esc(x["paper"])}</a>' if link else esc(x["paper"])
    overrides = "".join(f"<li><code>{esc(k)}</code> = <code>{esc(override_value(v))}</code></li>"
                        for k, v in sorted(x["recipe_overrides"].items()))
    sweep = (f'<a href="{path_href("..", "sweeps", *x["sweep"].split("/"))}.md">{esc(x["sweep"])}</a>'
             if x["sweep"] else "none")
    facts = [("paper", paper + (f" ({esc(x['venue'])})" if x["venue"] else "")),
             ("model", "external model (trained outside atbench)" if x["external"] else "trained by atbench"),
             ("loss fidelity", esc(x["fidelity"]["loss"])), ("recipe", esc(x["fidelity"]["recipe"])),
             ("architecture", f"<code>{esc(x['architecture'])}</code>"),
             ("recipe overrides", f'<ul class="plain">{overrides}</ul>' if overrides else "none"),
             ("sweep", sweep)]
    return f"<section><h4>Recipe</h4>{definition_list(facts)}</section>"


def _certified_section(x: dict) -> str:
    if not x["certified_l2"]:
        return ""
    radii = sorted(x["certified_l2"], key=Fraction)
    rows = [[esc(r), pct(x["certified_l2"][r]["certified"]), pct(x["certified_l2"][r]["pgd_l2"])] for r in radii]
    return ("<section><h4>Certified L2 accuracy</h4>"
            + simple_table("LipLT-certified accuracy beside L2-PGD robust accuracy (%)",
                           ["L2 radius", "certified", "L2-PGD"], rows) + "</section>")


def _confusion(record: dict, names: list[str]) -> str:
    matrix = record["confusion_adversarial"]["matrix"]
    head = "".join(f'<th scope="col" class="num">{esc(n)}</th>' for n in names)
    rows = []
    for i, row in enumerate(matrix):
        total = max(1, sum(row))
        cells = "".join(
            f'<td class="num {"hit" if i == j else "miss"}" style="--a:{count / total:.2f}">{count}</td>'
            for j, count in enumerate(row))
        rows.append(f'<tr><th scope="row">{esc(names[i])}</th>{cells}</tr>')
    return (f'<div class="table-wrap"><table class="confusion"><caption><span class="cap">Confusion matrix at '
            f"eps={esc(record['confusion_adversarial']['eps'])}: rows are true classes, columns the class "
            "the worst-case adversarial example is predicted as</span></caption>"
            f'<thead><tr><th scope="col">true \\ predicted</th>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _margins(record: dict) -> str:
    m = record["margins"]
    logit = m["logit"]
    logit_rows = [["clean", num(logit["clean_percentiles"]["p10"]), num(logit["clean_percentiles"]["p50"])],
                  [f"adversarial (eps={esc(logit['adversarial_eps'])}; {esc(logit['adversarial_method'])})",
                   num(logit["adversarial_percentiles"]["p10"]), num(logit["adversarial_percentiles"]["p50"])]]
    input_rows = [[f"{label} ({esc(m[key]['method'])})", num(m[key]["median"]),
                   pct(m[key]["frac_below_half_primary"]), num(m[key]["eps_max"])]
                  for label, key in (("minimum-norm attack", "input"), ("bisection", "input_bisection"))]
    check = m["input_cross_check"]
    return (simple_table("Logit margins z<sub>y</sub> − max<sub>k≠y</sub> z<sub>k</sub>",
                         ["logit margin on", "p10", "median"], logit_rows, cls="data logit-margins")
            + simple_table(f"Input-space margins ({esc(m['input']['norm'])}, upper bounds)",
                           ["estimate", "median", "below half primary eps (%)", "search limit"],
                           input_rows, cls="data input-margins")
            + f"<p>Cross-check on the {check['points']} points both estimates break: the minimum-norm margin is at "
              f"most the bisection's on {pct(check['fab_at_most_bisection'])}% of them; median ratio "
              f"{num(check['median_ratio'])}.</p>")


def _provenance(record: dict) -> str:
    """What made the record. Not its time or runtimes, which differ between two runs that
    reproduce each other: the page stays a function of the results (the record has them)."""
    p, t = record["provenance"], record["training"]
    packages = ", ".join(f"{esc(k)} {esc(v)}" for k, v in sorted(p["packages"].items())) or "none"
    seeds = ", ".join(f"{esc(k)}={v}" for k, v in sorted(p["seeds"].items()))
    training = ("none (external model)" if t is None else
                f"{esc(t['selection_rule'])}; best epoch {t['best_epoch']} of {t['epochs']} (validation robust "
                f"{pct(t['val_robust_acc'])}%, clean {pct(t['val_clean_acc'])}%)")
    commit = "none (outside git)" if p["git_commit"] is None else f"<code>{esc(p['git_commit'])}</code>"
    facts = [("training", training), ("git commit", commit + (" (uncommitted changes)" if p["git_dirty"] else "")),
             ("atbench", esc(p["atbench_version"])), ("packages", packages), ("python", esc(p["python"])),
             ("device", esc(p["device"])), ("seeds", seeds), ("data sha256", f"<code>{esc(p['data_sha256'])}</code>"),
             ("test subset sha256", f"<code>{esc(p['test_subset_sha256'])}</code>"),
             ("checkpoint sha256", f"<code>{esc(p['checkpoint_sha256'])}</code>")]
    return definition_list(facts)


def _seed_section(record: dict, names: list[str]) -> str:
    folder = ("..", "records", record["protocol"]["id"])
    name, seed = record["defense"]["id"], record["seed"]
    links = (f'<a href="{path_href(*folder, f"{name}-seed{seed}.json")}">record JSON</a> · '
             f'<a href="{path_href(*folder, record["flags"]["file"])}">per-example flags</a>')
    return (f'<section class="seed" data-seed="{seed}"><h4>Seed {seed}</h4><p class="links">{links}</p>'
            f'<div class="grid"><div><h5>Confusion matrix</h5>{_confusion(record, names)}</div>'
            f"<div><h5>Margins</h5>{_margins(record)}<h5>Provenance</h5>{_provenance(record)}</div></div></section>")


def render_detail(board: dict, x: dict, records: list[dict], anchor: str) -> str:
    """The `<details>` panel of board entry `x`; `records` are its records (sorted by seed)."""
    primary = board["primary_eps"]
    seeds = "".join(_seed_section(r, board["class_names"]) for r in records)
    return (
        f'<details class="entry" id="{esc(anchor)}" data-defense="{esc(x["defense"])}">'
        f'<summary><span class="badge">#{x["rank"]}</span> <strong>{esc(x["defense"])}</strong>'
        f'{" (external model)" if x["external"] else ""} '
        f'<span class="muted">worst case {pct(x["worst_case"][primary])}% at eps={esc(primary)}</span></summary>'
        f'<div class="panel"><div class="grid">{_eps_section(board, x)}{_class_section(board, x)}{_flags_section(x)}'
        f"{_recipe_section(x)}{_certified_section(x)}</div>{_best_known_section(board, x, anchor)}"
        f'<h4 class="seeds">Per seed: confusion matrix, margins, provenance</h4>{seeds}'
        "</div></details>"
    )
