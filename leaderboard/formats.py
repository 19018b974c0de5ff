"""How a board writes its numbers: percentages, intervals, p-values, counts and recipe values.
Every renderer (Markdown, JSON text, HTML) takes its numbers' text from here, through the view
(`leaderboard.view`)."""
from __future__ import annotations

import json
from decimal import Decimal

#: Decimals every board number is rounded to (percentages get DIGITS - 2).
DIGITS = 4


def pct(x: float) -> str:
    """A fraction (already rounded to DIGITS) as an exact percentage with DIGITS-2 decimals."""
    return f"{Decimal(repr(x)).scaleb(2):.{DIGITS - 2}f}"


def points(x: float) -> str:
    """A difference of two accuracies (a fraction) in percentage points: `5.0 points`."""
    return f"{x * 100:.1f} points"


def with_interval(value: float, interval: list[float]) -> str:
    """`73.50 ±6.1`: the value in % and the half-width of its interval in points."""
    return f"{pct(value)} ±{(interval[1] - interval[0]) * 50:.1f}"


def p_text(p: float) -> str:
    """A p-value: two significant digits, or `<0.0001`."""
    return "<0.0001" if p < 1e-4 else f"{p:.2g}"


def p_is(p: float) -> str:
    """A p-value after "p": `= 0.0021`-style two significant digits, or `< 0.0001`."""
    return "< 0.0001" if p < 1e-4 else f"= {p:.2g}"


def count(n: int, noun: str, plural: str | None = None) -> str:
    """`1 point`, `2 points`."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"


def override_value(value: object) -> str:
    """A recipe override's value as the boards print it: floats to 4 significant digits."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def seed_spread(x: dict, primary: str) -> str | None:
    """`sd 2.5`: the seeds' standard deviation of the worst case in points; None for one seed."""
    return None if x["n_seeds"] == 1 else f"sd {x['seed_sd']['worst_case'][primary] * 100:.1f}"


def class_list(names: list[str], classes: list[int]) -> str:
    """`class 7`, `classes 7, 8 (tied)` or `all 10 classes (tied)`."""
    if len(classes) == 1:
        return f"class {names[classes[0]]}"
    if len(classes) == len(names):
        return f"all {len(names)} classes (tied)"
    return "classes " + ", ".join(names[k] for k in classes) + " (tied)"
