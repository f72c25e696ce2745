"""Small charts drawn on the server as inline SVG: no script, no CDN, readable without colour."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

WIDTH = 720
HEIGHT = 220
# Room for the axis labels: left for counts, bottom for hours.
LEFT = 36
BOTTOM = 24
TOP = 8
GAP = 4


@dataclass(frozen=True)
class Segment:
    """One status's share of one bar."""

    status: str
    count: int
    y: float
    height: float


@dataclass(frozen=True)
class Bar:
    """One hour: its label, its position, and its segments from the bottom up."""

    label: str
    x: float
    width: float
    total: int
    segments: tuple[Segment, ...]

    def count(self, status: str) -> int:
        """How many of this bar's payments are in `status`."""
        return next((segment.count for segment in self.segments if segment.status == status), 0)

    @property
    def description(self) -> str:
        """The bar in words: '09:00: 4 (3 success, 1 pending)'."""
        parts = ", ".join(f"{segment.count} {segment.status}" for segment in self.segments)
        return f"{self.label}: {self.total} ({parts})" if parts else f"{self.label}: 0"


@dataclass(frozen=True)
class Tick:
    """A line across the chart at a count."""

    value: int
    y: float


@dataclass(frozen=True)
class StackedBars:
    """A stacked bar chart laid out for drawing, with a sentence that says what it shows."""

    title: str
    summary: str
    width: int
    height: int
    left: int
    baseline: float
    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten that is at least `value` (at least 1)."""
    if value <= 1:
        return 1
    # A whole power of ten, value being more than 1 (typeshed's int ** int is Any).
    power: int = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def stacked_bars(
    title: str,
    labels: Sequence[str],
    counts: Mapping[tuple[int, str], int],
    statuses: Sequence[str],
) -> StackedBars:
    """Lay out one bar per label, stacked by status in the given order."""
    totals = [
        sum(counts.get((index, status), 0) for status in statuses) for index in range(len(labels))
    ]
    top = nice_ceiling(max(totals, default=0))
    baseline = HEIGHT - BOTTOM
    scale = (baseline - TOP) / top
    slot = (WIDTH - LEFT) / max(len(labels), 1)
    bars = []
    for index, label in enumerate(labels):
        y: float = baseline
        segments = []
        for status in statuses:
            count = counts.get((index, status), 0)
            if count:
                y -= count * scale
                segments.append(Segment(status, count, round(y, 2), round(count * scale, 2)))
        x = LEFT + index * slot + GAP / 2
        bars.append(Bar(label, round(x, 2), round(slot - GAP, 2), totals[index], tuple(segments)))
    ticks = tuple(Tick(value, round(baseline - value * scale, 2)) for value in _tick_values(top))
    busiest = max(range(len(labels)), key=lambda index: totals[index], default=None)
    if busiest is None or not totals[busiest]:
        summary = "No payments yet."
    else:
        summary = (
            f"{sum(totals)} payments in all; the busiest hour is {labels[busiest]} "
            f"with {totals[busiest]}."
        )
    return StackedBars(title, summary, WIDTH, HEIGHT, LEFT, baseline, tuple(bars), ticks)


def _tick_values(top: int) -> list[int]:
    # Quarters, fifths or halves of the top when they are whole numbers, else zero and the top.
    parts = next(parts for parts in (4, 5, 2, 1) if top % parts == 0)
    return list(range(0, top + 1, top // parts))
