"""``spanbench gaps``: load a trace from wherever it is, analyse it, print it, judge it.

Two guards for CI, each exit 1 when it trips: ``--fail-over`` (an untraced gap on a
critical path longer than a threshold) and ``--fail-if-first-query-over`` (run start →
the slowest worker's first query longer than a threshold). Warnings about the trace
(spans left out, the back end's own warnings) go to stderr, one line each, and into the
JSON's ``warnings``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any, TextIO

from rich.console import Console
from rich.text import Text

from spanbench.analysis.analyze import Analysis, analyze
from spanbench.analysis.critical_path import DEFAULT_TARGET, CriticalPath
from spanbench.analysis.fetch import fetch_trace_jaeger, fetch_trace_tempo
from spanbench.analysis.gaps import Gap
from spanbench.analysis.load import load_trace
from spanbench.analysis.model import Trace
from spanbench.errors import ConfigError, SpanbenchError
from spanbench.units import format_duration, parse_duration

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


def _positive(text: str, flag: str) -> float:
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
    min_gap_s = _positive(min_gap, "--min-gap")
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


def _first_query_line(analysis: Analysis, check: FirstQueryCheck) -> Text:
    from spanbench.report.waterfall import path_line

    assert check.worst is not None
    limit = f"{FIRST_QUERY_FLAG} {format_duration(check.threshold_ns / 1e9)}"
    what = path_line(analysis, check.worst)
    if check.failed:
        return Text(f"FAIL: {what} exceeds {limit} by {format_duration(check.over_ns / 1e9)}", style="bold red")
    return Text(f"ok: slowest {what} is within {limit}", style="green")


def _fail_over_json(fail_s: float, over: list[tuple[CriticalPath, Gap, int]]) -> dict[str, Any]:
    return {
        "threshold_ms": round(fail_s * 1e3, 3),
        "failed": bool(over),
        "exceeded": [
            {"target_span_id": p.target_id, "gap_span_id": g.span_id, "gap_start_unix_ns": g.start_ns,
             "on_path_ms": round(n / 1e6, 3)}
            for p, g, n in over
        ],
    }


def _fail_over_lines(analysis: Analysis, fail_s: float, over: list[tuple[CriticalPath, Gap, int]]) -> list[Text]:
    from spanbench.report.waterfall import gap_line

    if not over:
        return [Text(f"ok: no gap on a critical path exceeds {format_duration(fail_s)}", style="green")]
    lines = []
    for path, gap, on_path in over:
        target = analysis.trace[path.target_id]
        owner = analysis.trace.owner(target)
        where = target.name if owner is None else f"{target.name}[{owner}]"
        text = (
            f"FAIL: {format_duration(on_path / 1e9)} untraced on the critical path to {where}"
            f" exceeds --fail-over {format_duration(fail_s)}: {gap_line(analysis, gap)}"
        )
        lines.append(Text(text, style="bold red"))
    return lines


def _print_report(analysis: Analysis, console: Console, *, max_depth: int | None, full: bool) -> None:
    from spanbench.report.waterfall import print_gaps, print_waterfall

    print_waterfall(analysis, console, max_depth=max_depth, full=full)
    console.print()
    # The warnings went to stderr already; print_gaps would repeat each one in the report.
    warnings, analysis.trace.warnings = analysis.trace.warnings, []
    try:
        print_gaps(analysis, console)
    finally:
        analysis.trace.warnings = warnings


def gaps_command(
    source: str | None,
    *,
    min_gap: str = "50ms",
    as_json: bool = False,
    fail_over: str | None = None,
    fail_if_first_query_over: str | None = None,
    jaeger: str | None = None,
    tempo: str | None = None,
    trace_id: str | None = None,
    query: str | None = None,
    console: Console | None = None,
    err: TextIO | None = None,
    max_depth: int | None = None,
    full: bool = False,
) -> int:
    """Print the waterfall and gaps (or JSON). Exit code 1 when a guard trips (``fail_over``:
    a gap's part on a critical path exceeds it; ``fail_if_first_query_over``: the slowest
    run start → first_query exceeds it), else 0. Bad input raises ConfigError; a
    first-query guard on a trace without ``first_query`` raises SpanbenchError (exit 1)
    once the report is out."""
    err = err if err is not None else sys.stderr
    fail_s = _positive(fail_over, "--fail-over") if fail_over is not None else None
    first_s = _positive(fail_if_first_query_over, FIRST_QUERY_FLAG) if fail_if_first_query_over is not None else None
    analysis = run_gaps(source, min_gap=min_gap, jaeger=jaeger, tempo=tempo, trace_id=trace_id, query=query)
    over = analysis.path_gaps_over(int(round(fail_s * 1e9))) if fail_s is not None else []
    first = first_query_check(analysis, first_s) if first_s is not None else None

    for warning in analysis.trace.warnings:
        err.write(f"spanbench: warning: {' '.join(warning.split())}\n")
    err.flush()

    if as_json:
        doc: dict[str, Any] = analysis.to_json()
        if fail_s is not None:
            doc["fail_over"] = _fail_over_json(fail_s, over)
        if first is not None:
            doc["fail_if_first_query_over"] = first.to_json(analysis)
        out = console.file if console is not None else sys.stdout
        out.write(json.dumps(doc, indent=2) + "\n")
        out.flush()
        if first is not None and first.worst is not None and first.failed:
            # stdout stays pure JSON; the reason for the exit code still reaches the log.
            err.write(_first_query_line(analysis, first).plain + "\n")
            err.flush()
    else:
        console = console or Console()
        _print_report(analysis, console, max_depth=max_depth, full=full)
        lines = _fail_over_lines(analysis, fail_s, over) if fail_s is not None else []
        if first is not None and first.worst is not None:
            lines.append(_first_query_line(analysis, first))
        for line in lines:
            console.print(line, soft_wrap=True)
    if first is not None and first.worst is None:
        raise SpanbenchError(
            f"{FIRST_QUERY_FLAG}: the trace has no {DEFAULT_TARGET} span, so run start → first query cannot be checked"
        )
    return 1 if over or (first is not None and first.failed) else 0
