"""Gaps and self time: the part of a span none of its children covers.

Children are clipped to their parent before anything is measured, so a child that a
skewed clock places partly outside its parent can neither make a gap negative nor make
the parent's covered time exceed its duration. A child covers its parent until the end
of its *reach*, the latest end in its subtree: work it started that is still running
(an async grandchild) is not a gap of the grandparent. For every span with children::

    duration == covered + sum(gap durations)     and     self time == sum(gap durations)

A leaf has no gaps: its whole duration is its own, claimed work. Time after a span's end
that it still waits on (a queue consumer that starts later) is not one of its gaps; the
critical path reports it as an ``after_end`` gap of its own (see critical_path).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from spanbench.analysis.model import Span, Trace


@dataclass(frozen=True, slots=True)
class Gap:
    span_id: str  # the enclosing span
    start_ns: int
    end_ns: int
    # The child that ended last before the gap (None: the gap opens at the span's start;
    # the span itself: an after_end gap that opens at the span's own end)
    before_id: str | None
    # The child that starts where the gap ends (None: the gap runs to the span's end)
    after_id: str | None
    # After the span's own end, before work it started (a FOLLOWS_FROM child) began
    after_end: bool = False

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


def clip(child: Span, parent: Span, child_end_ns: int | None = None) -> tuple[int, int]:
    """The child's interval (to ``child_end_ns``, default its own end) clipped to its parent's."""
    end_ns = child.end_ns if child_end_ns is None else child_end_ns
    start = min(max(child.start_ns, parent.start_ns), parent.end_ns)
    end = max(min(end_ns, parent.end_ns), start)
    return start, end


def uncovered(
    span_id: str,
    lo: int,
    hi: int,
    intervals: Iterable[tuple[int, int, str]],
    *,
    opened_by: str | None = None,
    after_end: bool = False,
) -> list[Gap]:
    """Parts of [lo, hi] none of ``intervals`` (start, end, child id; inside [lo, hi], any
    order) covers, as gaps of ``span_id`` in time order."""
    gaps: list[Gap] = []
    cursor, cursor_owner = lo, opened_by
    for start, end, child_id in sorted(intervals, key=lambda x: (x[0], x[1])):
        if start > cursor:
            gaps.append(Gap(span_id, cursor, start, cursor_owner, child_id, after_end))
        if end >= cursor:
            # Ties go to the later child: the most recent thing that happened before a gap.
            cursor, cursor_owner = end, child_id
    if cursor < hi:
        gaps.append(Gap(span_id, cursor, hi, cursor_owner, None, after_end))
    return gaps


def span_gaps(parent: Span, children: list[Span], reach_end: dict[str, int] | None = None) -> list[Gap]:
    """Every uncovered interval of ``parent`` (any length), in time order. ``children``
    may be unsorted; each covers to its ``reach_end`` (default: its own end)."""
    if not children:
        return []
    reach_end = reach_end or {}
    clipped = (clip(c, parent, reach_end.get(c.span_id)) + (c.span_id,) for c in children)
    return uncovered(parent.span_id, parent.start_ns, parent.end_ns, clipped)


def all_gaps(trace: Trace) -> dict[str, list[Gap]]:
    """Gaps of every span that has children, keyed by span id (linear in the span count)."""
    out: dict[str, list[Gap]] = {}
    for span in trace.spans:
        children = trace.children(span)
        if children:
            reach = {c.span_id: trace.reach_end(c) for c in children}
            out[span.span_id] = span_gaps(span, children, reach)
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
