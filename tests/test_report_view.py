"""The report view: built once from results.json and the analysis, rendered by the terminal and the page."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from spanbench.analysis.analyze import analyze
from spanbench.report.html import _PALETTE as HTML_PALETTE
from spanbench.report.html import render_html
from spanbench.report.run_report import print_trouble
from spanbench.report.view import run_view, waterfall_view
from spanbench.report.waterfall import _PALETTE as TERMINAL_PALETTE
from support.synthetic import spanbench_run

RESULTS = {
    "run_id": "r1", "status": "COMPLETED_WITH_ERRORS",
    "settings": {"target_dsn": "postgresql://bob:hunter2@db:5432/x", "workers": 2},
    "measurement": {
        "seconds": 10.0, "queries": 1000, "errors": 9, "qps": 100.0, "cut": 3,
        "latency": {"lookup": {"count": 600, "errors": 4, "qps": 60.0, "p50_ms": 1.0, "max_ms": 9.0},
                    "tpcb": {"count": 400, "errors": 5, "qps": 40.0, "p50_ms": 3.0, "max_ms": 20.0}},
        "all": {"count": 1000, "p50_ms": 2.0, "max_ms": 20.0},
        "errors_by_class": {"tpcb": {"40": 5}, "lookup": {"ConnectionResetError": 1, "57": 3}},
    },
    "stalls": [{"start_s": 4.0, "seconds": 2.0, "kind": "throughput", "min_qps": 1.0, "median_qps": 100.0, "errors": 0}],
    "partial": {"workers": ["w1", "w2"], "seconds_missing": {"w1": 1.5}},
    "warnings": ["server timings: [boom]"],
    "workers": [{"worker_id": "w0", "status": "COMPLETED", "connections": 4, "queries": 1000, "qps": 100.0}],
}


def test_the_all_row_carries_the_runs_errors_and_qps_after_the_kinds() -> None:
    view = run_view(RESULTS)
    assert [r.kind for r in view.latency] == ["lookup", "tpcb", "all"]
    total = view.all_row
    assert total is not None and total.total
    assert (total.count, total.errors, total.qps, total.p50_ms) == (1000, 9, 100.0, 2.0)


def test_trouble_errors_by_class_and_settings() -> None:
    view = run_view(RESULTS)
    assert [(s.start_s, s.seconds, s.kind) for s in view.stalls] == [(4.0, 2.0, "throughput")]
    assert view.cut == 3
    # a worker named in "workers" without a figure in "seconds_missing" is partial all the same
    assert [(p.worker_id, p.seconds_missing) for p in view.partial] == [("w1", 1.5), ("w2", None)]
    # per kind, most errors first
    assert [(e.kind, e.error_class, e.count) for e in view.errors_by_class] == [
        ("tpcb", "40", 5), ("lookup", "57", 3), ("lookup", "ConnectionResetError", 1)]
    assert dict(view.settings)["target_dsn"] == "postgresql://bob:***@db:5432/x"


def test_a_sparse_or_odd_results_file_gives_an_empty_view_not_a_crash() -> None:
    odd = {"measurement": "nonsense", "workers": [None, {"worker_id": "w0", "qps": "fast"}], "stalls": "x", "partial": 3}
    view = run_view(odd)
    assert not view.measured and view.latency == [] and view.stalls == [] and view.partial == []
    assert view.workers[0].qps is None
    page = render_html(Path("/tmp/odd"), odd, None)
    assert "No measurement results in results.json." in page and 'data-worker="w0"' in page


def test_terminal_and_page_show_the_same_trouble() -> None:
    out = io.StringIO()
    view = run_view(RESULTS)
    print_trouble(RESULTS, Console(file=out, width=200, color_system=None), view)
    text = out.getvalue()
    assert "stall +4s for 2s: throughput" in text
    assert "cut 3 queries" in text
    assert "partial figures missing for part of the load: w1 (1.5s), w2" in text
    assert "errors by class: tpcb 40 ×5, lookup 57 ×3, lookup ConnectionResetError ×1" in text
    assert "warning: server timings: [boom]" in text  # brackets kept: not read as markup
    page = render_html(Path("/tmp/r1"), view, None)
    for hook in ('data-class="40"', 'data-class="57"', 'data-start-s="4.0"', 'id="cut" data-cut="3"',
                 'data-worker="w1"', 'data-worker="w2"', "server timings: [boom]"):
        assert hook in page, hook


def test_the_waterfall_view_paints_every_gap_once_and_gives_each_process_one_colour() -> None:
    analysis = analyze(spanbench_run(stall_ms=500, queries=50).trace())
    view = waterfall_view(analysis)
    painted = [g for row in view.rows for g in view.row_gaps(row)]
    own_rows = [row.gap for row in view.rows if row.gap is not None]
    assert sorted(g.start_ns for g in analysis.gaps) == sorted(g.start_ns for gaps in view.gaps.values() for g in gaps)
    assert set(own_rows) <= set(analysis.gaps) and len(painted) == len(set(painted))
    # one colour index per process, used by both renderers' palettes
    keys = [g.process_key for g in analysis.processes]
    assert [view.process_index[k] for k in keys] == list(range(len(keys)))
    first_worker = next(s for s in analysis.trace.spans if s.process_key == keys[1])
    assert view.colour(first_worker, TERMINAL_PALETTE) == TERMINAL_PALETTE[1]
    assert view.colour(first_worker, HTML_PALETTE) == HTML_PALETTE[1]
    # the start-up view ends at the last first query; the whole run at the trace's end
    assert view.startup_ns is not None and view.axis(full=False).t1 == view.startup_ns
    assert view.axis(full=True).t1 == analysis.end_ns


def test_find_max_curve_in_the_terminal_and_the_page(tmp_path) -> None:
    """A find-max run's curve: QPS and p95 against connections, where it stopped and why."""
    import io
    from html.parser import HTMLParser

    from rich.console import Console

    from spanbench.report.html import render_html
    from spanbench.report.run_report import print_find_max
    from spanbench.report.view import run_view

    steps = [
        {"connections": 2, "qps": 460.0, "p95_ms": 4.5, "p99_ms": 5.0, "error_rate": 0.0, "verdict": "stable"},
        {"connections": 4, "qps": 470.0, "p95_ms": 20.5, "p99_ms": 30.0, "error_rate": 0.0, "verdict": "p95_growth"},
    ]
    results = {"run_id": "fm", "status": "COMPLETED",
               "find_max": {"max_stable_connections": 2, "stopped_by": "p95_growth", "steps": steps}}
    view = run_view(results)
    out = io.StringIO()
    print_find_max(view, Console(file=out, width=120, color_system=None))
    text = out.getvalue()
    assert "max stable concurrency 2, stopped by p95_growth" in text
    assert "470" in text and "20.500" in text and "p95_growth" in text

    class Points(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.steps: list[dict[str, str | None]] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            a = dict(attrs)
            if tag == "circle" and "step" in (a.get("class") or ""):
                self.steps.append(a)

    page = render_html(tmp_path, results, None)
    parser = Points()
    parser.feed(page)
    assert [(p["data-connections"], p["data-verdict"]) for p in parser.steps] == [("2", "stable"), ("4", "p95_growth")]
    assert 'id="max-stable">2<' in page and 'id="stopped-by">p95_growth<' in page
    assert "find-max" not in render_html(tmp_path, {"run_id": "x", "status": "COMPLETED"}, None).split("<main>")[1].split("Waterfall")[0]
