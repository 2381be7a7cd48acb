"""``report.html``: one self-contained page per run folder (inline CSS, JS and SVG, no network).

It shows the run's status, latency percentiles per query kind, throughput over time
(an SVG line chart of ``results.json``'s ``timeline``), the waterfall of the trace with
its gaps labelled, the gaps and critical paths, the workers and the settings.

The waterfall reuses the terminal waterfall's rows (``build_rows``: repeated siblings
collapsed into "name ×N", gap rows where the terminal has them). Bars are absolutely
positioned divs. Each carries its position for both views, start-up (the axis ends at
the last ``first_query``, as in the terminal) and whole run, as CSS custom properties;
the view toggle only switches a class, so the page also reads with scripts off.

Everything that comes from a trace or results.json is escaped: span names and
attributes come from foreign programs. Strings that look like URLs/DSNs pass through
``redact_dsn`` and attributes named like secrets are masked, so a password given to a
run never reaches the page even if an upstream redaction were missed.

Test hooks (stable): ``.bar[data-span-name][data-start-ms][data-end-ms]``,
``.gap[data-gap-ms][data-start-ms]`` with its ``.gap-label`` (same data),, ``table.latency tr[data-kind]``,
``svg.throughput circle.point[data-t-s][data-qps]``, ``table.settings tr[data-key]``,
``html[data-ready]`` once the script ran.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from spanbench import __version__
from spanbench.analysis import labels
from spanbench.analysis.analyze import Analysis, analyze
from spanbench.analysis.gaps import Gap
from spanbench.analysis.model import Span
from spanbench.errors import ConfigError
from spanbench.results import read_results_file
from spanbench.report.waterfall import Row, _gap_groups, _group_line, build_rows, gap_line, path_line, startup_end_ns
from spanbench.units import format_duration

REPORT_NAME = "report.html"
MAX_ROWS = 3000  # a foreign trace can be huge; the page stays usable
_PALETTE = ("#1f9bb4", "#2e9e57", "#a5479f", "#3d6fd1", "#c98a12", "#16a3a3", "#6b8e23", "#c1557a")
_SECRET_WORDS = ("password", "passwd", "secret", "token", "passcode", "private_key", "authorization", "api_key")


# --- escaping and redaction -----------------------------------------------------------


def _e(value: Any) -> str:
    """HTML-escaped text, quotes included (safe in text and in quoted attributes)."""
    return html.escape(str(value), quote=True)


def _clean(key: str, value: Any) -> Any:
    """The value as it may be shown: secrets masked, DSN passwords redacted."""
    if any(word in key.lower() for word in _SECRET_WORDS) and value not in (None, "", False):
        return "***"
    if isinstance(value, str) and "://" in value:
        from spanbench.dsn import redact_dsn

        return redact_dsn(value)
    if isinstance(value, dict):
        return {k: _clean(str(k), v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(key, v) for v in value]
    return value


def _shown(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


# --- numbers --------------------------------------------------------------------------


def _dur(ns: int | float) -> str:
    return format_duration(ns / 1e9)


def _ms(ns: int | float) -> str:
    return f"{ns / 1e6:.3f}"


def _pct(x: float) -> str:
    return f"{x:.4f}%"


def _num(value: Any, fmt: str = "{:,.0f}") -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return fmt.format(value)
    return "—"


def _nice_step(span: float, ticks: int = 6) -> float:
    if span <= 0:
        return 1.0
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


# --- the page -------------------------------------------------------------------------


_CSS = """
:root{--fg:#1d232b;--muted:#68717d;--line:#e3e6ea;--bg:#fff;--soft:#f5f7f9;--gap:#d7263d;--gapbg:rgba(215,38,61,.16)}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--fg);background:var(--bg)}
header{padding:18px 28px 12px;border-bottom:1px solid var(--line);background:var(--soft)}
h1{font-size:20px;margin:0 0 6px}
h2{font-size:16px;margin:26px 0 10px}
main{padding:0 28px 40px}
.muted{color:var(--muted)}
.status{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600;font-size:12px;vertical-align:2px;color:#fff;background:#2e9e57}
.status.bad{background:var(--gap)}
.reason{color:var(--gap);font-weight:600}
.figures{display:flex;flex-wrap:wrap;gap:8px 26px;margin-top:8px}
.figures div b{display:block;font-size:18px}
.note{background:#fff8e1;border:1px solid #f0d98a;padding:8px 12px;border-radius:4px}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{padding:3px 10px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th{background:var(--soft);font-weight:600}
th:first-child,td:first-child{text-align:left}
table.settings th,table.settings td{text-align:left;white-space:normal;word-break:break-all;max-width:760px}
tr.total td{font-weight:600}
details{margin:8px 0}
summary{cursor:pointer;color:var(--muted)}
svg text{font:11px system-ui,sans-serif;fill:var(--muted)}
svg .qps{fill:none;stroke:#3d6fd1;stroke-width:2}
svg .err{fill:none;stroke:var(--gap);stroke-width:1.5;stroke-dasharray:4 3}
svg circle.point{fill:#3d6fd1}
svg .grid{stroke:var(--line)}
svg .phase{stroke:#999;stroke-dasharray:3 3}
.legend{display:flex;flex-wrap:wrap;gap:4px 18px;margin:6px 0 10px;font-size:12px}
.legend i{display:inline-block;width:12px;height:12px;border-radius:2px;vertical-align:-2px;margin-right:5px}
.toggle button{font:inherit;font-size:12px;padding:2px 10px;border:1px solid var(--line);background:var(--bg);cursor:pointer}
.toggle button.on{background:var(--fg);color:#fff}
.wf{border:1px solid var(--line);border-radius:4px;font-size:12px;overflow-x:hidden}
.wf-row{display:grid;grid-template-columns:var(--namew,330px) 76px minmax(300px,1fr) 84px;align-items:center;min-height:19px;border-bottom:1px solid #f1f2f4}
.wf-row:hover{background:#f0f6ff}
.wf-row.worker{background:var(--soft);border-top:1px solid var(--line)}
.wf-row>div{overflow:hidden;white-space:nowrap;text-overflow:ellipsis}
.wf-name{padding-left:calc(6px + var(--depth) * 13px)}
.wf-off{color:var(--muted);text-align:right;padding-right:6px}
.wf-dur{text-align:right;padding-right:8px}
.wf-head{position:sticky;top:0;z-index:2;background:var(--bg);border-bottom:1px solid var(--line);font-weight:600}
.track{position:relative;height:19px;overflow:visible!important}
.axis{position:relative;height:19px}
.tick{position:absolute;top:2px;transform:translateX(-50%);color:var(--muted);font-weight:400}
.tick.first{transform:none}
.tick.first::before{left:0}
.tick::before{content:"";position:absolute;left:50%;top:14px;height:5px;border-left:1px solid var(--muted)}
.bar,.gap,.gap-in{position:absolute;top:4px;height:11px;min-width:2px;border-radius:2px}
.bar{background:var(--c)}
.bar.member{opacity:.75;min-width:1px;border-radius:0}
.gap{background:var(--gapbg);border:1px solid var(--gap);top:3px;height:13px}
.gap-in{background:repeating-linear-gradient(45deg,var(--gap) 0 3px,transparent 3px 6px);top:4px}
.gap-label{position:absolute;top:2px;padding:0 4px;color:var(--gap);font-weight:700;white-space:nowrap}
.wf-row.gaprow .wf-name,.wf-row.gaprow .wf-dur{color:var(--gap);font-weight:600}
.crit{outline:2px solid var(--gap)}
.view-startup .p{left:var(--l1);width:var(--w1)}
.view-full .p{left:var(--l2);width:var(--w2)}
.view-startup .gap-label{left:var(--a1);transform:translateX(var(--x1))}
.view-full .gap-label{left:var(--a2);transform:translateX(var(--x2))}
.view-startup .clip1{border-top-right-radius:0;border-bottom-right-radius:0}
.view-startup .clip1::after{content:"";position:absolute;right:-6px;top:-1px;border:6px solid transparent;border-left:6px solid var(--c);border-right:0}
.view-startup .late,.view-startup .only-full,.view-full .only-startup{display:none!important}
ul.gaps{padding-left:18px}
.wf-note{padding:4px 8px}
ul.gaps li.critical{color:var(--gap);font-weight:600}
footer{color:var(--muted);font-size:12px;margin-top:30px}
"""

_JS = """
(function(){
  var wf=document.getElementById('wf');
  var buttons=document.querySelectorAll('.toggle button');
  function show(view){
    if(!wf){return;}
    wf.classList.remove('view-startup','view-full');
    wf.classList.add('view-'+view);
    wf.setAttribute('data-view',view);
    for(var j=0;j<buttons.length;j++){buttons[j].classList.toggle('on',buttons[j].getAttribute('data-view')===view);}
  }
  for(var i=0;i<buttons.length;i++){
    buttons[i].addEventListener('click',function(ev){show(ev.currentTarget.getAttribute('data-view'));});
  }
  if(location.hash==='#whole-run'&&buttons.length){show('full');}
  document.documentElement.setAttribute('data-ready','1');
})();
"""


class _Axis:
    """Percent positions on one view's axis, clipped to it."""

    def __init__(self, t0: int, t1: int) -> None:
        self.t0, self.t1 = t0, max(t1, t0 + 1)
        self.span = self.t1 - self.t0

    def pos(self, start: int, end: int) -> tuple[float, float, bool]:
        """(left %, width %, clipped at the right edge)."""
        left = (start - self.t0) / self.span * 100
        right = (min(end, self.t1) - self.t0) / self.span * 100
        return left, max(right - left, 0.0), end > self.t1

    def ticks(self) -> list[tuple[float, str]]:
        step = _nice_step(self.span)
        out = []
        n = 0
        while n * step <= self.span * 1.0001:
            out.append((n * step / self.span * 100, "0" if n == 0 else _dur(n * step)))
            n += 1
        return out


def _pos_style(views: list[_Axis], start: int, end: int) -> tuple[str, bool]:
    """``--l1:…;--w1:…;--l2:…;--w2:…`` and whether the start-up view clips it."""
    parts = []
    clipped = False
    for i, axis in enumerate(views, 1):
        left, width, clip = axis.pos(start, end)
        parts.append(f"--l{i}:{_pct(left)};--w{i}:{_pct(width)}")
        if i == 1:
            clipped = clip
    return ";".join(parts), clipped


def _label_style(views: list[_Axis], gap: Gap) -> str:
    """Where a gap's duration label sits in each view: right of the gap, or left when near the edge."""
    parts = []
    for i, axis in enumerate(views, 1):
        left, width, _ = axis.pos(gap.start_ns, gap.end_ns)
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
        text = _shown(_clean(str(key), value))
        lines.append(f"{key} = {text[:200]}")
    return "\n".join(lines)


def _waterfall(analysis: Analysis) -> str:
    trace = analysis.trace
    if not trace.spans:
        return '<p class="note">The trace has no spans.</p>'
    t0, t_end = analysis.start_ns, analysis.end_ns
    until = startup_end_ns(analysis)
    two_views = until is not None and until < t_end
    views = [_Axis(t0, until if two_views else t_end), _Axis(t0, t_end)]  # type: ignore[arg-type]
    rows = build_rows(analysis)
    cut = len(rows) > MAX_ROWS
    rows = rows[:MAX_ROWS]

    colours: dict[str, str] = {}
    for group in analysis.processes:
        colours.setdefault(group.process_key, _PALETTE[len(colours) % len(_PALETTE)])
    big_gaps: dict[str, list[Gap]] = {}
    for gap in analysis.gaps:
        big_gaps.setdefault(gap.span_id, []).append(gap)

    out: list[str] = []
    legend = []
    for group in analysis.processes:
        who = f" · worker {', '.join(group.worker_ids)}" if group.worker_ids else ""
        legend.append(
            f'<span class="proc" data-process="{_e(group.process_key)}"><i style="background:{colours[group.process_key]}"></i>'
            f'{_e(group.service)}{_e(who)} <span class="muted">({group.span_count} spans)</span></span>'
        )
    legend.append('<span><i style="background:var(--gapbg);border:1px solid var(--gap)"></i>gap ≥ '
                  f'{_e(_dur(analysis.min_gap_ns))} (time no span claims)</span>')
    out.append(f'<div class="legend">{"".join(legend)}</div>')
    if two_views:
        out.append(
            '<div class="toggle">view: <button type="button" class="on" data-view="startup">'
            f'start-up (to the last first_query, {_e(_dur(until - t0))})</button>'  # type: ignore[operator]
            f'<button type="button" data-view="full">whole run ({_e(_dur(t_end - t0))})</button></div>'
        )
    name_w = min(max((len(r.label) + 2 * r.depth for r in rows), default=20) * 7 + 24, 420)
    out.append(f'<div id="wf" class="wf view-startup" data-view="startup" style="--namew:{max(name_w, 180)}px" '
               f'data-t0-unix-ns="{t0}" data-span-count="{len(trace)}">')
    head = ['<div class="wf-row wf-head"><div class="wf-name" style="--depth:0">span</div><div class="wf-off">start</div>']
    head.append('<div class="axis">')
    for i, axis in enumerate(views, 1):
        cls = "only-startup" if i == 1 else "only-full"
        if not two_views and i == 1:
            continue  # one view: the full axis serves both
        for left, text in axis.ticks():
            first = " first" if left == 0 else ""
            head.append(f'<span class="tick{first} {cls if two_views else ""}" style="left:{_pct(left)}">{_e(text)}</span>')
    head.append('</div><div class="wf-dur">duration</div></div>')
    out.append("".join(head))

    for row in rows:
        out.append(_row_html(analysis, row, views, colours, big_gaps, until if two_views else None))
    if two_views:
        later = sum(1 for r in rows if r.start_ns > until)  # type: ignore[operator]
        out.append(f'<div class="muted only-startup wf-note">The start-up view hides {later} row(s) that begin after'
                   ' the last first_query; "whole run" shows them.</div>')
    out.append("</div>")
    if cut:
        out.append(f'<p class="note">Only the first {MAX_ROWS} rows are drawn.</p>')
    return "".join(out)


def _row_html(
    analysis: Analysis, row: Row, views: list[_Axis], colours: dict[str, str], big_gaps: dict[str, list[Gap]],
    until: int | None,
) -> str:
    trace = analysis.trace
    t0 = analysis.start_ns
    late = until is not None and row.start_ns > until
    classes = ["wf-row"]
    if late:
        classes.append("late")
    attrs = [f'data-depth="{row.depth}"', f'data-start-ms="{_ms(row.start_ns - t0)}"']
    if row.gap is not None:
        gap = row.gap
        classes.append("gaprow")
        critical = analysis.on_critical_path(gap)
        enclosing = trace.get(gap.span_id)
        attrs.append(f'data-parent-id="{_e(gap.span_id)}"')
        title = gap_line(analysis, gap) + (" (critical path)" if critical else "")
        pos, _ = _pos_style(views, gap.start_ns, gap.end_ns)
        ms = _ms(gap.duration_ns)
        track = (
            f'<div class="gap p{" crit" if critical else ""}" style="{pos}" data-gap-ms="{ms}"'
            f' data-start-ms="{_ms(gap.start_ns - t0)}" title="{_e(title)}"></div>'
            f'<span class="gap-label" data-gap-ms="{ms}" data-start-ms="{_ms(gap.start_ns - t0)}"'
            f' data-critical="{str(critical).lower()}" style="{_label_style(views, gap)}">{_e(_dur(gap.duration_ns))}</span>'
        )
        name = "⋯ gap" + (f" in {labels.short(enclosing)}" if enclosing is not None else "")
        dur = _dur(gap.duration_ns)
        return (
            f'<div class="{" ".join(classes)}" {" ".join(attrs)}>'
            f'<div class="wf-name" style="--depth:{row.depth}" title="{_e(title)}">{_e(name)}</div>'
            f'<div class="wf-off">+{_e(_dur(row.start_ns - t0))}</div>'
            f'<div class="track">{track}</div><div class="wf-dur">{_e(dur)}</div></div>'
        )

    first = row.spans[0]
    colour = colours.get(first.process_key, _PALETTE[0])
    if first.name == "worker" or (first.worker_id is not None and trace.parent(first) is not None
                                  and trace.parent(first).worker_id is None):  # type: ignore[union-attr]
        classes.append("worker")
    owner = trace.owner(first)
    if owner is not None:
        attrs.append(f'data-worker="{_e(owner)}"')
    attrs.append(f'data-parent-id="{_e(first.parent_id or "")}"')
    attrs.append(f'data-process="{_e(first.process_key)}"')
    bars = []
    group = len(row.spans) > 1
    for span in row.spans:
        pos, clip = _pos_style(views, span.start_ns, span.end_ns)
        cls = "bar p" + (" member" if group else "") + (" clip1" if clip else "")
        if until is not None and span.start_ns > until:
            cls += " late"  # a member of a group that begins in the start-up window
        title = _span_title(analysis, span) if not group or len(row.spans) <= 200 else labels.in_context(trace, span)
        bars.append(
            f'<div class="{cls}" style="--c:{colour};{pos}" data-span-name="{_e(span.name)}"'
            f' data-span-id="{_e(span.span_id)}" data-start-ms="{_ms(span.start_ns - t0)}"'
            f' data-end-ms="{_ms(span.end_ns - t0)}" title="{_e(title)}"></div>'
        )
    if not group:
        for gap in big_gaps.get(first.span_id, []):
            pos, _ = _pos_style(views, gap.start_ns, gap.end_ns)
            crit = " crit" if analysis.on_critical_path(gap) else ""
            if until is not None and gap.start_ns > until:
                crit += " late"
            bars.append(f'<div class="gap-in p{crit}" style="{pos}" data-gap-ms="{_ms(gap.duration_ns)}"'
                        f' title="{_e(gap_line(analysis, gap))}"></div>')
        dur = _dur(first.duration_ns)
        name_title = _span_title(analysis, first)
    else:
        dur = "Σ" + _dur(sum(s.duration_ns for s in row.spans))
        name_title = f"{row.label}: {len(row.spans)} spans, {dur} in all"
    return (
        f'<div class="{" ".join(classes)}" {" ".join(attrs)}>'
        f'<div class="wf-name" style="--depth:{row.depth}" title="{_e(name_title)}">{_e(row.label)}</div>'
        f'<div class="wf-off">+{_e(_dur(row.start_ns - t0))}</div>'
        f'<div class="track">{"".join(bars)}</div><div class="wf-dur">{_e(dur)}</div></div>'
    )


def _gaps_section(analysis: Analysis) -> str:
    trace = analysis.trace
    out = [f'<h2 id="gaps">Gaps ≥ {_e(_dur(analysis.min_gap_ns))}</h2>']
    for warning in trace.warnings:
        out.append(f'<p class="note">warning: {_e(warning)}</p>')
    groups = _gap_groups(analysis, 3)
    if not groups:
        out.append(f'<p>No gap of {_e(_dur(analysis.min_gap_ns))} or more: every such stretch of time is claimed by a span.</p>')
    else:
        out.append('<ul class="gaps">')
        for group in groups:
            gap = group[0]
            critical = len(group) == 1 and analysis.on_critical_path(gap)
            text = gap_line(analysis, gap) if len(group) == 1 else _group_line(analysis, group)
            total = sum(g.duration_ns for g in group)
            out.append(
                f'<li class="gap-item{" critical" if critical else ""}" data-start-ms="{_ms(gap.start_ns - analysis.start_ns)}"'
                f' data-gap-ms="{_ms(total)}" data-count="{len(group)}">{_e(text)}'
                f' <span class="muted">at +{_e(_dur(gap.start_ns - analysis.start_ns))}'
                f'{" (critical path)" if critical else ""}</span></li>'
            )
        out.append("</ul>")
    if analysis.paths:
        out.append('<h2 id="critical-path">Critical path</h2><ul class="paths">')
        for path in sorted(analysis.paths, key=lambda p: (trace.owner(trace[p.target_id]) or "", p.end_ns)):
            out.append(f'<li class="path" data-duration-ms="{_ms(path.duration_ns)}"'
                       f' data-untraced-ms="{_ms(path.untraced_ns)}">{_e(path_line(analysis, path))}</li>')
        out.append("</ul>")
    if analysis.skews:
        out.append(f'<p class="note">Clock skew: {len(analysis.skews)} span(s) lie partly outside their parent;'
                   ' they are clipped to it for the gaps.</p>')
    return "".join(out)


def _latency_table(rows: Iterable[tuple[str, dict[str, Any]]], *, css: str = "latency", with_qps: bool = True) -> str:
    cols = ["query kind", "count", "errors"] + (["qps"] if with_qps else []) + ["p50", "p95", "p99", "p99.9", "max", "mean"]
    out = [f'<table class="{css}"><thead><tr>' + "".join(f"<th>{_e(c)}</th>" for c in cols) + "</tr></thead><tbody>"]
    for kind, v in rows:
        if not isinstance(v, dict):
            continue
        cells = [_num(v.get("count")), _num(v.get("errors"))]
        if with_qps:
            cells.append(_num(v.get("qps")))
        cells += [_num(v.get(k), "{:.3f}") for k in ("p50_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms", "mean_ms")]
        total = ' class="total"' if kind == "all" else ""
        out.append(f'<tr data-kind="{_e(kind)}"{total}><td>{_e(kind)}</td>' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _latency_section(results: dict[str, Any]) -> str:
    m = results.get("measurement")
    out = ['<h2 id="latency">Latency, measurement phase (ms)</h2>']
    if not isinstance(m, dict) or not isinstance(m.get("latency"), dict):
        out.append('<p class="note">No measurement results in results.json.</p>')
        return "".join(out)
    rows = list(m["latency"].items())
    if isinstance(m.get("all"), dict):
        rows.append(("all", {**m["all"], "errors": m.get("errors"), "qps": m.get("qps")}))
    out.append(_latency_table(rows))
    phases = results.get("phases")
    if isinstance(phases, dict) and phases:
        out.append("<details><summary>per phase</summary>")
        for phase, kinds in phases.items():
            if isinstance(kinds, dict):
                out.append(f"<h3>{_e(phase.lower())}</h3>")
                out.append(_latency_table(kinds.items(), css="latency-phase", with_qps=False))
        out.append("</details>")
    return "".join(out)


def _throughput_svg(results: dict[str, Any]) -> str:
    out = ['<h2 id="throughput">Throughput over time</h2>']
    timeline = [p for p in results.get("timeline") or [] if isinstance(p, dict) and isinstance(p.get("t_s"), (int, float))]
    if not timeline:
        out.append('<p class="note">No throughput timeline in results.json.</p>')
        return "".join(out)
    w, h = 900, 260
    ml, mr, mt, mb = 58, 16, 14, 34
    pw, ph = w - ml - mr, h - mt - mb
    settings = results.get("settings") if isinstance(results.get("settings"), dict) else {}
    warmup, duration = settings.get("warmup"), settings.get("duration")
    t_max = max(p["t_s"] for p in timeline) + 1
    if isinstance(warmup, (int, float)) and isinstance(duration, (int, float)):
        t_max = max(t_max, warmup + duration)
    qps = [float(p.get("qps") or 0) for p in timeline]
    errs = [float(p.get("errors_per_s") or 0) for p in timeline]
    y_step = _nice_step(max(max(qps + errs), 1.0), 5)
    y_max = y_step * math.ceil(max(max(qps + errs), 1.0) / y_step)

    def x(t: float) -> float:
        return ml + t / t_max * pw

    def y(v: float) -> float:
        return mt + ph - v / y_max * ph

    parts = [f'<svg class="throughput" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
             'aria-label="queries per second over time">']
    v = 0.0
    while v <= y_max * 1.0001:
        parts.append(f'<line class="grid" x1="{ml}" x2="{w - mr}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>'
                     f'<text x="{ml - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{_e(_num(v))}</text>')
        v += y_step
    t_step = _nice_step(t_max, 8)
    t = 0.0
    while t <= t_max * 1.0001:
        parts.append(f'<text x="{x(t):.1f}" y="{h - mb + 16}" text-anchor="middle">{_e(f"{t:g}s")}</text>')
        t += t_step
    parts.append(f'<text x="{ml + pw / 2:.1f}" y="{h - 4}" text-anchor="middle">seconds since START</text>')
    if isinstance(warmup, (int, float)) and isinstance(duration, (int, float)):
        for at, text in ((warmup, "measurement"), (warmup + duration, "end")):
            near_edge = x(at) > w - mr - 90
            tx, anchor = (x(at) - 4, "end") if near_edge else (x(at) + 4, "start")
            parts.append(f'<line class="phase" x1="{x(at):.1f}" x2="{x(at):.1f}" y1="{mt}" y2="{mt + ph}"/>'
                         f'<text x="{tx:.1f}" y="{mt + 10}" text-anchor="{anchor}">{_e(text)}</text>')
    # each point is one second's count, drawn at the middle of its second
    pts = [(x(p["t_s"] + 0.5), y(q)) for p, q in zip(timeline, qps)]
    parts.append('<polyline class="qps" points="' + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts) + '"/>')
    if any(errs):
        epts = [(x(p["t_s"] + 0.5), y(e)) for p, e in zip(timeline, errs)]
        parts.append('<polyline class="err" points="' + " ".join(f"{a:.1f},{b:.1f}" for a, b in epts) + '"/>')
    for p, q, (a, b), e in zip(timeline, qps, pts, errs):
        ts = float(p["t_s"])
        tip = f"t={ts:g}s: {q:,.0f} queries/s, {e:,.0f} errors/s"
        parts.append(f'<circle class="point" cx="{a:.1f}" cy="{b:.1f}" r="3" data-t-s="{ts:g}" data-qps="{q:.1f}"'
                     f' data-errors-per-s="{e:.1f}"><title>{_e(tip)}</title></circle>')
    parts.append("</svg>")
    out.append("".join(parts))
    legend = '<div class="legend"><span><i style="background:#3d6fd1"></i>queries/s (all workers)</span>'
    if any(errs):
        legend += '<span><i style="background:var(--gap)"></i>errors/s</span>'
    out.append(legend + "</div>")
    return "".join(out)


def _workers_section(results: dict[str, Any]) -> str:
    workers = results.get("workers")
    if not isinstance(workers, list) or not workers:
        return ""
    out = ['<h2 id="workers">Workers</h2><table class="workers"><thead><tr>']
    cols = ("worker", "status", "connections", "queries", "errors", "qps", "START → first query", "stop reason")
    out.append("".join(f"<th>{_e(c)}</th>" for c in cols) + "</tr></thead><tbody>")
    for wk in workers:
        if not isinstance(wk, dict):
            continue
        s2f = wk.get("start_to_first_query_ms")
        cells = [
            _e(wk.get("worker_id", "?")), _e(wk.get("status", "?")), _num(wk.get("connections")), _num(wk.get("queries")),
            _num(wk.get("errors")), _num(wk.get("qps")), "—" if not isinstance(s2f, (int, float)) else f"{s2f:.1f} ms",
            _e(_clean("stop_reason", wk.get("stop_reason") or "")),
        ]
        out.append(f'<tr data-worker="{_e(wk.get("worker_id", ""))}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _settings_section(results: dict[str, Any]) -> str:
    settings = results.get("settings")
    if not isinstance(settings, dict):
        return ""
    out = ['<h2 id="settings">Settings</h2><table class="settings"><thead><tr><th>setting</th><th>value</th></tr></thead><tbody>']
    for key, value in settings.items():
        out.append(f'<tr data-key="{_e(key)}"><td>{_e(key)}</td><td>{_e(_shown(_clean(str(key), value)))}</td></tr>')
    out.append("</tbody></table>")
    return "".join(out)


def _header(run_dir: Path, results: dict[str, Any] | None, analysis: Analysis | None) -> str:
    run_id = (results or {}).get("run_id") or run_dir.name
    status = (results or {}).get("status")
    out = [f'<header><h1>spanbench run {_e(run_id)} ']
    if status:
        out.append(f'<span class="status{"" if status == "COMPLETED" else " bad"}" id="status">{_e(status)}</span>')
    out.append("</h1>")
    reason = (results or {}).get("reason")
    if reason:
        out.append(f'<div class="reason" id="reason">{_e(_clean("reason", reason))}</div>')
    figures = []
    m = (results or {}).get("measurement")
    if isinstance(m, dict):
        figures.append(("queries/s", _num(m.get("qps"))))
        figures.append(("queries", _num(m.get("queries"))))
        figures.append(("errors", _num(m.get("errors"))))
        if isinstance(m.get("all"), dict):
            figures.append(("p99", _num(m["all"].get("p99_ms"), "{:.2f} ms")))
        figures.append(("measured", _num(m.get("seconds"), "{:.1f} s")))
    workers = (results or {}).get("workers")
    if isinstance(workers, list):
        s2f = [w.get("start_to_first_query_ms") for w in workers if isinstance(w, dict)]
        s2f = [v for v in s2f if isinstance(v, (int, float))]
        if s2f:
            figures.append(("START → last first query", f"{max(s2f):.1f} ms"))
    if analysis is not None and analysis.paths:
        longest = max(analysis.paths, key=lambda p: p.duration_ns)
        figures.append(("run start → first query", _dur(longest.duration_ns)))
    wall = (results or {}).get("wall_time_s")
    if isinstance(wall, (int, float)):
        figures.append(("wall time", f"{wall:.1f} s"))
    if figures:
        out.append('<div class="figures">' + "".join(
            f'<div><span class="muted">{_e(k)}</span><b>{_e(v)}</b></div>' for k, v in figures) + "</div>")
    out.append(f'<div class="muted" style="margin-top:6px">{_e(run_dir)}</div></header>')
    return "".join(out)


def render_html(run_dir: Path, results: dict[str, Any] | None, analysis: Analysis | None, *, trace_note: str | None = None) -> str:
    """The page as a string (``write_html_report`` writes it)."""
    run_id = (results or {}).get("run_id") or run_dir.name
    body = [_header(run_dir, results, analysis), "<main>"]
    if results is not None:
        body.append(_latency_section(results))
        body.append(_throughput_svg(results))
    body.append('<h2 id="waterfall">Waterfall</h2>')
    if analysis is not None:
        body.append(f'<p class="muted">trace {_e(analysis.trace.trace_id)}, {len(analysis.trace)} spans;'
                    ' hover a bar for its times and attributes. Repeated siblings share one row (name ×N).</p>')
        body.append(_waterfall(analysis))
        body.append(_gaps_section(analysis))
    else:
        body.append(f'<p class="note" id="no-trace">{_e(trace_note or "No trace for this run.")}</p>')
    if results is not None:
        body.append(_workers_section(results))
        body.append(_settings_section(results))
    body.append(f'<footer>spanbench {_e(__version__)} · generated {_e(time.strftime("%Y-%m-%d %H:%M:%S %Z"))}'
                ' · this file is self-contained: it loads nothing from the network.</footer></main>')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>spanbench {_e(run_id)}</title><style>{_CSS}</style></head><body>"
        + "".join(body)
        + f"<script>{_JS}</script></body></html>\n"
    )


def write_html_report(run_dir: Path | str, *, analysis: Analysis | None = None, min_gap_s: float = 0.05) -> Path:
    """Write ``run_dir/report.html`` and return its path.

    ``analysis`` (the run's own, when ``spanbench run`` has it) saves loading the trace
    again. Without a trace in the folder (tracing off) the page has a note instead of a
    waterfall. A folder with neither results.json nor a trace is a ConfigError.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"not a run folder: {run_dir}")
    results = read_results_file(run_dir)
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


def report_after_run(run_dir: Path, analysis: Analysis | None, console: Any = None) -> Path | None:
    """For the end of ``spanbench run``: write the page; a failure is a warning, never the run's."""
    try:
        path = write_html_report(run_dir, analysis=analysis)
    except Exception as err:  # the run's results are already on disk; the page is a bonus
        if console is not None:
            console.print(f"[yellow]warning: report.html not written: {type(err).__name__}: {err}[/]")
        return None
    if console is not None:
        console.print(f"report: {path}")
    return path
