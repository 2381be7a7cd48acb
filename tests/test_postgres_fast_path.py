"""The direct protocol call gives the same answers as asyncpg's own fetchval, on the real server."""

from __future__ import annotations

import asyncio

import asyncpg

from spanbench.settings import Settings
from spanbench.targets.postgres import PostgresTarget, bind_execute_fn
from spanbench.workload.demo import demo_queries


def test_fast_path_matches_fetchval(pg_dsn: str) -> None:
    async def go() -> None:
        target = await PostgresTarget.open(pg_dsn, Settings(pg_wire=False))  # asyncpg's path; the wire's is test_pg_wire.py
        conn = await target.connect(tag={"test": "fast"})
        try:
            select, update = await conn.prepare(demo_queries("postgresql", with_updates=True))
            assert select is not update and asyncpg.__version__.startswith(("0.29.", "0.30.", "0.31.", "0.32."))
            assert getattr(select, "__name__", "") == "fetch"  # the fast path is in use on this asyncpg
            plain = await conn.conn.prepare("SELECT abalance FROM spanbench_accounts WHERE aid = $1")
            before = await plain.fetchval(7)
            assert await select((7,)) == before
            assert await update((7,)) is None  # an UPDATE returns no row
            assert await plain.fetchval(7) == before + 1 == await select((7,))
            assert await select((10**9,)) is None  # no such key: no row, no error
            missing = bind_execute_fn(conn.conn, await conn.conn.prepare("SELECT 1 WHERE $1::int < 0"))
            assert await missing((5,)) is None
            bad = await conn.conn.prepare("SELECT 1 / $1::int")
            fn = bind_execute_fn(conn.conn, bad)
            try:
                await fn((0,))
            except asyncpg.DivisionByZeroError:
                pass
            else:
                raise AssertionError("a failing query must raise, as with fetchval")
            assert await fn((1,)) == 1  # and the connection is still usable after it
        finally:
            await conn.close()

    asyncio.run(go())
