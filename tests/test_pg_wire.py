"""The wire path (targets/pg_wire.py, SPANBENCH_PG_WIRE=1) against asyncpg's, on the real server:
the same executions, the same errors, the same counts as the server's own."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from conftest import run_cli, spanbench_env
from support.faults import rows
from spanbench.settings import Settings
from spanbench.targets.base import QuerySpec
from spanbench.targets.postgres import PostgresTarget


def _spec(kind: str, sql: str) -> QuerySpec:
    return QuerySpec(kind=kind, operation=sql.split()[0].upper(), sql=sql, collection="t")


def test_the_wire_session_executes_binds_and_fails_as_asyncpg_does(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANBENCH_PG_WIRE", "1")

    async def go() -> None:
        target = await PostgresTarget.open(pg_dsn, Settings())
        conn = await target.connect(tag={"test": "wire"})
        try:
            await conn.fetch_all("CREATE TEMP TABLE wire_t (i int, s text, ts timestamptz, b bool, n numeric, d date)")
            insert, divide = await conn.prepare([
                _spec("insert", "INSERT INTO wire_t VALUES ($1, $2, $3, $4, $5, $6)"),
                _spec("divide", "SELECT 1 / $1::int"),
            ])
            assert conn.wire is not None and type(insert).__name__ == "function"  # no coroutine per call
            when = dt.datetime(2026, 12, 2, 6, 0, 1, 250000, tzinfo=dt.timezone.utc)
            values = (7, "it's ünïcode", when, True, Decimal("1.50"), dt.date(2026, 1, 31))
            assert await insert(values) is None
            assert await insert((8, None, None, False, None, None)) is None
            # a query that fails raises asyncpg's own error class, and the session goes on
            with pytest.raises(asyncpg.DivisionByZeroError) as err:
                await divide((0,))
            assert err.value.sqlstate == "22012" and not conn.is_broken(err.value)
            await divide((1,))
            # setup work on a load connection: asyncpg's turn, then the wire's again
            got = await conn.fetch_all("SELECT i, s, ts, b, n, d FROM wire_t ORDER BY i")
            assert got == [values, (8, None, None, False, None, None)]
            await insert((9, "after", None, None, None, None))
            assert (await conn.fetch_all("SELECT count(*) FROM wire_t"))[0][0] == 3
        finally:
            await conn.close()
        assert conn.conn.is_closed()

    asyncio.run(go())


def test_a_statement_the_wire_cannot_bind_keeps_asyncpg(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANBENCH_PG_WIRE", "1")

    async def go() -> None:
        target = await PostgresTarget.open(pg_dsn, Settings())
        conn = await target.connect(tag={"test": "wire"})
        try:
            plain, array = await conn.prepare([_spec("plain", "SELECT $1::int"),
                                               _spec("array", "SELECT cardinality($1::int[])")])
            # all or nothing: one kind asyncpg must bind keeps the whole connection on asyncpg
            assert conn.wire is None and await array(([1, 2, 3],)) == 3 and await plain((5,)) == 5
        finally:
            await conn.close()

    asyncio.run(go())


def test_a_connection_killed_under_the_wire_reads_as_broken(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANBENCH_PG_WIRE", "1")

    async def go() -> None:
        target = await PostgresTarget.open(pg_dsn, Settings())
        conn = await target.connect(tag={"test": "wire-kill"})
        try:
            [select] = await conn.prepare([_spec("select", "SELECT pg_backend_pid()")])
            pid = (await conn.fetch_all("SELECT pg_backend_pid()"))[0][0]
            await select(())
            await asyncio.to_thread(rows, pg_dsn, "SELECT pg_terminate_backend($1)", pid)
            with pytest.raises(Exception) as err:
                for _ in range(50):  # the server's goodbye may come after one more execution
                    await asyncio.wait_for(select(()), 5)
            assert conn.is_broken(err.value), repr(err.value)
        finally:
            await conn.close()

    asyncio.run(go())


@pytest.mark.parametrize("wire", ["1", "0"])
def test_counts_equal_what_the_server_executed(pg_dsn: str, tmp_path: Path, wire: str) -> None:
    """Every UPDATE adds 1 to a balance: the sum's growth is the updates the server ran, and
    the run's update count must match it (a query cut at the drain may or may not have run)."""
    def total() -> int:
        return int(rows(pg_dsn, "SELECT sum(abalance) AS s FROM spanbench_accounts")[0]["s"] or 0)

    before = total()
    res = run_cli(["run", "--target-dsn", pg_dsn, "--workers", "2", "--connections", "4", "--warmup", "0.3s",
                   "--duration", "1.5s"], output=tmp_path,
                  env=spanbench_env(SPANBENCH_PG_WIRE=wire, SPANBENCH_UPDATE_SHARE="0.3"))
    assert res.returncode == 0, res.stderr
    executed = total() - before
    results = json.loads((res.run_dir() / "results.json").read_text())
    updates = sum(p.get("update", {}).get("count", 0) for p in results["phases"].values())
    cut = results["measurement"]["cut"]  # no cooldown: the drain cuts the measurement's last queries
    assert results["measurement"]["errors"] == 0 and updates > 100
    assert updates - cut <= executed <= updates, (executed, updates, cut)
    assert results["measurement"]["latency"]["point_select"]["count"] > updates


def _scenario_run(pg_dsn: str, tmp_path: Path, wire: str) -> dict:
    scenario = tmp_path / f"mix-{wire}.toml"
    scenario.write_text('''version = 1

[[queries]]
name = "sleepy"
weight = 80
sql = "SELECT pg_sleep($1::float8 / 1000), $1"
params = ["ms"]

[[queries]]
name = "broken"
weight = 20
sql = "SELECT 1 / $1::int"
params = ["zero"]

[params.ms]
kind = "choice"
values = [3]

[params.zero]
kind = "choice"
values = [0]
''')
    res = run_cli(["run", str(scenario), "--target-dsn", pg_dsn, "--workers", "2", "--connections", "4",
                   "--warmup", "0.3s", "--duration", "1.5s"], output=tmp_path / f"runs-{wire}",
                  env=spanbench_env(SPANBENCH_PG_WIRE=wire, SPANBENCH_MAX_CONSECUTIVE_ERRORS="1000000"))
    assert res.returncode == 4, res.stderr  # completed with errors: every "broken" execution fails
    return json.loads((res.run_dir() / "results.json").read_text())


def test_the_wire_path_measures_what_asyncpg_s_path_measures(pg_dsn: str, tmp_path: Path) -> None:
    """The same workload on both paths: the same kinds, the same error classes in the same
    share, the same latency for a query whose time the server sets, every phase attributed."""
    wire, plain = _scenario_run(pg_dsn, tmp_path, "1"), _scenario_run(pg_dsn, tmp_path, "0")
    for res in (wire, plain):
        m = res["measurement"]
        assert set(m["latency"]) == {"sleepy", "broken"}
        assert m["errors_by_class"] == {"broken": {"22": m["errors"]}}  # SQLSTATE 22012, class 22
        sent = m["queries"] + m["errors"]
        assert 0.1 <= m["errors"] / sent <= 0.3, (m["errors"], sent)  # the plan's 20 %
        assert m["latency"]["broken"]["errors"] == m["errors"]
        # pg_sleep(3 ms) sets the latency: never below it, and not far above it (a busy machine
        # adds scheduling delay, never a factor of 3)
        assert 3.0 <= m["latency"]["sleepy"]["p50_ms"] <= 9.0, m["latency"]["sleepy"]
        assert res["phases"]["WARMUP"]["sleepy"]["count"] > 0 and res["phases"]["MEASUREMENT"]["sleepy"]["count"] > 0
    a, b = wire["measurement"]["latency"]["sleepy"], plain["measurement"]["latency"]["sleepy"]
    assert 0.5 <= a["p50_ms"] / b["p50_ms"] <= 2.0, (a, b)
