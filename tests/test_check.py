"""`spanbench check`, `spanbench pools build`, and the run's promises about someone's database.

Each bad scenario is one line naming where it is, and exit 2; with a DSN, a statement the
server refuses is named by its query. A run against a DSN never creates the demo table
unasked; `run --init` does. Errors are counted per kind and class; the query log is opt-in.
"""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from conftest import run_cli

GOOD = '''version = 1
[[queries]]
name = "lookup"
weight = 9
sql = "SELECT abalance FROM spanbench_accounts WHERE aid = $1"
params = ["aid"]
[[queries]]
name = "bump"
transaction = [
  { sql = "UPDATE spanbench_accounts SET abalance = abalance + $1 WHERE aid = $2", params = ["delta", "aid"] },
  { sql = "SELECT abalance FROM spanbench_accounts WHERE aid = $1", params = ["aid"] },
]
[params.aid]
kind = "int"
column = "spanbench_accounts.aid"
[params.delta]
kind = "int"
min = -5
max = 5
'''


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    return path


def check(tmp_path: Path, text: str, *extra: str) -> tuple[int, list[str]]:
    res = run_cli(["check", str(write(tmp_path, text)), *extra], timeout=120)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert "Traceback" not in res.stderr
    return res.returncode, lines


def test_a_good_scenario_passes(tmp_path: Path, pg_dsn: str) -> None:
    res = run_cli(["check", str(write(tmp_path, GOOD)), "--target-dsn", pg_dsn])
    assert res.returncode == 0, res.stderr
    assert "ok: 2 queries (lookup, bump), 2 params; every statement prepared on" in res.stdout


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda t: "wrokers = 2\n" + t, "wrokers: unknown key"),
    (lambda t: t.replace('name = "lookup"', 'name = "lookup"\nwieght = 3'), "query 'lookup': wieght: unknown key"),
    (lambda t: t.replace("WHERE aid = $1\"\nparams", "WHERE aid = $1 OR aid = $2\"\nparams"),
     "query 'lookup': 2 placeholder(s) in the SQL but 1 param(s) given"),
    (lambda t: t.replace('params = ["delta", "aid"]', 'params = ["delta", "aidd"]'),
     "query 'bump' statement 1: unknown param 'aidd' (no [params.aidd])"),
    (lambda t: t.replace("weight = 9", "weight = 0"), "query 'lookup': weight: Input should be greater than 0 (got 0)"),
    (lambda t: t.replace("weight = 9", 'weight = "x"'), "query 'lookup': weight: Input should be a valid integer"),
    (lambda t: t.replace("min = -5", "min = 6"), "param 'delta': min (6) is greater than max (5)"),
    (lambda t: t.replace('kind = "int"\nmin', 'kind = "integer"\nmin'), "param 'delta': Input tag 'integer' found"),
    (lambda t: t.replace("version = 1", "version = 2"), "version: a scenario with queries needs version = 1 (got 2)"),
    (lambda t: t.replace("WHERE aid = $1\"\nparams", "WHERE aid = ?\"\nparams"),
     "query 'lookup': uses ? placeholders; PostgreSQL takes $1, $2, …"),
])
def test_each_bad_case_is_one_line(tmp_path: Path, edit, expected: str) -> None:
    code, lines = check(tmp_path, edit(GOOD))
    assert code == 2
    assert len(lines) == 1, lines
    assert expected in lines[0], lines


def test_several_problems_are_several_lines(tmp_path: Path) -> None:
    text = "wrokers = 2\n" + GOOD.replace("weight = 9", "weight = -1").replace('params = ["delta", "aid"]', 'params = ["aid"]')
    code, lines = check(tmp_path, text)
    assert code == 2 and len(lines) == 3, lines


def test_sql_errors_with_a_dsn_name_their_query(tmp_path: Path, pg_dsn: str) -> None:
    text = GOOD.replace("SELECT abalance FROM spanbench_accounts WHERE aid = $1\"\nparams",
                        "SELECT abalance FROM no_such_table WHERE aid = $1\"\nparams")
    text = text.replace("SET abalance = abalance + $1", "SET nope = nope + $1")
    code, lines = check(tmp_path, text, "--target-dsn", pg_dsn)
    assert code == 2 and len(lines) == 2, lines
    assert "query 'lookup': relation \"no_such_table\" does not exist (SQLSTATE 42P01)" in lines[0]
    assert "query 'bump' statement 1: column \"nope\" does not exist (SQLSTATE 42703)" in lines[1]


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    res = run_cli(["check", str(tmp_path / "nope.toml")])
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0 and "not found" in res.stderr


# ---------------------------------------------------------------------------- the database


def other_database(pg_dsn: str, name: str) -> str:
    async def go() -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name}")
            await conn.execute(f"CREATE DATABASE {name}")
        finally:
            await conn.close()

    asyncio.run(go())
    parts = urlsplit(pg_dsn)
    return urlunsplit(parts._replace(path="/" + name))


def has_demo_table(dsn: str) -> bool:
    async def go() -> bool:
        conn = await asyncpg.connect(dsn)
        try:
            return bool(await conn.fetchval("SELECT to_regclass('spanbench_accounts') IS NOT NULL"))
        finally:
            await conn.close()

    return asyncio.run(go())


def test_a_run_never_creates_the_demo_table_unasked(pg_dsn: str, cli) -> None:
    dsn = other_database(pg_dsn, "no_demo")
    res = cli("run", "--target-dsn", dsn, "--workers", "1", "--connections", "1", "--warmup", "0s", "--duration", "0.5s")
    assert res.returncode == 1
    error = [line for line in res.stderr.splitlines() if "spanbench: error" in line]
    assert len(error) == 1 and "the demo table spanbench_accounts is not there" in error[0]
    assert "spanbench init --target-dsn" in error[0] and "run --init" in error[0]
    assert not has_demo_table(dsn)
    res = cli("run", "--target-dsn", dsn, "--init", "--workers", "1", "--connections", "1", "--warmup", "0s",
              "--duration", "0.5s", env=None)
    assert res.returncode == 0, res.stderr
    assert has_demo_table(dsn)


def test_init_recreates_with_the_rows_asked(pg_dsn: str) -> None:
    dsn = other_database(pg_dsn, "init_rows")
    for rows in (500, 120):
        res = run_cli(["init", "--target-dsn", dsn, "--rows", str(rows)])
        assert res.returncode == 0, res.stderr

        async def count() -> int:
            conn = await asyncpg.connect(dsn)
            try:
                return await conn.fetchval("SELECT count(*) FROM spanbench_accounts")
            finally:
                await conn.close()

        assert asyncio.run(count()) == rows


def test_pools_build_samples_into_the_control_store(pg_dsn: str, tmp_path: Path) -> None:
    text = GOOD.replace('[params.aid]\nkind = "int"\ncolumn = "spanbench_accounts.aid"',
                        '[params.aid]\nkind = "pool"\ncolumn = "spanbench_accounts.aid"\nsize = 300')
    res = run_cli(["pools", "build", str(write(tmp_path, text)), "--target-dsn", pg_dsn])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "value pool spanbench_accounts.aid: 300 values"

    async def pool() -> list[int]:
        conn = await asyncpg.connect(pg_dsn)
        try:
            rows = await conn.fetch("SELECT value FROM spanbench.template_value_pools"
                                    " WHERE pool_name = 'spanbench_accounts.aid' ORDER BY ordinal")
            return [json.loads(r["value"]) for r in rows]
        finally:
            await conn.close()

    values = asyncio.run(pool())
    assert len(values) == len(set(values)) == 300 and all(1 <= v <= 20_000 for v in values)
    res = run_cli(["pools", "build", str(write(tmp_path, GOOD)), "--target-dsn", pg_dsn])
    assert res.returncode == 2 and "no pool parameters" in res.stderr


def test_errors_by_class_and_the_query_log(pg_dsn: str, tmp_path: Path) -> None:
    text = '''version = 1
query_log = "csv"
query_log_sample = 0.5
[[queries]]
name = "divide"
sql = "SELECT 1 / $1::int"
params = ["d"]
[[queries]]
name = "lookup"
sql = "SELECT abalance FROM spanbench_accounts WHERE aid = $1"
params = ["aid"]
[params.d]
kind = "choice"
values = [0, 1, 1, 1]
[params.aid]
kind = "int"
min = 1
max = 20000
'''
    res = run_cli(["run", str(write(tmp_path, text)), "--target-dsn", pg_dsn, "--workers", "2", "--connections", "2",
                   "--warmup", "0.2s", "--duration", "1s"], output=tmp_path / "runs")
    assert res.returncode in (0, 4), res.stderr  # 4: completed, with errors (they are the point here)
    run_dir = res.run_dir()
    results = json.loads((run_dir / "results.json").read_text())
    m = results["measurement"]
    by_class = m["errors_by_class"]
    assert set(by_class) == {"divide"} and set(by_class["divide"]) == {"22"}  # SQLSTATE class 22: data exception
    assert by_class["divide"]["22"] == results["phases"]["MEASUREMENT"]["divide"]["errors"] > 0
    logs = sorted(run_dir.glob("queries-w*.csv"))
    assert [p.name for p in logs] == ["queries-w0.csv", "queries-w1.csv"]
    rows = [r for p in logs for r in csv.DictReader(p.open())]
    assert rows and set(rows[0]) == {"phase", "kind", "start_unix_ns", "end_unix_ns", "error_class"}
    assert {r["phase"] for r in rows} >= {"WARMUP", "MEASUREMENT"}
    assert {r["kind"] for r in rows} == {"divide", "lookup"}
    assert all(int(r["end_unix_ns"]) >= int(r["start_unix_ns"]) > 1.6e18 for r in rows)
    assert {r["error_class"] for r in rows if r["kind"] == "lookup"} == {""}
    assert "22" in {r["error_class"] for r in rows if r["kind"] == "divide"}
    total = sum(p[k]["count"] + p[k]["errors"] for p in results["phases"].values() for k in p)
    ok = sum(p[k]["count"] for p in results["phases"].values() for k in p)
    logged_ok = sum(1 for r in rows if not r["error_class"])
    # half the successful queries (plus each connection's first), every error
    assert abs(logged_ok - ok / 2) <= 0.02 * ok + 4, (logged_ok, ok)
    assert len(rows) - logged_ok == total - ok
