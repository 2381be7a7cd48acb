"""A full run on real PostgreSQL, checked through its trace: the span tree is the contract."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import run_cli, spanbench_env
from support.traces import Tree, read_spans

WORKER_PHASES = [
    "worker.startup", "worker.await_handoff", "control.fetch_run_status", "heartbeat", "pool.init", "executor.setup",
    "wait_for_start", "test_results.insert", "scale_to", "first_query", "worker.load", "worker.drain",
    "results.persist",
]
ORCHESTRATOR_PHASES = [
    "orchestrator.prepare", "orchestrator.launch_workers", "orchestrator.await_ready", "orchestrator.start",
    "phase.warmup", "phase.measurement", "phase.cooldown", "orchestrator.stop", "orchestrator.collect_results",
]


def run_and_read(tmp: Path, dsn: str, *, workers: int, connections: int, batch: int) -> tuple[Tree, dict, Path]:
    res = run_cli(
        ["run", "--target-dsn", dsn, "--workers", str(workers), "--connections", str(connections),
         "--pool-batch-size", str(batch), "--warmup", "0.3s", "--duration", "1s"],
        output=tmp, env=spanbench_env(SPANBENCH_TRACING="1"),
    )
    assert res.returncode == 0, res.stderr + res.stdout
    run_dir = res.run_dir()
    return Tree(read_spans(run_dir)), json.loads((run_dir / "results.json").read_text()), run_dir


@pytest.fixture(scope="module")
def default_run(pg_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Tree, dict, Path]:
    return run_and_read(tmp_path_factory.mktemp("runs"), pg_dsn, workers=2, connections=6, batch=2)


def test_one_trace_one_root(default_run) -> None:
    tree, _, _ = default_run
    assert len({s.trace_id for s in tree.spans}) == 1
    roots = tree.roots()
    assert [r.name for r in roots] == ["run"]
    assert roots[0].service == "spanbench-orchestrator"


def test_every_phase_span_with_parentage(default_run) -> None:
    tree, _, _ = default_run
    run = tree.roots()[0]
    for name in ORCHESTRATOR_PHASES:
        assert len(tree.kids(run, name)) == 1, name
    workers = tree.workers()
    assert sorted(workers) == ["w0", "w1"]
    for wid, w in workers.items():
        assert w.parent_id == run.span_id
        assert w.service == "spanbench-worker"
        for name in WORKER_PHASES:
            assert tree.kids(w, name), f"{wid} lacks {name}"
        statuses = [h.attrs["worker.status"] for h in tree.kids(w, "heartbeat")]
        assert statuses[:2] == ["INITIALIZING", "READY"] and "RUNNING" in statuses
        pool = tree.one(w, "pool.init")
        for batch in tree.kids(pool, "pool.batch"):
            assert tree.kids(batch, "pool.connect")
        setup = tree.one(w, "executor.setup")
        assert tree.kids(setup, "setup.profile_table") and tree.kids(setup, "setup.load_value_pools")
        wait = tree.one(w, "wait_for_start")
        assert tree.kids(wait, "wait_for_start.poll")
        assert len(tree.kids(w, "first_query")) == 1


def test_worker_span_starts_at_process_start(default_run) -> None:
    tree, _, _ = default_run
    run = tree.roots()[0]
    launch = tree.one(run, "orchestrator.launch_workers")
    for w in tree.workers().values():
        startup = tree.one(w, "worker.startup")
        assert startup.start == w.start
        # The process was forked while launch_workers ran, and no earlier: a span never
        # starts before the span that caused it.
        assert launch.start <= w.start <= launch.end
        assert startup.end >= startup.start


def test_ordering(default_run) -> None:
    tree, _, _ = default_run
    run = tree.roots()[0]
    start = tree.one(run, "orchestrator.start")
    for wid, w in tree.workers().items():
        pool = tree.one(w, "pool.init")
        ready = [h for h in tree.kids(w, "heartbeat") if h.attrs["worker.status"] == "READY"][0]
        first = tree.one(w, "first_query")
        assert pool.end <= ready.start, wid
        assert first.start >= start.start, wid
        wait = tree.one(w, "wait_for_start")
        assert wait.end <= first.start
        scale = tree.one(w, "scale_to")
        assert scale.end <= first.start


def test_pool_attributes_and_batches(default_run) -> None:
    tree, _, _ = default_run
    sizes = {}
    for wid, w in tree.workers().items():
        pool = tree.one(w, "pool.init")
        sizes[wid] = pool.attrs["pool.size"]
        assert pool.attrs["pool.batch_size"] == 2
        batches = tree.kids(pool, "pool.batch")
        assert len(batches) == math.ceil(pool.attrs["pool.size"] / 2)
        assert [b.attrs["batch.index"] for b in batches] == list(range(len(batches)))
        # batches one after another, the connects of one batch concurrently inside it
        for a, b in zip(batches, batches[1:]):
            assert a.end <= b.start
        for b in batches:
            connects = tree.kids(b, "pool.connect")
            assert len(connects) == b.attrs["batch.size"]
            assert max(c.start for c in connects) < min(c.end for c in connects)
    assert sizes == {"w0": 3, "w1": 3}


@pytest.mark.parametrize(("workers", "connections", "batch"), [(1, 5, 2), (2, 9, 4)])
def test_pool_batch_counts(pg_dsn: str, tmp_path: Path, workers: int, connections: int, batch: int) -> None:
    tree, _, _ = run_and_read(tmp_path, pg_dsn, workers=workers, connections=connections, batch=batch)
    total = 0
    for w in tree.workers().values():
        pool = tree.one(w, "pool.init")
        size = pool.attrs["pool.size"]
        total += size
        assert len(tree.kids(pool, "pool.batch")) == math.ceil(size / batch)
        assert sum(len(tree.kids(b, "pool.connect")) for b in tree.kids(pool, "pool.batch")) == size
    assert total == connections


def test_query_spans_are_sampled_not_one_per_query(default_run) -> None:
    tree, results, _ = default_run
    queries = sum(w["queries"] for w in results["workers"])
    query_spans = tree.named("query")
    assert queries > 100
    assert len(query_spans) < queries / 10
    for s in query_spans + tree.named("first_query"):
        assert s.attrs["db.system.name"] == "postgresql"
        assert "$1" in s.attrs["db.query.text"]  # parameterised, never a literal value
        assert s.attrs["spanbench.sample_reason"] in {"first", "slow", "sample", "error"}
    # every connection's first query is traced
    assert sum(1 for s in query_spans if s.attrs["spanbench.sample_reason"] == "first") + 2 == 6


def test_span_counts_reported(default_run) -> None:
    tree, results, _ = default_run
    spans = results["spans"]
    assert spans["ended"] == len(tree.spans)
    assert spans["exporters"]["file"]["exported"] == len(tree.spans)
    assert spans["exporters"]["file"]["lost"] == 0


def test_run_percentiles_are_an_exact_merge(default_run, pg_dsn: str) -> None:
    import asyncio

    import asyncpg

    from spanbench.stats import decode, merge, summarize

    _, results, run_dir = default_run

    async def rows() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(pg_dsn)
        try:
            return await conn.fetch("SELECT worker_id, scope, status, queries, histograms, latency FROM spanbench.test_results"
                                    " WHERE run_id = $1", run_dir.name)
        finally:
            await conn.close()

    got = asyncio.run(rows())
    workers = [r for r in got if r["scope"] == "WORKER"]
    run_row = [r for r in got if r["scope"] == "RUN"]
    assert len(workers) == 2 and len(run_row) == 1
    assert {r["status"] for r in got} == {"COMPLETED"}
    per_worker = [decode(json.loads(r["histograms"])["MEASUREMENT"]["point_select"]) for r in workers]
    merged = merge(per_worker)
    reported = results["measurement"]["latency"]["point_select"]
    assert merged.get_total_count() == sum(h.get_total_count() for h in per_worker) == reported["count"]
    assert reported["p99_ms"] == summarize(merged).p99_ms
    assert reported["p50_ms"] == summarize(merged).p50_ms
    # the run row in TEST_RESULTS carries the same merged histogram
    run_hist = decode(json.loads(run_row[0]["histograms"])["MEASUREMENT"]["point_select"])
    assert run_hist.get_total_count() == merged.get_total_count()
    assert results["measurement"]["queries"] == sum(r["queries"] for r in workers) == run_row[0]["queries"]
