"""The terminal waterfall and gaps report, rendered to a string."""

from __future__ import annotations

import io
import time

from rich.console import Console

from spanbench.analysis.analyze import analyze
from support.synthetic import TraceBuilder, spanbench_run
from spanbench.report.waterfall import build_rows, print_gaps, print_waterfall, startup_end_ns


def _render(fn, analysis, width=120, **kw):
    out = io.StringIO()
    fn(analysis, Console(file=out, width=width), **kw)
    return out.getvalue()


def test_two_worker_run_fits_in_sixty_rows_with_collapsed_siblings():
    analysis = analyze(spanbench_run(stall_ms=500, queries=200).trace())
    text = _render(print_waterfall, analysis)
    rows = text.splitlines()
    assert len(rows) <= 60
    assert "wait_for_start.poll ×" in text and "pool.connect ×4" in text
    assert "query ×200" in text
    assert any(line.lstrip().startswith("⋯ gap") for line in rows)  # the 500 ms stall has its own row
    assert all(len(line) <= 120 for line in rows)


def test_gap_row_sits_between_the_spans_around_it():
    analysis = analyze(spanbench_run(stall_ms=500).trace())
    rows = build_rows(analysis)
    labels = [r.label for r in rows]
    i = next(i for i, r in enumerate(rows) if r.gap is not None and r.gap.duration_ns == 500_000_000)
    assert labels[i - 5 : i + 2] == [
        "pool.init", "pool.batch", "pool.connect ×4", "pool.batch", "pool.connect ×4", "gap", "executor.setup"
    ]
    assert rows[i].depth == rows[i + 1].depth == rows[i - 5].depth == 2


def test_startup_window_stops_at_last_first_query_unless_full():
    analysis = analyze(spanbench_run().trace())
    end = startup_end_ns(analysis)
    assert end is not None and end < analysis.end_ns
    short = _render(print_waterfall, analysis)
    full = _render(print_waterfall, analysis, full=True)
    assert "phase.measurement" not in short and "phase.measurement" in full
    assert "not shown" in short


def test_full_waterfall_does_not_give_each_idle_time_between_queries_a_row():
    analysis = analyze(spanbench_run(queries=200).trace())
    full = build_rows(analysis)
    assert sum(1 for r in full if r.gap is not None) < 10
    assert len(full) <= 70


def test_max_depth_limits_rows():
    analysis = analyze(spanbench_run().trace())
    depth1 = build_rows(analysis, max_depth=1)
    assert {r.depth for r in depth1} == {0, 1}
    assert not any(r.label == "pool.init" for r in depth1)
    assert any(r.label == "pool.init" for r in build_rows(analysis, max_depth=2))


def test_bars_scale_to_the_width_and_mark_gaps():
    b = TraceBuilder()
    root = b.span("root", 0, 1000)
    b.span("a", 0, 500, root)
    b.span("b", 750, 1000, root)
    analysis = analyze(b.trace(), min_gap_s=0.1)
    for width in (80, 160):
        lines = _render(print_waterfall, analysis, width=width).splitlines()
        root_line = next(l for l in lines if l.startswith("root"))
        a_line = next(l for l in lines if l.lstrip().startswith("a "))
        assert len(root_line) <= width
        bar = root_line.split(" ", 1)[1]
        assert bar.count("░") > 0  # the gap painted on the parent's bar
        full, half = root_line.count("█") + root_line.count("░"), a_line.count("█")
        assert abs(half / full - 0.5) < 0.1


def test_gaps_report_groups_repeats_and_keeps_brackets():
    analysis = analyze(spanbench_run(stall_ms=300).trace())
    text = _render(print_gaps, analysis)
    assert "gap 300.0ms in worker[w1] after pool.init before executor.setup" in text
    assert "(critical path)" in text
    assert "gaps in worker[w0] between query and query" in text  # 18 repeats, one line
    assert "worker[w1]: run start → first_query" in text  # brackets are not Rich markup
    assert text.count("\n") < 40


def test_skew_is_reported():
    b = TraceBuilder()
    run = b.span("run", 0, 1000)
    b.span("worker", -120, 900, run, process="w1", attrs={"spanbench.worker_id": "w1"})
    text = _render(print_gaps, analyze(b.trace()))
    assert "worker[w1] starts 120.0ms before its parent run (another process)" in text


def test_fifty_thousand_spans_in_reasonable_time():
    b = spanbench_run(queries=25_000)
    assert len(b.spans) > 50_000
    t = time.perf_counter()
    analysis = analyze(b.trace())
    _render(print_waterfall, analysis)
    _render(print_gaps, analysis)
    analysis.to_json()
    assert time.perf_counter() - t < 30  # linear: a quadratic walk would take minutes
