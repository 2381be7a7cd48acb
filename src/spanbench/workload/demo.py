"""The built-in demo: a scenario like any other, on pgbench's accounts table under another name.

The table has pgbench_accounts' shape so that ``pgbench -S`` and spanbench's point lookups
do the same work per query, which is what makes the comparison in ``bench/`` fair. Its
queries are built here as a ``Workload`` (the SQL in the target's placeholder style, the
update share from the settings); the workers see only that, never the table's name.

As a scenario file (PostgreSQL)::

    version = 1
    [[queries]]
    name = "point_select"
    weight = 95
    sql = "SELECT abalance FROM spanbench_accounts WHERE aid = $1"
    params = ["aid"]
    [[queries]]
    name = "update"
    weight = 5
    sql = "UPDATE spanbench_accounts SET abalance = abalance + 1 WHERE aid = $1"
    params = ["aid"]
    [params.aid]
    kind = "int"
    column = "spanbench_accounts.aid"   # min and max read from the table at setup
"""

from __future__ import annotations

from typing import Any

from spanbench.errors import ConfigError, TargetError
from spanbench.scenario import IntParam, Query, Workload

TABLE = "spanbench_accounts"
KEY = "aid"

POINT_SELECT = "point_select"
UPDATE = "update"
_MIX_SCALE = 1000  # the update share is kept to a tenth of a percent, as before


def demo_workload(dialect: str, *, update_share: float = 0.05, point_select_only: bool = False) -> Workload:
    """The demo's queries: index 0 is the point lookup (unless every query is an update)."""
    ph = "?" if dialect == "snowflake" else "$1"
    updates = 0 if point_select_only else round(_MIX_SCALE * update_share)
    queries = []
    if updates < _MIX_SCALE:
        queries.append(Query(name=POINT_SELECT, weight=_MIX_SCALE - updates,
                             sql=f"SELECT abalance FROM {TABLE} WHERE aid = {ph}", params=["aid"]))
    if updates > 0:
        queries.append(Query(name=UPDATE, weight=updates,
                             sql=f"UPDATE {TABLE} SET abalance = abalance + 1 WHERE aid = {ph}", params=["aid"]))
    return Workload(version=1, queries=queries, params={"aid": IntParam(kind="int", column=f"{TABLE}.{KEY}")})


def demo_queries(dialect: str, *, with_updates: bool) -> list[Any]:
    """The demo's QuerySpecs (point lookup first, then the update when asked)."""
    from spanbench.workload.plan import query_specs

    return query_specs(demo_workload(dialect, update_share=0.5 if with_updates else 0.0), dialect)


async def demo_table_rows(target: Any) -> int | None:
    """The demo table's highest key (its aid runs 1..rows without gaps), 0 when empty, None when absent.

    An index lookup, never a count(*) (that reads the table: 70 ms cold at 100k rows).
    """
    admin = await target.admin()
    try:
        rows = await admin.fetch_all(f"SELECT max(aid) FROM {TABLE}")
    except Exception as exc:  # noqa: BLE001 - a missing table is an answer, anything else is not
        if _missing_table(exc):
            return None
        raise TargetError(f"cannot read {TABLE}: {' '.join(str(exc).split())[:300]}") from None
    return int(rows[0][0] or 0)


def _missing_table(exc: BaseException) -> bool:
    return getattr(exc, "sqlstate", None) == "42P01" or getattr(exc, "errno", None) == 2003


async def init_demo_table(target: Any, rows: int) -> None:
    """Drop, create and fill the demo table with ``rows`` rows (``spanbench init``, ``run --init``).

    pgbench_accounts' shape: aid 1..rows without gaps, bid per 100 000 rows, 84-char filler.
    """
    n = int(rows)
    if n <= 0:
        raise ConfigError("rows must be positive")
    admin = await target.admin()
    if target.dialect == "snowflake":
        statements = [
            f"CREATE OR REPLACE TABLE {TABLE} (aid INTEGER NOT NULL PRIMARY KEY, bid INTEGER NOT NULL,"
            " abalance INTEGER NOT NULL, filler VARCHAR(84))",
            # SEQ4() may have gaps; ROW_NUMBER() over it does not. GENERATOR takes no bind.
            f"INSERT INTO {TABLE} (aid, bid, abalance, filler)"
            " SELECT n, FLOOR((n - 1) / 100000) + 1, 0, REPEAT(' ', 84)"
            f" FROM (SELECT ROW_NUMBER() OVER (ORDER BY SEQ4()) AS n FROM TABLE(GENERATOR(ROWCOUNT => {n})))",
        ]
    else:
        statements = [
            "BEGIN",
            f"DROP TABLE IF EXISTS {TABLE}",
            f"CREATE TABLE {TABLE} (aid integer NOT NULL, bid integer NOT NULL,"
            " abalance integer NOT NULL, filler character(84)) WITH (fillfactor = 100)",
            f"INSERT INTO {TABLE} (aid, bid, abalance, filler)"
            f" SELECT g, (g - 1) / 100000 + 1, 0, '' FROM generate_series(1, {n}) AS g",
            f"ALTER TABLE {TABLE} ADD PRIMARY KEY (aid)",
            "COMMIT",
            f"VACUUM ANALYZE {TABLE}",  # outside the transaction: VACUUM cannot run in one
        ]
    for sql in statements:
        try:
            await admin.fetch_all(sql)
        except Exception as exc:  # noqa: BLE001
            if target.dialect != "snowflake":
                import contextlib

                with contextlib.suppress(Exception):
                    await admin.fetch_all("ROLLBACK")
            msg = getattr(exc, "msg", None) or str(exc)
            raise TargetError(f"cannot create {TABLE}: {' '.join(str(msg).split())[:300]}") from None
