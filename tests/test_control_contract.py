"""One contract, both control stores: the same calls give the same answers on PostgreSQL
(embedded) and on Snowflake (the real connector against fakesnow on loopback)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

import pytest

from spanbench.control import records as rec
from spanbench.control.protocol import RUN_FINAL, RunState, WorkerState, run_may_become, worker_may_become
from spanbench.control.records import Heartbeat, RunStatus
from spanbench.control.records import TestResult as ResultRow
from spanbench.settings import Settings

SETTINGS = Settings(statement_timeout=30, connect_timeout=10)


@pytest.fixture(params=["postgresql", "snowflake"])
def open_store(request: pytest.FixtureRequest) -> Callable[[], Awaitable[Any]]:
    if request.param == "postgresql":
        dsn = request.getfixturevalue("pg_dsn")

        async def pg() -> Any:
            from spanbench.control.postgres import PostgresControlStore

            store = await PostgresControlStore.open(dsn, SETTINGS)
            await store.ensure_schema()
            return store

        return pg
    fakesnow = request.getfixturevalue("fakesnow")

    async def sf() -> Any:
        from spanbench.control.snowflake import SnowflakeControlStore

        store = await SnowflakeControlStore.open(fakesnow.dsn(), SETTINGS)
        await store.ensure_schema()
        return store

    return sf


def _run(run_id: str) -> RunStatus:
    return RunStatus(run_id=run_id, status=rec.PREPARING, phase=None, scenario={"workers": 2},
                     traceparent=None, workers_expected=2)


def _row(run_id: str, status: str, queries: int) -> ResultRow:
    return ResultRow(run_id=run_id, worker_id="w0", scope="WORKER", status=status, queries=queries,
                     started_at=datetime.now(timezone.utc), details={"partial": status == "RUNNING"})


def test_a_late_running_row_never_replaces_a_final_one(open_store) -> None:
    async def main() -> list[ResultRow]:
        store = await open_store()
        run_id = "c-" + secrets.token_hex(4)
        try:
            await store.update_test_result(_row(run_id, "RUNNING", 10))   # the first insert
            await store.update_test_result(_row(run_id, "RUNNING", 500))  # a flush
            await store.update_test_result(_row(run_id, "COMPLETED", 900))  # the final row
            await store.update_test_result(_row(run_id, "RUNNING", 20))   # a late insert or flush
            return await store.fetch_test_results(run_id)
        finally:
            await store.close()

    rows = asyncio.run(main())
    assert len(rows) == 1  # never duplicated
    assert (rows[0].status, rows[0].queries) == ("COMPLETED", 900)


def test_abandon_is_won_once_and_never_over_a_final_state(open_store) -> None:
    async def main() -> tuple[bool, bool, str, bool, str]:
        store = await open_store()
        a, b = "c-" + secrets.token_hex(4), "c-" + secrets.token_hex(4)
        try:
            await store.create_run(_run(a))
            await store.update_run(a, status=rec.RUNNING)
            first = await store.abandon_run(a, "w0: lost orchestrator")
            second = await store.abandon_run(a, "w1: lost orchestrator")
            got = await store.fetch_run_status(a)
            await store.create_run(_run(b))
            await store.update_run(b, status=rec.COMPLETED)
            over_final = await store.abandon_run(b, "w0: late")
            done = await store.fetch_run_status(b)
            assert got is not None and done is not None
            return first, second, f"{got.status}|{got.cancel_reason}", over_final, done.status
        finally:
            await store.close()

    first, second, status, over_final, done = asyncio.run(main())
    assert (first, second) == (True, False)
    assert status == "ABANDONED|w0: lost orchestrator"
    assert over_final is False and done == "COMPLETED"


def test_mark_worker_and_beat_age(open_store) -> None:
    async def main() -> list[Heartbeat]:
        store = await open_store()
        run_id = "c-" + secrets.token_hex(4)
        try:
            await store.heartbeat(Heartbeat(run_id=run_id, worker_id="w1", group_id=1, status="RUNNING", queries=5))
            await store.mark_worker(run_id, "w1", rec.LOST, "no heartbeat for 3.1s")
            return await store.fetch_heartbeats(run_id)
        finally:
            await store.close()

    [beat] = asyncio.run(main())
    assert (beat.status, beat.last_error, beat.queries) == ("LOST", "no heartbeat for 3.1s", 5)
    assert beat.last_beat is not None


def test_event_sequence_ids_are_dense_and_ordered(open_store) -> None:
    async def main() -> list[tuple[int, str]]:
        store = await open_store()
        run_id = "c-" + secrets.token_hex(4)
        try:
            await store.create_run(_run(run_id))
            for t in (rec.START, rec.SET_PHASE, rec.STOP):
                await store.append_event(run_id, t, "RUN", {"t": t})
            return [(e.seq, e.type) for e in await store.fetch_events(run_id, 0)]
        finally:
            await store.close()

    assert asyncio.run(main()) == [(1, "START"), (2, "SET_PHASE"), (3, "STOP")]


def test_the_written_down_transitions() -> None:
    assert run_may_become("PREPARING", "READY") and run_may_become("STOPPING", "COMPLETED_WITH_ERRORS")
    assert not run_may_become("COMPLETED", "RUNNING")  # a final state is final
    assert not run_may_become("READY", "COMPLETED")  # no finishing without running
    assert all(run_may_become(s, "ABANDONED") for s in ("PREPARING", "READY", "RUNNING", "STOPPING"))
    assert RUN_FINAL == {RunState.COMPLETED, RunState.COMPLETED_WITH_ERRORS, RunState.FAILED, RunState.CANCELLED,
                         RunState.ABANDONED}
    assert set(RUN_FINAL) == set(rec.TERMINAL)
    assert worker_may_become("RUNNING", "LOST") and not worker_may_become("LOST", "RUNNING")
    assert {s.value for s in WorkerState if not worker_may_become(s, "RUNNING") and s != "INITIALIZING"} >= {
        "COMPLETED", "FAILED", "ABANDONED", "LOST"}


def test_both_dialects_are_rendered_from_one_schema(pg_dsn: str) -> None:
    """The PostgreSQL tables the DDL made, and Snowflake's column lists, are the logical schema's."""
    from support.faults import rows

    from spanbench.control import snowflake as sf
    from spanbench.control.schema import TABLES

    for table in TABLES:
        got = rows(pg_dsn, "SELECT column_name, is_nullable FROM information_schema.columns"
                           " WHERE table_schema = 'spanbench' AND table_name = $1 ORDER BY ordinal_position",
                   table.name.lower())
        want = table.for_dialect("postgresql")
        assert [r["column_name"] for r in got] == [c.name for c in want], table.name
        assert [r["is_nullable"] == "NO" for r in got] == [c.not_null or c.name in table.key for c in want]
        cols, key = sf._SCHEMA[table.name]
        assert [c[0] for c in cols] == [c.name for c in table.for_dialect("snowflake")] and key == table.key
        assert [c[2] for c in cols] == [c.type == "json" for c in table.for_dialect("snowflake")]
    assert "event_id" in [c[0] for c in sf._SCHEMA["RUN_CONTROL_EVENTS"][0]]  # Snowflake's own column


def test_the_two_sides_of_the_protocol(open_store) -> None:
    """Each process's half: a worker joins (bounded), beats and polls; the orchestrator creates
    (a duplicate refused untouched), announces and sets; a write through a blip is bounded."""
    from spanbench.control.sides import OrchestratorSide, WorkerSide
    from spanbench.errors import DuplicateRun, RunFailed

    async def main() -> None:
        store = await open_store()
        run_id = "s-" + secrets.token_hex(4)
        try:
            worker = WorkerSide(store, run_id, "w0")
            with pytest.raises(RunFailed, match=f"run {run_id} not found in the control store within 0.3s"):
                await worker.join(0.3, every_s=0.1)
            side = OrchestratorSide(store, run_id, blip_s=0.5, where="here")
            await side.create(_run(run_id))
            with pytest.raises(DuplicateRun):
                await side.create(_run(run_id))
            status, attempts = await worker.join(1.0)
            assert status.run_id == run_id and attempts == 1
            await worker.beat(Heartbeat(run_id=run_id, worker_id="w0", group_id=0, status="READY"))
            assert [b.status for b in await side.look()] == ["READY"]
            await side.announce(rec.START, {"start_unix_ns": 1})
            await side.set(status=rec.RUNNING)
            got, events = await worker.poll(0)
            assert got is not None and got.status == "RUNNING"
            assert [(e.seq, e.type, e.payload) for e in events] == [(1, "START", {"start_unix_ns": 1})]

            calls = 0

            async def refused() -> None:
                nonlocal calls
                calls += 1
                raise ConnectionError("the store is away")

            with pytest.raises(RunFailed, match="control store here did not take STOP within 0.5s"):
                await side.write("STOP", refused)
            assert calls >= 2  # retried, with backoff, then gave up within the bound
            assert await worker.abandon("lost orchestrator") is True
        finally:
            await store.close()

    asyncio.run(main())


def test_the_store_clock_on_loopback_and_through_the_sides(open_store) -> None:
    """The store's own clock, read in a few round trips: on loopback (one host, one clock) the
    offset is ~0 within its uncertainty. Instants cross the store on its clock: announced as
    ours + our offset, read as the store's − the reader's offset."""
    from spanbench.control.clock import ClockOffset
    from spanbench.control.sides import OrchestratorSide, WorkerSide

    async def main() -> tuple[Any, ClockOffset, ClockOffset, list[dict[str, Any]]]:
        store = await open_store()
        run_id = "k-" + secrets.token_hex(4)
        try:
            sample = await store.clock_sample()
            worker = WorkerSide(store, run_id, "w0")
            side = OrchestratorSide(store, run_id, blip_s=0.5, where="here")
            measured = await worker.measure_clock()
            await side.measure_clock(rounds=2)
            orchestrator = side.clock
            # Fake both clocks: the orchestrator's 1 s behind the store's, the worker's 2 s ahead.
            side.clock, worker.clock = ClockOffset(offset_ns=1_000_000_000), ClockOffset(offset_ns=-2_000_000_000)
            await side.create(_run(run_id))
            await side.announce(rec.START, {"start_unix_ns": 10_000_000_000, "warmup_s": 1.0})
            await side.announce(rec.SET_TARGET, {"step": 2, "connections": 8, "at_unix_ns": 20_000_000_000})
            _, events = await worker.poll(0)
            return sample, measured, orchestrator, [e.payload for e in events]
        finally:
            await store.close()

    sample, measured, orchestrator, payloads = asyncio.run(main())
    assert 0 < sample.rtt_ns < 5_000_000_000
    margin_ns = 5_000_000  # the stores' timestamps are whole microseconds; a scheduler tick
    for got in (measured, orchestrator):
        assert got.samples >= 2 and got.uncertainty_ns == got.rtt_ns // 2
        assert abs(got.offset_ns) <= got.uncertainty_ns + margin_ns, got
    # the orchestrator's 10 s is the store's 11 s, which is the worker's 13 s; durations untouched
    assert payloads == [{"start_unix_ns": 13_000_000_000, "warmup_s": 1.0},
                        {"step": 2, "connections": 8, "at_unix_ns": 23_000_000_000}]
