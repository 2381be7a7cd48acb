"""PostgreSQL through asyncpg: prepared statements, and nothing between the loop and the wire."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from urllib.parse import urlsplit

import asyncpg

from spanbench.settings import Settings
from spanbench.targets.base import QueryFn, QuerySpec, TableProfile
from spanbench.targets.pg_errors import connect_error
from spanbench.workload import demo


class PostgresConnection:
    __slots__ = ("conn",)

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def prepare(self, queries: Sequence[QuerySpec]) -> list[QueryFn]:
        # The bound method of the prepared statement is the QueryFn itself: no wrapper frame.
        return [(await self.conn.prepare(q.sql)).fetchval for q in queries]

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
