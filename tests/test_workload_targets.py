"""Several bound arguments and transactions on the real targets: PostgreSQL and fakesnow."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import pytest
from conftest import run_cli, spanbench_env
from support.fakesnow_server import FakesnowServer, unique_name

from spanbench.scenario import Workload
from spanbench.settings import Settings
from spanbench.targets.base import error_class
from spanbench.targets.open import open_target
from spanbench.workload.plan import query_specs

TXN = Workload(queries=[
    {"name": "move", "transaction": [
        {"sql": "UPDATE wt SET v = v + $1 WHERE id = $2", "params": ["d", "a"]},
        {"sql": "UPDATE wt SET v = v - $1 WHERE id = $2", "params": ["d", "b"]},
    ]},
    {"name": "pair", "sql": "SELECT v FROM wt WHERE id = $1 OR id = $2 ORDER BY id", "params": ["a", "b"]},
], params={"a": {"kind": "int", "min": 1, "max": 1}, "b": {"kind": "int", "min": 2, "max": 2},
           "d": {"kind": "int", "min": 1, "max": 1}})


def test_postgres_transaction_commits_and_rolls_back(pg_dsn: str) -> None:
    async def go() -> None:
        setup = await asyncpg.connect(pg_dsn)
        await setup.execute("DROP TABLE IF EXISTS wt; CREATE TABLE wt (id int PRIMARY KEY, v int NOT NULL CHECK (v >= 0));"
                            "INSERT INTO wt VALUES (1, 0), (2, 1)")
        target = await open_target(pg_dsn, Settings())
        conn = await target.connect(phase="INIT", tag={"t": "txn"})
        try:
            move, pair = await conn.prepare(query_specs(TXN, "postgresql"))
            assert getattr(pair, "__name__", "") == "fetch"  # two arguments on the fast path
            assert await pair((1, 2)) == 0
            await move(((3, 1), (1, 2)))  # +3 on 1, -1 on 2: both in one transaction
            assert await setup.fetch("SELECT v FROM wt ORDER BY id") == [(3,), (0,)]
            with pytest.raises(asyncpg.CheckViolationError) as err:
                await move(((5, 1), (5, 2)))  # the second statement breaks the CHECK: all of it rolled back
            assert error_class(err.value) == "23"
            assert not conn.conn.is_in_transaction()
            assert await setup.fetch("SELECT v FROM wt ORDER BY id") == [(3,), (0,)]
            await move(((1, 2), (1, 1)))  # and the connection goes on
            assert await setup.fetch("SELECT v FROM wt ORDER BY id") == [(2,), (1,)]
        finally:
            await conn.close()
            await target.close()
            await setup.execute("DROP TABLE wt")
            await setup.close()

    asyncio.run(go())


def test_snowflake_transaction_and_two_binds(fakesnow: FakesnowServer) -> None:
    dsn = fakesnow.dsn(unique_name("TXN"))
    sf = Workload(queries=[
        {"name": "move", "transaction": [{"sql": "UPDATE wt SET v = v + ? WHERE id = ?", "params": ["d", "a"]},
                                         {"sql": "UPDATE wt SET v = v - ? WHERE id = ?", "params": ["d", "b"]}]},
        {"name": "pair", "sql": "SELECT v FROM wt WHERE id = ? OR id = ? ORDER BY id", "params": ["a", "b"]},
    ], params=TXN.params)

    async def go() -> None:
        target = await open_target(dsn, Settings(target_dsn=dsn))
        admin = await target.admin()
        await admin.fetch_all("CREATE TABLE wt (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
        await admin.fetch_all("INSERT INTO wt VALUES (1, 0), (2, 1)")
        conn = await target.connect(phase="INIT", tag={"run": "t"})
        try:
            move, pair = await conn.prepare(query_specs(sf, "snowflake"))
            assert await pair((1, 2)) == [(0,), (1,)]
            await move(((3, 1), (1, 2)))
            assert await pair((1, 2)) == [(3,), (0,)]
            with pytest.raises(Exception) as err:
                await move(((1, 1), ("not a number", 2)))
            assert error_class(err.value).isdigit()  # the connector's error code
            assert await pair((1, 2)) == [(3,), (0,)]  # rolled back
        finally:
            await conn.close()
            await target.close()

    asyncio.run(go())


def test_snowflake_scenario_run_with_a_transaction(fakesnow: FakesnowServer, tmp_path: Path) -> None:
    dsn = fakesnow.dsn(unique_name("SCN"))

    async def make() -> None:
        target = await open_target(dsn, Settings(target_dsn=dsn))
        admin = await target.admin()
        await admin.fetch_all("CREATE TABLE acct (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
        await admin.fetch_all("INSERT INTO acct SELECT SEQ4() + 1, 0 FROM TABLE(GENERATOR(ROWCOUNT => 500))")
        await target.close()

    asyncio.run(make())
    scenario = tmp_path / "sf.toml"
    scenario.write_text('''version = 1
[[queries]]
name = "read"
weight = 3
sql = "SELECT v FROM acct WHERE id = ?"
params = ["id"]
[[queries]]
name = "bump"
transaction = [
  { sql = "UPDATE acct SET v = v + 1 WHERE id = ?", params = ["id"] },
  { sql = "SELECT v FROM acct WHERE id = ?", params = ["id"] },
]
[params.id]
kind = "pool"
column = "acct.id"
size = 100
''')
    # One connection: fakesnow runs on one duckdb file, and two sessions' transactions on the
    # same rows can hold each other up past the drain (which spanbench then rightly reports as
    # a cut query, exit 4). A slow emulator under a loaded CI gets a longer drain as well.
    res = run_cli(["run", str(scenario), "--target-dsn", dsn, "--workers", "1", "--connections", "1",
                   "--warmup", "0.2s", "--duration", "1s"], output=tmp_path / "runs",
                  env=spanbench_env(SPANBENCH_DRAIN_TIMEOUT="20s"), timeout=240)
    assert res.returncode == 0, res.stderr
    results = json.loads((res.run_dir() / "results.json").read_text())
    m = results["measurement"]
    assert set(m["latency"]) == {"read", "bump"} and m["errors"] == 0
    bumps = sum(p["bump"]["count"] for p in results["phases"].values() if "bump" in p)

    async def total() -> int:
        target = await open_target(dsn, Settings(target_dsn=dsn))
        rows = await (await target.admin()).fetch_all("SELECT SUM(v) FROM acct")
        await target.close()
        return int(rows[0][0])

    assert bumps > 0 and asyncio.run(total()) == bumps
