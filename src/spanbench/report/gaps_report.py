"""``spanbench gaps`` on the terminal: the waterfall and the gaps report, the guards' verdict
lines, or ``--json``. The analysis and the guards are computed in ``spanbench.analysis.command``."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from rich.console import Console
from rich.text import Text

from spanbench.analysis.analyze import Analysis
from spanbench.analysis.command import (
    FIRST_QUERY_FLAG,
    FirstQueryCheck,
    fail_over_json,
    first_query_check,
    positive,
    run_gaps,
)
from spanbench.analysis.critical_path import DEFAULT_TARGET, CriticalPath
from spanbench.analysis.gaps import Gap
from spanbench.errors import SpanbenchError
from spanbench.report.waterfall import gap_line, path_line, print_gaps, print_waterfall
from spanbench.units import format_duration


def first_query_line(analysis: Analysis, check: FirstQueryCheck) -> Text:
    assert check.worst is not None
    limit = f"{FIRST_QUERY_FLAG} {format_duration(check.threshold_ns / 1e9)}"
    what = path_line(analysis, check.worst)
    if check.failed:
        return Text(f"FAIL: {what} exceeds {limit} by {format_duration(check.over_ns / 1e9)}", style="bold red")
    return Text(f"ok: slowest {what} is within {limit}", style="green")


def fail_over_lines(analysis: Analysis, fail_s: float, over: list[tuple[CriticalPath, Gap, int]]) -> list[Text]:
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


def print_gaps_report(analysis: Analysis, console: Console, *, max_depth: int | None, full: bool) -> None:
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
    fail_s = positive(fail_over, "--fail-over") if fail_over is not None else None
    first_s = positive(fail_if_first_query_over, FIRST_QUERY_FLAG) if fail_if_first_query_over is not None else None
    analysis = run_gaps(source, min_gap=min_gap, jaeger=jaeger, tempo=tempo, trace_id=trace_id, query=query)
    over = analysis.path_gaps_over(int(round(fail_s * 1e9))) if fail_s is not None else []
    first = first_query_check(analysis, first_s) if first_s is not None else None

    for warning in analysis.trace.warnings:
        err.write(f"spanbench: warning: {' '.join(warning.split())}\n")
    err.flush()

    if as_json:
        doc: dict[str, Any] = analysis.to_json()
        if fail_s is not None:
            doc["fail_over"] = fail_over_json(fail_s, over)
        if first is not None:
            doc["fail_if_first_query_over"] = first.to_json(analysis)
        out = console.file if console is not None else sys.stdout
        out.write(json.dumps(doc, indent=2) + "\n")
        out.flush()
        if first is not None and first.worst is not None and first.failed:
            # stdout stays pure JSON; the reason for the exit code still reaches the log.
            err.write(first_query_line(analysis, first).plain + "\n")
            err.flush()
    else:
        console = console or Console()
        print_gaps_report(analysis, console, max_depth=max_depth, full=full)
        lines = fail_over_lines(analysis, fail_s, over) if fail_s is not None else []
        if first is not None and first.worst is not None:
            lines.append(first_query_line(analysis, first))
        for line in lines:
            console.print(line, soft_wrap=True)
    if first is not None and first.worst is None:
        raise SpanbenchError(
            f"{FIRST_QUERY_FLAG}: the trace has no {DEFAULT_TARGET} span, so run start → first query cannot be checked"
        )
    return 1 if over or (first is not None and first.failed) else 0
