"""The report view: what a run's report shows, built once from results.json and the trace's
analysis, as plain data. The terminal (``run_report``, ``waterfall``) and the page
(``html``) only render it: the waterfall rows, the gap map, the process colours and the
axis window, the latency rows (per kind and "all"), the workers, what went wrong (stalls,
cut queries, partial workers, warnings, errors by class) and the settings.

results.json is read defensively: the file may come from an older spanbench, a failed run
or a hand edit, so a missing or mistyped figure is ``None`` (shown as a dash), never a crash.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from spanbench.analysis import labels
from spanbench.analysis.analyze import Analysis
from spanbench.analysis.gaps import Gap
from spanbench.analysis.model import Span
from spanbench.report.axis import Axis
from spanbench.report.redact import clean, shown

# --- the waterfall --------------------------------------------------------------------


@dataclass(slots=True)
class Row:
    depth: int
    label: str
    start_ns: int
    spans: list[Span] = field(default_factory=list)  # one, or the members of a collapsed group
    gap: Gap | None = None

    @property
    def end_ns(self) -> int:
        if self.gap is not None:
            return self.gap.end_ns
        return max(s.end_ns for s in self.spans)


GapMap = dict[str, list[Gap]]


def gap_map(analysis: Analysis) -> GapMap:
    """The gaps of at least the threshold, per enclosing span, in time order."""
    out: GapMap = {}
    for gap in analysis.gaps:
        out.setdefault(gap.span_id, []).append(gap)
    return out


def startup_end_ns(analysis: Analysis) -> int | None:
    """Where the start-up ends: the last first query (a path to a target's start)."""
    ends = [analysis.trace[p.target_id].end_ns for p in analysis.paths if p.until == "start"]
    return max(ends) if ends else None


def build_rows(
    analysis: Analysis,
    *,
    max_depth: int | None = None,
    collapse_over: int = 3,
    until_ns: int | None = None,
    gaps: GapMap | None = None,
) -> list[Row]:
    """Rows in display order: depth first, children (and gaps) in time order.

    Siblings that repeat a name more than ``collapse_over`` times share one row "name ×N";
    rows that begin after ``until_ns`` are left out.
    """
    trace = analysis.trace
    big_gaps = gaps if gaps is not None else gap_map(analysis)
    rows: list[Row] = []
    stack: list[Row] = [Row(0, labels.short(r), r.start_ns, [r]) for r in reversed(trace.roots)]
    while stack:
        row = stack.pop()
        if until_ns is not None and row.start_ns > until_ns:
            continue
        rows.append(row)
        if row.gap is not None or len(row.spans) != 1:
            continue  # gaps and collapsed groups are not expanded
        span = row.spans[0]
        depth = row.depth + 1
        if max_depth is not None and depth > max_depth:
            continue
        by_name: dict[str, list[Span]] = {}
        for child in trace.children(span):
            by_name.setdefault(child.name, []).append(child)
        below: list[Row] = []
        for name, members in by_name.items():
            if len(members) > collapse_over:
                below.append(Row(depth, f"{name} ×{len(members)}", members[0].start_ns, members))
            else:
                below.extend(Row(depth, labels.short(m), m.start_ns, [m]) for m in members)
        own = _row_gaps(analysis, big_gaps.get(span.span_id, []), collapse_over)
        below.extend(Row(depth, "gap", g.start_ns, gap=g) for g in own)
        below.sort(key=lambda r: (r.start_ns, r.gap is None))
        stack.extend(reversed(below))
    return rows


def _row_gaps(analysis: Analysis, gaps: list[Gap], collapse_over: int) -> list[Gap]:
    """Gaps that get a row of their own: not the many alike (idle time between sampled
    queries: still red on the parent's bar), unless on a critical path."""
    trace = analysis.trace
    pattern: dict[tuple[str | None, str | None], int] = {}
    keys = []
    for g in gaps:
        before, after = trace.get(g.before_id), trace.get(g.after_id)
        key = (before.name if before else None, after.name if after else None)
        keys.append(key)
        pattern[key] = pattern.get(key, 0) + 1
    return [g for g, k in zip(gaps, keys) if pattern[k] <= collapse_over or analysis.on_critical_path(g)]


def gap_groups(analysis: Analysis, collapse_over: int) -> list[list[Gap]]:
    """Gaps in time order; repeats of one pattern (same span, same neighbours' names: the
    idle time between sampled ``query`` spans) merged into one group when many."""
    trace = analysis.trace
    groups: dict[tuple[str, str | None, str | None], list[Gap]] = {}
    for gap in analysis.gaps:
        before, after = trace.get(gap.before_id), trace.get(gap.after_id)
        key = (gap.span_id, before.name if before else None, after.name if after else None)
        groups.setdefault(key, []).append(gap)
    out: list[list[Gap]] = []
    for members in groups.values():
        # Gaps on a critical path are never folded away: they are the answer.
        if len(members) > collapse_over:
            alone = [g for g in members if analysis.on_critical_path(g)]
            rest = [g for g in members if not analysis.on_critical_path(g)]
        else:
            alone, rest = members, []
        out.extend([g] for g in alone)
        if rest:
            out.append(rest)
    out.sort(key=lambda grp: grp[0].start_ns)
    return out


@dataclass(slots=True)
class WaterfallView:
    """Rows, gaps, colours and the two axis windows of one trace's waterfall.

    ``startup_ns`` is where the start-up view's axis ends (the last first query), None when
    the trace has no first query or it ends the trace: then the whole run is the only view.
    """

    analysis: Analysis
    rows: list[Row]
    gaps: GapMap
    process_index: dict[str, int]  # a process's colour, as an index into a renderer's palette
    startup_ns: int | None

    @property
    def t0(self) -> int:
        return self.analysis.start_ns

    @property
    def t_end(self) -> int:
        return self.analysis.end_ns

    @property
    def two_views(self) -> bool:
        return self.startup_ns is not None

    def axis(self, *, full: bool) -> Axis:
        return Axis(self.t0, self.t_end if full or self.startup_ns is None else self.startup_ns)

    def colour(self, span: Span, palette: tuple[str, ...]) -> str:
        return palette[self.process_index.get(span.process_key, 0) % len(palette)]

    def row_gaps(self, row: Row) -> list[Gap]:
        """The gaps painted on a single span's bar (a collapsed group has none of its own)."""
        return self.gaps.get(row.spans[0].span_id, []) if row.gap is None and len(row.spans) == 1 else []


def waterfall_view(
    analysis: Analysis, *, max_depth: int | None = None, collapse_over: int = 3, startup_only: bool = False
) -> WaterfallView:
    """The view of ``analysis``; ``startup_only`` leaves out the rows after the start-up (the terminal's default)."""
    until = startup_end_ns(analysis)
    startup = until if until is not None and until < analysis.end_ns else None
    gaps = gap_map(analysis)
    rows = build_rows(analysis, max_depth=max_depth, collapse_over=collapse_over,
                      until_ns=startup if startup_only else None, gaps=gaps)
    index: dict[str, int] = {}
    for group in analysis.processes:
        index.setdefault(group.process_key, len(index))
    return WaterfallView(analysis, rows, gaps, index, startup)


# --- results.json ---------------------------------------------------------------------


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


@dataclass(frozen=True, slots=True)
class LatencyRow:
    kind: str  # a query kind, or "all"
    count: float | None
    errors: float | None
    qps: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    max_ms: float | None
    mean_ms: float | None

    @property
    def total(self) -> bool:
        return self.kind == "all"

    @classmethod
    def of(cls, kind: str, v: dict[str, Any]) -> LatencyRow:
        return cls(kind, *(_num(v.get(k)) for k in ("count", "errors", "qps", "p50_ms", "p95_ms", "p99_ms",
                                                    "p999_ms", "max_ms", "mean_ms")))


def latency_rows(measurement: dict[str, Any]) -> list[LatencyRow]:
    """One row per query kind, then "all": the kinds together, with the run's errors and qps."""
    rows = [LatencyRow.of(str(kind), v) for kind, v in _dict(measurement.get("latency")).items() if isinstance(v, dict)]
    if isinstance(measurement.get("all"), dict):
        rows.append(LatencyRow.of("all", {**measurement["all"], "errors": measurement.get("errors"),
                                          "qps": measurement.get("qps")}))
    return rows


@dataclass(frozen=True, slots=True)
class WorkerRow:
    worker_id: str
    status: str
    connections: float | None
    queries: float | None
    errors: float | None
    qps: float | None
    start_to_first_query_ms: float | None
    stop_reason: str


@dataclass(frozen=True, slots=True)
class Stall:
    start_s: float
    seconds: float
    kind: str  # "throughput", "errors" or both
    min_qps: float
    median_qps: float
    errors: float


@dataclass(frozen=True, slots=True)
class ErrorClassRow:
    kind: str
    error_class: str  # SQLSTATE class, Snowflake error code, or the client's exception type
    count: int


@dataclass(frozen=True, slots=True)
class PartialWorker:
    worker_id: str
    seconds_missing: float | None  # None: how much is missing is not known


@dataclass(frozen=True, slots=True)
class TimelinePoint:
    t_s: float
    qps: float
    errors_per_s: float


@dataclass(slots=True, frozen=True)
class FindMaxStep:
    connections: int
    qps: float
    p95_ms: float | None
    p99_ms: float | None
    error_rate: float
    verdict: str


@dataclass(slots=True)
class FindMax:
    """A find-max run's curve: QPS and p95 against connections, and where the search stopped."""

    steps: list[FindMaxStep]
    max_stable_connections: int | None
    stopped_by: str | None


@dataclass(frozen=True, slots=True)
class OpenModel:
    """An open-model run: the target against what was achieved, and the two other histograms.

    ``latency`` (RunView.latency) counts from each execution's intended start; ``service``
    from its send. ``met`` is False when the achieved rate fell more than 2 % short.
    """

    target_qps: float | None
    achieved_qps: float | None
    met: bool
    shortfall_qps: float
    shortfall_share: float
    from_s: float | None  # seconds from the START of the first second that fell short
    dropped: int  # arrivals beyond max_queue in the measurement
    dropped_all_phases: int
    queued_at_stop: int
    arrival: str | None
    max_queue: int | None
    service: list[LatencyRow]
    schedule_lag: LatencyRow | None

    @property
    def headline(self) -> str:
        return open_model_headline(self)


def open_model_view(results: dict[str, Any]) -> OpenModel | None:
    m = _dict(results.get("measurement"))
    short = _dict(m.get("rate_shortfall"))
    if not short and "service" not in m:
        return None
    load = _dict(_dict(results.get("settings")).get("load"))
    service = [LatencyRow.of(str(kind), v) for kind, v in _dict(m.get("service")).items() if isinstance(v, dict)]
    if isinstance(m.get("service_all"), dict):
        service.append(LatencyRow.of("all", m["service_all"]))
    lag = m.get("schedule_lag")
    max_queue = _num(load.get("max_queue"))
    return OpenModel(
        target_qps=_num(short.get("target_qps")), achieved_qps=_num(short.get("achieved_qps")),
        met=bool(short.get("met", True)),
        shortfall_qps=float(_num(short.get("shortfall_qps")) or 0.0),
        shortfall_share=float(_num(short.get("shortfall_share")) or 0.0),
        from_s=_num(short.get("from_s")),
        dropped=int(_num(m.get("dropped")) or 0),
        dropped_all_phases=int(sum(_num(v) or 0 for v in _dict(m.get("dropped_by_phase")).values())),
        queued_at_stop=int(_num(m.get("queued_at_stop")) or 0),
        arrival=None if load.get("arrival") is None else str(load.get("arrival")),
        max_queue=None if max_queue is None else int(max_queue),
        service=service,
        schedule_lag=LatencyRow.of("schedule lag", lag) if isinstance(lag, dict) else None,
    )


def open_model_headline(om: OpenModel) -> str:
    """One sentence: the target, what was achieved, and if it was missed, by how much and since when."""
    target = "-" if om.target_qps is None else f"{om.target_qps:,.0f}/s"
    achieved = "-" if om.achieved_qps is None else f"{om.achieved_qps:,.0f}/s"
    arrival = f" ({om.arrival} arrivals)" if om.arrival else ""
    if om.met:
        dropped = f"; {om.dropped:,} arrivals dropped" if om.dropped else ""
        return f"open model: target {target}{arrival}, achieved {achieved}: met (within 2 %){dropped}"
    since = f" from +{om.from_s:.0f}s of the run" if om.from_s is not None else ""
    queue = f" beyond max_queue = {om.max_queue:,}" if om.max_queue is not None else ""
    return (f"open model: target rate NOT MET: {achieved} of {target}{arrival}, {om.shortfall_qps:,.0f}/s "
            f"({om.shortfall_share:.1%}) short{since}; {om.dropped:,} arrivals dropped{queue}, "
            f"{om.queued_at_stop:,} still queued at the stop")



@dataclass(slots=True)
class RunView:
    """The figures of results.json as a report shows them."""

    run_id: str | None
    status: str | None
    reason: str | None
    measured: bool  # results.json has a measurement section
    seconds: float | None
    queries: float | None
    errors: float | None
    qps: float | None
    latency: list[LatencyRow]
    phases: list[tuple[str, list[LatencyRow]]]
    timeline: list[TimelinePoint]
    workers: list[WorkerRow]
    stalls: list[Stall]
    cut: int
    partial: list[PartialWorker]
    warnings: list[str]
    errors_by_class: list[ErrorClassRow]
    settings: list[tuple[str, str]]  # (key, value as shown: secrets masked)
    warmup_s: float | None
    duration_s: float | None
    wall_time_s: float | None
    find_max: FindMax | None = None
    open_model: OpenModel | None = None

    @property
    def all_row(self) -> LatencyRow | None:
        return next((r for r in self.latency if r.total), None)

    @property
    def last_first_query_ms(self) -> float | None:
        """START → the last worker's first query: every worker is ready only then."""
        s2f = [w.start_to_first_query_ms for w in self.workers if w.start_to_first_query_ms is not None]
        return max(s2f) if s2f else None


def run_view(results: dict[str, Any]) -> RunView:
    m = results.get("measurement")
    measurement = _dict(m)
    phases = [
        (str(phase), [LatencyRow.of(str(kind), v) for kind, v in kinds.items() if isinstance(v, dict)])
        for phase, kinds in _dict(results.get("phases")).items() if isinstance(kinds, dict)
    ]
    timeline = [
        TimelinePoint(float(p["t_s"]), float(_num(p.get("qps")) or 0), float(_num(p.get("errors_per_s")) or 0))
        for p in _list(results.get("timeline")) if isinstance(p, dict) and _num(p.get("t_s")) is not None
    ]
    workers = [
        WorkerRow(str(w.get("worker_id", "?")), str(w.get("status", "?")), _num(w.get("connections")),
                  _num(w.get("queries")), _num(w.get("errors")), _num(w.get("qps")),
                  _num(w.get("start_to_first_query_ms")), str(clean("stop_reason", w.get("stop_reason") or "")))
        for w in _list(results.get("workers")) if isinstance(w, dict)
    ]
    stalls = [
        Stall(float(_num(s.get("start_s")) or 0), float(_num(s.get("seconds")) or 0), str(s.get("kind", "")),
              float(_num(s.get("min_qps")) or 0), float(_num(s.get("median_qps")) or 0), float(_num(s.get("errors")) or 0))
        for s in _list(results.get("stalls")) if isinstance(s, dict)
    ]
    part = _dict(results.get("partial"))
    missing = _dict(part.get("seconds_missing"))
    partial = [PartialWorker(str(w), _num(missing.get(w)))
               for w in dict.fromkeys([*(str(w) for w in _list(part.get("workers"))), *(str(w) for w in missing)])]
    by_class = [
        ErrorClassRow(str(kind), str(cls), int(n))
        for kind, classes in _dict(measurement.get("errors_by_class")).items() if isinstance(classes, dict)
        for cls, n in sorted(classes.items(), key=lambda kv: (-(_num(kv[1]) or 0), str(kv[0])))
        if _num(n) is not None
    ]
    settings = [(str(k), shown(clean(str(k), v))) for k, v in _dict(results.get("settings")).items()]
    fm = _dict(results.get("find_max"))
    find_max = None
    if fm:
        steps = [
            FindMaxStep(int(_num(st.get("connections")) or 0), float(_num(st.get("qps")) or 0),
                        _num(st.get("p95_ms")), _num(st.get("p99_ms")), float(_num(st.get("error_rate")) or 0),
                        str(st.get("verdict", "")))
            for st in _list(fm.get("steps")) if isinstance(st, dict)
        ]
        mx = _num(fm.get("max_stable_connections"))
        find_max = FindMax(steps, None if mx is None else int(mx), None if fm.get("stopped_by") is None else str(fm["stopped_by"]))
    s = _dict(results.get("settings"))
    return RunView(
        run_id=results.get("run_id"),
        status=results.get("status"),
        reason=None if not results.get("reason") else str(clean("reason", results.get("reason"))),
        measured=isinstance(m, dict) and isinstance(measurement.get("latency"), dict),
        seconds=_num(measurement.get("seconds")),
        queries=_num(measurement.get("queries")),
        errors=_num(measurement.get("errors")),
        qps=_num(measurement.get("qps")),
        latency=latency_rows(measurement),
        phases=phases,
        timeline=timeline,
        workers=workers,
        stalls=stalls,
        cut=int(_num(measurement.get("cut")) or 0),
        partial=partial,
        warnings=[str(w) for w in _list(results.get("warnings"))],
        errors_by_class=by_class,
        settings=settings,
        warmup_s=_num(s.get("warmup")),
        duration_s=_num(s.get("duration")),
        wall_time_s=_num(results.get("wall_time_s")),
        find_max=find_max,
        open_model=open_model_view(results),
    )
