"""A realistic board with every kind of entry, for the web-page tests (`tests/test_html.py`,
`tests/test_web_board.py`): ten classes, a tie, a defense with two seeds, a flagged entry, a
noted one, another fidelity and architecture, recipe overrides with a sweep, and an external model."""
from __future__ import annotations

import functools

from tests.fixtures_records import consistent

FLAG_DETAIL = "49 of 86 correctly classified points have an all-zero input gradient of CE"


def fixture_items() -> list:
    """The admitted records (`leaderboard.evidence.Admitted`) of the fixture board."""
    items = [
        consistent("pgd-at", 0, robust=0.9, flag_seed=1, num_classes=10),
        consistent("trades", 0, robust=0.91, flag_seed=2, num_classes=10),
        consistent("trades", 1, robust=0.905, flag_seed=4, num_classes=10),
        consistent("standard", 0, robust=0.3, flag_seed=3, num_classes=10),
        consistent("crm-liplt", 0, robust=0.8, flag_seed=5, num_classes=10,
                   recipe_overrides={"lr": 0.001, "config.mu": 1000.0}),
        consistent("wide-model", 0, robust=0.93, flag_seed=6, num_classes=10),
    ]
    by_name = {(it.record["defense"]["id"], it.record["seed"]): it.record for it in items}
    flagged = by_name[("crm-liplt", 0)]
    flagged["sanity"]["zero_gradients"].update(fired=True, noted=True, value=0.57, detail=FLAG_DETAIL)
    flagged["defense"].update(fidelity="our-reading", sweep="mnist5k-cnn/crm-liplt")
    by_name[("pgd-at", 0)]["sanity"]["stochastic_outputs"].update(noted=True, detail="1 of 200 logits moved")
    external = by_name[("wide-model", 0)]
    external["defense"].update(external=True, paper="A wide model", link="https://example.org/wide")
    external["architecture"] = "wide-cnn"
    external["training"] = None
    return items


@functools.cache
def _built() -> tuple[dict, tuple]:
    from leaderboard.build import build_json

    items = fixture_items()
    return build_json(items), tuple(it.record for it in items)


def fixture_board() -> tuple[dict, list[dict]]:
    """(board JSON, records) of the fixture board; fresh copies on every call."""
    import copy

    board, records = _built()
    return copy.deepcopy(board), copy.deepcopy(list(records))
