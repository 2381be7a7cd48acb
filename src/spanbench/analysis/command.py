"""``spanbench gaps``: load a trace from wherever it is, analyse it, print it, judge it."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.text import Text

from spanbench.analysis.analyze import Analysis, analyze
from spanbench.analysis.fetch import fetch_trace_jaeger, fetch_trace_tempo
from spanbench.analysis.load import load_trace
from spanbench.analysis.model import Trace
from spanbench.errors import ConfigError
from spanbench.units import format_duration, parse_duration


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


def gaps_command(
    source: str | None,
    *,
    min_gap: str = "50ms",
    as_json: bool = False,
    fail_over: str | None = None,
    jaeger: str | None = None,
    tempo: str | None = None,
    trace_id: str | None = None,
    query: str | None = None,
    console: Console | None = None,
    max_depth: int | None = None,
    full: bool = False,
) -> int:
    """Print the waterfall and gaps (or JSON). Exit code 1 when ``fail_over`` is given and a
    gap's part on a critical path exceeds it, else 0. Bad input raises ConfigError."""
    from spanbench.report.waterfall import gap_line, print_gaps, print_waterfall

    fail_s = _positive(fail_over, "--fail-over") if fail_over is not None else None
    analysis = run_gaps(source, min_gap=min_gap, jaeger=jaeger, tempo=tempo, trace_id=trace_id, query=query)
    over = analysis.path_gaps_over(int(round(fail_s * 1e9))) if fail_s is not None else []

    if as_json:
        doc: dict[str, Any] = analysis.to_json()
        if fail_s is not None:
            doc["fail_over"] = {
                "threshold_ms": round(fail_s * 1e3, 3),
                "failed": bool(over),
                "exceeded": [
                    {"target_span_id": p.target_id, "gap_span_id": g.span_id, "gap_start_unix_ns": g.start_ns,
                     "on_path_ms": round(n / 1e6, 3)}
                    for p, g, n in over
                ],
            }
        out = console.file if console is not None else sys.stdout
        out.write(json.dumps(doc, indent=2) + "\n")
        out.flush()
    else:
        console = console or Console()
        print_waterfall(analysis, console, max_depth=max_depth, full=full)
        console.print()
        print_gaps(analysis, console)
        if fail_s is not None:
            if over:
                for path, gap, on_path in over:
                    target = analysis.trace[path.target_id]
                    owner = analysis.trace.owner(target)
                    where = target.name if owner is None else f"{target.name}[{owner}]"
                    text = (
                        f"FAIL: {format_duration(on_path / 1e9)} untraced on the critical path to {where}"
                        f" exceeds --fail-over {format_duration(fail_s)}: {gap_line(analysis, gap)}"
                    )
                    console.print(Text(text, style="bold red"), soft_wrap=True)
            else:
                text = f"ok: no gap on a critical path exceeds {format_duration(fail_s)}"
                console.print(Text(text, style="green"), soft_wrap=True)
    return 1 if over else 0
