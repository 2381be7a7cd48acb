"""The end of ``spanbench run``: results.json, the figures, the waterfall and the gaps."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from spanbench.orchestrator import RunOutcome
from spanbench.settings import Settings
from spanbench.telemetry.provider import SpanStats
from spanbench.telemetry.process_start import process_start_time_ns


def finish_run(outcome: RunOutcome, settings: Settings, console: Console | None = None) -> int:
    """Write results.json, print the report; return the exit code (0, or 1 for a failed run)."""
    console = console or Console(highlight=False)
    spans = _all_span_stats(outcome)
    analysis = _analyze(outcome.run_dir) if settings.tracing_enabled and spans.ended else None
    results = {
        "run_id": outcome.run_id,
        "status": outcome.status,
        "reason": outcome.reason,
        "settings": settings.public(),
        **outcome.results,
        "spans": spans.as_dict(),
        "gaps": analysis.to_json() if analysis is not None else None,
    }
    results["wall_time_s"] = (time.time_ns() - process_start_time_ns()) / 1e9
    path = outcome.run_dir / "results.json"
    path.write_text(json.dumps(results, indent=2, default=str))

    print_results(outcome, console)
    if analysis is not None:
        from spanbench.report.waterfall import print_gaps, print_waterfall

        print_waterfall(analysis, console)
        print_gaps(analysis, console)
    elif not settings.tracing_enabled:
        console.print("tracing was off (the default against a DSN): SPANBENCH_TRACING=1 adds the trace, "
                      "the start-up waterfall and the gaps report")
    print_span_stats(spans, console)
    console.print(f"run folder: {outcome.run_dir}")
    from spanbench.report.html import report_after_run

    report_after_run(outcome.run_dir, analysis, console)
    if outcome.status != "COMPLETED":
        console.print(f"[bold red]run {outcome.status}[/]: {outcome.reason}")
        from spanbench.errors import RunCancelled, RunFailed

        error = RunCancelled if outcome.status == "CANCELLED" else RunFailed
        raise error(f"run {outcome.run_id} {outcome.status.lower()}: {outcome.reason} (results so far in {path})")
    return 0


def print_results(outcome: RunOutcome, console: Console) -> None:
    r = outcome.results
    if not r:
        return
    m = r["measurement"]
    console.print(
        f"\n[bold]run {outcome.run_id}[/]  {outcome.status}  measurement {m['seconds']:.1f}s  "
        f"[bold]{m['qps']:,.0f} queries/s[/]  {m['queries']:,} queries  {m['errors']:,} errors"
    )
    table = Table(title="latency, measurement phase (ms)", title_justify="left")
    for col in ("query kind", "count", "errors", "qps", "p50", "p95", "p99", "p99.9", "max"):
        table.add_column(col, justify="left" if col == "query kind" else "right")
    rows = list(m["latency"].items()) + [("all", {**m["all"], "errors": m["errors"], "qps": m["qps"]})]
    for kind, v in rows:
        table.add_row(
            kind, f"{v['count']:,}", f"{v['errors']:,}", f"{v['qps']:,.0f}", f"{v['p50_ms']:.3f}",
            f"{v['p95_ms']:.3f}", f"{v['p99_ms']:.3f}", f"{v['p999_ms']:.3f}", f"{v['max_ms']:.3f}",
        )
    console.print(table)
    workers = Table(title="workers", title_justify="left")
    for col in ("worker", "status", "connections", "queries", "qps", "START → first query"):
        workers.add_column(col, justify="left" if col in ("worker", "status") else "right")
    for w in r["workers"]:
        s2f = w["start_to_first_query_ms"]
        workers.add_row(
            w["worker_id"], w["status"], str(w["connections"]), f"{w['queries']:,}", f"{w['qps']:,.0f}",
            "-" if s2f is None else f"{s2f:.1f} ms",
        )
    console.print(workers)


def print_span_stats(stats: SpanStats, console: Console) -> None:
    if not stats.ended:
        return
    parts = [f"spans: {stats.ended:,} recorded"]
    for name, c in stats.exporters.items():
        missing = c["failed"] + c["lost"]
        label = "written to the run folder" if name == "file" else "exported over OTLP"
        parts.append(f"{c['exported']:,} {label}" + (f" ([bold red]{missing:,} not[/])" if missing else ""))
    console.print(", ".join(parts))


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
