"""PostgreSQL through asyncpg: prepared statements, and nothing between the loop and the wire."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from urllib.parse import urlsplit

import asyncpg
import asyncpg.prepared_stmt

from spanbench.settings import Settings
from spanbench.targets import pg_wire
from spanbench.targets.base import QueryFn, QuerySpec
from spanbench.targets.pg_wire import WireSession
from spanbench.targets.pg_errors import connect_error


# asyncpg releases whose protocol.bind_execute(state, args, portal, limit, return_extra, timeout)
# the fast path below was written and tested against; any other release gets fetchval.
_FAST_PATH_VERSIONS = ("0.29.", "0.30.", "0.31.", "0.32.")


def bind_execute_fn(conn: asyncpg.Connection, stmt: asyncpg.prepared_stmt.PreparedStatement) -> QueryFn:
    """A QueryFn, ``await fn(args)``, that goes straight to asyncpg's protocol.

    ``PreparedStatement.fetchval`` passes every call through a guard wrapper, two more
    coroutines and a lambda before it reaches ``protocol.bind_execute``; calling that
    directly saves 4–6 µs of client CPU per query (about a tenth of it; measured on this
    2-core machine against the embedded server). What the layers add, a benchmark does not
    need: the connection is never shared, and the table's schema does not change under it.
    ``args`` is the tuple asyncpg binds, passed as it is: nothing is built per call. Every
    row is fetched (limit 0), so a query that returns many costs what it costs.
    """
    proto = getattr(conn, "_protocol", None)
    state = getattr(stmt, "_state", None)
    bind = getattr(proto, "bind_execute", None)
    if bind is None or state is None or not asyncpg.__version__.startswith(_FAST_PATH_VERSIONS):
        async def slow(args: tuple[object, ...], _stmt=stmt) -> object:
            rows = await _stmt.fetch(*args)
            return rows[0][0] if rows and len(rows[0]) else None

        return slow

    async def fetch(args: tuple[object, ...], _bind=bind, _state=state, _stmt=stmt) -> object:  # _stmt keeps it alive
        rows, _, _ = await _bind(_state, args, "", 0, True, None)
        return rows[0][0] if rows else None

    return fetch


def transaction_fn(conn: asyncpg.Connection, fns: list[QueryFn], begin: QueryFn, commit: QueryFn) -> QueryFn:
    """BEGIN, each statement with its own tuple of ``args``, COMMIT: one call, one latency.

    BEGIN and COMMIT are prepared statements too (one extended-protocol round trip each,
    as pgbench's ``-M prepared`` sends them). On any error the transaction is rolled back
    before the error goes up, so the connection is ready for the next execution.
    """
    empty: tuple[object, ...] = ()

    async def transaction(args: tuple[tuple[object, ...], ...], _fns=fns, _begin=begin, _commit=commit) -> object:
        await _begin(empty)
        try:
            for fn, a in zip(_fns, args):
                await fn(a)
            return await _commit(empty)
        except BaseException:
            if conn.is_in_transaction():
                try:
                    await conn.execute("ROLLBACK")
                except Exception:  # noqa: BLE001 - the statement's error is the one to report
                    pass
            raise

    return transaction


# The server went away or threw us out: the session is over, a new one must be opened.
_BROKEN = (
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.AdminShutdownError, asyncpg.CrashShutdownError, asyncpg.CannotConnectNowError,  # 57P01-03
    asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError, asyncpg.InternalClientError,
    ConnectionError, OSError,
)


class PostgresConnection:
    __slots__ = ("conn", "wire", "heads", "use_wire")

    def __init__(self, conn: asyncpg.Connection, *, use_wire: bool = True) -> None:
        self.conn = conn
        self.use_wire = use_wire  # the pg_wire setting
        self.wire: WireSession | None = None  # the pg_wire path: the transport, owned for the load
        self.heads: list[bytes] = []  # per query kind: the start of its Bind

    async def prepare(self, queries: Sequence[QuerySpec]) -> list[QueryFn]:
        if self.wire is not None:
            # prepared again (spanbench check prepares one query at a time): asyncpg's turn;
            # the earlier functions stop working, the new ones get a session of their own
            self._release_wire()
            self.wire, self.heads = None, []
        if self.use_wire and not any(q.is_transaction for q in queries):
            stmts = [await self.conn.prepare(q.sql) for q in queries]
            heads = [pg_wire.statement_head(st) for st in stmts]
            if all(h is not None for h in heads):
                # all or nothing: once the session owns the transport, asyncpg hears nothing
                self.wire = WireSession(self.conn)
                self.heads = heads  # type: ignore[assignment]
                return [pg_wire.wire_fn(self.wire, h, st) for h, st in zip(heads, stmts)]  # type: ignore[arg-type]
            return [bind_execute_fn(self.conn, st) for st in stmts]  # prepared once, asyncpg's path
        out: list[QueryFn] = []
        for q in queries:
            if q.is_transaction:
                fns = [bind_execute_fn(self.conn, await self.conn.prepare(sql)) for sql in q.statements]
                begin = bind_execute_fn(self.conn, await self.conn.prepare("BEGIN"))
                commit = bind_execute_fn(self.conn, await self.conn.prepare("COMMIT"))
                out.append(transaction_fn(self.conn, fns, begin, commit))
            else:
                out.append(bind_execute_fn(self.conn, await self.conn.prepare(q.sql)))
        return out

    async def set_phase(self, phase: str) -> None:
        # PostgreSQL has no per-query tag; application_name was set at connect time.
        return None

    def direct(self) -> tuple[WireSession, list[bytes]] | None:
        """The wire session and each kind's Bind head, for a loop that chains executions
        from their completions (load/closed.py); None on asyncpg's path."""
        wire = self.wire
        return None if wire is None or wire.lost is not None else (wire, self.heads)

    def last_query_id(self) -> str | None:
        return None

    def is_broken(self, exc: BaseException) -> bool:
        """Whether ``exc`` means this connection is gone (not just this query failed)."""
        return self.conn.is_closed() or isinstance(exc, _BROKEN)

    async def fetchrow(self, sql: str, *args: object) -> asyncpg.Record | None:
        with self._asyncpg_turn():
            return await self.conn.fetchrow(sql, *args)

    async def fetch_all(self, sql: str, params: Sequence[object] | None = None) -> list[tuple[object, ...]]:
        with self._asyncpg_turn():
            return [tuple(r) for r in await self.conn.fetch(sql, *(params or ()))]

    def _release_wire(self) -> None:
        """The transport back to asyncpg, which must not find an execution of ours in flight."""
        if self.wire is not None and not self.wire.hand_back():
            raise asyncpg.InterfaceError("the connection is busy with an execution of the load")

    @contextlib.contextmanager
    def _asyncpg_turn(self) -> Iterator[None]:
        """asyncpg's protocol on the transport for one statement outside the load (setup work
        on a load connection), then the wire session's again."""
        wire = self.wire
        self._release_wire()
        try:
            yield
        finally:
            if wire is not None and self.wire is wire:
                wire.take()

    async def close(self) -> None:
        wire, self.wire = self.wire, None
        if wire is not None and not wire.hand_back():
            self.conn.terminate()  # an execution still in flight (cut at the drain): no goodbye
            return
        try:
            await asyncio.wait_for(self.conn.close(), timeout=2.0)
        except (Exception, asyncio.TimeoutError):
            self.conn.terminate()


class PostgresTarget:
    system = "postgresql"
    dialect = "postgresql"

    def __init__(self, dsn: str, settings: Settings) -> None:
        self._dsn = dsn
        self._settings = settings
        parts = urlsplit(dsn)
        self.server_address = parts.hostname or "localhost"
        self.server_port = parts.port
        self._admin: PostgresConnection | None = None

    @classmethod
    async def open(cls, dsn: str, settings: Settings) -> "PostgresTarget":
        return cls(dsn, settings)

    async def connect(self, *, phase: str = "INIT", tag: dict[str, str] | None = None) -> PostgresConnection:
        name = "spanbench" + "".join(f":{k}={v}" for k, v in (tag or {}).items())
        timeout = self._settings.connect_timeout
        try:
            conn = await asyncpg.connect(
                self._dsn,
                timeout=timeout,
                # No client-side timeout: asyncpg arms and cancels a timer per query for it,
                # about 10 µs of CPU each (bench/README.md). The server's statement_timeout
                # below bounds every query instead.
                command_timeout=None,
                server_settings={
                    "application_name": name[:63],
                    "statement_timeout": str(int(self._settings.statement_timeout * 1000)),
                },
            )
        except Exception as exc:
            raise connect_error(exc, self._dsn, "target", timeout) from None
        return PostgresConnection(conn, use_wire=self._settings.pg_wire)

    async def admin(self) -> PostgresConnection:
        """One connection for setup work, opened on first use and closed with the target."""
        if self._admin is None:
            self._admin = await self.connect(tag={"role": "setup"})
        return self._admin

    async def resume_warehouse(self) -> None:
        return None

    async def close(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            await admin.close()
