"""The end of ``spanbench run``: results.json, the figures, the waterfall and the gaps."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from spanbench.outcome import RunOutcome
from spanbench.report.tables import print_table  # re-exported: tests and callers import it from here
from spanbench.report.view import RunView, open_model_headline, run_view
from spanbench.results_file import write_results_file
from spanbench.settings import Settings
from spanbench.telemetry.provider import SpanStats
from spanbench.telemetry.process_start import own_start


def finish_run(outcome: RunOutcome, settings: Settings, console: Console | None = None) -> int:
    """Write results.json, print the report; return the exit code (0, or 1 for a failed run)."""
    console = console or Console(highlight=False)
    spans = _all_span_stats(outcome)
    results = {
        "run_id": outcome.run_id,
        "status": outcome.status,
        "reason": outcome.reason,
        "settings": settings.public(),
        **outcome.results,
        "spans": spans.as_dict(),
        "gaps": None,
    }
    results["wall_time_s"] = (time.time_ns() - own_start().exec_ns) / 1e9
    path = outcome.run_dir / "results.json"
    # The measured figures are written before anything that reads the trace: a broken trace
    # file (a killed worker can leave one) must never cost the results.
    write_results_file(outcome.run_dir, results)
    analysis = None
    if settings.tracing_enabled and spans.ended:
        try:
            analysis = _analyze(outcome.run_dir)
        except Exception as exc:  # noqa: BLE001 - the report is a bonus; the results are safe
            console.print(f"spanbench: warning: the trace could not be analysed: {' '.join(str(exc).split())[:300]}")
        else:
            results["gaps"] = analysis.to_json()
            write_results_file(outcome.run_dir, results)

    completed = outcome.status in ("COMPLETED", "COMPLETED_WITH_ERRORS")
    # One view of the figures for the terminal and the page, built from what results.json holds
    # (the JSON round trip turns paths and the like into the strings the file has).
    view = run_view(json.loads(json.dumps(results, default=str)))
    measured = print_results(outcome, console, view)
    if view is not None:
        print_open_model(view, console)
        print_find_max(view, console)
    if analysis is not None:
        from spanbench.report.waterfall import print_gaps, print_waterfall

        print_waterfall(analysis, console)
        print_gaps(analysis, console)
    elif completed and settings.tracing is None and settings.target_dsn is not None:
        # only where it is true: a finished run against a real target that left tracing at its default
        console.print("tracing was off (the default against a DSN): SPANBENCH_TRACING=1 adds the trace, "
                      "the start-up waterfall and the gaps report")
    print_span_stats(spans, console, results.get("workers"))
    console.print(f"run folder: {outcome.run_dir}")
    from spanbench.report.html import report_after_run

    report_after_run(outcome.run_dir, analysis, console, view=view)
    print_trouble(results, console, view)
    if outcome.status == "COMPLETED_WITH_ERRORS":
        from spanbench.errors import RunCompletedWithErrors

        raise RunCompletedWithErrors(f"run {outcome.run_id} completed with errors: {outcome.reason}")
    if not completed:
        # Said once: this error is the one line main() prints (stderr); nothing here repeats it.
        from spanbench.errors import RunCancelled, RunFailed

        error = RunCancelled if outcome.status == "CANCELLED" else RunFailed
        kept = f" (results so far in {path})" if measured else ""
        raise error(f"run {outcome.run_id} {outcome.status.lower()}: {outcome.reason}{kept}")
    return 0


def print_open_model(view: RunView, console: Console) -> None:
    """The open model: whether the target rate was met (by how much it missed, from when, what
    was dropped), then service time beside the latency table above, and the schedule lag."""
    om = view.open_model
    if om is None:
        return
    console.print(Text(open_model_headline(om), style="" if om.met else "bold red"), soft_wrap=True)
    rows = [[r.kind, _f(r.count), *(_f(v, "{:.3f}") for v in (r.p50_ms, r.p95_ms, r.p99_ms, r.p999_ms, r.max_ms))]
            for r in [*om.service, *([om.schedule_lag] if om.schedule_lag else [])]]
    if rows:
        print_table(console, "service time (send → end) and schedule lag (send − intended start), measurement (ms)",
                    ["", "count", "p50", "p95", "p99", "p99.9", "max"], rows)


def print_find_max(view: RunView, console: Console) -> None:
    """The find-max curve: one row per step, QPS and p95 drawn as bars against connections."""
    fm = view.find_max
    if fm is None or not fm.steps:
        return
    top_qps = max(st.qps for st in fm.steps) or 1.0
    top_p95 = max(st.p95_ms or 0.0 for st in fm.steps) or 1.0
    rows = [
        [str(st.connections), f"{st.qps:,.0f}", "█" * max(1, round(20 * st.qps / top_qps)),
         "-" if st.p95_ms is None else f"{st.p95_ms:.3f}", "▒" * max(1, round(20 * (st.p95_ms or 0) / top_p95)),
         f"{st.error_rate:.2%}", st.verdict]
        for st in fm.steps
    ]
    stopped = f", stopped by {fm.stopped_by}" if fm.stopped_by else ""
    print_table(console, f"find-max: max stable concurrency {fm.max_stable_connections}{stopped}",
                ["connections", "q/s", "q/s curve", "p95 ms", "p95 curve", "errors", "verdict"], rows,
                labels=(2, 4, 6), left=(2, 4, 6))


def print_trouble(results: dict[str, Any], console: Console, view: RunView | None = None) -> None:
    """Stalls, cut queries, partial figures, errors by class: a run that had them never reads as clean."""
    view = view or run_view(results)
    for st in view.stalls:
        console.print(f"[bold red]stall[/] +{st.start_s:.0f}s for {st.seconds:.0f}s: {st.kind}, "
                      f"{st.min_qps:,.0f} q/s at the lowest (median {st.median_qps:,.0f}), {st.errors:,.0f} errors")
    if view.cut:
        console.print(f"[bold red]cut[/] {view.cut} queries were still running at the drain: their time so far is in the "
                      "latency figures as a lower bound")
    if view.partial:
        missing = ", ".join(p.worker_id if p.seconds_missing is None else f"{p.worker_id} ({p.seconds_missing:.1f}s)"
                            for p in view.partial)
        console.print(f"[bold red]partial[/] figures missing for part of the load: {missing}")
    if view.errors_by_class:
        classes = ", ".join(f"{e.kind} {e.error_class} ×{e.count:,}" for e in view.errors_by_class)
        console.print(Text(f"errors by class: {classes}"), soft_wrap=True)  # Text: a class may hold brackets
    for w in view.warnings:
        console.print(Text(f"warning: {w}"), soft_wrap=True)


def print_results(outcome: RunOutcome, console: Console, view: RunView | None = None) -> bool:
    """The run's figures; return whether anything was measured.

    A run that ended before measuring anything prints nothing (no table of zeros); one that
    failed after measuring prints what it measured, titled as such.
    """
    if not outcome.results:
        return False
    view = view or run_view(outcome.results)
    measured = bool(view.queries or view.errors)
    completed = outcome.status == "COMPLETED"
    if not measured and not completed:
        return False
    console.print(
        f"\n[bold]run {outcome.run_id}[/]  {outcome.status}  measurement {_f(view.seconds, '{:.1f}')}s  "
        f"[bold]{_f(view.qps)} queries/s[/]  {_f(view.queries)} queries  {_f(view.errors)} errors"
    )
    partial = "" if completed else f", measured before the run was {outcome.status.lower()}"
    print_table(
        console, f"latency, measurement phase (ms){partial}",
        ["query kind", "count", "errors", "qps", "p50", "p95", "p99", "p99.9", "max"],
        [[r.kind, _f(r.count), _f(r.errors), _f(r.qps), *(_f(v, "{:.3f}") for v in
          (r.p50_ms, r.p95_ms, r.p99_ms, r.p999_ms, r.max_ms))] for r in view.latency],
    )
    workers = [
        [w.worker_id, w.status, "-" if w.connections is None else str(int(w.connections)), _f(w.queries), _f(w.qps),
         "-" if w.start_to_first_query_ms is None else f"{w.start_to_first_query_ms:.1f} ms"]
        for w in view.workers
    ]
    print_table(console, f"workers{partial}", ["worker", "status", "connections", "queries", "qps", "START → first query"],
                workers, left=(0, 1))
    return measured


def _f(value: float | None, fmt: str = "{:,.0f}") -> str:
    return "-" if value is None else fmt.format(value)


def print_span_stats(stats: SpanStats, console: Console, workers: list[dict[str, Any]] | None = None) -> None:
    if not stats.ended:
        return
    parts = [f"spans: {stats.ended:,} recorded"]
    for name, c in stats.exporters.items():
        missing = c["failed"] + c["lost"]
        label = "written to the run folder" if name == "file" else "exported over OTLP"
        parts.append(f"{c['exported']:,} {label}" + (f" ([bold red]{missing:,} not[/])" if missing else ""))
    parts.extend(_budget_parts(workers or []))
    console.print(", ".join(parts))


def _budget_parts(workers: list[dict[str, Any]]) -> list[str]:
    """What the trace budget left out of the trace, in counts (README "Repeating spans")."""
    skipped = sum(int(w.get("query_spans_skipped") or 0) for w in workers)
    kinds = [k for w in workers for k in (w.get("repeating_spans") or {}).values()]
    beats = sum(int(k.get("coarsened") or 0) for k in kinds)
    summaries = sum(int(k.get("summaries") or 0) for k in kinds)
    out = []
    if beats:
        out.append(f"{beats:,} routine beats in {summaries:,} summarising spans")
    if skipped:
        out.append(f"{skipped:,} query samples past the cap")
    return out


def _all_span_stats(outcome: RunOutcome) -> SpanStats:
    total = outcome.span_stats
    for f in sorted(outcome.run_dir.glob("spans-*.json")):
        try:
            d: dict[str, Any] = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        total = total.merge(SpanStats(int(d.get("ended", 0)), d.get("exporters", {})))
    return total


def _analyze(run_dir: Path) -> Any:
    from spanbench.analysis.analyze import analyze
    from spanbench.analysis.load import load_trace

    return analyze(load_trace(run_dir), min_gap_s=0.05)
