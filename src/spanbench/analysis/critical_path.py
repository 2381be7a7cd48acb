"""The critical path from the root's start to a target span: what the target waited for.

Every span is seen through its *window*: from its start, clipped to its ancestors'
(a skewed clock never puts the path before the root), to its *reach*, the latest end in
its subtree (work it started may outlive it: a queue consumer, a FOLLOWS_FROM child that
begins after its parent ended). Windows nest, child inside parent, by construction.

Walked backwards from the target, as Jaeger's UI does, but through *covering* spans: at
each instant t the path is in the deepest span whose window holds t along the chain of
"last child to finish before t". Precisely, starting in the target's parent at t =
target start (or in the target at t = its reach, for a path to its end):

- if some child's window started before t and still holds t (the one reaching
  furthest, if several), the path descends into it, t unchanged;
- else, if some child's window ended before t, the time from its end to t is the
  current span's own time (a gap) and the path descends into that child at its end;
- else the time from the window's start to t is the span's own, and the path climbs to
  its parent at t = the window's start.

So the path tiles [root start, path end] with disjoint segments, each the own time of
one span, and traced + untraced == duration, always. A segment in a leaf is **traced**
(the leaf claims that time). A segment in a span that has children is **untraced**: no
child claims it. Inside the span's own interval it lies in one of the span's gaps;
after the span's end (waiting for work it started) it lies in an ``after_end`` gap,
which exists only here. untraced == the sum of gap time on the path, including gaps
inside the spans the target waited on (a stall between two ``pool.batch`` spans inside
``pool.init``), not only gaps in the target's own ancestors.

Each step either shortens t or moves one level, and each parent's children are
indexed once (sorted, prefix maximum of their window ends), so a walk costs
O(path · log n).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

from spanbench.analysis.gaps import Gap, uncovered
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
    end_ns: int  # the target's start (until="start") or its subtree's latest end (until="end")
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


_Window = tuple[int, int, Span]  # start, end, span


class _ChildIndex:
    """Every span's window, and per parent its children's windows sorted by start with a
    running maximum of their ends."""

    def __init__(self, trace: Trace) -> None:
        self._trace = trace
        self._lo: dict[str, int] = {}
        for span, _ in trace.walk():  # parents before children
            parent = trace.parent(span)
            self._lo[span.span_id] = span.start_ns if parent is None else max(span.start_ns, self._lo[parent.span_id])
        self._cache: dict[str, tuple[list[int], list[_Window]]] = {}
        self._late: dict[str, list[Gap]] = {}

    def window(self, span: Span) -> _Window:
        lo = self._lo[span.span_id]
        # A span wholly before its ancestors' start (skew) has an empty window at that start.
        return lo, max(self._trace.reach_end(span), lo), span

    def chain(self, span: Span) -> list[_Window]:
        """Root → span, each with its window."""
        return [self.window(s) for s in [span, *self._trace.ancestors(span)][::-1]]

    def latest_before(self, parent: Span, t: int) -> _Window | None:
        """Among children whose window starts before t, the one whose window ends last."""
        entry = self._cache.get(parent.span_id)
        if entry is None:
            windows = sorted((self.window(c) for c in self._trace.children(parent)), key=lambda x: (x[0], x[1]))
            best: list[_Window] = []
            for item in windows:
                # >= so that among equal ends the later-starting child wins: it is the nearer one.
                best.append(item if not best or item[1] >= best[-1][1] else best[-1])
            entry = ([w[0] for w in windows], best)
            self._cache[parent.span_id] = entry
        starts, best = entry
        i = bisect.bisect_left(starts, t)
        return best[i - 1] if i else None

    def late_gaps(self, span: Span) -> list[Gap]:
        """Uncovered parts of the span's window after its own end: what it waited on."""
        gaps = self._late.get(span.span_id)
        if gaps is None:
            lo, hi, _ = self.window(span)
            start = max(span.end_ns, lo)
            intervals = []
            for c_lo, c_hi, child in (self.window(c) for c in self._trace.children(span)):
                if c_hi > start:
                    intervals.append((max(c_lo, start), c_hi, child.span_id))
            # Opened by the span itself: "after <span> before <the child it waited for>".
            gaps = uncovered(span.span_id, start, hi, intervals, opened_by=span.span_id, after_end=True)
            self._late[span.span_id] = gaps
        return gaps


class _Segments:
    """Segments emitted backwards in time, each split at its span's own end: before it a
    span's own time (traced in a leaf, a gap otherwise), after it waiting (untraced)."""

    def __init__(self, trace: Trace) -> None:
        self._trace = trace
        self.backwards: list[Segment] = []

    def emit(self, span: Span, start: int, end: int) -> None:
        own_end = span.end_ns
        self._push(span, max(start, own_end), end, traced=False)  # the later part first
        self._push(span, start, min(end, own_end), traced=not self._trace.children(span))

    def _push(self, span: Span, start: int, end: int, *, traced: bool) -> None:
        if end <= start:
            return
        last = self.backwards[-1] if self.backwards else None
        same_side = last is not None and (last.start_ns >= span.end_ns) == (start >= span.end_ns)
        if last is not None and same_side and last.span_id == span.span_id and last.start_ns == end:
            self.backwards[-1] = Segment(span.span_id, start, last.end_ns, traced)
        else:
            self.backwards.append(Segment(span.span_id, start, end, traced))

    def in_order(self) -> list[Segment]:
        return self.backwards[::-1]


def walk(
    trace: Trace, target: Span, gaps_by_span: dict[str, list[Gap]], *, until: str = "start", index: _ChildIndex | None = None
) -> CriticalPath:
    index = index or _ChildIndex(trace)
    root = trace.root_of(target)
    if until == "start":
        parent = trace.parent(target)
        stack = index.chain(parent) if parent is not None else []
        t = target.start_ns
    else:
        stack = index.chain(target)
        t = stack[-1][1]  # the latest end in the target's subtree
    path = CriticalPath(target.span_id, root.span_id, root.start_ns, t, until)
    if not stack:
        path.end_ns = path.start_ns
        return path
    path.end_ns = t = min(max(t, stack[-1][0]), stack[-1][1])
    segments = _Segments(trace)
    while stack:
        lo, hi, span = stack[-1]
        found = index.latest_before(span, t) if t > lo else None
        if found is None:
            segments.emit(span, lo, t)
            stack.pop()
            t = lo
            continue
        c_lo, c_hi, _ = found
        if c_hi < t:
            segments.emit(span, c_hi, t)  # nothing ran in between: a gap of ``span``
            t = c_hi
        stack.append(found)
    path.segments = segments.in_order()
    path.gaps = _gaps_on(trace, path.segments, gaps_by_span, index)
    return path


def _gaps_on(
    trace: Trace, segments: list[Segment], gaps_by_span: dict[str, list[Gap]], index: _ChildIndex
) -> list[PathGap]:
    """Each gap the untraced segments run through, with how much of it they do."""
    on_path: dict[Gap, int] = {}
    starts_of: dict[tuple[str, bool], list[int]] = {}
    for seg in segments:
        if seg.traced:
            continue
        span = trace[seg.span_id]
        late = seg.start_ns >= span.end_ns and seg.end_ns > span.end_ns
        gaps = index.late_gaps(span) if late else gaps_by_span.get(seg.span_id, [])
        key = (seg.span_id, late)
        if key not in starts_of:
            starts_of[key] = [g.start_ns for g in gaps]
        # A segment may run through several gaps (split by a zero-length child): all of them.
        i = max(bisect.bisect_right(starts_of[key], seg.start_ns) - 1, 0)
        while i < len(gaps) and gaps[i].start_ns < seg.end_ns:
            overlap = min(gaps[i].end_ns, seg.end_ns) - max(gaps[i].start_ns, seg.start_ns)
            if overlap > 0:
                on_path[gaps[i]] = on_path.get(gaps[i], 0) + overlap
            i += 1
    return sorted((PathGap(g, n) for g, n in on_path.items()), key=lambda p: (p.gap.start_ns, p.gap.after_end))


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
