"""The critical path from the root's start to a target span: what the target waited for.

Walked backwards from the target, as Jaeger's UI does, but through *covering* spans:
at each instant t the path is in the deepest span that is active at t along the chain
of "last child to finish before t". Precisely, starting in the target's parent at
t = target start:

- if some child of the current span started before t and is still running at t (the
  one ending last, if several), the path descends into it, t unchanged;
- else, if some child started and ended before t, the time from its end to t is the
  current span's own time (a gap) and the path descends into that child at its end;
- else the time from the span's start to t is its own, and the path climbs to its
  parent at t = the span's start.

So the path tiles [root start, target start] with disjoint segments, each the self
time of one span. A segment in a leaf is **traced** (the leaf claims that time). A
segment in a span that has children is **untraced**: no child claims it, it lies in
one of that span's gaps. untraced == the sum of gap time on the path, and it includes
gaps inside the spans the target waited on (a stall between two ``pool.batch`` spans
inside ``pool.init``), not only gaps in the target's own ancestors.

Each step either shortens t or moves one level, and each parent's children are
indexed once (sorted, prefix maximum of their ends), so a walk costs O(path · log n).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

from spanbench.analysis.gaps import Gap, clip
from spanbench.analysis.model import Span, Trace

DEFAULT_TARGET = "first_query"


@dataclass(frozen=True, slots=True)
class Segment:
    span_id: str
    start_ns: int
    end_ns: int
    traced: bool

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass(frozen=True, slots=True)
class PathGap:
    gap: Gap
    on_path_ns: int  # the part of the gap the path runs through


@dataclass(slots=True)
class CriticalPath:
    target_id: str
    root_id: str
    start_ns: int  # the root's start
    end_ns: int  # the target's start (until="start") or end (until="end")
    until: str
    segments: list[Segment] = field(default_factory=list)  # in time order
    gaps: list[PathGap] = field(default_factory=list)  # in time order

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def untraced_ns(self) -> int:
        return sum(s.duration_ns for s in self.segments if not s.traced)

    @property
    def traced_ns(self) -> int:
        return sum(s.duration_ns for s in self.segments if s.traced)


class _ChildIndex:
    """Per parent: children clipped to it, sorted by start, with a running maximum of ends."""

    def __init__(self, trace: Trace) -> None:
        self._trace = trace
        self._cache: dict[str, tuple[list[int], list[tuple[int, int, Span]]]] = {}

    def latest_before(self, parent: Span, t: int) -> tuple[int, int, Span] | None:
        """Among children starting before t, the one ending last (clipped start, end, span)."""
        entry = self._cache.get(parent.span_id)
        if entry is None:
            clipped = sorted(
                ((*clip(c, parent), c) for c in self._trace.children(parent)), key=lambda x: (x[0], x[1])
            )
            starts = [c[0] for c in clipped]
            best: list[tuple[int, int, Span]] = []
            for item in clipped:
                # >= so that among equal ends the later-starting child wins: it is the nearer one.
                best.append(item if not best or item[1] >= best[-1][1] else best[-1])
            entry = (starts, best)
            self._cache[parent.span_id] = entry
        starts, best = entry
        i = bisect.bisect_left(starts, t)
        return best[i - 1] if i else None


def _chain(trace: Trace, span: Span) -> list[tuple[Span, int, int]]:
    """Root → span, each with its interval clipped to all its ancestors."""
    spans = [span, *trace.ancestors(span)][::-1]
    out: list[tuple[Span, int, int]] = []
    lo, hi = spans[0].start_ns, spans[0].end_ns
    for s in spans:
        lo = min(max(s.start_ns, lo), hi)
        hi = max(min(s.end_ns, hi), lo)
        out.append((s, lo, hi))
    return out


def walk(
    trace: Trace, target: Span, gaps_by_span: dict[str, list[Gap]], *, until: str = "start", index: _ChildIndex | None = None
) -> CriticalPath:
    index = index or _ChildIndex(trace)
    root = trace.root_of(target)
    if until == "start":
        parent = trace.parent(target)
        stack = _chain(trace, parent) if parent is not None else []
        t = target.start_ns
    else:
        stack = _chain(trace, target)
        t = target.end_ns
    path = CriticalPath(target.span_id, root.span_id, root.start_ns, t, until)
    if not stack:
        path.end_ns = path.start_ns
        return path
    path.end_ns = t = min(max(t, stack[0][1]), stack[0][2])
    backwards: list[Segment] = []

    def emit(span: Span, start: int, end: int) -> None:
        if end <= start:
            return
        traced = not trace.children(span)
        last = backwards[-1] if backwards else None
        if last is not None and last.span_id == span.span_id and last.start_ns == end:
            backwards[-1] = Segment(span.span_id, start, last.end_ns, traced)
        else:
            backwards.append(Segment(span.span_id, start, end, traced))

    while stack:
        span, lo, hi = stack[-1]
        t = min(max(t, lo), hi)
        found = index.latest_before(span, t) if t > lo else None
        if found is None:
            emit(span, lo, t)
            stack.pop()
            t = lo
            continue
        c_start, c_end, child = found
        c_lo, c_hi = max(c_start, lo), min(c_end, hi)
        if c_hi < t:
            emit(span, c_hi, t)  # nothing ran in between: a gap of ``span``
            t = c_hi
        stack.append((child, c_lo, c_hi))
    path.segments = backwards[::-1]
    path.gaps = _gaps_on(path.segments, gaps_by_span)
    return path


def _gaps_on(segments: list[Segment], gaps_by_span: dict[str, list[Gap]]) -> list[PathGap]:
    on_path: dict[Gap, int] = {}
    starts_of: dict[str, list[int]] = {}
    for seg in segments:
        if seg.traced:
            continue
        gaps = gaps_by_span.get(seg.span_id, [])
        if seg.span_id not in starts_of:
            starts_of[seg.span_id] = [g.start_ns for g in gaps]
        i = bisect.bisect_right(starts_of[seg.span_id], seg.start_ns) - 1
        if i >= 0 and gaps[i].end_ns >= seg.end_ns:
            on_path[gaps[i]] = on_path.get(gaps[i], 0) + seg.duration_ns
    return sorted((PathGap(g, n) for g, n in on_path.items()), key=lambda p: p.gap.start_ns)


def choose_targets(trace: Trace, targets: Sequence[str] | None = None) -> tuple[list[Span], str]:
    """The spans to walk to, and whether the path ends at their start or their end.

    Named targets (span names or span ids) and spanbench's ``first_query`` spans end
    at their start: the time before them is the question. With neither, the trace's
    latest-ending span, to its end: the critical path of the whole trace.
    """
    if targets:
        wanted = set(targets)
        return [s for s in trace.spans if s.name in wanted or s.span_id in wanted], "start"
    firsts = [s for s in trace.spans if s.name == DEFAULT_TARGET]
    if firsts:
        return firsts, "start"
    if not trace.spans:
        return [], "end"
    # Prefer the shallowest among equal ends: usually the root, i.e. the whole trace.
    latest = max(trace.spans, key=lambda s: (s.end_ns, -trace.depth.get(s.span_id, 0)))
    return [latest], "end"


def critical_paths(
    trace: Trace, gaps_by_span: dict[str, list[Gap]], targets: Sequence[str] | None = None
) -> list[CriticalPath]:
    spans, until = choose_targets(trace, targets)
    index = _ChildIndex(trace)
    return [walk(trace, s, gaps_by_span, until=until, index=index) for s in spans]
