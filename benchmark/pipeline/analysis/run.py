"""The analysis stage's entry: what a record reports beyond accuracies, the confusion matrix of
adversarial predictions, logit and input-space margins, the certified L2 table and the sanity flags
of the evaluation (`probe` before the protocol runs, `analyse` after it)."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from benchmark.pipeline.analysis.certified import certify
from benchmark.pipeline.analysis.margins import (
    confusion_matrix,
    histogram,
    input_margins,
    logit_margins,
    margin_edges,
    margin_summary,
)
from benchmark.pipeline.analysis.min_norm import (
    FAB_METHOD,
    adversarial_logit_margins,
    cross_check,
    fab_margins,
    percentiles,
)
from benchmark.pipeline.analysis.result_flags import SweepPair, result_flags
from benchmark.pipeline.analysis.sanity import model_flags
from benchmark.pipeline.evaluate import ProtocolResult, worst_case_predictions
from benchmark.pipeline.protocol import Protocol
from leaderboard.flags import SANITY_FLAGS

INPUT_MARGIN_METHOD = "pgd-bisection"


@dataclasses.dataclass
class Analysis:
    """The record blocks (`certified_l2`, `confusion_adversarial`, `margins`, `sanity`) and
    the per-example arrays they come from (stored in the flags file)."""

    record: dict
    per_example: dict[str, np.ndarray]


def margin_search_limit(protocol: Protocol) -> float:
    """The largest eps the input-margin searches try: `[analysis.margins] search_factor` times the
    protocol's largest eps (at most 1 for Linf, where eps 1 reaches every image), so robust
    points get a margin too."""
    limit = protocol.analysis.margins.search_factor * protocol.eps_value(protocol.eps[-1])
    return min(limit, 1.0) if protocol.norm == "Linf" else limit


def black_box_parts(protocol: Protocol) -> list[tuple[str, str]]:
    """(column, part) for every black-box part (`Attack.black_box_parts`: AutoAttack's Square)
    of the protocol's attack columns."""
    return [(c.column, part) for c in protocol.columns for part in protocol.attack_class(c).black_box_parts]


def sweep_pairs(protocol: Protocol) -> list[SweepPair]:
    """Each swept column group beside the column of the attack its sweep generalises
    (`Sweep.baseline`), when the protocol has that column (Temperature-PGD beside PGD)."""
    pairs = []
    for group, members in protocol.groups().items():
        cls = protocol.attack_class(next(c for c in protocol.columns if c.column == members[0]))
        baseline = next((c for c in protocol.columns if not c.group and cls.sweep.baseline is not None
                         and protocol.attack_class(c) is cls.sweep.baseline), None)
        if baseline is not None:
            pairs.append(SweepPair(group, tuple(members), cls.title, baseline.column, cls.sweep.baseline.title))
    return pairs


def margin_blocks(model: nn.Module, protocol: Protocol, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                  device: torch.device) -> tuple[dict, dict[str, np.ndarray]]:
    """The record's `margins` block and its per-example arrays: logit margins on the clean points
    and after a full-budget margin-loss PGD at the primary eps (histograms and percentiles), and
    input margins from FAB with the PGD bisection beside it as a cross-check ([analysis.margins])."""
    settings, labels = protocol.analysis.margins, y.numpy()
    primary = protocol.eps_value(protocol.primary_eps)
    eps_max = margin_search_limit(protocol)
    clean = logit_margins(model, x, y, device)
    adversarial = adversarial_logit_margins(model, x, y, eps=primary, norm=protocol.norm,
                                            steps=settings.adversarial_steps,
                                            step_ratio=settings.adversarial_step_ratio,
                                            seed=settings.adversarial_seed, device=device)
    fab = fab_margins(model, x, y, norm=protocol.norm, eps_max=eps_max, iterations=settings.fab_iterations,
                      seed=settings.fab_seed, device=device)
    bisection = input_margins(model, x, y, eps_max=eps_max, norm=protocol.norm, steps=settings.input_steps,
                              bisections=settings.input_bisections, seed=settings.input_seed,
                              step_ratio=settings.input_step_ratio, device=device)
    edges = margin_edges(settings.logit_low, settings.logit_high, settings.logit_bins)
    clean_hist, adv_hist = histogram(clean, edges), histogram(adversarial, edges)
    block = {
        "logit": {"edges": clean_hist["edges"], "clean": clean_hist["counts"], "adversarial": adv_hist["counts"],
                  "adversarial_eps": protocol.primary_eps,
                  "adversarial_method": f"margin-loss PGD, {settings.adversarial_steps} steps, no early stop",
                  "clean_percentiles": percentiles(clean), "adversarial_percentiles": percentiles(adversarial)},
        "input": {"norm": protocol.norm, "method": f"{FAB_METHOD} (pyautoattack, untargeted, "
                                                   f"{settings.fab_iterations} iterations)", "eps_max": eps_max,
                  **margin_summary(fab, labels, num_classes, primary)},
        "input_bisection": {"norm": protocol.norm, "method": INPUT_MARGIN_METHOD, "eps_max": eps_max,
                            **margin_summary(bisection, labels, num_classes, primary)},
        "input_cross_check": cross_check(fab, bisection, eps_max, eps_max / 2 ** settings.input_bisections),
    }
    per_example = {"input_margin": fab, "input_margin_bisection": bisection, "logit_margin_clean": clean,
                   "logit_margin_adversarial": adversarial}
    return block, per_example


def probe(model: nn.Module, protocol: Protocol, x: torch.Tensor, y: torch.Tensor, num_classes: int,
          device: str | torch.device = "cpu") -> dict[str, dict]:
    """The sanity flags that probe the model itself (run before the protocol: a model found
    stochastic is evaluated as randomized)."""
    return model_flags(model, x, y, norm=protocol.norm, num_classes=num_classes, device=torch.device(device),
                       settings=protocol.analysis.sanity)


def sanity_flags(protocol: Protocol, result: ProtocolResult, summary: dict,
                 probed: dict[str, dict]) -> dict[str, dict]:
    """Every sanity flag of one evaluated model: `probed` (`probe`'s output) and the flags read
    from `result`'s per-example flags and `summary` (`aggregate`'s output for it)."""
    return {**probed,
            **result_flags(result.flags, summary["robust_acc"], summary["worst_case"], list(protocol.eps),
                           black_box_parts(protocol), sweep_pairs(protocol), protocol.analysis.sanity)}


def analyse(model: nn.Module, protocol: Protocol, x: torch.Tensor, y: torch.Tensor, result: ProtocolResult,
            summary: dict, probed: dict[str, dict], num_classes: int, device: str | torch.device = "cpu") -> Analysis:
    """Confusion matrix at the primary eps, margins and sanity flags for one evaluated model.

    `summary` is `aggregate`'s output for `result` (its accuracies feed the result flags);
    `probed` is `probe`'s output.
    """
    device = torch.device(device)
    labels = y.numpy()
    primary = protocol.primary_eps
    adversarial = worst_case_predictions(result, protocol, primary)
    margins, per_example = margin_blocks(model, protocol, x, y, num_classes, device)
    flags = sanity_flags(protocol, result, summary, probed)
    certified, radius = certify(model, protocol, x, y, device)
    record = {
        "certified_l2": certified,
        "confusion_adversarial": {"eps": primary, "matrix": confusion_matrix(labels, adversarial, num_classes)},
        "margins": margins,
        "sanity": {name: flags[name] for name in SANITY_FLAGS},
    }
    per_example["adversarial_prediction"] = adversarial
    if radius is not None:
        per_example["certified_radius"] = radius
    return Analysis(record, per_example)
