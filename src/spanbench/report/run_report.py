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
    path.write_text(json.dumps(results, indent=2, default=str))
    analysis = None
    if settings.tracing_enabled and spans.ended:
        try:
            analysis = _analyze(outcome.run_dir)
        except Exception as exc:  # noqa: BLE001 - the report is a bonus; the results are safe
            console.print(f"spanbench: warning: the trace could not be analysed: {' '.join(str(exc).split())[:300]}")
        else:
            results["gaps"] = analysis.to_json()
            path.write_text(json.dumps(results, indent=2, default=str))

    completed = outcome.status in ("COMPLETED", "COMPLETED_WITH_ERRORS")
    measured = print_results(outcome, console)
    if analysis is not None:
        from spanbench.report.waterfall import print_gaps, print_waterfall

        print_waterfall(analysis, console)
        print_gaps(analysis, console)
    elif completed and settings.tracing is None and settings.target_dsn is not None:
        # only where it is true: a finished run against a real target that left tracing at its default
        console.print("tracing was off (the default against a DSN): SPANBENCH_TRACING=1 adds the trace, "
                      "the start-up waterfall and the gaps report")
    print_span_stats(spans, console)
    console.print(f"run folder: {outcome.run_dir}")
    from spanbench.report.html import report_after_run

    report_after_run(outcome.run_dir, analysis, console)
    print_trouble(outcome.results, console)
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


def print_trouble(results: dict[str, Any], console: Console) -> None:
    """Stalls, cut queries and partial figures: a run that had them never reads as clean."""
    for st in results.get("stalls") or []:
        console.print(f"[bold red]stall[/] +{st['start_s']:.0f}s for {st['seconds']:.0f}s: {st['kind']}, "
                      f"{st['min_qps']:,.0f} q/s at the lowest (median {st['median_qps']:,.0f}), {st['errors']:,} errors")
    cut = (results.get("measurement") or {}).get("cut")
    if cut:
        console.print(f"[bold red]cut[/] {cut} queries were still running at the drain: their time so far is in the "
                      "latency figures as a lower bound")
    partial = results.get("partial")
    if partial:
        missing = ", ".join(w if s is None else f"{w} ({s:.1f}s)" for w, s in partial["seconds_missing"].items())
        console.print(f"[bold red]partial[/] figures missing for part of the load: {missing}")
    for w in results.get("warnings") or []:
        console.print(f"warning: {w}")


def print_results(outcome: RunOutcome, console: Console) -> bool:
    """The run's figures; return whether anything was measured.

    A run that ended before measuring anything prints nothing (no table of zeros); one that
    failed after measuring prints what it measured, titled as such.
    """
    r = outcome.results
    if not r:
        return False
    m = r["measurement"]
    measured = bool(m["queries"] or m["errors"])
    completed = outcome.status == "COMPLETED"
    if not measured and not completed:
        return False
    console.print(
        f"\n[bold]run {outcome.run_id}[/]  {outcome.status}  measurement {m['seconds']:.1f}s  "
        f"[bold]{m['qps']:,.0f} queries/s[/]  {m['queries']:,} queries  {m['errors']:,} errors"
    )
    partial = "" if completed else f", measured before the run was {outcome.status.lower()}"
    rows = list(m["latency"].items()) + [("all", {**m["all"], "errors": m["errors"], "qps": m["qps"]})]
    print_table(
        console, f"latency, measurement phase (ms){partial}",
        ["query kind", "count", "errors", "qps", "p50", "p95", "p99", "p99.9", "max"],
        [[kind, f"{v['count']:,}", f"{v['errors']:,}", f"{v['qps']:,.0f}", f"{v['p50_ms']:.3f}", f"{v['p95_ms']:.3f}",
          f"{v['p99_ms']:.3f}", f"{v['p999_ms']:.3f}", f"{v['max_ms']:.3f}"] for kind, v in rows],
    )
    workers = []
    for w in r["workers"]:
        s2f = w["start_to_first_query_ms"]
        workers.append([
            w["worker_id"], w["status"], "-" if w["connections"] is None else str(w["connections"]),
            f"{w['queries']:,}", f"{w['qps']:,.0f}", "-" if s2f is None else f"{s2f:.1f} ms",
        ])
    print_table(console, f"workers{partial}", ["worker", "status", "connections", "queries", "qps", "START → first query"],
                workers, left=(0, 1))
    return measured


def print_table(console: Console, title: str, headers: list[str], rows: list[list[str]],
                *, labels: tuple[int, ...] = (0,), left: tuple[int, ...] = (0,)) -> None:
    """A table whose figures are never cut, whatever the console's width.

    Figures (every column but ``labels``) never wrap, shrink or turn into ``…``. When the table
    is wider than the console it is drawn with a lighter box, then split into several tables
    that each repeat the label columns; labels fold only where even that does not fit.
    """
    from rich import box

    width = console.width
    figures = [i for i in range(len(headers)) if i not in labels]

    def build(cols: list[int], style: box.Box, part_title: str) -> Table:
        compact = style is not box.HEAVY_HEAD
        table = Table(title=part_title, title_justify="left", box=style, pad_edge=not compact,
                      show_edge=not compact, collapse_padding=compact)
        for i in cols:
            cells = [row[i] for row in rows]
            justify = "left" if i in left else "right"
            if i in labels:
                longest = max((len(c) for c in cells), default=1)
                table.add_column(headers[i], justify=justify, overflow="fold", min_width=min(longest, 8))
            else:  # never narrower than its widest figure; the header may wrap
                table.add_column(headers[i], justify=justify, no_wrap=True, overflow="fold",
                                 min_width=max((len(c) for c in cells), default=1))
        for row in rows:
            table.add_row(*(row[i] for i in cols))
        return table

    def fits(table: Table, cols: list[int]) -> bool:  # within the width, every cell whole
        lines = _render(table, width).splitlines()
        if any(len(line.rstrip()) > width for line in lines):
            return False
        return all(any(row[i] in line for line in lines) for row in rows for i in cols)

    label_cols = [i for i in range(len(headers)) if i in labels]
    for style in (box.HEAVY_HEAD, box.SIMPLE_HEAD):
        table = build(list(range(len(headers))), style, title)
        if fits(table, list(range(len(headers)))):
            console.print(table)
            return
    # Too wide even with a light box: split the figures over several tables.
    style = box.SIMPLE_HEAD
    groups: list[list[int]] = []
    for i in figures:
        if groups and fits(build(label_cols + groups[-1] + [i], style, title), label_cols + groups[-1] + [i]):
            groups[-1].append(i)
        else:
            groups.append([i])
    for n, group in enumerate(groups):
        cols = sorted(label_cols + group)
        part = title if n == 0 else f"{title} (continued)"
        # a part that still cannot fit (a very narrow console) is printed whole: the terminal wraps it
        console.print(build(cols, style, part), crop=False, overflow="ignore")


def _render(table: Table, width: int) -> str:
    import io

    probe = Console(file=io.StringIO(), width=width, color_system=None, highlight=False, legacy_windows=False)
    probe.print(table, crop=False)
    return probe.file.getvalue()  # type: ignore[attr-defined]


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
