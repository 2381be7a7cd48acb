"""The terminal view of an Analysis: a start-up waterfall and the gaps report (Rich).

The waterfall draws one row per span on a time axis from the trace's start, scaled to
the console width, with gaps in red. To stay readable (≤ ~60 rows for a 2-worker run)
siblings that repeat a name more than ``collapse_over`` times (polls, connects,
queries) share one row "name ×N", and by default the axis ends at the last
``first_query`` so start-up is not squeezed into a corner by a long measurement.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from spanbench.analysis import labels
from spanbench.analysis.analyze import Analysis
from spanbench.analysis.critical_path import CriticalPath
from spanbench.analysis.gaps import Gap
from spanbench.report.axis import Axis
from spanbench.report.view import Row, build_rows, gap_groups, startup_end_ns, waterfall_view
from spanbench.units import format_duration

__all__ = ["Row", "build_rows", "gap_line", "path_line", "print_gaps", "print_waterfall", "startup_end_ns"]

_PALETTE = ("cyan", "green", "magenta", "blue", "yellow", "bright_cyan", "bright_green", "bright_magenta")
_GAP_STYLE = "bold red"
_NAME_MAX = 46


def _s(ns: int) -> float:
    return ns / 1e9


def _bar(row: Row, axis: Axis, width: int, style: str, gaps: list[Gap], until_ns: int) -> Text:
    cells: list[tuple[str, str]] = [(" ", "")] * width
    if row.gap is not None:
        for i in axis.cells(row.gap.start_ns, row.gap.end_ns, width):
            cells[i] = ("░", _GAP_STYLE)
    else:
        glyph = "▆" if len(row.spans) > 1 else "█"
        for span in row.spans:
            for i in axis.cells(span.start_ns, span.end_ns, width):
                cells[i] = (glyph, style)
        for gap in gaps:
            for i in axis.cells(gap.start_ns, gap.end_ns, width):
                cells[i] = ("░", _GAP_STYLE)
        if row.end_ns > until_ns and cells[-1][0] != " ":
            cells[-1] = ("▸", style)  # runs on past the end of the axis
    text = Text()
    for glyph, cell_style in cells:
        text.append(glyph, cell_style)
    return text


def print_waterfall(
    analysis: Analysis,
    console: Console,
    *,
    max_depth: int | None = None,
    collapse_over: int = 3,
    full: bool = False,
) -> None:
    """The waterfall. Without ``full``, the axis and rows stop at the last ``first_query``."""
    trace = analysis.trace
    if not trace.spans:
        console.print("(empty trace)")
        return
    view = waterfall_view(analysis, max_depth=max_depth, collapse_over=collapse_over, startup_only=not full)
    rows = view.rows
    axis = view.axis(full=full)
    t0 = analysis.start_ns
    t1 = view.startup_ns if view.startup_ns is not None and not full else analysis.end_ns

    width = console.width or 100
    name_w = min(max(len(r.label) + 2 * r.depth for r in rows), _NAME_MAX, max(width // 3, 12))
    offset_w, dur_w = 9, 9
    bar_w = max(width - name_w - offset_w - dur_w - 3, 10)

    title = "start-up waterfall" if t1 < analysis.end_ns else "waterfall"
    header = Text(f"{title}: trace {trace.trace_id}, {len(trace)} spans", style="bold")
    console.print(header)
    scale = Text(" " * (name_w + offset_w + 2))
    right = format_duration(_s(t1 - t0))
    scale.append("0" + "─" * max(bar_w - len(right) - 2, 1) + " " + right, style="dim")
    console.print(scale)
    for row in rows:
        label = "  " * row.depth + ("⋯ gap" if row.gap is not None else row.label)
        if len(label) > name_w:
            label = label[: name_w - 1] + "…"
        line = Text(label.ljust(name_w), style=_GAP_STYLE if row.gap is not None else "")
        line.append(f" {('+' + format_duration(_s(row.start_ns - t0))):>{offset_w}} ", style="dim")
        if row.gap is not None:
            line.append_text(_bar(row, axis, bar_w, _GAP_STYLE, [], t1))
            line.append(f" {format_duration(_s(row.gap.duration_ns)):>{dur_w}}", style=_GAP_STYLE)
        else:
            first = row.spans[0]
            line.append_text(_bar(row, axis, bar_w, view.colour(first, _PALETTE), view.row_gaps(row), t1))
            if len(row.spans) == 1:
                dur = format_duration(_s(first.duration_ns))
            else:
                dur = "Σ" + format_duration(_s(sum(s.duration_ns for s in row.spans)))
            line.append(f" {dur:>{dur_w}}")
        console.print(line, no_wrap=True, overflow="crop", soft_wrap=False)
    later = sum(1 for s in trace.spans if s.start_ns > t1) if t1 < analysis.end_ns else 0
    if later:
        console.print(Text(f"… {later} span(s) after the last first_query not shown", style="dim"))


# --- the gaps report --------------------------------------------------------------


def _span_name(analysis: Analysis, span_id: str | None) -> str | None:
    span = analysis.trace.get(span_id)
    return None if span is None else labels.short(span)


def gap_line(analysis: Analysis, gap: Gap) -> str:
    """``gap 7.52s in worker[w1] after pool.init before executor.setup``"""
    where = labels.in_context(analysis.trace, analysis.trace[gap.span_id])
    before = _span_name(analysis, gap.before_id)
    after = _span_name(analysis, gap.after_id)
    return (
        f"gap {format_duration(_s(gap.duration_ns))} in {where}"
        f" {'after ' + before if before else 'after its start'}"
        f" {'before ' + after if after else 'before its end'}"
    )


def path_line(analysis: Analysis, path: CriticalPath) -> str:
    """``worker[w0]: run start → first_query: 1.23s (traced 1.20s, untraced 0.03s)``"""
    trace = analysis.trace
    target = trace[path.target_id]
    root = trace[path.root_id]
    owner = trace.owner(target)
    what = target.name if path.until == "start" else f"end of {target.name}"
    prefix = f"worker[{owner}]: " if owner is not None and target.worker_id is None else ""
    return (
        f"{prefix}{root.name} start → {what}: {format_duration(_s(path.duration_ns))}"
        f" (traced {format_duration(_s(path.traced_ns))}, untraced {format_duration(_s(path.untraced_ns))})"
    )


def group_line(analysis: Analysis, gaps: list[Gap]) -> str:
    first = gaps[0]
    where = labels.in_context(analysis.trace, analysis.trace[first.span_id])
    before = _span_name(analysis, first.before_id) or "its start"
    after = _span_name(analysis, first.after_id) or "its end"
    total = sum(g.duration_ns for g in gaps)
    largest = max(g.duration_ns for g in gaps)
    return (
        f"{len(gaps)} gaps in {where} between {before} and {after}:"
        f" {format_duration(_s(total))} in all, largest {format_duration(_s(largest))}"
    )


def _say(console: Console, text: Text) -> None:
    # Whole lines, never wrapped mid-phrase by Rich: the terminal wraps, grep still matches.
    console.print(text, soft_wrap=True)


def print_gaps(analysis: Analysis, console: Console, *, collapse_over: int = 3) -> None:
    """One line per gap of at least the threshold, then the critical paths, skew, processes."""
    trace = analysis.trace
    threshold = format_duration(_s(analysis.min_gap_ns))
    for warning in trace.warnings:
        _say(console, Text(f"warning: {warning}", style="yellow"))
    _say(console, Text(f"gaps ≥ {threshold}", style="bold"))
    if not analysis.gaps:
        _say(console, Text(f"  no gap of {threshold} or more"))
    for group in gap_groups(analysis, collapse_over):
        gap = group[0]
        critical = len(group) == 1 and analysis.on_critical_path(gap)
        line = Text("  ")
        text = gap_line(analysis, gap) if len(group) == 1 else group_line(analysis, group)
        line.append(text, style=_GAP_STYLE if critical else "red")
        line.append(f"  at +{format_duration(_s(gap.start_ns - analysis.start_ns))}", style="dim")
        if critical:
            line.append("  (critical path)", style="dim")
        _say(console, line)

    if analysis.paths:
        _say(console, Text("critical path", style="bold"))
    for path in sorted(analysis.paths, key=lambda p: (trace.owner(trace[p.target_id]) or "", p.end_ns)):
        _say(console, Text("  " + path_line(analysis, path)))
        for pg in path.gaps:
            if pg.on_path_ns >= analysis.min_gap_ns:
                text = f"    untraced {format_duration(_s(pg.on_path_ns))}: {gap_line(analysis, pg.gap)}"
                _say(console, Text(text, style="red"))

    if analysis.skews:
        title = f"clock skew: {len(analysis.skews)} span(s) outside their parent (clipped to it for the gaps)"
        _say(console, Text(title, style="bold yellow"))
        for skew in analysis.skews[:10]:
            span, parent = trace[skew.span_id], trace[skew.parent_id]
            parts = []
            if skew.early_ns:
                parts.append(f"starts {format_duration(_s(skew.early_ns))} before")
            if skew.late_ns:
                parts.append(f"ends {format_duration(_s(skew.late_ns))} after")
            where = "another process" if skew.cross_process else "the same process"
            text = f"  {labels.in_context(trace, span)} {' and '.join(parts)} its parent {labels.short(parent)} ({where})"
            _say(console, Text(text, style="yellow"))
        if len(analysis.skews) > 10:
            _say(console, Text(f"  … and {len(analysis.skews) - 10} more", style="yellow"))

    if len(analysis.processes) > 1:
        _say(console, Text("processes", style="bold"))
        for group in analysis.processes:
            workers = f", worker {', '.join(group.worker_ids)}" if group.worker_ids else ""
            _say(console, Text(f"  {group.service} ({group.process_key}{workers}): {group.span_count} spans"))
