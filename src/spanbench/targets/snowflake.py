"""Snowflake as the database under test, through the synchronous snowflake-connector-python.

Why threads and not ``snowflake.connector.aio``: measured against fakesnow on loopback (16
connections in batches of 8), both open a batch in the same time (≈75 ms) once the
connector's cloud-platform probing is switched off, and both cost the same client CPU per
query (≈3 ms, almost all of it inside the connector). The aio API needs aiohttp and is the
younger code path, so each connection here owns one thread (a single-thread executor): its
login, every query and its close run there, and ``connect()`` calls gathered by the worker
run truly concurrently.

Three connector defaults are changed on purpose, each one a hidden cost on every connection:

* ``platform_detection_timeout_seconds=0``: otherwise every login probes cloud metadata
  endpoints (AWS, Azure, GCP) from a fresh thread pool, up to 200 ms per connect.
* no ``network_timeout``: with one set, every ``execute`` starts a timer thread. The
  server-side ``STATEMENT_TIMEOUT_IN_SECONDS`` bounds statements instead, ``login_timeout``
  bounds connects.
* ``paramstyle="qmark"``: binds travel to the server, the query text is constant, so
  ``db.query.text`` is exactly what QUERY_HISTORY shows.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from opentelemetry import trace

from spanbench.errors import ConfigError, TargetError
from spanbench.settings import Settings
from spanbench.sql import first_keyword, placeholders
from spanbench.targets.base import QueryFn, QuerySpec
from spanbench.targets.snowflake_dsn import SnowflakeDsn, parse_snowflake_dsn

T = TypeVar("T")

SYSTEM = "snowflake"
APPLICATION = "spanbench"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9._\-]")
_TAG_ORDER = ("run", "worker", "phase", "trace")
_NOT_IMPLEMENTED = 9999  # fakesnow's errno for statements it does not implement


def ident(name: str) -> str:
    """An identifier checked to be a plain (unquoted) Snowflake name; ConfigError otherwise."""
    if not _IDENT.match(name):
        raise ConfigError(f"not a plain identifier: {name!r}")
    return name


def build_query_tag(tag: dict[str, str], phase: str | None) -> str:
    """``spanbench:run=…:worker=…:phase=…:trace=…`` (unknown keys follow, sorted)."""
    items = dict(tag)
    if phase is not None:
        items["phase"] = phase
    keys = [k for k in _TAG_ORDER if k in items] + sorted(k for k in items if k not in _TAG_ORDER)
    parts = [f"{_TAG_UNSAFE.sub('_', k)}={_TAG_UNSAFE.sub('_', str(items[k]))}" for k in keys]
    return ":".join(["spanbench", *parts])[:2000]  # Snowflake's limit for QUERY_TAG


def quote_ident(name: str) -> str:
    """A plain identifier as it is; anything else double-quoted (exact case)."""
    return name if _IDENT.match(name) else '"' + name.replace('"', '""') + '"'


def sql_string(value: str) -> str:
    """A Snowflake string literal (for statements that take no bind, like ALTER SESSION)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def describe_error(exc: BaseException, dsn: SnowflakeDsn | None = None) -> str:
    """One line, no secret: the connector's message without its traceback."""
    msg = getattr(exc, "msg", None) or str(exc) or type(exc).__name__
    errno = getattr(exc, "errno", None)
    text = " ".join(str(msg).split())
    if isinstance(errno, int) and errno > 0 and str(errno) not in text:
        text = f"{text} ({errno})"
    if dsn is not None:
        for secret in (dsn.password, dsn.private_key_passphrase):
            if secret:
                text = text.replace(secret, "***")
    return text


def is_not_implemented(exc: BaseException) -> bool:
    """fakesnow's answer to a statement it does not implement (never Snowflake's)."""
    return getattr(exc, "errno", None) == _NOT_IMPLEMENTED and "not implemented" in str(exc)


def connect_raw(
    dsn: SnowflakeDsn,
    settings: Settings,
    session_parameters: dict[str, Any],
    *,
    network_timeout: float | None = None,
) -> Any:
    """Log in (blocking: call it from the connection's own thread). TargetError on failure."""
    import snowflake.connector
    from snowflake.connector.errors import Error as SnowflakeError

    kw = dsn.connect_kwargs()
    kw.setdefault("application", APPLICATION)
    kw.update(
        paramstyle="qmark",
        login_timeout=settings.connect_timeout,
        platform_detection_timeout_seconds=0.0,
        client_session_keep_alive=False,
        session_parameters=session_parameters,
    )
    if network_timeout is not None:
        kw["network_timeout"] = network_timeout
    where = f"Snowflake account {dsn.account} as {dsn.user}"
    try:
        return snowflake.connector.connect(**kw)
    except SnowflakeError as exc:
        raise TargetError(f"cannot connect to {where}: {describe_error(exc, dsn)}") from None
    except (OSError, ValueError, TypeError) as exc:  # key file missing, bad key or passphrase
        raise TargetError(f"cannot connect to {where}: {type(exc).__name__}: {describe_error(exc, dsn)}") from None
    finally:
        kw.clear()


def is_emulator(raw: Any) -> bool:
    """fakesnow logs in without a session id; every Snowflake account returns one."""
    return getattr(raw, "session_id", None) in (None, "", 0)


def ensure_emulator_schema(raw: Any, dsn: SnowflakeDsn) -> None:
    """On fakesnow the database and schema of the DSN may not exist yet: create them."""
    if not (dsn.database and dsn.schema):
        return
    db, schema = ident(dsn.database), ident(dsn.schema)
    cur = raw.cursor()
    try:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {db}.{schema}")
        cur.execute(f"USE SCHEMA {db}.{schema}")
    finally:
        cur.close()


class SnowflakeConnection:
    """One benchmark connection: a connector session, its own thread and one reused cursor."""

    def __init__(self, target: SnowflakeTarget, raw: Any, executor: ThreadPoolExecutor, tag: dict[str, str], phase: str) -> None:
        self._target = target
        self._raw = raw
        self._executor = executor
        self._cursor = raw.cursor()
        self._tag = dict(tag)
        self.phase = phase
        self.query_tag = build_query_tag(tag, phase)  # what the session was told last
        self.query_tag_applied = True  # False when the server refused ALTER SESSION (fakesnow)
        self.session_id = getattr(raw, "session_id", None)
        self._closed = False

    def __repr__(self) -> str:
        return f"<SnowflakeConnection {self._target.server_address} session={self.session_id} phase={self.phase}>"

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking call on this connection's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def prepare(self, queries: Sequence[QuerySpec]) -> list[QueryFn]:
        loop = asyncio.get_running_loop()
        for spec in queries:
            await self._target.validate_query(self, spec)
        return [self._query_fn(loop, spec) for spec in queries]

    def _query_fn(self, loop: asyncio.AbstractEventLoop, spec: QuerySpec) -> QueryFn:
        cur, sql, run_in = self._cursor, spec.sql, loop.run_in_executor
        ex = self._executor
        if spec.is_transaction:
            statements = spec.statements

            def blocking(args: tuple[Any, ...]) -> Any:
                # One round trip per statement, as on PostgreSQL; ROLLBACK on any error so the
                # session is clean for the next execution.
                cur.execute("BEGIN")
                try:
                    for text, a in zip(statements, args):
                        cur.execute(text, a)
                    cur.execute("COMMIT")
                except BaseException:
                    try:
                        cur.execute("ROLLBACK")
                    except Exception:  # noqa: BLE001 - the statement's error is the one to report
                        pass
                    raise
                return cur.rowcount
        elif first_keyword(sql) in ("SELECT", "WITH", "SHOW"):

            def blocking(args: tuple[Any, ...]) -> Any:
                cur.execute(sql, args)
                return cur.fetchall()
        else:

            def blocking(args: tuple[Any, ...]) -> Any:
                cur.execute(sql, args)
                return cur.rowcount

        async def query(args: tuple[Any, ...]) -> Any:
            return await run_in(ex, blocking, args)

        query.__qualname__ = f"snowflake.{spec.kind}"
        return query

    async def set_phase(self, phase: str) -> None:
        """Move QUERY_TAG to the new phase (one ALTER SESSION round trip per change)."""
        tag = build_query_tag(self._tag, phase)
        self.phase = phase
        if tag == self.query_tag and self.query_tag_applied:
            return
        self.query_tag = tag
        self.query_tag_applied = await self.run(self._alter_query_tag, tag)

    def _alter_query_tag(self, tag: str) -> bool:
        from snowflake.connector.errors import Error as SnowflakeError

        cur = self._cursor
        try:
            cur.execute(f"ALTER SESSION SET QUERY_TAG = {sql_string(tag)}")
        except SnowflakeError as exc:
            if is_not_implemented(exc):
                return False  # fakesnow: the statement reached the server, which has no QUERY_TAG
            raise TargetError(f"cannot set QUERY_TAG: {describe_error(exc, self._target.dsn)}") from None
        return True

    def is_broken(self, exc: BaseException) -> bool:
        """A session that is closed, or a failure of the network or the login, not of the query."""
        from snowflake.connector.errors import DatabaseError, OperationalError

        raw_closed = getattr(self._raw, "is_closed", None)
        closed = bool(raw_closed()) if callable(raw_closed) else False
        # 390xxx: session and authentication errors (an expired or dropped session).
        session = isinstance(exc, DatabaseError) and str(getattr(exc, "errno", "")).startswith("390")
        return self._closed or closed or isinstance(exc, OperationalError) or session

    def last_query_id(self) -> str | None:
        return self._cursor.sfqid

    async def fetch_all(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        def blocking() -> list[tuple[Any, ...]]:
            cur = self._cursor
            cur.execute(sql, params)
            return cur.fetchall()

        return await self.run(blocking)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        def blocking() -> None:
            try:
                self._cursor.close()
                self._raw.close()
            except Exception:  # noqa: BLE001 - a session that is gone is closed enough
                pass

        try:
            await asyncio.wait_for(self.run(blocking), timeout=self._target.settings.connect_timeout)
        except (asyncio.TimeoutError, RuntimeError):
            pass
        finally:
            self._executor.shutdown(wait=False)


class SnowflakeTarget:
    """The database under test, as one process sees it."""

    system = SYSTEM
    dialect = SYSTEM

    def __init__(self, dsn: SnowflakeDsn, settings: Settings) -> None:
        self.dsn = dsn
        self.settings = settings
        self.server_address = dsn.server_address
        self.server_port = dsn.server_port
        self.emulator: bool | None = None  # known after the first login
        self._admin: SnowflakeConnection | None = None
        self._admin_lock = asyncio.Lock()
        self._validated: dict[str, asyncio.Future[None]] = {}
        self._connections = 0

    def __repr__(self) -> str:
        return f"<SnowflakeTarget {self.dsn}>"

    @classmethod
    async def open(cls, dsn: str, settings: Settings) -> SnowflakeTarget:
        """Parse the DSN; no round trip (the pool's connects are the first, each its own span)."""
        return cls(parse_snowflake_dsn(dsn), settings)

    def session_parameters(self, query_tag: str) -> dict[str, Any]:
        """Sent with the login request, so they cost no round trip of their own."""
        return {
            "QUERY_TAG": query_tag,
            "USE_CACHED_RESULT": bool(self.settings.use_cached_result),
            "STATEMENT_TIMEOUT_IN_SECONDS": max(1, math.ceil(self.settings.statement_timeout)),
        }

    async def connect(self, *, phase: str, tag: dict[str, str]) -> SnowflakeConnection:
        query_tag = build_query_tag(tag, phase)
        self._connections += 1
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"snowflake-{self._connections}")
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            raw = await loop.run_in_executor(
                executor, connect_raw, self.dsn, self.settings, self.session_parameters(query_tag)
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        if self.emulator is None:
            self.emulator = is_emulator(raw)
        conn = SnowflakeConnection(self, raw, executor, tag, phase)
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute("db.system.name", SYSTEM)
            span.set_attribute("server.address", self.server_address)
            span.set_attribute("server.port", self.server_port)
            if conn.session_id:
                span.set_attribute("snowflake.session_id", str(conn.session_id))
            span.set_attribute("snowflake.login_ms", round((time.perf_counter() - started) * 1000, 3))
        return conn

    async def validate_query(self, conn: SnowflakeConnection, spec: QuerySpec) -> None:
        """Compile each statement once per process (a describe-only request): fail before START."""
        for sql in spec.statements or (spec.sql,):
            await self._validate_statement(conn, spec.kind, sql)

    async def _validate_statement(self, conn: SnowflakeConnection, kind: str, sql: str) -> None:
        fut = self._validated.get(sql)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._validated[sql] = fut
            # NULL for every placeholder: the statement compiles whatever the parameters' types.
            nulls = (None,) * placeholders(sql, "snowflake")[0]

            def blocking() -> None:
                cur = conn._raw.cursor()  # not the hot cursor: leave its sfqid alone
                try:
                    cur.describe(sql, nulls)
                finally:
                    cur.close()

            try:
                await conn.run(blocking)
            except Exception as exc:  # noqa: BLE001
                err = TargetError(f"query {kind!r} does not compile on Snowflake: {describe_error(exc, self.dsn)}")
                del self._validated[sql]
                fut.set_exception(err)
                fut.exception()  # retrieved: no "never retrieved" warning when nobody else waits
                raise err from None
            fut.set_result(None)
            return
        await asyncio.shield(fut)

    async def admin(self) -> SnowflakeConnection:
        """A connection for setup work (demo table, value pools, warehouse), opened on first use."""
        async with self._admin_lock:
            if self._admin is None:
                conn = await self.connect(phase="SETUP", tag={"role": "admin"})
                if self.emulator:
                    await conn.run(ensure_emulator_schema, conn._raw, self.dsn)
                self._admin = conn
            return self._admin

    async def resume_warehouse(self) -> None:
        """ALTER WAREHOUSE … RESUME IF SUSPENDED, then poll SHOW WAREHOUSES until STARTED (bounded).

        The caller wraps this in ``target.warehouse_resume``; what happened goes on that span.
        """
        from snowflake.connector.errors import Error as SnowflakeError

        span = trace.get_current_span()
        admin = await self.admin()
        if self.emulator:
            span.set_attribute("snowflake.warehouse.resume", "skipped: server is an emulator (fakesnow)")
            return
        try:
            name = self.dsn.warehouse
            if not name:
                rows = await admin.fetch_all("SELECT CURRENT_WAREHOUSE()")
                name = rows[0][0] if rows else None
            if not name:
                raise TargetError("no warehouse to resume: add ?warehouse=NAME to the Snowflake DSN")
            span.set_attribute("snowflake.warehouse", name)
            await admin.fetch_all(f"ALTER WAREHOUSE {quote_ident(name)} RESUME IF SUSPENDED")
            deadline = time.monotonic() + self.settings.ready_timeout
            polls = 0
            like = sql_string(name)  # "_" matches itself too; the exact name is checked below
            while True:
                polls += 1
                cur_rows = await admin.run(self._show_warehouse_state, admin, like, name)
                state = cur_rows or "UNKNOWN"
                if state == "STARTED":
                    break
                if time.monotonic() > deadline:
                    raise TargetError(
                        f"warehouse {name} not started after {self.settings.ready_timeout:g} s (state {state})"
                    )
                await asyncio.sleep(0.25)
            span.set_attribute("snowflake.warehouse.state", state)
            span.set_attribute("snowflake.warehouse.polls", polls)
        except SnowflakeError as exc:
            raise TargetError(f"cannot resume the warehouse: {describe_error(exc, self.dsn)}") from None

    @staticmethod
    def _show_warehouse_state(admin: SnowflakeConnection, like: str, name: str) -> str | None:
        cur = admin._raw.cursor()
        try:
            cur.execute(f"SHOW WAREHOUSES LIKE {like}")
            cols = [d[0].lower() for d in cur.description]
            for row in cur.fetchall():
                rec = dict(zip(cols, row, strict=False))
                if str(rec.get("name", "")).upper() == name.upper():
                    return str(rec.get("state", "")).upper()
            return None
        finally:
            cur.close()

    async def close(self) -> None:
        if self._admin is not None:
            admin, self._admin = self._admin, None
            await admin.close()
