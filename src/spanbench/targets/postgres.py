"""PostgreSQL through asyncpg: prepared statements, and nothing between the loop and the wire."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from urllib.parse import urlsplit

import asyncpg
import asyncpg.prepared_stmt

from spanbench.settings import Settings
from spanbench.targets.base import QueryFn, QuerySpec, TableProfile
from spanbench.targets.pg_errors import connect_error
from spanbench.workload import demo


# asyncpg releases whose protocol.bind_execute(state, args, portal, limit, return_extra, timeout)
# the fast path below was written and tested against; any other release gets fetchval.
_FAST_PATH_VERSIONS = ("0.29.", "0.30.", "0.31.", "0.32.")


def bind_execute_fn(conn: asyncpg.Connection, stmt: asyncpg.prepared_stmt.PreparedStatement) -> QueryFn:
    """A QueryFn that goes straight to asyncpg's protocol.

    ``PreparedStatement.fetchval`` passes every call through a guard wrapper, two more
    coroutines and a lambda before it reaches ``protocol.bind_execute``; calling that
    directly saves 4–6 µs of client CPU per query (about a tenth of it; measured on this
    2-core machine against the embedded server). What the layers add, a benchmark does not
    need: the connection is never shared, and the table's schema does not change under it.
    """
    proto = getattr(conn, "_protocol", None)
    state = getattr(stmt, "_state", None)
    bind = getattr(proto, "bind_execute", None)
    if bind is None or state is None or not asyncpg.__version__.startswith(_FAST_PATH_VERSIONS):
        return stmt.fetchval

    async def fetch(key: object, _bind=bind, _state=state, _stmt=stmt) -> object:  # _stmt keeps it alive
        rows, _, _ = await _bind(_state, (key,), "", 1, True, None)
        return rows[0][0] if rows else None

    return fetch


class PostgresConnection:
    __slots__ = ("conn",)

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def prepare(self, queries: Sequence[QuerySpec]) -> list[QueryFn]:
        return [bind_execute_fn(self.conn, await self.conn.prepare(q.sql)) for q in queries]

    async def set_phase(self, phase: str) -> None:
        # PostgreSQL has no per-query tag; application_name was set at connect time.
        return None

    def last_query_id(self) -> str | None:
        return None

    async def fetchrow(self, sql: str, *args: object) -> asyncpg.Record | None:
        return await self.conn.fetchrow(sql, *args)

    async def close(self) -> None:
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
        return PostgresConnection(conn)

    async def profile_table(self, conn: PostgresConnection, table: str, key: str) -> TableProfile:  # type: ignore[override]
        row = await conn.fetchrow(f"SELECT min({key}) AS lo, max({key}) AS hi, count(*) AS n FROM {table}")
        assert row is not None
        return TableProfile(table=table, min_key=row["lo"] or 0, max_key=row["hi"] or 0, rows=row["n"])

    async def demo_table_exists(self) -> bool:
        conn = await self.connect(tag={"role": "setup"})
        try:
            return bool(await conn.conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {demo.TABLE})"))
        except asyncpg.UndefinedTableError:
            return False
        finally:
            await conn.close()

    async def init_demo_table(self, rows: int) -> None:
        conn = await self.connect(tag={"role": "init"})
        try:
            async with conn.conn.transaction():
                await conn.conn.execute(f"DROP TABLE IF EXISTS {demo.TABLE}")
                await conn.conn.execute(
                    f"CREATE TABLE {demo.TABLE} (aid integer NOT NULL, bid integer NOT NULL,"
                    " abalance integer NOT NULL, filler character(84)) WITH (fillfactor = 100)"
                )
                await conn.conn.execute(
                    f"INSERT INTO {demo.TABLE} (aid, bid, abalance, filler)"
                    " SELECT g, (g - 1) / 100000 + 1, 0, '' FROM generate_series(1, $1) AS g",
                    rows,
                )
                await conn.conn.execute(f"ALTER TABLE {demo.TABLE} ADD PRIMARY KEY (aid)")
            await conn.conn.execute(f"VACUUM ANALYZE {demo.TABLE}")
        finally:
            await conn.close()

    async def resume_warehouse(self) -> None:
        return None

    async def close(self) -> None:
        return None
