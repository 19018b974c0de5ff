"""The rules of `atbench tune`, the same for every defense: `TUNING_BUDGET` declared settings,
then the grid-edge rule.

The grid-edge rule: a winner at the edge of its
grid may lie beyond it, so the grid extends by one step outward from the winner, again while the
new setting wins and is still at an edge, at most `EDGE_EXTENSIONS` times.

A key is an axis of the grid when the settings give it at least two values. The winner is at
the edge of an axis when its value is that axis's smallest or largest; the next setting is the
winner with every such key moved one step outward and the other keys kept. A step continues the
grid's spacing geometrically from the two outermost values of the axis (0.5 after 1, 2 gives
0.25); where that would leave the key's bounds (`DefenseMeta.search_bounds`, e.g. a fraction's
(0, 1)), the step goes halfway to the bound instead. Values are kept to 6 significant digits.
"""
from __future__ import annotations

import math
from typing import Any

#: Settings every tuned defense declares (the issue's cap is 6; every defense gets the same number).
TUNING_BUDGET = 4
#: How many settings the rule may add to one sweep (the declared grid has `TUNING_BUDGET`).
EDGE_EXTENSIONS = 2
#: The rule in one sentence, stated in every sweep record and on the boards.
EDGE_RULE = (f"a winner at the edge of its grid extends it by one step outward (geometric, halfway to a bound the "
             f"step would cross), again while the new setting wins at an edge, at most {EDGE_EXTENSIONS} times")


def _significant(value: float) -> float:
    return float(f"{value:.6g}")


def outward_step(values: list[float], low: bool, bounds: tuple[float, float] = (0.0, math.inf)) -> float:
    """The next value beyond the smallest (`low`) or the largest of the sorted distinct
    `values` (at least two, all positive): the grid's outermost ratio once more, or halfway to
    the bound where that ratio would reach it."""
    edge, inner = (values[0], values[1]) if low else (values[-1], values[-2])
    step = edge * (edge / inner)
    bound = bounds[0] if low else bounds[1]
    if (low and step <= bound) or (not low and step >= bound):
        step = (edge + bound) / 2
    return _significant(step)


def edge_keys(settings: list[dict[str, Any]], winner: dict[str, Any]) -> dict[str, tuple[list[float], bool]]:
    """The keys at which `winner` lies at an edge of the grid `settings`: per key, the axis's
    sorted distinct values and whether the winner is at its low end."""
    out = {}
    for key, value in winner.items():
        values = sorted({s[key] for s in settings if key in s})
        if len(values) >= 2 and value in (values[0], values[-1]):
            out[key] = (values, value == values[0])
    return out


def next_setting(settings: list[dict[str, Any]], winner: dict[str, Any],
                 bounds: dict[str, tuple[float, float]] | None = None) -> dict[str, Any] | None:
    """The setting the rule adds after `settings` were scored and `winner` won; None when the
    winner is at no edge (or the step gives a setting already tried)."""
    bounds = bounds or {}
    edges = edge_keys(settings, winner)
    out = {**winner, **{key: outward_step(values, low, bounds.get(key, (0.0, math.inf)))
                        for key, (values, low) in edges.items()}}
    return out if edges and out not in settings else None
