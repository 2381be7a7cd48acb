"""``spanbench gaps``: load a trace from wherever it is, analyse it, judge it.

Two guards for CI, each exit 1 when it trips: ``--fail-over`` (an untraced gap on a
critical path longer than a threshold) and ``--fail-if-first-query-over`` (run start →
the slowest worker's first query longer than a threshold). Warnings about the trace
(spans left out, the back end's own warnings) go to stderr, one line each, and into the
JSON's ``warnings``.

The printing is ``spanbench.report.gaps_report``'s: this module only computes, so that
``analysis`` imports nothing above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spanbench.analysis.analyze import Analysis, analyze
from spanbench.analysis.critical_path import DEFAULT_TARGET, CriticalPath
from spanbench.analysis.fetch import fetch_trace_jaeger, fetch_trace_tempo
from spanbench.analysis.gaps import Gap
from spanbench.analysis.load import load_trace
from spanbench.analysis.model import Trace
from spanbench.errors import ConfigError
from spanbench.units import parse_duration

FIRST_QUERY_FLAG = "--fail-if-first-query-over"


def _load(source: str | None, jaeger: str | None, tempo: str | None, trace_id: str | None, query: str | None) -> Trace:
    if jaeger and tempo:
        raise ConfigError("give --jaeger or --tempo, not both")
    remote = jaeger or tempo
    if remote and source:
        raise ConfigError(f"give a trace PATH or --{'jaeger' if jaeger else 'tempo'} URL, not both")
    if query is not None and not tempo:
        raise ConfigError("--query needs --tempo URL")
    if jaeger:
        if not trace_id:
            raise ConfigError("--jaeger needs --trace-id ID")
        return fetch_trace_jaeger(jaeger, trace_id)
    if tempo:
        if bool(trace_id) == (query is not None):
            raise ConfigError("--tempo needs exactly one of --trace-id ID or --query TRACEQL")
        return fetch_trace_tempo(tempo, trace_id=trace_id, query=query)
    if not source:
        raise ConfigError("give a run folder or trace file, or --jaeger/--tempo URL")
    return load_trace(source, trace_id=trace_id)


def positive(text: str, flag: str) -> float:
    seconds = parse_duration(text)
    if seconds < 0:
        raise ConfigError(f"{flag} must not be negative: {text!r}")
    return seconds


def run_gaps(
    source: str | None,
    *,
    min_gap: str = "50ms",
    jaeger: str | None = None,
    tempo: str | None = None,
    trace_id: str | None = None,
    query: str | None = None,
) -> Analysis:
    """The analysis the command prints, for callers that want the data (``spanbench run``)."""
    min_gap_s = positive(min_gap, "--min-gap")
    return analyze(_load(source, jaeger, tempo, trace_id, query), min_gap_s=min_gap_s)


@dataclass(frozen=True, slots=True)
class FirstQueryCheck:
    """``--fail-if-first-query-over``: the slowest run start → first_query path against a threshold."""

    threshold_ns: int
    worst: CriticalPath | None  # None: the trace has no first_query span, nothing to check

    @property
    def over_ns(self) -> int:
        return 0 if self.worst is None else self.worst.duration_ns - self.threshold_ns

    @property
    def failed(self) -> bool:
        # A guard that cannot be checked must not pass silently.
        return self.worst is None or self.over_ns > 0

    def to_json(self, analysis: Analysis) -> dict[str, Any]:
        doc: dict[str, Any] = {"threshold_ms": round(self.threshold_ns / 1e6, 3), "failed": self.failed}
        if self.worst is None:
            doc["error"] = f"no {DEFAULT_TARGET} span in the trace"
            return doc
        target = analysis.trace[self.worst.target_id]
        doc["worst"] = {
            "worker_id": analysis.trace.owner(target),
            "target_span_id": target.span_id,
            "duration_ms": round(self.worst.duration_ns / 1e6, 3),
            "duration_ns": self.worst.duration_ns,
            "over_ms": round(self.over_ns / 1e6, 3),
        }
        return doc


def first_query_check(analysis: Analysis, threshold_s: float) -> FirstQueryCheck:
    """The worst path to a ``first_query``'s start: the figure the report prints per worker."""
    paths = [
        p for p in analysis.paths if p.until == "start" and analysis.trace[p.target_id].name == DEFAULT_TARGET
    ]
    worst = max(paths, key=lambda p: (p.duration_ns, p.target_id), default=None)
    return FirstQueryCheck(int(round(threshold_s * 1e9)), worst)


def fail_over_json(fail_s: float, over: list[tuple[CriticalPath, Gap, int]]) -> dict[str, Any]:
    return {
        "threshold_ms": round(fail_s * 1e3, 3),
        "failed": bool(over),
        "exceeded": [
            {"target_span_id": p.target_id, "gap_span_id": g.span_id, "gap_start_unix_ns": g.start_ns,
             "on_path_ms": round(n / 1e6, 3)}
            for p, g, n in over
        ],
    }
