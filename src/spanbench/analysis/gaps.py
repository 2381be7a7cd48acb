"""Gaps and self time: the part of a span none of its children covers.

Children are clipped to their parent before anything is measured, so a child that a
skewed clock places partly outside its parent can neither make a gap negative nor make
the parent's covered time exceed its duration. For every span with children::

    duration == covered + sum(gap durations)     and     self time == sum(gap durations)

A leaf has no gaps: its whole duration is its own, claimed work.
"""

from __future__ import annotations

from dataclasses import dataclass

from spanbench.analysis.model import Span, Trace


@dataclass(frozen=True, slots=True)
class Gap:
    span_id: str  # the enclosing span
    start_ns: int
    end_ns: int
    # The child that ended last before the gap (None: the gap opens at the span's start)
    before_id: str | None
    # The child that starts where the gap ends (None: the gap runs to the span's end)
    after_id: str | None

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


def clip(child: Span, parent: Span) -> tuple[int, int]:
    start = min(max(child.start_ns, parent.start_ns), parent.end_ns)
    end = max(min(child.end_ns, parent.end_ns), start)
    return start, end


def span_gaps(parent: Span, children: list[Span]) -> list[Gap]:
    """Every uncovered interval of ``parent`` (any length), in time order. ``children``
    may be unsorted; clipping can reorder a start-sorted list, so it is sorted here."""
    if not children:
        return []
    clipped = sorted((clip(c, parent) + (c.span_id,) for c in children), key=lambda x: (x[0], x[1]))
    gaps: list[Gap] = []
    cursor = parent.start_ns
    cursor_owner: str | None = None
    for start, end, child_id in clipped:
        if start > cursor:
            gaps.append(Gap(parent.span_id, cursor, start, cursor_owner, child_id))
        if end >= cursor:
            # Ties go to the later child: the most recent thing that happened before a gap.
            cursor, cursor_owner = end, child_id
    if cursor < parent.end_ns:
        gaps.append(Gap(parent.span_id, cursor, parent.end_ns, cursor_owner, None))
    return gaps


def all_gaps(trace: Trace) -> dict[str, list[Gap]]:
    """Gaps of every span that has children, keyed by span id (linear in the span count)."""
    out: dict[str, list[Gap]] = {}
    for span in trace.spans:
        children = trace.children(span)
        if children:
            out[span.span_id] = span_gaps(span, children)
    return out


def self_times(trace: Trace, gaps_by_span: dict[str, list[Gap]]) -> dict[str, int]:
    """Self time per span id, in ns."""
    out: dict[str, int] = {}
    for span in trace.spans:
        if trace.children(span):
            out[span.span_id] = sum(g.duration_ns for g in gaps_by_span.get(span.span_id, ()))
        else:
            out[span.span_id] = span.duration_ns
    return out


def gaps_over(gaps_by_span: dict[str, list[Gap]], min_gap_ns: int) -> list[Gap]:
    """Gaps of at least ``min_gap_ns``, in time order (ties: longer first)."""
    found = [g for gaps in gaps_by_span.values() for g in gaps if g.duration_ns >= min_gap_ns and g.duration_ns > 0]
    found.sort(key=lambda g: (g.start_ns, -g.duration_ns, g.span_id))
    return found
