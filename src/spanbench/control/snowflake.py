"""The control tables in the Snowflake dialect.

* Hybrid tables where the account has them: row locks and enforced primary keys, so a
  hundred workers beating at once do not queue on a table lock. ``CREATE HYBRID TABLE``
  failing (fakesnow cannot parse it; accounts without hybrid tables refuse it) switches to
  plain tables.
* Control-event sequence ids are assigned atomically, never by read, increment and insert
  as three statements (the seed's race):
    - where the primary key is enforced (hybrid tables, fakesnow), by one statement:
      ``INSERT … SELECT MAX(seq) + 1``; two racing inserts cannot both commit the same
      (run_id, seq), and the loser retries;
    - on plain Snowflake tables (no enforced keys), by one transaction that first locks the
      run's RUN_STATUS row (``UPDATE … SET next_seq = next_seq + 1``), inserts the event
      from it and commits.
* Every call runs on a connection's own thread, never on the event loop. A small pool of
  sessions (opened on demand, at most ``POOL_MAX``) lets a heartbeat and a poll run at once.
* Stores without push simply sleep in ``wait_for_signal``.

Column names are the record dataclasses' field names, so a row and a record are the same
thing in both directions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import random
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, TypeVar

from spanbench.control.clock import ClockSample, timed_blocking
from spanbench.control.records import (
    TERMINAL,
    ControlEvent,
    Heartbeat,
    RunStatus,
    TestResult,
)
from spanbench.control.schema import TABLES as LOGICAL_TABLES
from spanbench.control.schema import snowflake_columns
from spanbench.errors import TargetError
from spanbench.settings import Settings
from spanbench.targets.snowflake import (
    connect_raw,
    describe_error,
    ensure_emulator_schema,
    is_emulator,
)
from spanbench.targets.snowflake_dsn import SnowflakeDsn, parse_snowflake_dsn

T = TypeVar("T")

POOL_MAX = 3
QUERY_TAG = "spanbench:control"
RUN_STATUS = "RUN_STATUS"
EVENTS = "RUN_CONTROL_EVENTS"
HEARTBEATS = "WORKER_HEARTBEATS"
RESULTS = "TEST_RESULTS"
VALUE_POOLS = "TEMPLATE_VALUE_POOLS"
TABLES = (RUN_STATUS, EVENTS, HEARTBEATS, RESULTS, VALUE_POOLS)
_KEY_SIZE = "VARCHAR(256)"  # hybrid-table index keys are size-limited


# table -> (columns: (name, SQL type, is JSON), primary key), rendered from the one logical
# schema both dialects share (control/schema.py); JSON is kept as text.
_SCHEMA: dict[str, tuple[list[tuple[str, str, bool]], tuple[str, ...]]] = {
    t.name: (snowflake_columns(t), t.key) for t in LOGICAL_TABLES
}
TEXT = "VARCHAR"
_RUN_SETTABLE = frozenset({
    "status", "phase", "start_time", "warmup_start", "measurement_start", "measurement_end",
    "end_time", "cancel_reason", "traceparent", "workers_expected",
})


def _columns(table: str) -> list[tuple[str, str, bool]]:
    return _SCHEMA[table][0]


def create_table_sql(table: str, *, hybrid: bool) -> str:
    columns, pk = _SCHEMA[table]
    cols = []
    for name, sql, _ in columns:
        if name in pk:
            cols.append(f"{name} {_KEY_SIZE if sql == TEXT else sql} NOT NULL")
        else:
            cols.append(f"{name} {sql}")
    cols.append(f"PRIMARY KEY ({', '.join(pk)})")
    kind = "HYBRID TABLE" if hybrid else "TABLE"
    return f"CREATE {kind} IF NOT EXISTS {table} ({', '.join(cols)})"


def _to_db(value: Any, is_json: bool) -> Any:
    if is_json:
        return None if value is None else json.dumps(value, separators=(",", ":"), default=str)
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def _from_db(value: Any, is_json: bool) -> Any:
    if is_json:
        return json.loads(value) if isinstance(value, str) and value else ({} if value is None else value)
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def _record(record: type[T], table: str, row: tuple[Any, ...], **extra: Any) -> T:
    """A record from a row selected with ``_select_list(table)``; columns it lacks are dropped."""
    fields = {f.name for f in dataclasses.fields(record)}
    values = {name: _from_db(v, js) for (name, _, js), v in zip(_columns(table), row, strict=False) if name in fields}
    values.update(extra)
    return record(**values)


def _select_list(table: str, alias: str = "") -> str:
    return ", ".join(f"{alias}{name}" for name, _, _ in _columns(table))


def _cast(table: str, name: str) -> str:
    """The SQL type of a column, for typing the binds of a MERGE source row."""
    for n, sql, _ in _columns(table):
        if n == name:
            return "VARCHAR" if sql.startswith("VARCHAR") else sql
    raise KeyError(name)


def _is_duplicate(exc: BaseException) -> bool:
    text = str(exc).lower()
    state = str(getattr(exc, "sqlstate", "") or "")
    return state.startswith("23") or "duplicate" in text or "unique" in text or "conflict" in text


def _is_lock_wait(exc: BaseException) -> bool:
    # 000625: too many statements waiting on a lock; 000060/000604: deadlock / lock timeout
    return getattr(exc, "errno", None) in (625, 60, 604) or "lock" in str(exc).lower()


class _Session:
    """One control-store session and the thread it lives on."""

    def __init__(self, raw: Any, executor: ThreadPoolExecutor) -> None:
        self.raw = raw
        self.executor = executor
        self.cursor = raw.cursor()

    def __repr__(self) -> str:
        return f"<control session {getattr(self.raw, 'session_id', None)}>"


class SnowflakeControlStore:
    dialect = "snowflake"
    pushes_signals = False  # workers find changes by polling RUN_STATUS
    clock_rounds = 3  # each round trip is tens of ms to a real account: three, not five, before READY

    def __init__(self, dsn: SnowflakeDsn, settings: Settings) -> None:
        self.dsn = dsn
        self.settings = settings
        self.emulator: bool | None = None
        self.hybrid: bool | None = None  # None: not known yet in this process
        self.seq_strategy: str | None = None  # "statement" | "transaction"; None: decided on first use
        self._idle: list[_Session] = []
        self._all: list[_Session] = []
        self._opening = 0
        self._available = asyncio.Condition()
        self._sessions_opened = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"<SnowflakeControlStore {self.dsn}>"

    @classmethod
    async def open(cls, dsn: str, settings: Settings) -> SnowflakeControlStore:
        """Parse the DSN and log in once, so a wrong password fails here, in one line."""
        store = cls(parse_snowflake_dsn(dsn), settings)
        session = await store._open_session()
        store._all.append(session)
        store._idle.append(session)
        return store

    # -- sessions -----------------------------------------------------------------------

    async def _open_session(self) -> _Session:
        self._sessions_opened += 1
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"snowflake-control-{self._sessions_opened}")
        params = {
            "QUERY_TAG": QUERY_TAG,
            "STATEMENT_TIMEOUT_IN_SECONDS": max(1, math.ceil(self.settings.statement_timeout)),
            "LOCK_TIMEOUT": max(1, math.ceil(self.settings.statement_timeout)),
        }
        loop = asyncio.get_running_loop()

        def login() -> Any:
            raw = connect_raw(self.dsn, self.settings, params, network_timeout=self.settings.statement_timeout)
            if is_emulator(raw):
                ensure_emulator_schema(raw, self.dsn)
            return raw

        try:
            raw = await loop.run_in_executor(executor, login)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        if self.emulator is None:
            self.emulator = is_emulator(raw)
        return _Session(raw, executor)

    async def _acquire(self) -> _Session:
        async with self._available:
            while True:
                if self._closed:
                    raise TargetError("control store is closed")
                if self._idle:
                    return self._idle.pop()
                if len(self._all) + self._opening < POOL_MAX:
                    self._opening += 1
                    break
                await self._available.wait()
        try:
            session = await self._open_session()
        finally:
            async with self._available:
                self._opening -= 1
        async with self._available:
            self._all.append(session)
        return session

    async def _release(self, session: _Session) -> None:
        async with self._available:
            self._idle.append(session)
            self._available.notify()

    async def _call(self, what: str, fn: Callable[[Any], T]) -> T:
        """Run ``fn(cursor)`` on a free session's thread; TargetError on a database error."""
        from snowflake.connector.errors import Error as SnowflakeError

        session = await self._acquire()
        try:
            return await asyncio.get_running_loop().run_in_executor(session.executor, fn, session.cursor)
        except SnowflakeError as exc:
            raise TargetError(f"control store ({what}): {describe_error(exc, self.dsn)}") from None
        finally:
            await self._release(session)

    # -- schema -------------------------------------------------------------------------

    async def ensure_schema(self) -> None:
        """One look-up when the tables are there; else create them, hybrid first (idempotent)."""
        from snowflake.connector.errors import ProgrammingError

        def blocking(cur: Any) -> bool:
            found = self._table_kinds(cur)
            if len(found) == len(TABLES):
                return all(found.values())
            hybrid = True if not found else all(found.values())
            for table in TABLES:
                if table in found:
                    continue
                if hybrid:
                    try:
                        cur.execute(create_table_sql(table, hybrid=True))
                        continue
                    except ProgrammingError:
                        hybrid = False  # fakesnow, or an account without hybrid tables
                cur.execute(create_table_sql(table, hybrid=False))
            return hybrid

        self.hybrid = await self._call("ensure_schema", blocking)

    @staticmethod
    def _table_kinds(cur: Any) -> dict[str, bool]:
        """Control tables present in the current schema -> whether each is a hybrid table."""
        names = ", ".join(f"'{t}'" for t in TABLES)
        cur.execute(
            "SELECT TABLE_NAME, IS_HYBRID FROM INFORMATION_SCHEMA.TABLES"
            f" WHERE TABLE_SCHEMA = CURRENT_SCHEMA() AND TABLE_NAME IN ({names})"
        )
        return {str(name).upper(): str(flag).upper() in ("YES", "Y", "TRUE") for name, flag in cur.fetchall()}

    async def _strategy(self) -> str:
        if self.seq_strategy is None:
            if self.hybrid is None:
                kinds = await self._call("table kinds", self._table_kinds)
                self.hybrid = bool(kinds) and all(kinds.values())
            self.seq_strategy = "statement" if (self.hybrid or self.emulator) else "transaction"
        return self.seq_strategy

    # -- RUN_STATUS ---------------------------------------------------------------------

    async def create_run(self, run: RunStatus) -> None:
        names = ["run_id", "status", "phase", "scenario", "traceparent", "workers_expected", "start_time",
                 "cancel_reason", "next_seq"]
        js = {n: j for n, _, j in _columns(RUN_STATUS)}
        values = [_to_db(getattr(run, n), js[n]) for n in names]
        sql = (
            f"INSERT INTO {RUN_STATUS} ({', '.join(names)}, created_at, updated_at)"
            f" VALUES ({', '.join('?' * len(names))}, CURRENT_TIMESTAMP(), CURRENT_TIMESTAMP())"
        )
        await self._call("create_run", lambda cur: cur.execute(sql, values))

    async def fetch_run_status(self, run_id: str) -> RunStatus | None:
        """One round trip; next_seq and the beat's age are computed by the server."""
        select = ", ".join(
            f"GREATEST(r.next_seq, (SELECT COALESCE(MAX(e.seq), 0) FROM {EVENTS} e WHERE e.run_id = r.run_id))"
            if c == "next_seq" else f"r.{c}"
            for c, _, _ in _columns(RUN_STATUS)
        )
        sql = (
            f"SELECT {select}, DATEDIFF('millisecond', r.updated_at, CURRENT_TIMESTAMP())"
            f" FROM {RUN_STATUS} r WHERE r.run_id = ?"
        )

        def blocking(cur: Any) -> tuple[Any, ...] | None:
            cur.execute(sql, (run_id,))
            return cur.fetchone()

        row = await self._call("fetch_run_status", blocking)
        if row is None:
            return None
        age_ms = row[-1]
        extra = {"beat_age_s": None if age_ms is None else float(age_ms) / 1000.0}
        if "beat_age_s" not in {f.name for f in dataclasses.fields(RunStatus)}:
            extra = {}
        status = _record(RunStatus, RUN_STATUS, row[:-1], **extra)
        status.next_seq = int(status.next_seq or 0)
        return status

    async def update_run(self, run_id: str, **fields: Any) -> None:
        unknown = sorted(set(fields) - _RUN_SETTABLE)
        if unknown:
            raise ValueError(f"not RUN_STATUS columns: {unknown}")
        js = {n: j for n, _, j in _columns(RUN_STATUS)}
        sets = [f"{name} = ?" for name in fields] + ["updated_at = CURRENT_TIMESTAMP()"]
        values = [_to_db(v, js[name]) for name, v in fields.items()]
        sql = f"UPDATE {RUN_STATUS} SET {', '.join(sets)} WHERE run_id = ?"
        await self._call("update_run", lambda cur: cur.execute(sql, (*values, run_id)))

    async def touch_run(self, run_id: str) -> None:
        sql = f"UPDATE {RUN_STATUS} SET updated_at = CURRENT_TIMESTAMP() WHERE run_id = ?"
        await self._call("touch_run", lambda cur: cur.execute(sql, (run_id,)))

    # -- RUN_CONTROL_EVENTS -------------------------------------------------------------

    async def append_event(self, run_id: str, type: str, scope: str, payload: dict[str, Any]) -> int:
        strategy = await self._strategy()
        event_id = uuid.uuid4().hex
        body = _to_db(payload or {}, True)
        fn = self._append_statement if strategy == "statement" else self._append_transaction
        seq = await self._call("append_event", lambda cur: fn(cur, run_id, type, scope, body, event_id))
        if seq is None:
            raise TargetError(f"control store: no run {run_id!r} in {RUN_STATUS}")
        return seq

    def _append_statement(self, cur: Any, run_id: str, type: str, scope: str, body: str, event_id: str) -> int | None:
        """One INSERT assigns the id; the enforced primary key (run_id, seq) arbitrates races."""
        from snowflake.connector.errors import Error as SnowflakeError

        insert = (
            f"INSERT INTO {EVENTS} (run_id, seq, type, scope, payload, created_at, event_id)"
            " SELECT r.run_id, m.next_seq, ?, ?, ?, CURRENT_TIMESTAMP(), ?"
            f" FROM {RUN_STATUS} r,"
            f" (SELECT COALESCE(MAX(seq), 0) + 1 AS next_seq FROM {EVENTS} WHERE run_id = ?) m"
            " WHERE r.run_id = ?"
        )
        deadline = time.monotonic() + self.settings.statement_timeout
        while True:
            try:
                cur.execute(insert, (type, scope, body, event_id, run_id, run_id))
                break
            except SnowflakeError as exc:
                if not _is_duplicate(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0.005, 0.05))
        if not cur.rowcount:
            return None
        cur.execute(f"SELECT seq FROM {EVENTS} WHERE run_id = ? AND event_id = ?", (run_id, event_id))
        row = cur.fetchone()
        return None if row is None else int(row[0])

    def _append_transaction(self, cur: Any, run_id: str, type: str, scope: str, body: str, event_id: str) -> int | None:
        """Lock the run's row by bumping next_seq, insert the event from it, commit."""
        from snowflake.connector.errors import Error as SnowflakeError

        deadline = time.monotonic() + self.settings.statement_timeout
        while True:
            try:
                cur.execute("BEGIN")
                cur.execute(f"UPDATE {RUN_STATUS} SET next_seq = next_seq + 1 WHERE run_id = ?", (run_id,))
                if not cur.rowcount:
                    cur.execute("ROLLBACK")
                    return None
                cur.execute(
                    f"INSERT INTO {EVENTS} (run_id, seq, type, scope, payload, created_at, event_id)"
                    f" SELECT run_id, next_seq, ?, ?, ?, CURRENT_TIMESTAMP(), ? FROM {RUN_STATUS} WHERE run_id = ?",
                    (type, scope, body, event_id, run_id),
                )
                cur.execute(f"SELECT next_seq FROM {RUN_STATUS} WHERE run_id = ?", (run_id,))
                seq = int(cur.fetchone()[0])
                cur.execute("COMMIT")
                return seq
            except SnowflakeError as exc:
                try:
                    cur.execute("ROLLBACK")
                except SnowflakeError:
                    pass
                if not _is_lock_wait(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0.01, 0.1))

    async def fetch_events(self, run_id: str, after_seq: int) -> list[ControlEvent]:
        sql = f"SELECT {_select_list(EVENTS)} FROM {EVENTS} WHERE run_id = ? AND seq > ? ORDER BY seq"

        def blocking(cur: Any) -> list[tuple[Any, ...]]:
            cur.execute(sql, (run_id, int(after_seq)))
            return cur.fetchall()

        return [_record(ControlEvent, EVENTS, row) for row in await self._call("fetch_events", blocking)]

    # -- WORKER_HEARTBEATS --------------------------------------------------------------

    async def heartbeat(self, hb: Heartbeat) -> None:
        """One MERGE: insert the worker's row or update it; last_beat is the server's clock."""
        cols = _columns(HEARTBEATS)
        names = [c[0] for c in cols]
        source = []
        values = []
        for name, _, js in cols:
            value = getattr(hb, name)
            if name == "last_beat" and value is None:
                source.append(f"CURRENT_TIMESTAMP() AS {name}")
            else:
                source.append(f"CAST(? AS {_cast(HEARTBEATS, name)}) AS {name}")
                values.append(_to_db(value, js))
        updates = ", ".join(f"t.{n} = s.{n}" for n in names if n not in ("run_id", "worker_id"))
        sql = (
            f"MERGE INTO {HEARTBEATS} t USING (SELECT {', '.join(source)}) s"
            " ON t.run_id = s.run_id AND t.worker_id = s.worker_id"
            f" WHEN MATCHED THEN UPDATE SET {updates}"
            f" WHEN NOT MATCHED THEN INSERT ({', '.join(names)}) VALUES ({', '.join('s.' + n for n in names)})"
        )
        await self._call("heartbeat", lambda cur: cur.execute(sql, values))

    async def mark_worker(self, run_id: str, worker_id: str, status: str, reason: str) -> None:
        sql = f"UPDATE {HEARTBEATS} SET status = ?, last_error = ? WHERE run_id = ? AND worker_id = ?"
        await self._call("mark_worker", lambda cur: cur.execute(sql, (status, reason[:1000], run_id, worker_id)))

    async def abandon_run(self, run_id: str, reason: str) -> bool:
        final = ", ".join(f"'{x}'" for x in sorted(TERMINAL))
        sql = (f"UPDATE {RUN_STATUS} SET status = 'ABANDONED', cancel_reason = ?, updated_at = CURRENT_TIMESTAMP()"
               f" WHERE run_id = ? AND status NOT IN ({final})")

        def blocking(cur: Any) -> bool:
            cur.execute(sql, (reason[:1000], run_id))
            return (cur.rowcount or 0) > 0

        return await self._call("abandon_run", blocking)

    async def fetch_heartbeats(self, run_id: str) -> list[Heartbeat]:
        sql = f"SELECT {_select_list(HEARTBEATS)} FROM {HEARTBEATS} WHERE run_id = ? ORDER BY worker_id"

        def blocking(cur: Any) -> list[tuple[Any, ...]]:
            cur.execute(sql, (run_id,))
            return cur.fetchall()

        return [_record(Heartbeat, HEARTBEATS, row) for row in await self._call("fetch_heartbeats", blocking)]

    # -- TEST_RESULTS -------------------------------------------------------------------

    async def insert_test_result(self, row: TestResult) -> None:
        cols = _columns(RESULTS)
        sql = f"INSERT INTO {RESULTS} ({', '.join(c[0] for c in cols)}) VALUES ({', '.join('?' * len(cols))})"
        values = [_to_db(getattr(row, name), js) for name, _, js in cols]
        await self._call("insert_test_result", lambda cur: cur.execute(sql, values))

    async def update_test_result(self, row: TestResult) -> None:
        """Upsert (a worker that failed before its insert still leaves a row)."""
        cols = _columns(RESULTS)
        names = [c[0] for c in cols]
        source = ", ".join(f"CAST(? AS {_cast(RESULTS, n)}) AS {n}" for n in names)
        updates = ", ".join(f"t.{n} = s.{n}" for n in names if n not in ("run_id", "worker_id"))
        sql = (
            f"MERGE INTO {RESULTS} t USING (SELECT {source}) s"
            " ON t.run_id = s.run_id AND t.worker_id = s.worker_id"
            # A RUNNING row (the first insert, a flush) that lands late never replaces a final one.
            f" WHEN MATCHED AND (s.status <> 'RUNNING' OR t.status = 'RUNNING') THEN UPDATE SET {updates}"
            f" WHEN NOT MATCHED THEN INSERT ({', '.join(names)}) VALUES ({', '.join('s.' + n for n in names)})"
        )
        values = [_to_db(getattr(row, name), js) for name, _, js in cols]
        await self._call("update_test_result", lambda cur: cur.execute(sql, values))

    async def fetch_test_results(self, run_id: str) -> list[TestResult]:
        sql = f"SELECT {_select_list(RESULTS)} FROM {RESULTS} WHERE run_id = ? ORDER BY scope, worker_id"

        def blocking(cur: Any) -> list[tuple[Any, ...]]:
            cur.execute(sql, (run_id,))
            return cur.fetchall()

        return [_record(TestResult, RESULTS, row) for row in await self._call("fetch_test_results", blocking)]

    # -- TEMPLATE_VALUE_POOLS -----------------------------------------------------------

    async def fetch_value_pool(self, pool_name: str) -> list[Any]:
        sql = f"SELECT value FROM {VALUE_POOLS} WHERE pool_name = ? ORDER BY ordinal"

        def blocking(cur: Any) -> list[tuple[Any, ...]]:
            cur.execute(sql, (pool_name,))
            return cur.fetchall()

        return [json.loads(v) for (v,) in await self._call("fetch_value_pool", blocking)]

    async def store_value_pool(self, pool_name: str, values: list[Any]) -> None:
        """Replace a value pool (one DELETE, then array-bound INSERTs)."""
        rows = [(pool_name, i, json.dumps(v, default=str)) for i, v in enumerate(values)]

        def blocking(cur: Any) -> None:
            cur.execute(f"DELETE FROM {VALUE_POOLS} WHERE pool_name = ?", (pool_name,))
            for start in range(0, len(rows), 10_000):
                cur.executemany(
                    f"INSERT INTO {VALUE_POOLS} (pool_name, ordinal, value) VALUES (?, ?, ?)",
                    rows[start : start + 10_000],
                )

        await self._call("store_value_pool", blocking)

    # -- the store's clock --------------------------------------------------------------

    async def clock_sample(self) -> ClockSample:
        """Timed on the session's own thread, so the hop to it is not in the round trip."""

        def blocking(cur: Any) -> ClockSample:
            def read() -> int:
                # A statement of its own (autocommit): CURRENT_TIMESTAMP() is this statement's
                # instant, as clock_timestamp() is on PostgreSQL; fakesnow answers it too.
                cur.execute("SELECT DATE_PART(EPOCH_NANOSECOND, CURRENT_TIMESTAMP())")
                return int(cur.fetchone()[0])

            return timed_blocking(read)

        return await self._call("clock_sample", blocking)

    # -- waiting and closing ------------------------------------------------------------

    async def wait_for_signal(self, run_id: str, timeout: float) -> bool:
        """No push in Snowflake: sleep for ``timeout`` (at most a minute), then say so."""
        await asyncio.sleep(max(0.0, min(float(timeout), 60.0)))
        return False

    async def close(self) -> None:
        async with self._available:
            self._closed = True
            sessions, self._all, self._idle = self._all, [], []
            self._available.notify_all()

        async def close_one(s: _Session) -> None:
            def blocking() -> None:
                try:
                    s.cursor.close()
                    s.raw.close()
                except Exception:  # noqa: BLE001
                    pass

            try:
                await asyncio.wait_for(
                    asyncio.get_running_loop().run_in_executor(s.executor, blocking), self.settings.connect_timeout
                )
            except (asyncio.TimeoutError, RuntimeError):
                pass
            finally:
                s.executor.shutdown(wait=False)

        await asyncio.gather(*(close_one(s) for s in sessions))

