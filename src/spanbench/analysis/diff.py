"""``spanbench diff RUN_A RUN_B``: what grew between two runs, per span name.

Both runs' spans are lined up by name. For each name: how many spans (across workers
and repeats, e.g. every ``pool.connect``), the p50 and the max of their durations, in A
and in B, the change and the ratio B/A. Rows come sorted by how much they changed (the
larger of |Δp50| and |Δmax|), so what grew most is on top. A name present in only one
run is listed as such. For run folders, the headline figures of results.json (qps,
p50/p99, errors, START → first query, wall time) are compared too.

Any source ``load_trace`` reads works: run folders, OTLP/JSON files, Tempo and Jaeger
JSON. A run folder without a trace (tracing off) still diffs its headline figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from spanbench.analysis.load import load_trace
from spanbench.analysis.model import Trace
from spanbench.errors import ConfigError

JSON_VERSION = 1


@dataclass(frozen=True, slots=True)
class NameStats:
    """Durations (ns) of every span of one name in one run."""

    count: int
    p50_ns: int
    max_ns: int
    total_ns: int

    @classmethod
    def of(cls, durations: list[int]) -> NameStats:
        ordered = sorted(durations)
        # nearest rank: an observed duration, never an interpolation between two spans
        p50 = ordered[max(math.ceil(0.5 * len(ordered)) - 1, 0)]
        return cls(len(ordered), p50, ordered[-1], sum(ordered))

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "p50_ms": _ms(self.p50_ns), "max_ms": _ms(self.max_ns), "total_ms": _ms(self.total_ns)}


@dataclass(frozen=True, slots=True)
class SpanDiff:
    name: str
    a: NameStats | None
    b: NameStats | None

    @property
    def delta_p50_ns(self) -> int:
        return (self.b.p50_ns if self.b else 0) - (self.a.p50_ns if self.a else 0)

    @property
    def delta_max_ns(self) -> int:
        return (self.b.max_ns if self.b else 0) - (self.a.max_ns if self.a else 0)

    @property
    def ratio_p50(self) -> float | None:
        return _ratio(self.a.p50_ns if self.a else None, self.b.p50_ns if self.b else None)

    @property
    def ratio_max(self) -> float | None:
        return _ratio(self.a.max_ns if self.a else None, self.b.max_ns if self.b else None)

    @property
    def change_ns(self) -> int:
        """How much the row moved, either way: the sort key."""
        return max(abs(self.delta_p50_ns), abs(self.delta_max_ns))

    @property
    def only_in(self) -> str | None:
        if self.a is None:
            return "B"
        if self.b is None:
            return "A"
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "a": self.a.to_json() if self.a else None,
            "b": self.b.to_json() if self.b else None,
            "only_in": self.only_in,
            "delta_p50_ms": _ms(self.delta_p50_ns),
            "delta_max_ms": _ms(self.delta_max_ns),
            "ratio_p50": _round(self.ratio_p50),
            "ratio_max": _round(self.ratio_max),
        }


@dataclass(frozen=True, slots=True)
class Headline:
    metric: str
    unit: str  # "ms", "s", "qps", "count"
    a: float | None
    b: float | None
    higher_is_better: bool = False

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a

    @property
    def ratio(self) -> float | None:
        return _ratio(self.a, self.b)

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "unit": self.unit, "a": _round(self.a), "b": _round(self.b),
                "delta": _round(self.delta), "ratio": _round(self.ratio)}


@dataclass(slots=True)
class RunSide:
    source: str
    trace: Trace | None
    results: dict[str, Any] | None
    note: str | None = None

    @property
    def label(self) -> str:
        run_id = (self.results or {}).get("run_id")
        status = (self.results or {}).get("status")
        extra = ", ".join(str(x) for x in (run_id, status) if x)
        return f"{self.source}" + (f" ({extra})" if extra else "")


@dataclass(slots=True)
class RunDiff:
    a: RunSide
    b: RunSide
    headlines: list[Headline]
    spans: list[SpanDiff]

    def to_json(self) -> dict[str, Any]:
        def side(s: RunSide) -> dict[str, Any]:
            return {
                "source": s.source,
                "run_id": (s.results or {}).get("run_id"),
                "status": (s.results or {}).get("status"),
                "trace_id": s.trace.trace_id if s.trace is not None else None,
                "span_count": len(s.trace) if s.trace is not None else 0,
                "note": s.note,
            }

        return {
            "version": JSON_VERSION,
            "a": side(self.a),
            "b": side(self.b),
            "headline": [h.to_json() for h in self.headlines],
            "spans": [d.to_json() for d in self.spans],
        }


def _ms(ns: int) -> float:
    return round(ns / 1e6, 3)


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or a == 0:
        return None
    return b / a


# --- the pure part --------------------------------------------------------------------


# A span that summarises many heartbeats (or flushes) lasts its whole window: as a
# "duration" of its name it would make a long run look slower than a short one.
_SUMMARY = "spanbench.coarsened.count"


def name_stats(trace: Trace) -> dict[str, NameStats]:
    durations: dict[str, list[int]] = {}
    for span in trace.spans:
        if _SUMMARY in span.attributes:
            continue
        durations.setdefault(span.name, []).append(span.duration_ns)
    return {name: NameStats.of(ds) for name, ds in durations.items()}


def diff_traces(a: Trace, b: Trace) -> list[SpanDiff]:
    """Per span name, A vs B, the biggest change first (ties: by name)."""
    sa, sb = name_stats(a), name_stats(b)
    rows = [SpanDiff(name, sa.get(name), sb.get(name)) for name in set(sa) | set(sb)]
    rows.sort(key=lambda d: (-d.change_ns, d.name))
    return rows


def _first_query_ns(trace: Trace) -> int | None:
    """Run start → the last worker's first query (every worker is ready only then)."""
    starts = [s.start_ns for s in trace.spans if s.name == "first_query"]
    return max(starts) - trace.start_ns if starts else None


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _headline_values(side: RunSide) -> dict[str, float | None]:
    r = side.results or {}
    m = r.get("measurement") if isinstance(r.get("measurement"), dict) else {}
    all_ = m.get("all") if isinstance(m.get("all"), dict) else {}
    workers = r.get("workers") if isinstance(r.get("workers"), list) else []
    s2f = [_num(w.get("start_to_first_query_ms")) for w in workers if isinstance(w, dict)]
    s2f = [v for v in s2f if v is not None]
    trace = side.trace
    fq = _first_query_ns(trace) if trace is not None else None
    return {
        "qps": _num(m.get("qps")),
        "p50": _num(all_.get("p50_ms")),
        "p99": _num(all_.get("p99_ms")),
        "max": _num(all_.get("max_ms")),
        "queries": _num(m.get("queries")),
        "errors": _num(m.get("errors")),
        "start_to_first_query": max(s2f) if s2f else None,
        "run_start_to_first_query": fq / 1e6 if fq is not None else None,
        "trace_duration": (trace.end_ns - trace.start_ns) / 1e9 if trace is not None and trace.spans else None,
        "wall_time": _num(r.get("wall_time_s")),
    }


_HEADLINES = (
    ("qps", "queries/s (measurement)", "qps", True),
    ("p50", "latency p50, all kinds", "ms", False),
    ("p99", "latency p99, all kinds", "ms", False),
    ("max", "latency max, all kinds", "ms", False),
    ("queries", "queries (measurement)", "count", True),
    ("errors", "errors (measurement)", "count", False),
    ("start_to_first_query", "START → last first query", "ms", False),
    ("run_start_to_first_query", "trace start → last first_query", "ms", False),
    ("trace_duration", "trace duration", "s", False),
    ("wall_time", "wall time", "s", False),
)


def headlines(a: RunSide, b: RunSide) -> list[Headline]:
    va, vb = _headline_values(a), _headline_values(b)
    return [
        Headline(label, unit, va[key], vb[key], better)
        for key, label, unit, better in _HEADLINES
        if va[key] is not None or vb[key] is not None
    ]


# --- loading --------------------------------------------------------------------------


def load_side(source: str, results: dict[str, Any] | None) -> RunSide:
    """One side: its trace (when ``source`` holds one) beside the results.json the caller read."""
    if not source or not str(source).strip():
        raise ConfigError("diff needs two runs: RUN_A RUN_B (run folders or trace files)")
    try:
        trace: Trace | None = load_trace(source)
    except ConfigError as err:
        if results is None:
            raise
        return RunSide(source, None, results, note=f"no trace ({err}); headline figures only")
    return RunSide(source, trace, results)


def diff_sides(a: RunSide, b: RunSide) -> RunDiff:
    spans = diff_traces(a.trace, b.trace) if a.trace is not None and b.trace is not None else []
    return RunDiff(a, b, headlines(a, b), spans)
