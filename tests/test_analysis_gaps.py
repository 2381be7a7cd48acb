"""Gaps, self time and skew on small synthetic traces with known answers."""

from __future__ import annotations

import random

from spanbench.analysis.analyze import analyze
from spanbench.analysis.gaps import all_gaps, self_times
from spanbench.analysis.model import Trace
from support.synthetic import MS, T0_NS, TraceBuilder


def _gaps_ms(analysis, span_name=None):
    """(enclosing name, start ms, end ms, before name, after name) per reported gap."""
    tr = analysis.trace
    out = []
    for g in analysis.gaps:
        if span_name is not None and tr[g.span_id].name != span_name:
            continue
        before = tr.get(g.before_id)
        after = tr.get(g.after_id)
        out.append((
            tr[g.span_id].name,
            (g.start_ns - T0_NS) / MS,
            (g.end_ns - T0_NS) / MS,
            before.name if before else None,
            after.name if after else None,
        ))
    return out


def test_nested_spans_gaps_before_between_and_after_children():
    b = TraceBuilder()
    root = b.span("root", 0, 1000)
    a = b.span("a", 100, 300, root)
    b.span("a.1", 100, 150, a)
    b.span("a.2", 250, 300, a)  # 100 ms gap inside a
    b.span("b", 500, 900, root)
    analysis = analyze(b.trace(), min_gap_s=0.05)
    assert _gaps_ms(analysis) == [
        ("root", 0, 100, None, "a"),
        ("a", 150, 250, "a.1", "a.2"),
        ("root", 300, 500, "a", "b"),
        ("root", 900, 1000, "b", None),
    ]


def test_threshold_is_inclusive_and_filters_small_gaps():
    b = TraceBuilder()
    root = b.span("root", 0, 100)
    b.span("x", 0, 40, root)
    b.span("y", 90, 100, root)  # gap of exactly 50 ms
    b.span("z", 40, 40, root)
    assert [round(g.duration_ns / MS) for g in analyze(b.trace(), min_gap_s=0.05).gaps] == [50]
    assert analyze(b.trace(), min_gap_s=0.051).gaps == []


def test_leaf_spans_have_no_gaps_and_all_self_time():
    b = TraceBuilder()
    root = b.span("root", 0, 1000)
    leaf = b.span("leaf", 0, 1000, root)
    analysis = analyze(b.trace(), min_gap_s=0)
    assert analysis.gaps == []
    assert analysis.self_time_ns[leaf.span_id] == 1000 * MS
    assert analysis.self_time_ns[root.span_id] == 0


def test_overlapping_children_merge():
    b = TraceBuilder()
    root = b.span("root", 0, 1000)
    b.span("c1", 0, 400, root)
    b.span("c2", 200, 600, root)  # overlaps c1
    b.span("c3", 300, 350, root)  # inside c1 and c2
    b.span("c4", 800, 1000, root)
    analysis = analyze(b.trace(), min_gap_s=0)
    # One gap, 600..800, after the child that ended last (c2), not after c3.
    assert _gaps_ms(analysis) == [("root", 600, 800, "c2", "c4")]
    assert analysis.self_time_ns[root.span_id] == 200 * MS


def test_zero_length_spans():
    b = TraceBuilder()
    root = b.span("root", 0, 300)
    b.span("mark", 100, 100, root)  # covers nothing, but is the most recent thing before the gap
    b.span("work", 200, 300, root)
    empty_parent = b.span("empty", 250, 250, root)
    b.span("inside-empty", 250, 250, empty_parent)
    analysis = analyze(b.trace(), min_gap_s=0)
    assert _gaps_ms(analysis) == [
        ("root", 0, 100, None, "mark"),
        ("root", 100, 200, "mark", "work"),
    ]
    assert analysis.self_time_ns[empty_parent.span_id] == 0
    assert all(g.duration_ns > 0 for g in analysis.gaps)


def test_unsorted_input_gives_the_same_answer():
    b = TraceBuilder()
    root = b.span("root", 0, 1000)
    for i in range(20):
        b.span(f"c{i}", i * 50, i * 50 + 30, root)  # 20 ms gaps between children
    sorted_result = analyze(Trace(list(b.spans)), min_gap_s=0.01)
    shuffled = list(b.spans)
    random.Random(7).shuffle(shuffled)
    assert shuffled[0].name != "root" or shuffled[1].name != "c0"
    shuffled_result = analyze(Trace(shuffled), min_gap_s=0.01)
    assert _gaps_ms(sorted_result) == _gaps_ms(shuffled_result)
    assert len(sorted_result.gaps) == 20  # 19 between children + 1 at the end (1000 - 980)
    assert [g.start_ns for g in sorted_result.gaps] == sorted(g.start_ns for g in sorted_result.gaps)


def test_child_before_its_parent_is_reported_and_clipped():
    b = TraceBuilder()
    root = b.span("run", 0, 1000)
    # another process whose clock runs 300 ms behind: its span "starts" before run
    b.span("worker", -300, 600, root, process="worker-0")
    analysis = analyze(b.trace(), min_gap_s=0)
    assert _gaps_ms(analysis) == [("run", 600, 1000, "worker", None)]
    assert analysis.self_time_ns[root.span_id] == 400 * MS
    [skew] = analysis.skews
    assert analysis.trace[skew.span_id].name == "worker"
    assert skew.early_ns == 300 * MS and skew.late_ns == 0 and skew.cross_process


def test_child_after_its_parent_and_wholly_outside_never_inflates():
    b = TraceBuilder()
    root = b.span("run", 0, 1000)
    b.span("late", 900, 1500, root, process="other")
    b.span("outside", 2000, 2500, root, process="other")  # entirely after its parent
    b.span("before", -900, -100, root, process="other")  # entirely before its parent
    analysis = analyze(b.trace(), min_gap_s=0)
    gaps = analysis.gaps_by_span[root.span_id]
    assert [(g.start_ns - T0_NS) // MS for g in gaps] == [0]
    assert [(g.end_ns - T0_NS) // MS for g in gaps] == [900]
    # covered + gaps == duration: nothing negative, nothing beyond the parent
    assert sum(g.duration_ns for g in gaps) == analysis.self_time_ns[root.span_id] == 900 * MS
    assert all(0 < g.duration_ns <= root.duration_ns for g in analysis.gaps)
    skews = {analysis.trace[s.span_id].name: s for s in analysis.skews}
    assert skews["late"].late_ns == 500 * MS
    assert skews["outside"].late_ns == 1500 * MS
    assert skews["before"].early_ns == 900 * MS
    assert skews["outside"].amount_ns >= skews["before"].amount_ns  # largest first
    assert analysis.skews[0].span_id == skews["outside"].span_id


def test_tiny_rounding_skew_is_not_reported():
    b = TraceBuilder()
    root = b.span("run", 0, 1000)
    b.span("c", 0, 1000.001, root)  # 1 µs over: µs rounding, not a clock
    assert analyze(b.trace()).skews == []


def test_orphans_become_roots():
    b = TraceBuilder()
    # the root span "run" was never exported: both workers point at a missing parent
    w0 = b.span("worker", 0, 1000, "00000000deadbeef", attrs={"spanbench.worker_id": "w0"})
    b.span("pool.init", 0, 200, w0)
    b.span("first_query", 900, 901, w0)
    w1 = b.span("worker", 10, 1000, "00000000deadbeef", attrs={"spanbench.worker_id": "w1"})
    b.span("first_query", 20, 21, w1)
    trace = b.trace()
    assert [r.span_id for r in trace.roots] == [w0.span_id, w1.span_id]
    analysis = analyze(trace, min_gap_s=0.05)
    assert ("worker", 200, 900, "pool.init", "first_query") in _gaps_ms(analysis)
    paths = {analysis.trace.owner(analysis.trace[p.target_id]): p for p in analysis.paths}
    assert paths["w0"].root_id == w0.span_id
    assert paths["w0"].untraced_ns == 700 * MS
    assert paths["w1"].duration_ns == 10 * MS


def test_parent_cycle_does_not_hang():
    b = TraceBuilder()
    b.span("a", 0, 100, span_id="000000000000000a", parent="000000000000000b")
    b.span("b", 10, 50, span_id="000000000000000b", parent="000000000000000a")
    trace = b.trace()
    assert len(list(trace.walk())) == 2
    assert [r.name for r in trace.roots] == ["a"]
    assert any("cycle" in w for w in trace.warnings)


def test_self_time_equals_duration_minus_covered_for_every_span():
    b = TraceBuilder()
    rng = random.Random(3)
    root = b.span("root", 0, 10_000)
    parents = [root]
    for i in range(300):
        parent = rng.choice(parents)
        p0, p1 = (parent.start_ns - T0_NS) / MS, (parent.end_ns - T0_NS) / MS
        s = rng.uniform(p0 - 50, p1)
        e = s + rng.uniform(0, (p1 - p0) / 2)
        parents.append(b.span(f"s{i}", s, e, parent))
    trace = b.trace()
    by_span = all_gaps(trace)
    selfs = self_times(trace, by_span)
    for span in trace.spans:
        assert 0 <= selfs[span.span_id] <= span.duration_ns
        for g in by_span.get(span.span_id, ()):
            assert span.start_ns <= g.start_ns < g.end_ns <= span.end_ns
        gaps = by_span.get(span.span_id, [])
        assert all(a.end_ns <= b.start_ns for a, b in zip(gaps, gaps[1:]))
