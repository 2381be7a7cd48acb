"""The demo workload: pgbench's accounts table under another name, point lookups and updates.

The table has pgbench_accounts' shape so that ``pgbench -S`` and spanbench's point lookups
do the same work per query, which is what makes the comparison in ``bench/`` fair.
"""

from __future__ import annotations

from spanbench.targets.base import QuerySpec

TABLE = "spanbench_accounts"
KEY = "aid"

POINT_SELECT = "point_select"
UPDATE = "update"

_SQL: dict[str, dict[str, str]] = {
    "postgresql": {
        POINT_SELECT: f"SELECT abalance FROM {TABLE} WHERE aid = $1",
        UPDATE: f"UPDATE {TABLE} SET abalance = abalance + 1 WHERE aid = $1",
    },
    "snowflake": {
        POINT_SELECT: f"SELECT abalance FROM {TABLE} WHERE aid = ?",
        UPDATE: f"UPDATE {TABLE} SET abalance = abalance + 1 WHERE aid = ?",
    },
}

_OPERATION = {POINT_SELECT: "SELECT", UPDATE: "UPDATE"}


def demo_queries(dialect: str, *, with_updates: bool) -> list[QuerySpec]:
    """The query kinds, in a fixed order: index 0 is always the point lookup.

    Every kind takes exactly one parameter, the key, so the hot loop calls ``fn(key)``.
    """
    kinds = [POINT_SELECT, UPDATE] if with_updates else [POINT_SELECT]
    sql = _SQL[dialect]
    return [QuerySpec(kind=k, operation=_OPERATION[k], sql=sql[k], collection=TABLE) for k in kinds]
