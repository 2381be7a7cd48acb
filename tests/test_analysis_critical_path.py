"""The critical path to each first_query and its traced / untraced split."""

from __future__ import annotations

from spanbench.analysis.analyze import analyze
from support.synthetic import MS, T0_NS, TraceBuilder, spanbench_run


def _by_worker(analysis):
    return {analysis.trace.owner(analysis.trace[p.target_id]): p for p in analysis.paths}


def _check_tiling(path):
    """Segments are disjoint, in order, and cover [root start, target start] exactly."""
    assert path.segments[0].start_ns == path.start_ns
    assert path.segments[-1].end_ns == path.end_ns
    for a, b in zip(path.segments, path.segments[1:]):
        assert a.end_ns == b.start_ns
    assert path.traced_ns + path.untraced_ns == path.duration_ns


def test_injected_gap_is_the_untraced_time_of_that_worker_only():
    analysis = analyze(spanbench_run(stall_ms=7520).trace())
    paths = _by_worker(analysis)
    assert set(paths) == {"w0", "w1"}
    stalled, other = paths["w1"], paths["w0"]
    assert stalled.until == "start" and analysis.trace[stalled.target_id].name == "first_query"
    assert stalled.duration_ns == (1030 + 7520) * MS  # run start → first_query start
    assert stalled.untraced_ns == 7520 * MS
    assert stalled.traced_ns == 1030 * MS
    [pg] = stalled.gaps
    trace = analysis.trace
    assert trace[pg.gap.span_id].worker_id == "w1"
    assert trace[pg.gap.before_id].name == "pool.init" and trace[pg.gap.after_id].name == "executor.setup"
    assert pg.on_path_ns == 7520 * MS
    # The other worker waited in wait_for_start polls: traced, its own path has no gap.
    assert other.untraced_ns == 0
    _check_tiling(stalled)
    _check_tiling(other)
    assert analysis.on_critical_path(pg.gap)


def test_healthy_run_has_no_untraced_time_before_first_query():
    analysis = analyze(spanbench_run().trace())
    for path in analysis.paths:
        assert path.untraced_ns == 0
        assert path.duration_ns == 1030 * MS
        _check_tiling(path)
    assert len(analysis.paths) == 2


def test_gap_inside_a_blocking_sibling_is_on_the_path():
    # first_query waited for pool.init, which itself stalled 300 ms between two batches:
    # that stall is untraced time on the path even though pool.init is not an ancestor.
    b = TraceBuilder()
    run = b.span("run", 0, 2000)
    w = b.span("worker", 0, 2000, run, process="w", attrs={"spanbench.worker_id": "w0"})
    pool = b.span("pool.init", 0, 600, w)
    b.span("pool.batch", 0, 100, pool)
    b.span("pool.batch", 400, 600, pool)
    b.span("first_query", 650, 651, w)
    analysis = analyze(b.trace())
    [path] = analysis.paths
    assert path.untraced_ns == (300 + 50) * MS  # the batch stall + worker gap before first_query
    names = [analysis.trace[pg.gap.span_id].name for pg in path.gaps]
    assert names == ["pool.init", "worker"]
    _check_tiling(path)


def test_concurrent_children_path_goes_through_the_one_still_running():
    b = TraceBuilder()
    run = b.span("run", 0, 1000)
    b.span("orchestrator.prepare", 0, 100, run)
    b.span("orchestrator.launch_workers", 100, 400, run)  # still running when the worker starts
    w = b.span("worker", 200, 1000, run, process="w", attrs={"spanbench.worker_id": "w0"})
    b.span("worker.startup", 200, 500, w)
    b.span("first_query", 500, 501, w)
    analysis = analyze(b.trace())
    [path] = analysis.paths
    assert path.untraced_ns == 0
    assert [analysis.trace[s.span_id].name for s in path.segments] == [
        "orchestrator.prepare",
        "orchestrator.launch_workers",
        "worker.startup",
    ]
    assert [(s.start_ns - T0_NS) // MS for s in path.segments] == [0, 100, 200]


def test_skewed_worker_never_gives_negative_or_excess_path_time():
    b = TraceBuilder()
    run = b.span("run", 0, 1000)
    b.span("orchestrator.prepare", 0, 100, run)
    w = b.span("worker", -200, 900, run, process="w", attrs={"spanbench.worker_id": "w0"})  # clock behind
    b.span("worker.startup", -200, 50, w)
    b.span("first_query", 300, 301, w)
    analysis = analyze(b.trace())
    [path] = analysis.paths
    assert path.duration_ns == 300 * MS
    assert path.untraced_ns == 250 * MS  # worker gap 50..300
    assert all(s.duration_ns > 0 for s in path.segments)
    _check_tiling(path)
    assert analysis.skews and analysis.trace[analysis.skews[0].span_id].name == "worker"


def test_foreign_trace_uses_latest_ending_span_to_its_end():
    b = TraceBuilder()
    root = b.span("GET /", 0, 1000, service="web")
    b.span("db", 100, 400, root, service="web")
    b.span("render", 700, 1000, root, service="web")
    analysis = analyze(b.trace())
    [path] = analysis.paths
    assert path.until == "end" and path.target_id == root.span_id
    assert path.duration_ns == 1000 * MS
    assert path.untraced_ns == 400 * MS  # 0..100 and 400..700
    _check_tiling(path)


def test_named_targets():
    b = TraceBuilder()
    root = b.span("root", 0, 1000)
    b.span("a", 0, 100, root)
    target = b.span("b", 300, 400, root)
    analysis = analyze(b.trace(), targets=["b"])
    [path] = analysis.paths
    assert path.target_id == target.span_id and path.untraced_ns == 200 * MS
    assert analyze(b.trace(), targets=[target.span_id]).paths[0].target_id == target.span_id
