"""The control store on PostgreSQL: one asyncpg connection, and LISTEN/NOTIFY so waits end at once.

Workers still poll (each poll is a span), but a NOTIFY sent in the same statement as a
status change wakes the poll immediately instead of at the next interval.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from typing import Any

import asyncpg

from spanbench.control.clock import ClockSample, timed
from spanbench.control.postgres_schema import DDL, SCHEMA
from spanbench.control.records import (
    TERMINAL,
    ControlEvent,
    Heartbeat,
    RunStatus,
    TestResult,
)
from spanbench.settings import Settings
from spanbench.targets.pg_errors import connect_error

_RUN_COLUMNS = frozenset({
    "status", "phase", "start_time", "warmup_start", "measurement_start", "measurement_end",
    "end_time", "cancel_reason",
})
_LOCK_KEY = 0x5350414E  # "SPAN": serialises concurrent schema creation


def channel(run_id: str) -> str:
    # NOTIFY channels are identifiers (63 bytes); run ids are short and [a-z0-9-].
    return "spanbench_" + "".join(c if c.isalnum() else "_" for c in run_id)[:50]


class PostgresControlStore:
    dialect = "postgresql"
    pushes_signals = True  # LISTEN/NOTIFY: a waiting worker hears a change at once

    def __init__(self, conn: asyncpg.Connection, timeout: float, dsn: str | None = None,
                 settings: Settings | None = None) -> None:
        self._conn = conn
        self._dsn = dsn
        self._settings = settings
        self.reconnects = 0
        self._lock = asyncio.Lock()  # one connection, several tasks (heartbeats, polls, inserts)
        self._timeout = timeout
        self._signal = asyncio.Event()
        self._listening: set[str] = set()

    @classmethod
    async def open(cls, dsn: str, settings: Settings) -> "PostgresControlStore":
        try:
            conn = await asyncpg.connect(
                dsn,
                timeout=settings.connect_timeout,
                server_settings={"application_name": "spanbench:control"},
                statement_cache_size=64,
            )
        except Exception as exc:
            raise connect_error(exc, dsn, "control store", settings.connect_timeout) from None
        return cls(conn, settings.statement_timeout, dsn, settings)

    @staticmethod
    async def _connect(dsn: str, settings: Settings) -> asyncpg.Connection:
        return await asyncpg.connect(
            dsn, timeout=settings.connect_timeout, server_settings={"application_name": "spanbench:control"},
            statement_cache_size=64,
        )

    async def _ready(self) -> asyncpg.Connection:
        """The connection, re-opened first if it broke (a restart, a blip): callers hold the lock.

        A statement that failed is not retried here (an event might have been written before
        the break); the next call finds a fresh connection, and the callers' own bounds
        (orchestrator_timeout) decide how long a control store may be away.
        """
        if self._conn.is_closed() and self._dsn is not None and self._settings is not None:
            try:
                conn = await self._connect(self._dsn, self._settings)
            except Exception as exc:
                raise connect_error(exc, self._dsn, "control store", self._settings.connect_timeout) from None
            self._conn = conn
            self.reconnects += 1
            for ch in self._listening:
                await conn.add_listener(ch, self._on_notify)
        return self._conn

    async def _execute(self, sql: str, *args: Any) -> str:
        async with self._lock:
            return await (await self._ready()).execute(sql, *args, timeout=self._timeout)

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self._lock:
            return await (await self._ready()).fetch(sql, *args, timeout=self._timeout)

    async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        async with self._lock:
            return await (await self._ready()).fetchrow(sql, *args, timeout=self._timeout)

    async def ensure_schema(self) -> None:
        async with self._lock, self._conn.transaction():
            await self._conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            await self._conn.execute(DDL, timeout=self._timeout)

    async def create_run(self, run: RunStatus) -> None:
        await self._execute(
            f"INSERT INTO {SCHEMA}.run_status (run_id, status, phase, scenario, traceparent, workers_expected)"
            " VALUES ($1, $2, $3, $4::jsonb, $5, $6)",
            run.run_id, run.status, run.phase, json.dumps(run.scenario), run.traceparent, run.workers_expected,
        )

    async def fetch_run_status(self, run_id: str) -> RunStatus | None:
        row = await self._fetchrow(
            f"SELECT *, extract(epoch FROM now() - updated_at) AS beat_age FROM {SCHEMA}.run_status WHERE run_id = $1",
            run_id,
        )
        if row is None:
            return None
        status = RunStatus(
            run_id=row["run_id"], status=row["status"], phase=row["phase"], scenario=json.loads(row["scenario"]),
            traceparent=row["traceparent"], workers_expected=row["workers_expected"], start_time=row["start_time"],
            updated_at=row["updated_at"], cancel_reason=row["cancel_reason"], next_seq=row["next_seq"],
            beat_age_s=float(row["beat_age"]),
        )
        return status

    async def update_run(self, run_id: str, **fields: Any) -> None:
        unknown = set(fields) - _RUN_COLUMNS
        if unknown:
            raise ValueError(f"not RUN_STATUS columns: {sorted(unknown)}")
        names = list(fields)
        sets = ", ".join(f"{n} = ${i + 2}" for i, n in enumerate(names))
        # The NOTIFY rides in the same statement, so a waiting worker wakes as the change commits.
        await self._execute(
            f"WITH u AS (UPDATE {SCHEMA}.run_status SET {sets}, updated_at = now() WHERE run_id = $1 RETURNING 1)"
            f" SELECT pg_notify('{channel(run_id)}', 'status') FROM u",
            run_id, *[fields[n] for n in names],
        )

    async def touch_run(self, run_id: str) -> None:
        await self._execute(f"UPDATE {SCHEMA}.run_status SET updated_at = now() WHERE run_id = $1", run_id)

    async def append_event(self, run_id: str, type: str, scope: str, payload: dict[str, Any]) -> int:
        # One statement: the counter increments, the event takes its value, both or neither.
        row = await self._fetchrow(
            f"WITH s AS (UPDATE {SCHEMA}.run_status SET next_seq = next_seq + 1, updated_at = now()"
            "            WHERE run_id = $1 RETURNING next_seq),"
            f"     e AS (INSERT INTO {SCHEMA}.run_control_events (run_id, seq, type, scope, payload)"
            "            SELECT $1, s.next_seq, $2, $3, $4::jsonb FROM s RETURNING seq)"
            f" SELECT seq, pg_notify('{channel(run_id)}', 'event') FROM e",
            run_id, type, scope, json.dumps(payload),
        )
        if row is None:
            raise LookupError(f"run {run_id} has no RUN_STATUS row")
        return int(row["seq"])

    async def fetch_events(self, run_id: str, after_seq: int) -> list[ControlEvent]:
        rows = await self._fetch(
            f"SELECT * FROM {SCHEMA}.run_control_events WHERE run_id = $1 AND seq > $2 ORDER BY seq", run_id, after_seq
        )
        return [
            ControlEvent(r["run_id"], r["seq"], r["type"], r["scope"], json.loads(r["payload"]), r["created_at"])
            for r in rows
        ]

    async def heartbeat(self, hb: Heartbeat) -> None:
        await self._execute(
            f"INSERT INTO {SCHEMA}.worker_heartbeats (run_id, worker_id, group_id, status, phase, last_beat,"
            " active_connections, target_connections, queries, errors, last_error, pid, host)"
            " VALUES ($1, $2, $3, $4, $5, now(), $6, $7, $8, $9, $10, $11, $12)"
            " ON CONFLICT (run_id, worker_id) DO UPDATE SET status = EXCLUDED.status, phase = EXCLUDED.phase,"
            " last_beat = now(), active_connections = EXCLUDED.active_connections,"
            " target_connections = EXCLUDED.target_connections, queries = EXCLUDED.queries,"
            " errors = EXCLUDED.errors, last_error = EXCLUDED.last_error, pid = EXCLUDED.pid, host = EXCLUDED.host",
            hb.run_id, hb.worker_id, hb.group_id, hb.status, hb.phase, hb.active_connections,
            hb.target_connections, hb.queries, hb.errors, hb.last_error, hb.pid, hb.host,
        )

    async def mark_worker(self, run_id: str, worker_id: str, status: str, reason: str) -> None:
        """The orchestrator's word on a worker that cannot speak for itself (LOST)."""
        await self._execute(
            f"UPDATE {SCHEMA}.worker_heartbeats SET status = $3, last_error = $4 WHERE run_id = $1 AND worker_id = $2",
            run_id, worker_id, status, reason[:1000],
        )

    async def abandon_run(self, run_id: str, reason: str) -> bool:
        """ABANDONED, unless the run already has a final state: the first worker to notice wins."""
        done = await self._execute(
            f"UPDATE {SCHEMA}.run_status SET status = 'ABANDONED', cancel_reason = $2, updated_at = now()"
            f" WHERE run_id = $1 AND status NOT IN ({', '.join(repr(x) for x in sorted(TERMINAL))})",
            run_id, reason[:1000],
        )
        return done.split()[-1] == "1"

    async def fetch_heartbeats(self, run_id: str) -> list[Heartbeat]:
        rows = await self._fetch(
            f"SELECT *, extract(epoch FROM now() - last_beat)::float8 AS beat_age FROM {SCHEMA}.worker_heartbeats"
            " WHERE run_id = $1 ORDER BY worker_id", run_id,
        )
        return [
            Heartbeat(
                run_id=r["run_id"], worker_id=r["worker_id"], group_id=r["group_id"], status=r["status"],
                phase=r["phase"], active_connections=r["active_connections"],
                target_connections=r["target_connections"], queries=r["queries"], errors=r["errors"],
                last_error=r["last_error"], pid=r["pid"], host=r["host"], last_beat=r["last_beat"],
                beat_age_s=r["beat_age"],
            )
            for r in rows
        ]

    async def insert_test_result(self, row: TestResult) -> None:
        await self._execute(
            f"INSERT INTO {SCHEMA}.test_results (run_id, worker_id, scope, status, started_at, ended_at, queries,"
            " errors, qps, measurement_seconds, latency, histograms, details)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12::jsonb, $13::jsonb)"
            " ON CONFLICT (run_id, worker_id) DO UPDATE SET scope = EXCLUDED.scope, status = EXCLUDED.status,"
            " started_at = EXCLUDED.started_at, ended_at = EXCLUDED.ended_at, queries = EXCLUDED.queries,"
            " errors = EXCLUDED.errors, qps = EXCLUDED.qps, measurement_seconds = EXCLUDED.measurement_seconds,"
            " latency = EXCLUDED.latency, histograms = EXCLUDED.histograms, details = EXCLUDED.details"
            # A RUNNING row (the first insert, a flush) that lands late never replaces a final one.
            f" WHERE EXCLUDED.status <> 'RUNNING' OR {SCHEMA}.test_results.status = 'RUNNING'",
            *_result_args(row),
        )

    async def update_test_result(self, row: TestResult) -> None:
        await self.insert_test_result(row)

    async def fetch_test_results(self, run_id: str) -> list[TestResult]:
        rows = await self._fetch(f"SELECT * FROM {SCHEMA}.test_results WHERE run_id = $1 ORDER BY worker_id", run_id)
        return [
            TestResult(
                run_id=r["run_id"], worker_id=r["worker_id"], scope=r["scope"], status=r["status"],
                started_at=r["started_at"], ended_at=r["ended_at"], queries=r["queries"], errors=r["errors"],
                qps=r["qps"], measurement_seconds=r["measurement_seconds"], latency=json.loads(r["latency"]),
                histograms=json.loads(r["histograms"]), details=json.loads(r["details"]),
            )
            for r in rows
        ]

    async def fetch_value_pool(self, pool_name: str) -> list[Any]:
        rows = await self._fetch(
            f"SELECT value FROM {SCHEMA}.template_value_pools WHERE pool_name = $1 ORDER BY ordinal", pool_name
        )
        return [json.loads(r["value"]) for r in rows]

    async def store_value_pool(self, pool_name: str, values: list[Any]) -> None:
        """Replace a value pool: one DELETE and one array-bound INSERT, in one transaction."""
        async with self._lock:
            async with self._conn.transaction():
                await self._conn.execute(
                    f"DELETE FROM {SCHEMA}.template_value_pools WHERE pool_name = $1", pool_name, timeout=self._timeout)
                await self._conn.execute(
                    f"INSERT INTO {SCHEMA}.template_value_pools (pool_name, ordinal, value)"
                    " SELECT $1, o::integer - 1, v::jsonb FROM unnest($2::text[]) WITH ORDINALITY AS t(v, o)",
                    pool_name, [json.dumps(v, default=str) for v in values], timeout=self._timeout)

    async def wait_for_signal(self, run_id: str, timeout: float) -> bool:
        ch = channel(run_id)
        if ch not in self._listening:
            async with self._lock:
                await (await self._ready()).add_listener(ch, self._on_notify)
            self._listening.add(ch)
        elif self._conn.is_closed():
            async with self._lock:
                await self._ready()  # re-LISTENs on the new connection
        try:
            await asyncio.wait_for(self._signal.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            self._signal.clear()

    async def clock_sample(self) -> ClockSample:
        # clock_timestamp(), never now(): now() is the transaction's start, not the clock's.
        # Timed inside the lock, so a heartbeat queued ahead of it is not in the round trip.
        async with self._lock:
            conn = await self._ready()
            return await timed(lambda: conn.fetchval(
                "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::int8 * 1000", timeout=self._timeout))

    def _on_notify(self, *_: Any) -> None:
        self._signal.set()

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self._conn.close(), timeout=2.0)
        except (Exception, asyncio.TimeoutError):
            self._conn.terminate()


def _result_args(row: TestResult) -> tuple[Any, ...]:
    return (
        row.run_id, row.worker_id, row.scope, row.status, row.started_at, row.ended_at, row.queries, row.errors,
        row.qps, row.measurement_seconds, json.dumps(row.latency), json.dumps(row.histograms), json.dumps(row.details),
    )


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
