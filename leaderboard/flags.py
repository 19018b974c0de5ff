"""The sanity flags every record carries (computed by `benchmark.pipeline.analysis.sanity`), in board order,
with the one-line explanation the board prints for each. No torch here: the leaderboard reads it."""
from __future__ import annotations

import re

SANITY_FLAGS = (
    "stochastic_outputs",
    "probability_outputs",
    "zero_gradients",
    "square_beats_white_box",
    "not_chance_at_large_eps",
    "accuracy_rises_with_eps",
    "tpgd_much_stronger_than_pgd",
)

FLAG_DOCS = {
    "stochastic_outputs": "logits change between repeated forward passes in eval mode: "
                          "evaluate the defense as randomized (EOT)",
    "probability_outputs": "the model returns probabilities, not logits: attacks on the loss may be weakened",
    "zero_gradients": "some correctly classified points have an exactly zero input gradient: "
                      "gradient-based attacks cannot move them",
    "square_beats_white_box": "the black-box Square attack broke points that the gradient-based "
                              "AutoAttack attacks missed: a sign of gradient masking",
    "not_chance_at_large_eps": "robust accuracy stays above chance at an eps that allows turning "
                               "any image into any other: the attack is failing",
    "accuracy_rises_with_eps": "robust accuracy increases with eps, which a correct evaluation never shows",
    "tpgd_much_stronger_than_pgd": "Temperature-PGD (the worst over its temperatures) breaks many more points than "
                                   "PGD: what the class-wise paper claims for its attack, and also a sign that "
                                   "saturated softmax gradients mask PGD's cross-entropy loss; the board does not "
                                   "tell the two readings apart",
}

_FRACTION_CHANGES = (
    # the records' detail sentences state accuracy differences as fractions ("by 0.050"); the
    # boards state them in percentage points, like their tables
    (re.compile(r"\bby (-?\d+\.\d+)"), lambda m: f"by {float(m.group(1)) * 100:.1f} points"),
    (re.compile(r"against a rate of (\d+\.\d+)"), lambda m: f"against a rate of {float(m.group(1)) * 100:.2g}%"),
    (re.compile(r"(?<![\d.])1 points\b"), lambda m: "1 point"),
)


def board_detail(detail: str) -> str:
    """A record's sanity-flag detail as a board prints it: accuracy differences in percentage
    points and rates in %, as in the tables, and `1 point`, not `1 points`."""
    for pattern, change in _FRACTION_CHANGES:
        detail = pattern.sub(change, detail)
    return detail
