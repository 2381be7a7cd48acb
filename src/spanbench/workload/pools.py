"""Value pools: a column's values sampled from the target into TEMPLATE_VALUE_POOLS.

``spanbench pools build`` samples every ``pool`` parameter of a scenario; a run builds the
ones that are missing (``orchestrator.build_value_pools``). Sampling only reads: TABLESAMPLE
on PostgreSQL, SAMPLE on Snowflake, so a pool of a billion-row table costs a few pages.
The pool's name is its column, ``TABLE.COLUMN``: two parameters on one column share it.
"""

from __future__ import annotations

from typing import Any

from spanbench.errors import TargetError
from spanbench.scenario import PoolParam, Workload


def pool_names(workload: Workload | None) -> dict[str, PoolParam]:
    """{pool name: the parameter that sizes it} (the largest size when several share a column)."""
    out: dict[str, PoolParam] = {}
    for p in (workload.pool_params().values() if workload else ()):
        if p.column not in out or p.size > out[p.column].size:
            out[p.column] = p
    return out


def _jsonable(v: Any) -> Any:
    return v if isinstance(v, (bool, int, float, str)) else str(v)


async def sample_pool(target: Any, param: PoolParam) -> list[Any]:
    """Up to ``param.size`` distinct non-null values of ``param.column``, in random order."""
    table, column = param.column.rsplit(".", 1)
    admin = await target.admin()
    try:
        if target.dialect == "snowflake":
            rows = await admin.fetch_all(
                f"SELECT DISTINCT {column} FROM {table} SAMPLE ({int(param.size)} ROWS) WHERE {column} IS NOT NULL")
        else:
            rows = await _sample_postgres(admin, table, column, param.size)
    except TargetError:
        raise
    except Exception as exc:  # noqa: BLE001 - the driver's message, in one line
        msg = getattr(exc, "msg", None) or str(exc)
        raise TargetError(f"cannot sample {param.column}: {' '.join(str(msg).split())[:300]}") from None
    return [_jsonable(r[0]) for r in rows]


async def _sample_postgres(admin: Any, table: str, column: str, size: int) -> list[tuple[Any, ...]]:
    # TABLESAMPLE SYSTEM reads whole pages: ask for a share of the table that should hold
    # twice the pool, from the planner's row estimate (a count(*) only when never analysed).
    est = (await admin.fetch_all(f"SELECT reltuples::bigint FROM pg_class WHERE oid = '{table}'::regclass"))[0][0]
    if est is None or est <= 0:
        est = (await admin.fetch_all(f"SELECT count(*) FROM {table}"))[0][0]
    pct = 100.0 if not est else min(100.0, 200.0 * size / est)
    while True:
        rows = await admin.fetch_all(
            f"SELECT v FROM (SELECT DISTINCT {column} AS v FROM {table} TABLESAMPLE SYSTEM ({pct!r})"
            f" WHERE {column} IS NOT NULL) s ORDER BY random() LIMIT {int(size)}")
        if len(rows) >= size or pct >= 100.0:
            return rows
        pct = min(100.0, pct * 4)  # the sampled pages held too few distinct values


async def build_pools(target: Any, control: Any, workload: Workload, only: set[str] | None = None) -> dict[str, int]:
    """Sample and store every pool of ``workload`` (or those in ``only``); {pool name: values stored}."""
    built: dict[str, int] = {}
    for name, param in pool_names(workload).items():
        if only is not None and name not in only:
            continue
        values = await sample_pool(target, param)
        if not values:
            raise TargetError(f"value pool {name}: the column has no values to sample")
        await control.store_value_pool(name, values)
        built[name] = len(values)
    return built


async def missing_pools(control: Any, workload: Workload | None) -> list[str]:
    """The pools of ``workload`` that TEMPLATE_VALUE_POOLS does not hold yet."""
    return [name for name in pool_names(workload) if not await control.fetch_value_pool(name)]
