"""The time axis of a waterfall, shared by the terminal (cells) and the HTML page (percent).

One axis maps [t0, t1] of a trace onto [0, 1]; the terminal cuts that into character
cells, the page into CSS percentages. Both clip at t1 the same way, so the two views of one
trace agree on what lies past the end of the axis.
"""

from __future__ import annotations

import math

from spanbench.units import format_duration


def nice_step(span: float, ticks: int = 6) -> float:
    """A round step (1, 2, 2.5 or 5 × a power of ten) giving about ``ticks`` ticks over ``span``."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


class Axis:
    def __init__(self, t0: int, t1: int) -> None:
        self.t0, self.t1 = t0, max(t1, t0 + 1)
        self.span = self.t1 - self.t0

    def percent(self, start: int, end: int) -> tuple[float, float, bool]:
        """(left %, width %, clipped at the right edge)."""
        left = (start - self.t0) / self.span * 100
        right = (min(end, self.t1) - self.t0) / self.span * 100
        return left, max(right - left, 0.0), end > self.t1

    def cells(self, start: int, end: int, width: int) -> range:
        """Character cells of a ``width``-cell bar an interval touches; at least one, so that
        short spans stay visible; none for an interval that starts past the axis."""
        width = max(width, 1)
        ns_per_cell = self.span / width
        a = int((start - self.t0) // ns_per_cell)
        b = int(math.ceil((end - self.t0) / ns_per_cell))
        a = min(max(a, 0), width - 1)
        b = min(max(b, a + 1), width)
        return range(a, b) if start - self.t0 <= ns_per_cell * width else range(0)

    def ticks(self) -> list[tuple[float, str]]:
        """(left %, label) of round durations from 0 to the end."""
        step = nice_step(self.span)
        out = []
        n = 0
        while n * step <= self.span * 1.0001:
            out.append((n * step / self.span * 100, "0" if n == 0 else format_duration(n * step / 1e9)))
            n += 1
        return out
