"""The Snowflake control store against a real fakesnow server, through the real connector."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest
from support.fakesnow_server import FakesnowServer

from spanbench.control import records as rec
from spanbench.control.records import Heartbeat, RunStatus
from spanbench.control.records import TestResult as ResultRow
from spanbench.control.snowflake import TABLES, SnowflakeControlStore, create_table_sql
from spanbench.errors import TargetError
from spanbench.settings import Settings

SETTINGS = Settings(statement_timeout=30, connect_timeout=10)


async def _store(fakesnow: FakesnowServer, db: str | None = None) -> SnowflakeControlStore:
    store = await SnowflakeControlStore.open(fakesnow.dsn(db), SETTINGS)
    await store.ensure_schema()
    return store


def _run(run_id: str) -> RunStatus:
    return RunStatus(run_id=run_id, status=rec.PREPARING, phase=None, scenario={"workers": 2, "dsn": "snowflake://u@a/DB"},
                     traceparent="00-" + "ab" * 16 + "-" + "cd" * 8 + "-01", workers_expected=2)


def test_schema_falls_back_to_plain_tables_and_is_idempotent(fakesnow: FakesnowServer) -> None:
    async def main() -> None:
        db = "SCHEMA_TEST"
        store = await _store(fakesnow, db)
        assert store.emulator is True
        assert store.hybrid is False  # fakesnow cannot parse CREATE HYBRID TABLE
        await store.ensure_schema()  # again: one look-up, nothing created
        second = await _store(fakesnow, db)  # another process, same schema
        assert second.hybrid is False
        await asyncio.gather(store.close(), second.close())

    asyncio.run(main())
    log = fakesnow.log_text()
    assert "CREATE HYBRID TABLE IF NOT EXISTS RUN_STATUS" in log  # it was tried first
    assert create_table_sql("RUN_STATUS", hybrid=True).startswith("CREATE HYBRID TABLE IF NOT EXISTS RUN_STATUS (")
    for table in TABLES:
        assert "PRIMARY KEY" in create_table_sql(table, hybrid=True)


def test_run_status_round_trip(fakesnow: FakesnowServer) -> None:
    async def main() -> None:
        store = await _store(fakesnow)
        assert await store.fetch_run_status("nope") is None
        await store.create_run(_run("r1"))
        got = await store.fetch_run_status("r1")
        assert got is not None
        assert (got.status, got.phase, got.workers_expected, got.next_seq) == (rec.PREPARING, None, 2, 0)
        assert got.scenario == {"workers": 2, "dsn": "snowflake://u@a/DB"}
        assert got.traceparent and got.traceparent.startswith("00-abab")
        assert got.updated_at is not None and got.updated_at.tzinfo is not None
        start = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
        await store.update_run("r1", status=rec.RUNNING, phase="WARMUP", start_time=start, warmup_start=start)
        await store.update_run("r1", phase="MEASUREMENT", measurement_start=datetime.now(timezone.utc))
        got = await store.fetch_run_status("r1")
        assert (got.status, got.phase, got.start_time) == (rec.RUNNING, "MEASUREMENT", start)
        assert got.beat_age_s is not None and 0 <= got.beat_age_s < 30
        await store.touch_run("r1")
        with pytest.raises(ValueError):
            await store.update_run("r1", next_seq=99)
        await store.update_run("r1", status=rec.CANCELLED, cancel_reason="it's a 'quoted' reason")
        assert (await store.fetch_run_status("r1")).cancel_reason == "it's a 'quoted' reason"
        await store.close()

    asyncio.run(main())


def test_event_sequence_is_atomic_under_concurrency(fakesnow: FakesnowServer) -> None:
    """Three stores (three processes' worth of sessions) append at once: ids are 1..N, no gaps, no twins."""

    async def main() -> None:
        db = "SEQ_TEST"
        stores = [await _store(fakesnow, db) for _ in range(3)]
        await stores[0].create_run(_run("race"))
        await stores[0].create_run(_run("other"))
        per_store = 6

        async def append(store: SnowflakeControlStore, i: int) -> int:
            return await store.append_event("race", rec.SET_PHASE, "RUN", {"i": i})

        seqs = await asyncio.gather(*(append(s, i) for s in stores for i in range(per_store)))
        n = len(stores) * per_store
        assert sorted(seqs) == list(range(1, n + 1))
        assert stores[0].seq_strategy == "statement"  # primary key enforced: one INSERT assigns the id
        events = await stores[1].fetch_events("race", 0)
        assert [e.seq for e in events] == list(range(1, n + 1))
        assert all(e.type == rec.SET_PHASE and e.scope == "RUN" and "i" in e.payload for e in events)
        assert [e.seq for e in await stores[2].fetch_events("race", n - 2)] == [n - 1, n]
        # another run has its own sequence
        assert await stores[0].append_event("other", rec.START, "RUN", {}) == 1
        assert (await stores[0].fetch_run_status("race")).next_seq == n
        with pytest.raises(TargetError):
            await stores[0].append_event("no-such-run", rec.START, "RUN", {})
        await asyncio.gather(*(s.close() for s in stores))

    asyncio.run(main())


def test_transaction_strategy_sequence(fakesnow: FakesnowServer) -> None:
    """The plain-table path for real Snowflake (BEGIN, UPDATE … next_seq, INSERT … SELECT, COMMIT).

    fakesnow aborts conflicting DuckDB transactions with an HTTP 500 that the connector retries
    inside the aborted transaction, so this path is exercised here one append at a time; on
    Snowflake the UPDATE's lock serialises concurrent appenders.
    """

    async def main() -> None:
        store = await _store(fakesnow)
        store.seq_strategy = "transaction"
        await store.create_run(_run("tx"))
        assert [await store.append_event("tx", rec.START, "RUN", {"k": k}) for k in range(3)] == [1, 2, 3]
        assert (await store.fetch_run_status("tx")).next_seq == 3
        with pytest.raises(TargetError):
            await store.append_event("missing", rec.START, "RUN", {})
        store.seq_strategy = "statement"  # both strategies agree on the next id
        assert await store.append_event("tx", rec.STOP, "RUN", {}) == 4
        await store.close()

    asyncio.run(main())


def test_heartbeats_upsert(fakesnow: FakesnowServer) -> None:
    async def main() -> None:
        store = await _store(fakesnow)
        await store.create_run(_run("hb"))
        beats = [Heartbeat(run_id="hb", worker_id=f"w{i}", group_id=i, status="INITIALIZING", pid=100 + i, host="h")
                 for i in range(3)]
        await asyncio.gather(*(store.heartbeat(b) for b in beats))
        beats[1].status, beats[1].phase, beats[1].queries, beats[1].last_error = "RUNNING", "WARMUP", 42, "boom 'x'"
        await store.heartbeat(beats[1])
        got = await store.fetch_heartbeats("hb")
        assert [h.worker_id for h in got] == ["w0", "w1", "w2"]
        assert (got[1].status, got[1].phase, got[1].queries, got[1].last_error) == ("RUNNING", "WARMUP", 42, "boom 'x'")
        assert got[0].status == "INITIALIZING" and got[0].last_beat is not None and got[0].pid == 100
        assert await store.fetch_heartbeats("other") == []
        await store.close()

    asyncio.run(main())


def test_test_results_and_value_pools(fakesnow: FakesnowServer) -> None:
    async def main() -> None:
        store = await _store(fakesnow)
        row = ResultRow(run_id="tr", worker_id="w0", scope="WORKER", status="RUNNING",
                         started_at=datetime(2030, 1, 1, tzinfo=timezone.utc))
        await store.insert_test_result(row)
        row.status, row.queries, row.qps = "COMPLETED", 1234, 617.5
        row.latency = {"point_select": {"p50": 1.5, "p99": 9.25}}
        row.histograms = {"MEASUREMENT": {"point_select": "HISTFAAAA" * 50}}
        row.details = {"first_query_ms": 12.5}
        await store.update_test_result(row)
        await store.update_test_result(ResultRow(run_id="tr", worker_id="run", scope="RUN", status="COMPLETED"))
        got = {r.worker_id: r for r in await store.fetch_test_results("tr")}
        assert set(got) == {"w0", "run"}
        w0 = got["w0"]
        assert (w0.status, w0.queries, w0.qps, w0.latency, w0.details) == (
            "COMPLETED", 1234, 617.5, row.latency, row.details)
        assert w0.histograms == row.histograms and w0.started_at == row.started_at
        assert await store.fetch_value_pool("keys") == []
        await store.store_value_pool("keys", [5, 1, 99, "x"])
        assert await store.fetch_value_pool("keys") == [5, 1, 99, "x"]
        assert await store.wait_for_signal("tr", 0.05) is False
        await store.close()

    asyncio.run(main())


def test_calls_never_block_the_event_loop(fakesnow: FakesnowServer) -> None:
    """A ticker keeps ticking while control calls are in flight (they run on their sessions' threads)."""

    async def main() -> None:
        store = await _store(fakesnow)
        await store.create_run(_run("loop"))
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.005)

        t = asyncio.create_task(ticker())
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(10):
            await store.fetch_run_status("loop")
        elapsed = loop.time() - started
        stop.set()
        await t
        assert ticks >= 0.5 * elapsed / 0.005, (ticks, elapsed)
        await store.close()

    asyncio.run(main())
