"""Inline SVG charts for the board page: robust accuracy against eps with error bars, and bars of
per-class accuracy. Pure string functions; coordinates are printed with one decimal, so the same
numbers always give the same bytes."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from leaderboard.html_parts import esc, interval_range
from leaderboard.formats import pct

#: Series colours (Okabe-Ito, colour-blind safe, yellow replaced by a darker ochre); the worst
#: case is drawn in WORST_COLOUR.
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#a6761d", "#56b4e9", "#6a3d9a", "#7f7f7f")
WORST_COLOUR = "#1b1f24"
WIDTH, HEIGHT = 560, 300
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 14, 44


@dataclass(frozen=True)
class Series:
    """One line of the eps chart: per eps, the accuracy and its 95% interval (fractions)."""

    name: str
    colour: str
    values: list[float]
    intervals: list[list[float]]
    heavy: bool = False


def _f(x: float) -> str:
    return f"{x:.1f}"


def _y(value: float) -> float:
    return TOP + (1 - value) * (HEIGHT - TOP - BOTTOM)


def _y_axis(label: str) -> list[str]:
    parts = []
    for tick in (0, 25, 50, 75, 100):
        y = _f(_y(tick / 100))
        parts.append(f'<line class="gridline" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}"/>'
                     f'<text class="tick" x="{LEFT - 6}" y="{y}" text-anchor="end" dy="0.32em">{tick}</text>')
    mid = _f((TOP + HEIGHT - BOTTOM) / 2)
    parts.append(f'<text class="axis" transform="translate(12 {mid}) rotate(-90)" text-anchor="middle">'
                 f"{esc(label)}</text>")
    return parts


def eps_chart(eps: list[str], series: list[Series], title: str, x_label: str) -> str:
    """Robust accuracy (%) against eps, one line per series, each point with its interval as an
    error bar (points of different series are nudged apart so the bars stay readable)."""
    top = max(Fraction(e) for e in eps)
    span = WIDTH - LEFT - RIGHT - 24

    def x_of(e: str) -> float:
        return LEFT + 12 + float(Fraction(e) / top) * span

    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
             f'aria-label="{esc(title)}"><title>{esc(title)}</title>', *_y_axis("robust accuracy (%)")]
    for e in eps:
        x = _f(x_of(e))
        parts.append(f'<text class="tick" x="{x}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{esc(e)}</text>')
    parts.append(f'<line class="axis-line" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_f(_y(0))}" y2="{_f(_y(0))}"/>'
                 f'<text class="axis" x="{_f((LEFT + WIDTH - RIGHT) / 2)}" y="{HEIGHT - 6}" text-anchor="middle">'
                 f"{esc(x_label)}</text>")
    for i, s in enumerate(series):
        nudge = (i - (len(series) - 1) / 2) * 3
        xs = [x_of(e) + nudge for e in eps]
        width = "2.5" if s.heavy else "1.5"
        points = " ".join(f"{_f(x)},{_f(_y(v))}" for x, v in zip(xs, s.values))
        parts.append(f'<g class="series" stroke="{s.colour}" fill="{s.colour}">'
                     f'<polyline fill="none" stroke-width="{width}" points="{points}"/>')
        for x, e, v, (lo, hi) in zip(xs, eps, s.values, s.intervals):
            tip = f"{s.name} at eps {e}: {pct(v)}% (95% interval {interval_range([lo, hi])})"
            parts.append(f'<path stroke-width="1" d="M{_f(x)} {_f(_y(lo))}V{_f(_y(hi))}'
                         f'M{_f(x - 3)} {_f(_y(lo))}h6M{_f(x - 3)} {_f(_y(hi))}h6"/>'
                         f'<circle cx="{_f(x)}" cy="{_f(_y(v))}" r="{3.5 if s.heavy else 2.5}">'
                         f"<title>{esc(tip)}</title></circle>")
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def legend(series: list[Series]) -> str:
    """The chart's legend as an HTML list (readable at any width)."""
    items = "".join(f'<li><span class="swatch" style="background:{s.colour}"></span>{esc(s.name)}</li>'
                    for s in series)
    return f'<ul class="legend">{items}</ul>'


def class_bars(names: list[str], values: list[float], worst: int, title: str) -> str:
    """Per-class accuracy (%) as columns, the worst class highlighted; class names are printed
    under the columns when there are at most 20 classes."""
    n = len(values)
    slot = (WIDTH - LEFT - RIGHT) / n
    bar = max(1.0, slot * 0.7)
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
             f'aria-label="{esc(title)}"><title>{esc(title)}</title>', *_y_axis("worst-case accuracy (%)")]
    for c, (name, v) in enumerate(zip(names, values)):
        x = LEFT + c * slot + (slot - bar) / 2
        klass = "bar worst" if c == worst else "bar"
        parts.append(f'<rect class="{klass}" x="{_f(x)}" y="{_f(_y(v))}" width="{_f(bar)}" '
                     f'height="{_f(_y(0) - _y(v))}"><title>class {esc(name)}: {pct(v)}%</title></rect>')
        if n <= 20:
            parts.append(f'<text class="tick" x="{_f(x + bar / 2)}" y="{HEIGHT - BOTTOM + 16}" '
                         f'text-anchor="middle">{esc(name)}</text>')
    parts.append(f'<line class="axis-line" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_f(_y(0))}" y2="{_f(_y(0))}"/>'
                 f'<text class="axis" x="{_f((LEFT + WIDTH - RIGHT) / 2)}" y="{HEIGHT - 6}" '
                 'text-anchor="middle">class</text></svg>')
    return "".join(parts)
