"""The sanity flags every record carries (computed by `benchmark.pipeline.sanity`), in board order,
with the one-line explanation the board prints for each. No torch here: the leaderboard reads it."""

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
    "tpgd_much_stronger_than_pgd": "Temperature-PGD is much stronger than PGD: "
                                   "saturated softmax gradients mask the cross-entropy loss",
}
