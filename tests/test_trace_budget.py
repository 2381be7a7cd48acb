"""A run's trace stays within a budget however long and wide the run: repeating spans are
coarsened past it, query spans share a per-run cap, and nothing is dropped unreported.

The logic is driven by explicit times (no sleeps); one short real run checks that the
worker's spans, its attributes and results.json agree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from conftest import run_cli, spanbench_env
from spanbench.load.query_spans import QuerySpans, query_span_share
from spanbench.targets.base import QuerySpec
from spanbench.telemetry.repeating import COARSENED_COUNT, RepeatingSpans, keep_first_per_worker
from support.traces import Tree, read_spans
from test_run_trace import ORCHESTRATOR_PHASES, WORKER_PHASES

S = 1_000_000_000
MS = 1_000_000


@pytest.fixture
def memory() -> tuple[trace.Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def beats(kind: RepeatingSpans, n: int, *, every_s: float = 1.0, took_ms: float = 3.0, start: int = 0) -> None:
    for i in range(n):
        t0 = start + int(i * every_s * S)
        kind.record(t0, t0 + int(took_ms * MS))


def held(spans) -> int:
    """Beats the spans stand for: one each, or a summary's count."""
    return sum(int(s.attributes.get(COARSENED_COUNT, 1)) for s in spans)


# ---------------------------------------------------------------- the budget


@pytest.mark.parametrize(("budget", "workers", "keep"), [(600, 2, 300), (600, 64, 9), (600, 1000, 2), (0, 1, 2)])
def test_a_run_budget_is_split_across_workers(budget: int, workers: int, keep: int) -> None:
    assert keep_first_per_worker(budget, workers) == keep


@pytest.mark.parametrize(("budget", "cap", "workers", "share"), [(2000, 1000, 2, 1000), (2000, 1000, 1, 1000),
                                                                  (2000, 1000, 64, 31), (2000, 1000, 4096, 0)])
def test_query_span_share(budget: int, cap: int, workers: int, share: int) -> None:
    assert query_span_share(budget, cap, workers) == share


class _Conn:
    def last_query_id(self) -> None:
        return None


def test_query_spans_past_the_share_are_counted_and_first_queries_kept(memory) -> None:
    tracer, exporter = memory
    q = QuerySpec(kind="point_select", operation="SELECT", sql="SELECT 1", collection="t", access="READ")
    spans = QuerySpans(tracer, None, [q], system="postgresql", server_address="x", every=1, slow_s=1.0,
                       cap=query_span_share(100, 1000, 50), enabled=True)
    conn: Any = _Conn()
    spans.emit(0, 0, 0, 10, reason="first", first=True, conn=conn, error=None)
    for i in range(10):
        spans.emit(0, 0, i * 100, i * 100 + 10, reason="sample", first=False, conn=conn, error=None)
    # the share (2) is used up, yet the second connection's first query keeps its span
    spans.emit(0, 1, 5000, 5010, reason="first", first=False, conn=conn, error=None)
    got = exporter.get_finished_spans()
    names = [s.name for s in got]
    assert names.count("first_query") == 1
    assert [s.attributes["spanbench.sample_reason"] for s in got if s.name == "query"] == ["sample", "first"]
    assert spans.skipped == 9
    assert len(names) + spans.skipped == 12


# ---------------------------------------------------------------- coarsening


def test_routine_beats_past_the_first_are_summarised_in_doubling_windows(memory) -> None:
    tracer, exporter = memory
    kind = RepeatingSpans(tracer, None, "heartbeat", keep_first=3, slow_s=0.5, attributes={"worker.status": "RUNNING"})
    beats(kind, 3 + 3 + 6 + 12 + 5)
    kind.flush()
    spans = exporter.get_finished_spans()
    assert {s.name for s in spans} == {"heartbeat"}
    summaries = [s for s in spans if COARSENED_COUNT in s.attributes]
    assert [s.attributes[COARSENED_COUNT] for s in summaries] == [3, 6, 12, 5]  # the last closed by flush
    assert len(spans) == 3 + 4
    assert held(spans) == kind.count == 29
    assert kind.coarsened == 26 and kind.summaries == 4
    first = summaries[0]
    assert first.start_time == 3 * S and first.end_time == 5 * S + 3 * MS  # beats 3..5, start to end
    assert first.attributes["spanbench.coarsened.mean_ms"] == 3.0
    assert first.attributes["worker.status"] == "RUNNING"


def test_an_hour_of_beats_is_a_few_spans(memory) -> None:
    tracer, exporter = memory
    kind = RepeatingSpans(tracer, None, "heartbeat", keep_first=9, slow_s=0.5)
    beats(kind, 3600)
    kind.flush()
    spans = exporter.get_finished_spans()
    assert len(spans) <= 9 + 10
    assert held(spans) == 3600


def test_unusual_beats_always_have_their_own_span(memory) -> None:
    tracer, exporter = memory
    kind = RepeatingSpans(tracer, None, "heartbeat", keep_first=1, slow_s=0.5)
    beats(kind, 5)  # one kept, then a window of 2 closes, and 2 wait in the next
    kind.record(10 * S, 10 * S + 700 * MS)  # slow
    kind.record(11 * S, 11 * S + 1 * MS, error=ConnectionError("gone"))
    kind.record(12 * S, 12 * S + 1 * MS, event=True, attributes={"poll.outcome": "stop requested"})
    spans = exporter.get_finished_spans()
    by_reason = {s.attributes.get("spanbench.sample_reason"): s for s in spans}
    assert {"slow", "failed", "event"} <= set(by_reason)
    assert by_reason["failed"].status.status_code == trace.StatusCode.ERROR
    assert by_reason["failed"].attributes["error.type"] == "ConnectionError"
    assert by_reason["event"].attributes["poll.outcome"] == "stop requested"
    assert all(COARSENED_COUNT not in by_reason[r].attributes for r in ("slow", "failed", "event"))
    kind.flush()
    assert held(exporter.get_finished_spans()) == kind.count == 8


def test_a_store_slow_throughout_is_not_news_at_every_beat(memory) -> None:
    tracer, exporter = memory
    kind = RepeatingSpans(tracer, None, "heartbeat", keep_first=2, slow_s=0.5)
    beats(kind, 3, took_ms=600)  # the first is slow (nothing to compare with), then that is the norm
    beats(kind, 100, took_ms=650, start=10 * S)
    kind.record(200 * S, 200 * S + 4 * S)  # four seconds: slow even for this store
    kind.flush()
    spans = exporter.get_finished_spans()
    assert [s.attributes.get("spanbench.sample_reason") for s in spans].count("slow") == 2
    assert len(spans) < 12 and held(spans) == kind.count == 104


def test_a_status_beat_made_elsewhere_is_counted(memory) -> None:
    tracer, _ = memory
    kind = RepeatingSpans(tracer, None, "heartbeat", keep_first=2, slow_s=0.5)
    kind.counted_elsewhere()
    beats(kind, 2)
    assert kind.count == 3 and kind.coarsened == 0


def test_flush_with_nothing_pending_makes_no_span(memory) -> None:
    tracer, exporter = memory
    kind = RepeatingSpans(tracer, None, "control.poll", keep_first=2, slow_s=0.5)
    kind.flush()
    beats(kind, 2)
    kind.flush()
    assert len(exporter.get_finished_spans()) == 2 and kind.summaries == 0


def test_the_report_line_says_what_the_budget_left_out() -> None:
    from spanbench.report.run_report import _budget_parts

    workers = [{"query_spans_skipped": 5, "repeating_spans": {"heartbeat": {"count": 30, "coarsened": 20, "summaries": 3}}},
               {"query_spans_skipped": 0, "repeating_spans": {"results.flush": {"count": 9, "coarsened": 4, "summaries": 1}}}]
    assert _budget_parts(workers) == ["24 routine beats in 4 summarising spans", "5 query samples past the cap"]
    assert _budget_parts([{"worker_id": "w0"}]) == []  # results.json of an older run


def test_diff_leaves_summaries_out_of_a_name_s_durations() -> None:
    from spanbench.analysis.diff import name_stats
    from spanbench.analysis.model import Span, Trace

    spans = [Span("t", "a", None, "heartbeat", 0, 3 * MS),
             Span("t", "b", None, "heartbeat", 10 * S, 10 * S + 5 * MS),
             Span("t", "c", None, "heartbeat", 20 * S, 2000 * S, attributes={COARSENED_COUNT: 1980})]
    stats = name_stats(Trace(spans))["heartbeat"]
    assert stats.count == 2 and stats.max_ns == 5 * MS  # a window of 33 minutes is not a slow beat


# ---------------------------------------------------------------- a real run with a tiny budget


def test_a_run_with_a_tiny_budget_coarsens_and_counts(pg_dsn: str, tmp_path: Path) -> None:
    res = run_cli(
        ["run", "--target-dsn", pg_dsn, "--workers", "2", "--connections", "4", "--warmup", "0.3s",
         "--duration", "2.5s"],
        output=tmp_path,
        env=spanbench_env(SPANBENCH_TRACING="1", SPANBENCH_HEARTBEAT_INTERVAL="0.1s",
                          SPANBENCH_FLUSH_INTERVAL="0.2s", SPANBENCH_REPEATING_SPAN_BUDGET="4",
                          SPANBENCH_QUERY_SPAN_BUDGET="6", SPANBENCH_QUERY_SAMPLE_EVERY="10"),
    )
    assert res.returncode == 0, res.stderr + res.stdout
    run_dir = res.run_dir()
    tree = Tree(read_spans(run_dir))
    results = json.loads((run_dir / "results.json").read_text())
    run = tree.roots()[0]
    for name in ORCHESTRATOR_PHASES:
        assert len(tree.kids(run, name)) == 1, name
    by_worker = {w["worker_id"]: w for w in results["workers"]}
    for wid, w in tree.workers().items():
        for name in WORKER_PHASES:
            assert tree.kids(w, name), f"{wid} lacks {name}"
        beats_ = tree.kids(w, "heartbeat")
        summaries = [b for b in beats_ if COARSENED_COUNT in b.attrs]
        assert summaries, f"{wid}: no coarsened heartbeat in {len(beats_)}"
        assert all(int(b.attrs[COARSENED_COUNT]) >= 2 for b in summaries)
        # every beat is a span of its own or counted in a summary
        assert len(beats_) - len(summaries) + sum(int(b.attrs[COARSENED_COUNT]) for b in summaries) \
            == int(w.attrs["spanbench.spans.heartbeat.count"])
        coarsened = sum(int(b.attrs[COARSENED_COUNT]) for b in summaries)
        assert coarsened == int(w.attrs["spanbench.spans.heartbeat.coarsened"])
        flushes = tree.kids(w, "results.flush")
        assert sum(int(f.attrs.get(COARSENED_COUNT, 1)) for f in flushes) \
            == int(w.attrs["spanbench.spans.results.flush.count"])
        # results.json says the same (its row was written before the last status beat)
        counted = by_worker[wid]["repeating_spans"]
        assert counted["heartbeat"]["coarsened"] == coarsened
        # query spans: a share of 3 per worker; the first queries of its 2 connections kept
        sampled = [q for q in tree.kids(w, "query") if q.attrs.get("spanbench.sample_reason") != "first"]
        assert len(tree.kids(w, "first_query")) == 1
        assert len(sampled) <= 3
        assert {q.attrs["spanbench.connection"] for q in tree.kids(w, "query") + tree.kids(w, "first_query")
                if q.attrs.get("spanbench.sample_reason") == "first"} == {0, 1}
        assert by_worker[wid]["query_spans_skipped"] == int(w.attrs["spanbench.query_spans_skipped"]) > 0


def test_a_long_wait_for_start_is_coarsened_past_the_budget(pg_dsn: str, tmp_path: Path) -> None:
    """A worker that waits for a late one polls for START again and again: past the budget its
    polls are summaries under wait_for_start, and every poll is still counted."""
    import secrets
    import subprocess
    import sys

    from support.faults import rows, wait_for

    run_id = "wfs-" + secrets.token_hex(4)
    budget = dict(SPANBENCH_REPEATING_SPAN_BUDGET="4", SPANBENCH_POLL_INTERVAL="0.01s")
    out = tmp_path / "orchestrator"
    orchestrator = subprocess.Popen(
        [sys.executable, "-m", "spanbench", "run", "--target-dsn", pg_dsn, "--workers", "2", "--connections", "2",
         "--warmup", "0.1s", "--duration", "0.3s", "--output", str(out)],
        env=spanbench_env(SPANBENCH_TRACING="1", SPANBENCH_RUN_ID=run_id, SPANBENCH_LAUNCH_WORKERS="false",
                          SPANBENCH_READY_TIMEOUT="60s", **budget),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def worker(g: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "spanbench", "worker", "--run-id", run_id, "--control-dsn", pg_dsn,
             "--group-id", str(g), "--group-count", "2"],
            env=spanbench_env(**budget), cwd=elsewhere, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    procs = [orchestrator]
    try:
        procs.append(worker(0))
        # the second worker starts only once the first is READY: the first waits for START
        # through the second's whole start-up, polling every 10 ms
        wait_for("w0 ready", lambda: rows(pg_dsn, "SELECT 1 FROM spanbench.worker_heartbeats WHERE run_id = $1"
                                                  " AND status = 'READY'", run_id), timeout=60)
        procs.append(worker(1))
        _, stderr = orchestrator.communicate(timeout=90)
        codes = [p.wait(30) for p in procs[1:]]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert orchestrator.returncode == 0, stderr
    assert codes == [0, 0]
    tree = Tree(read_spans(out / run_id) + read_spans(elsewhere / "spanbench-runs" / run_id))
    w0 = next(w for wid, w in tree.workers().items() if wid == "w0")
    [wait] = tree.kids(w0, "wait_for_start")
    polls = tree.kids(wait, "wait_for_start.poll")
    summaries = [p for p in polls if COARSENED_COUNT in p.attrs]
    assert summaries, [p.attrs for p in polls]
    total = len(polls) - len(summaries) + sum(int(p.attrs[COARSENED_COUNT]) for p in summaries)
    assert total == int(wait.attrs["wait_for_start.polls"]) == int(w0.attrs["spanbench.spans.wait_for_start.poll.count"])
    # the poll that saw the START keeps a span of its own, the last one under wait_for_start
    last = max(polls, key=lambda p: p.end)
    assert last.attrs.get("poll.outcome") == "start" and COARSENED_COUNT not in last.attrs
    # summaries stay inside their parent, so the wait is still claimed end to end
    assert all(wait.start <= p.start and p.end <= wait.end for p in polls)
