"""``analyze``: everything the gaps report shows, computed once from a Trace.

``Analysis.to_json`` is the ``--json`` output; its keys are a contract. Times appear
twice: as absolute Unix ns (``*_unix_ns``, exact) and in ms relative to the trace's
start or as durations (``*_ms``, rounded to the µs). A critical path also carries its
split in whole ns (``duration_ns == traced_ns + untraced_ns``), and its ms figures are
chosen so that ``traced_ms + untraced_ms == duration_ms`` holds exactly as well.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from spanbench.analysis import labels
from spanbench.analysis.critical_path import CriticalPath, critical_paths
from spanbench.analysis.gaps import Gap, all_gaps, gaps_over, self_times
from spanbench.analysis.model import Span, Trace
from spanbench.analysis.processes import ProcessGroup, group_by_process
from spanbench.analysis.skew import DEFAULT_TOLERANCE_NS, Skew, find_skew

JSON_VERSION = 1


def _ms(ns: int) -> float:
    return round(ns / 1e6, 3)


def _split_ms(total_ns: int, part_ns: int) -> tuple[float, float, float]:
    """(total, part, rest) in ms with part + rest == total as floats, not only roughly:
    rounding each on its own can lose a µs, and a reader adding them up must get the total."""
    total, part = _ms(total_ns), _ms(part_ns)
    rest = round(total - part, 3)
    if part + rest == total:
        return total, part, rest
    # Binary floats: 0.1 + 0.2 != 0.3. A float or two from the rounded values always adds
    # up exactly (sometimes only if the part moves too: ties round to even); off by < 1e-12
    # ms, it costs a long repr. The *_ns figures beside these are exact integers anyway.
    for p in (part, math.nextafter(part, math.inf), math.nextafter(part, -math.inf)):
        r = max(total - p, 0.0)
        for _ in range(4):
            if p + r == total:
                return total, p, r
            r = math.nextafter(r, math.inf if p + r < total else -math.inf)
    return total, part, rest


@dataclass(slots=True)
class Analysis:
    trace: Trace
    min_gap_ns: int
    gaps: list[Gap]  # at least min_gap_ns, in time order
    gaps_by_span: dict[str, list[Gap]]  # every gap of any length, per enclosing span
    self_time_ns: dict[str, int]
    paths: list[CriticalPath]
    skews: list[Skew]
    processes: list[ProcessGroup]
    _on_path: set[Gap] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._on_path = {pg.gap for p in self.paths for pg in p.gaps}

    @property
    def start_ns(self) -> int:
        return self.trace.start_ns

    @property
    def end_ns(self) -> int:
        return self.trace.end_ns

    def on_critical_path(self, gap: Gap) -> bool:
        return gap in self._on_path

    def path_gaps_over(self, threshold_ns: int) -> list[tuple[CriticalPath, Gap, int]]:
        """(path, gap, time on the path) for every gap whose part on a critical path exceeds the threshold."""
        return [(p, pg.gap, pg.on_path_ns) for p in self.paths for pg in p.gaps if pg.on_path_ns > threshold_ns]

    # --- JSON -----------------------------------------------------------------------

    def _ref(self, span_id: str | None) -> dict[str, Any] | None:
        span = self.trace.get(span_id)
        if span is None:
            return None
        return {"span_id": span.span_id, "name": span.name, "label": labels.in_context(self.trace, span)}

    def _gap_json(self, gap: Gap) -> dict[str, Any]:
        return {
            "span": self._ref(gap.span_id),
            "start_unix_ns": gap.start_ns,
            "end_unix_ns": gap.end_ns,
            "start_ms": _ms(gap.start_ns - self.start_ns),
            "duration_ms": _ms(gap.duration_ns),
            "before": self._ref(gap.before_id),
            "after": self._ref(gap.after_id),
            "on_critical_path": self.on_critical_path(gap),
        }

    def _path_json(self, path: CriticalPath) -> dict[str, Any]:
        target = self.trace[path.target_id]
        duration_ms, traced_ms, untraced_ms = _split_ms(path.duration_ns, path.traced_ns)
        return {
            "target": self._ref(path.target_id),
            "worker_id": self.trace.owner(target),
            "root": self._ref(path.root_id),
            "until": path.until,
            "start_unix_ns": path.start_ns,
            "end_unix_ns": path.end_ns,
            "duration_ms": duration_ms,
            "traced_ms": traced_ms,
            "untraced_ms": untraced_ms,
            "duration_ns": path.duration_ns,
            "traced_ns": path.traced_ns,
            "untraced_ns": path.untraced_ns,
            "gaps": [
                {**self._gap_json(pg.gap), "on_path_ms": _ms(pg.on_path_ns), "after_span_end": pg.gap.after_end}
                for pg in path.gaps
            ],
            "segments": [
                {
                    "span": self._ref(s.span_id),
                    "start_unix_ns": s.start_ns,
                    "end_unix_ns": s.end_ns,
                    "duration_ms": _ms(s.duration_ns),
                    "traced": s.traced,
                }
                for s in path.segments
            ],
        }

    def _span_json(self, span: Span) -> dict[str, Any]:
        return {
            "span_id": span.span_id,
            "parent_id": span.parent_id,
            "name": span.name,
            "service": span.service,
            "process": span.process_key,
            "worker_id": self.trace.owner(span),
            "depth": self.trace.depth.get(span.span_id, 0),
            "start_unix_ns": span.start_ns,
            "end_unix_ns": span.end_ns,
            "start_ms": _ms(span.start_ns - self.start_ns),
            "duration_ms": _ms(span.duration_ns),
            "self_ms": _ms(self.self_time_ns.get(span.span_id, 0)),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "version": JSON_VERSION,
            "trace_id": self.trace.trace_id,
            "span_count": len(self.trace),
            "start_unix_ns": self.start_ns,
            "end_unix_ns": self.end_ns,
            "duration_ms": _ms(self.end_ns - self.start_ns),
            "min_gap_ms": _ms(self.min_gap_ns),
            "roots": [self._ref(r.span_id) for r in self.trace.roots],
            "warnings": list(self.trace.warnings),
            "gaps": [self._gap_json(g) for g in self.gaps],
            "critical_paths": [self._path_json(p) for p in self.paths],
            "skew": [
                {
                    "span": self._ref(s.span_id),
                    "parent": self._ref(s.parent_id),
                    "early_ms": _ms(s.early_ns),
                    "late_ms": _ms(s.late_ns),
                    "cross_process": s.cross_process,
                }
                for s in self.skews
            ],
            "processes": [
                {
                    "service": g.service,
                    "process": g.process_key,
                    "resource": g.resource,
                    "worker_ids": g.worker_ids,
                    "span_count": g.span_count,
                    "start_unix_ns": g.start_ns,
                    "end_unix_ns": g.end_ns,
                }
                for g in self.processes
            ],
            "spans": [self._span_json(s) for s in self.trace.spans],
        }


def analyze(
    trace: Trace,
    *,
    min_gap_s: float = 0.05,
    targets: Sequence[str] | None = None,
    skew_tolerance_ns: int = DEFAULT_TOLERANCE_NS,
) -> Analysis:
    """Gaps of at least ``min_gap_s``, self times, skew, processes, and the critical path to
    each target (span names or ids; default every ``first_query``, else the latest-ending span)."""
    by_span = all_gaps(trace)
    return Analysis(
        trace=trace,
        min_gap_ns=int(round(min_gap_s * 1e9)),
        gaps=gaps_over(by_span, int(round(min_gap_s * 1e9))),
        gaps_by_span=by_span,
        self_time_ns=self_times(trace, by_span),
        paths=critical_paths(trace, by_span, targets),
        skews=find_skew(trace, skew_tolerance_ns),
        processes=group_by_process(trace),
    )
