"""What a worker does with its scenario before START: profile, load pools, draw, plan.

The worker opens the spans (``setup.profile_table``, ``setup.load_value_pools``,
``setup.draw_params``) and calls these; nothing here knows a table by name: the ranges and
pools come from the scenario's parameters.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field
from typing import Any

from spanbench.errors import RunFailed
from spanbench.scenario import IntParam, Workload
from spanbench.workload.params import draw
from spanbench.workload.plan import PLAN_LENGTH, build_args, plan_mix
from spanbench.workload.pools import pool_names


@dataclass
class Plan:
    mix: list[int]
    args: list[tuple[Any, ...]]
    ranges: dict[str, tuple[int, int]] = field(default_factory=dict)
    pools: dict[str, int] = field(default_factory=dict)  # pool name -> this worker's shard size


def profiled_columns(workload: Workload) -> list[str]:
    """The ``TABLE.COLUMN`` of every int parameter whose range is read from the target."""
    return list(dict.fromkeys(p.column for p in workload.params.values()
                              if isinstance(p, IntParam) and p.column and (p.min is None or p.max is None)))


async def column_range(conn: Any, column: str) -> tuple[int, int] | None:
    """(min, max) of a column, from its index when it has one; None when the table is empty."""
    table, col = column.rsplit(".", 1)
    try:
        rows = await conn.fetch_all(f"SELECT min({col}), max({col}) FROM {table}")
    except Exception as exc:  # noqa: BLE001 - the driver's message, in one line
        msg = getattr(exc, "msg", None) or str(exc)
        raise RunFailed(f"cannot read the range of {column}: {' '.join(str(msg).split())[:300]}") from None
    lo, hi = rows[0]
    return None if lo is None else (int(lo), int(hi))


def empty_column_error(column: str, demo: bool) -> RunFailed:
    if demo:
        return RunFailed(f"table {column.rsplit('.', 1)[0]} is empty: run `spanbench init` first")
    return RunFailed(f"column {column} has no values: the int parameter's range cannot be read")


async def load_pools(control: Any, workload: Workload) -> dict[str, list[Any]]:
    """Every pool of the workload from TEMPLATE_VALUE_POOLS; a missing one is an error naming the fix."""
    out = {}
    for name in pool_names(workload):
        values = await control.fetch_value_pool(name)
        if not values:
            raise RunFailed(f"value pool {name} is empty: run `spanbench pools build SCENARIO` first")
        out[name] = values
    return out


def build_plan(workload: Workload, *, seed_text: str, group: int, groups: int,
               ranges: dict[str, tuple[int, int]], pools: dict[str, list[Any]],
               length: int = PLAN_LENGTH) -> Plan:
    """The worker's mix and argument tuples, reproducible from ``seed_text`` (run id and worker)."""
    mix = plan_mix([q.weight for q in workload.queries], length)

    def values(name: str, n: int) -> list[Any]:
        p = workload.params[name]
        rng = random.Random(zlib.crc32(f"{seed_text}/{name}".encode()))
        column = getattr(p, "column", None)
        return draw(p, n, rng, group=group, groups=groups, pool=pools.get(column or "", ()),
                    int_range=ranges.get(column or ""))

    args = build_args(workload, mix, values)
    shards = {name: len(v[group::groups]) or 1 for name, v in pools.items()}
    return Plan(mix=mix, args=args, ranges=ranges, pools=shards)
