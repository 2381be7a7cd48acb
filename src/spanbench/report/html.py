"""``report.html``: one self-contained page per run folder (inline CSS, JS and SVG, no network).

It shows the run's status, what went wrong (stalls, cut queries, partial workers,
warnings), latency percentiles per query kind and errors by class, throughput over time
(an SVG line chart of ``results.json``'s ``timeline``), the waterfall of the trace with
its gaps labelled, the gaps and critical paths, the workers and the settings.

The page renders the report view (``spanbench.report.view``, the terminal renders the
same one) through Jinja2 templates in ``templates/`` with autoescape on: span names and
attributes come from foreign programs, so every value is escaped on its way into the
page. Strings that look like URLs/DSNs pass through ``redact_dsn`` and attributes named
like secrets are masked (``report.redact``), so a password given to a run never reaches
the page even if an upstream redaction were missed.

Bars are absolutely positioned divs. Each carries its position for both views, start-up
(the axis ends at the last ``first_query``, as in the terminal) and whole run, as CSS
custom properties; the view toggle only switches a class, so the page also reads with
scripts off. The test hooks are listed at the top of ``templates/report.html.j2``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from spanbench import __version__
from spanbench.analysis import labels
from spanbench.analysis.analyze import Analysis, analyze
from spanbench.analysis.gaps import Gap
from spanbench.analysis.model import Span
from spanbench.errors import ConfigError
from spanbench.report.axis import Axis, nice_step
from spanbench.report.redact import clean, shown
from spanbench.report.view import Row, RunView, WaterfallView, gap_groups, run_view, waterfall_view
from spanbench.report.waterfall import gap_line, group_line, path_line
from spanbench.results import read_results_file
from spanbench.units import format_duration

REPORT_NAME = "report.html"
MAX_ROWS = 3000  # a foreign trace can be huge; the page stays usable
_PALETTE = ("#1f9bb4", "#2e9e57", "#a5479f", "#3d6fd1", "#c98a12", "#16a3a3", "#6b8e23", "#c1557a")


# --- numbers --------------------------------------------------------------------------


def _dur(ns: int | float) -> str:
    return format_duration(ns / 1e9)


def _ms(ns: int | float) -> str:
    return f"{ns / 1e6:.3f}"


def _pct(x: float) -> str:
    return f"{x:.4f}%"


def _num(value: Any, fmt: str = "{:,.0f}") -> str:
    """A figure, or a dash for one results.json does not have."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return fmt.format(value)
    return "—"


# --- the templates --------------------------------------------------------------------


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    # PackageLoader reads the templates shipped as package data, so a non-editable install works too
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("spanbench.report", "templates"),
        autoescape=True,  # every {{ value }} is escaped: names, attributes and reasons are foreign text
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,  # a misspelt field fails the render, not silently blank
    )
    env.filters["num"] = _num
    return env


def _asset(name: str) -> Markup:
    """Our own CSS or JS, inlined as it is (it is not a template and holds no foreign text)."""
    env = _env()
    assert env.loader is not None
    source, _, _ = env.loader.get_source(env, name)
    return Markup(source)


# --- the waterfall, as the page draws it ----------------------------------------------


@dataclass(frozen=True, slots=True)
class _Bar:
    kind: str  # "bar", "gap-in" (painted on its span's bar) or "gap" (a gap row, with its label)
    cls: str
    pos: str
    title: str
    colour: str = ""
    name: str = ""
    span_id: str = ""
    start_ms: str = ""
    end_ms: str = ""
    gap_ms: str = ""
    critical: str = "false"
    label_pos: str = ""
    text: str = ""


@dataclass(frozen=True, slots=True)
class _HtmlRow:
    classes: str
    attrs: list[tuple[str, str]]
    depth: int
    name: str
    name_title: str
    offset: str
    dur: str
    bars: list[_Bar] = field(default_factory=list)


def _pos_style(views: list[Axis], start: int, end: int) -> tuple[str, bool]:
    """``--l1:…;--w1:…;--l2:…;--w2:…`` and whether the start-up view clips it."""
    parts = []
    clipped = False
    for i, axis in enumerate(views, 1):
        left, width, clip = axis.percent(start, end)
        parts.append(f"--l{i}:{_pct(left)};--w{i}:{_pct(width)}")
        if i == 1:
            clipped = clip
    return ";".join(parts), clipped


def _label_style(views: list[Axis], gap: Gap) -> str:
    """Where a gap's duration label sits in each view: right of the gap, or left when near the edge."""
    parts = []
    for i, axis in enumerate(views, 1):
        left, width, _ = axis.percent(gap.start_ns, gap.end_ns)
        if left + width > 78:
            parts.append(f"--a{i}:{_pct(left)};--x{i}:-100%")
        else:
            parts.append(f"--a{i}:{_pct(left + width)};--x{i}:0%")
    return ";".join(parts)


def _span_title(analysis: Analysis, span: Span) -> str:
    trace = analysis.trace
    lines = [
        labels.in_context(trace, span),
        f"start +{_dur(span.start_ns - analysis.start_ns)}, duration {_dur(span.duration_ns)},"
        f" self {_dur(analysis.self_time_ns.get(span.span_id, 0))}",
        f"service {span.service}",
    ]
    for key, value in list(span.attributes.items())[:30]:
        lines.append(f"{key} = {shown(clean(str(key), value))[:200]}")
    return "\n".join(lines)


def _gap_row(view: WaterfallView, row: Row, views: list[Axis]) -> _HtmlRow:
    analysis, gap = view.analysis, row.gap
    assert gap is not None
    t0 = view.t0
    critical = analysis.on_critical_path(gap)
    enclosing = analysis.trace.get(gap.span_id)
    title = gap_line(analysis, gap) + (" (critical path)" if critical else "")
    pos, _ = _pos_style(views, gap.start_ns, gap.end_ns)
    bar = _Bar("gap", "gap p" + (" crit" if critical else ""), pos, title, gap_ms=_ms(gap.duration_ns),
               start_ms=_ms(gap.start_ns - t0), critical=str(critical).lower(), label_pos=_label_style(views, gap),
               text=_dur(gap.duration_ns))
    late = view.startup_ns is not None and row.start_ns > view.startup_ns
    return _HtmlRow(
        classes="wf-row" + (" late" if late else "") + " gaprow",
        attrs=[("data-depth", str(row.depth)), ("data-start-ms", _ms(row.start_ns - t0)), ("data-parent-id", gap.span_id)],
        depth=row.depth, name="⋯ gap" + (f" in {labels.short(enclosing)}" if enclosing is not None else ""),
        name_title=title, offset=_dur(row.start_ns - t0), dur=_dur(gap.duration_ns), bars=[bar],
    )


def _span_row(view: WaterfallView, row: Row, views: list[Axis]) -> _HtmlRow:
    analysis, trace, t0, until = view.analysis, view.analysis.trace, view.t0, view.startup_ns
    first = row.spans[0]
    colour = view.colour(first, _PALETTE)
    classes = ["wf-row"]
    if until is not None and row.start_ns > until:
        classes.append("late")
    parent = trace.parent(first)
    if first.name == "worker" or (first.worker_id is not None and parent is not None and parent.worker_id is None):
        classes.append("worker")
    attrs = [("data-depth", str(row.depth)), ("data-start-ms", _ms(row.start_ns - t0))]
    owner = trace.owner(first)
    if owner is not None:
        attrs.append(("data-worker", owner))
    attrs += [("data-parent-id", first.parent_id or ""), ("data-process", first.process_key)]
    group = len(row.spans) > 1
    bars = []
    for span in row.spans:
        pos, clip = _pos_style(views, span.start_ns, span.end_ns)
        cls = "bar p" + (" member" if group else "") + (" clip1" if clip else "")
        if until is not None and span.start_ns > until:
            cls += " late"  # a member of a group that begins in the start-up window
        title = _span_title(analysis, span) if not group or len(row.spans) <= 200 else labels.in_context(trace, span)
        bars.append(_Bar("bar", cls, pos, title, colour=colour, name=span.name, span_id=span.span_id,
                         start_ms=_ms(span.start_ns - t0), end_ms=_ms(span.end_ns - t0)))
    for gap in view.row_gaps(row):
        pos, _ = _pos_style(views, gap.start_ns, gap.end_ns)
        crit = " crit" if analysis.on_critical_path(gap) else ""
        if until is not None and gap.start_ns > until:
            crit += " late"
        bars.append(_Bar("gap-in", f"gap-in p{crit}", pos, gap_line(analysis, gap), gap_ms=_ms(gap.duration_ns)))
    if group:
        dur = "Σ" + _dur(sum(s.duration_ns for s in row.spans))
        name_title = f"{row.label}: {len(row.spans)} spans, {dur} in all"
    else:
        dur, name_title = _dur(first.duration_ns), _span_title(analysis, first)
    return _HtmlRow(" ".join(classes), attrs, row.depth, row.label, name_title, _dur(row.start_ns - t0), dur, bars)


def _waterfall(analysis: Analysis) -> dict[str, Any]:
    view = waterfall_view(analysis)
    rows = view.rows[:MAX_ROWS]
    # position 1: the start-up view (the whole run when there is only one), position 2: the whole run
    views = [view.axis(full=False), view.axis(full=True)]
    ticks = []
    for i, axis in enumerate(views, 1):
        if not view.two_views and i == 1:
            continue  # one view: the full axis serves both
        cls = ("only-startup" if i == 1 else "only-full") if view.two_views else ""
        ticks += [{"left": _pct(left), "text": text, "first": left == 0, "cls": cls} for left, text in axis.ticks()]
    legend = [
        {"process_key": g.process_key, "colour": _PALETTE[view.process_index[g.process_key] % len(_PALETTE)],
         "service": g.service, "who": f" · worker {', '.join(g.worker_ids)}" if g.worker_ids else "",
         "span_count": g.span_count}
        for g in analysis.processes
    ]
    name_w = min(max((len(r.label) + 2 * r.depth for r in rows), default=20) * 7 + 24, 420)
    return {
        "trace_id": analysis.trace.trace_id,
        "span_count": len(analysis.trace),
        "rows": [(_gap_row if r.gap is not None else _span_row)(view, r, views) for r in rows],
        "legend": legend,
        "min_gap": _dur(analysis.min_gap_ns),
        "two_views": view.two_views,
        "startup_span": _dur((view.startup_ns or view.t_end) - view.t0),
        "full_span": _dur(view.t_end - view.t0),
        "name_w": max(name_w, 180),
        "t0": view.t0,
        "ticks": ticks,
        "later": sum(1 for r in rows if view.startup_ns is not None and r.start_ns > view.startup_ns),
        "truncated": len(view.rows) > MAX_ROWS,
        "max_rows": MAX_ROWS,
    }


def _gaps(analysis: Analysis) -> dict[str, Any]:
    trace = analysis.trace
    items = []
    for group in gap_groups(analysis, 3):
        gap = group[0]
        critical = len(group) == 1 and analysis.on_critical_path(gap)
        items.append({
            "critical": critical, "start_ms": _ms(gap.start_ns - analysis.start_ns),
            "gap_ms": _ms(sum(g.duration_ns for g in group)), "count": len(group),
            "text": gap_line(analysis, gap) if len(group) == 1 else group_line(analysis, group),
            "at": _dur(gap.start_ns - analysis.start_ns),
        })
    paths = [
        {"duration_ms": _ms(p.duration_ns), "untraced_ms": _ms(p.untraced_ns), "text": path_line(analysis, p)}
        for p in sorted(analysis.paths, key=lambda p: (trace.owner(trace[p.target_id]) or "", p.end_ns))
    ]
    return {"min_gap": _dur(analysis.min_gap_ns), "warnings": list(trace.warnings), "entries": items, "paths": paths,
            "skews": len(analysis.skews)}


# --- the throughput chart -------------------------------------------------------------


def _chart(run: RunView) -> dict[str, Any] | None:
    timeline = run.timeline
    if not timeline:
        return None
    w, h = 900, 260
    ml, mr, mt, mb = 58, 16, 14, 34
    pw, ph = w - ml - mr, h - mt - mb
    warmup, duration = run.warmup_s, run.duration_s
    t_max = max(p.t_s for p in timeline) + 1
    if warmup is not None and duration is not None:
        t_max = max(t_max, warmup + duration)
    top = max(max(max(p.qps, p.errors_per_s) for p in timeline), 1.0)
    y_step = nice_step(top, 5)
    y_max = y_step * math.ceil(top / y_step)

    def x(t: float) -> float:
        return ml + t / t_max * pw

    def y(v: float) -> float:
        return mt + ph - v / y_max * ph

    y_ticks = []
    v = 0.0
    while v <= y_max * 1.0001:
        y_ticks.append((f"{y(v):.1f}", f"{y(v) + 4:.1f}", _num(v)))
        v += y_step
    x_ticks = []
    t_step, t = nice_step(t_max, 8), 0.0
    while t <= t_max * 1.0001:
        x_ticks.append((f"{x(t):.1f}", f"{t:g}s"))
        t += t_step
    marks = []
    if warmup is not None and duration is not None:
        for at, text in ((warmup, "measurement"), (warmup + duration, "end")):
            near_edge = x(at) > w - mr - 90
            tx, anchor = (x(at) - 4, "end") if near_edge else (x(at) + 4, "start")
            marks.append({"x": f"{x(at):.1f}", "tx": f"{tx:.1f}", "anchor": anchor, "text": text})
    # each point is one second's count, drawn at the middle of its second
    pts = [(x(p.t_s + 0.5), y(p.qps)) for p in timeline]
    errs = any(p.errors_per_s for p in timeline)
    return {
        "w": w, "h": h, "ml": ml, "mr": mr, "mt": mt, "mb": mb, "ph": ph, "x_title": f"{ml + pw / 2:.1f}",
        "y_ticks": y_ticks, "x_ticks": x_ticks, "marks": marks,
        "qps_points": " ".join(f"{a:.1f},{b:.1f}" for a, b in pts),
        "err_points": " ".join(f"{x(p.t_s + 0.5):.1f},{y(p.errors_per_s):.1f}" for p in timeline) if errs else "",
        "points": [
            {"cx": f"{a:.1f}", "cy": f"{b:.1f}", "t": f"{p.t_s:g}", "qps": f"{p.qps:.1f}", "errors": f"{p.errors_per_s:.1f}",
             "tip": f"t={p.t_s:g}s: {p.qps:,.0f} queries/s, {p.errors_per_s:,.0f} errors/s"}
            for p, (a, b) in zip(timeline, pts)
        ],
    }


# --- the page -------------------------------------------------------------------------


def _figures(run: RunView | None, analysis: Analysis | None) -> list[tuple[str, str]]:
    figures: list[tuple[str, str]] = []
    if run is not None and run.measured:
        figures += [("queries/s", _num(run.qps)), ("queries", _num(run.queries)), ("errors", _num(run.errors))]
        if run.all_row is not None:
            figures.append(("p99", _num(run.all_row.p99_ms, "{:.2f} ms")))
        figures.append(("measured", _num(run.seconds, "{:.1f} s")))
    if run is not None and run.last_first_query_ms is not None:
        figures.append(("START → last first query", f"{run.last_first_query_ms:.1f} ms"))
    if analysis is not None and analysis.paths:
        figures.append(("run start → first query", _dur(max(p.duration_ns for p in analysis.paths))))
    if run is not None and run.wall_time_s is not None:
        figures.append(("wall time", f"{run.wall_time_s:.1f} s"))
    return figures


def _find_max_chart(run: RunView) -> dict[str, Any] | None:
    """QPS (left axis) and p95 (right axis) against connections, one point per step."""
    fm = run.find_max
    if fm is None or not fm.steps:
        return None
    w, h = 900, 260
    ml, mr, mt, mb = 58, 58, 14, 34
    pw, ph = w - ml - mr, h - mt - mb
    conns = [st.connections for st in fm.steps]
    c_lo, c_hi = min(conns), max(conns)
    span = max(c_hi - c_lo, 1)
    q_top = max(max(st.qps for st in fm.steps), 1.0)
    p_top = max(max(st.p95_ms or 0.0 for st in fm.steps), 0.001)

    def x(c: float) -> float:
        return ml + (c - c_lo) / span * pw if c_hi > c_lo else ml + pw / 2

    points = [
        {"cx": f"{x(st.connections):.1f}", "qy": f"{mt + ph - st.qps / q_top * ph:.1f}",
         "py": f"{mt + ph - (st.p95_ms or 0.0) / p_top * ph:.1f}", "connections": st.connections,
         "qps": f"{st.qps:.1f}", "p95": "" if st.p95_ms is None else f"{st.p95_ms:.3f}", "verdict": st.verdict,
         "tip": f"{st.connections} connections: {st.qps:,.0f} q/s, p95 "
                f"{'-' if st.p95_ms is None else f'{st.p95_ms:.3f} ms'}, {st.error_rate:.2%} errors, {st.verdict}"}
        for st in fm.steps
    ]
    return {
        "w": w, "h": h, "ml": ml, "mr": mr, "mt": mt, "mb": mb, "ph": ph, "x_title": f"{ml + pw / 2:.1f}",
        "q_top": _num(q_top), "p_top": f"{p_top:.3f} ms",
        "qps_points": " ".join(f"{p['cx']},{p['qy']}" for p in points),
        "p95_points": " ".join(f"{p['cx']},{p['py']}" for p in points),
        "points": points, "x_ticks": [(f"{x(c):.1f}", str(c)) for c in conns],
        "max_stable": fm.max_stable_connections, "stopped_by": fm.stopped_by,
    }


def render_html(run_dir: Path, results: dict[str, Any] | RunView | None, analysis: Analysis | None, *,
                trace_note: str | None = None) -> str:
    """The page as a string (``write_html_report`` writes it), from results.json's dict or its view."""
    run = run_view(results) if isinstance(results, dict) else results
    page = {
        "run_id": (run.run_id if run is not None else None) or run_dir.name,
        "status": run.status if run is not None else None,
        "reason": run.reason if run is not None else None,
        "figures": _figures(run, analysis),
        "run_dir": str(run_dir),
        "run": run,
        "chart": _chart(run) if run is not None else None,
        "find_max": _find_max_chart(run) if run is not None else None,
        "waterfall": _waterfall(analysis) if analysis is not None else None,
        "gaps": _gaps(analysis) if analysis is not None else None,
        "trace_note": trace_note or "No trace for this run.",
        "version": __version__,
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    return _env().get_template("report.html.j2").render(page=page, css=_asset("report.css"), js=_asset("report.js"))


def write_html_report(run_dir: Path | str, *, analysis: Analysis | None = None, min_gap_s: float = 0.05,
                      view: RunView | None = None) -> Path:
    """Write ``run_dir/report.html`` and return its path.

    ``analysis`` (the run's own, when ``spanbench run`` has it) saves loading the trace
    again. Without a trace in the folder (tracing off) the page has a note instead of a
    waterfall. ``view`` (the terminal's, at the end of a run) saves reading results.json again.
    A folder with neither results.json nor a trace is a ConfigError.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"not a run folder: {run_dir}")
    results: dict[str, Any] | RunView | None = view if view is not None else read_results_file(run_dir)
    note = None
    if analysis is None:
        if any(run_dir.glob("*.jsonl")):
            from spanbench.analysis.load import load_trace

            try:
                analysis = analyze(load_trace(run_dir), min_gap_s=min_gap_s)
            except ConfigError as err:
                note = f"The trace in this run folder could not be read: {err}"
        else:
            note = ("This run has no trace (tracing was off), so there is no waterfall. "
                    "Run with SPANBENCH_TRACING=1 to see where the time goes.")
    if results is None and analysis is None:
        raise ConfigError(f"not a run folder: {run_dir} has neither results.json nor a trace (*.jsonl)")
    out = run_dir / REPORT_NAME
    out.write_text(render_html(run_dir, results, analysis, trace_note=note), encoding="utf-8")
    return out


def report_command(run_folder: str) -> int:
    """``spanbench report RUN_FOLDER``: write the page, print its path."""
    if not run_folder:
        raise ConfigError("report needs a RUN_FOLDER")
    path = write_html_report(Path(run_folder))
    print(path)
    return 0


def report_after_run(run_dir: Path, analysis: Analysis | None, console: Any = None, *,
                     view: RunView | None = None) -> Path | None:
    """For the end of ``spanbench run``: write the page; a failure is a warning, never the run's."""
    try:
        path = write_html_report(run_dir, analysis=analysis, view=view)
    except Exception as err:  # the run's results are already on disk; the page is a bonus
        if console is not None:
            console.print(f"[yellow]warning: report.html not written: {type(err).__name__}: {err}[/]")
        return None
    if console is not None:
        console.print(f"report: {path}")
    return path
