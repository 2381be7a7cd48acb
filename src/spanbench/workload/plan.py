"""A worker's plan: which kind runs at each execution, with which bound arguments.

Two lists of the same length, ``mix`` (kind indexes) and ``args`` (one ready tuple per
execution: the statement's arguments, or for a transaction a tuple of each statement's),
built before the load. The hot loop walks both with one index, so a query costs a list
index and a call, and no allocation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from spanbench.scenario import Workload
from spanbench.sql import collection_of, first_keyword
from spanbench.targets.base import QuerySpec

PLAN_LENGTH = 1 << 16  # executions before a connection's plan repeats (per worker)


def smooth_wrr(weights: Sequence[int]) -> list[int]:
    """One cycle of smooth weighted round-robin (nginx's): each kind spread evenly through it.

    Deterministic: ties go to the lower index. The cycle is sum(weights) / gcd long.
    """
    g = math.gcd(*weights)
    w = [x // g for x in weights]
    total = sum(w)
    current = [0] * len(w)
    out = []
    for _ in range(total):
        for i, x in enumerate(w):
            current[i] += x
        best = max(range(len(w)), key=lambda i: (current[i], -i))
        current[best] -= total
        out.append(best)
    return out


def plan_mix(weights: Sequence[int], length: int = PLAN_LENGTH) -> list[int]:
    """Whole cycles of the round-robin, about ``length`` executions (at least one cycle)."""
    cycle = smooth_wrr(weights)
    return cycle * max(1, round(length / len(cycle)))


def build_args(workload: Workload, mix: Sequence[int], draw: Callable[[str, int], list[Any]]) -> list[tuple[Any, ...]]:
    """One argument tuple per execution of ``mix``; ``draw(param, n)`` gives n values of a param.

    Each parameter is drawn once per execution of a query that uses it: a transaction's
    statements see the same value, two executions (of any kinds) draw their own.
    """
    queries = workload.queries
    counts = [0] * len(queries)
    for k in mix:
        counts[k] += 1
    need: dict[str, int] = {}
    for q, c in zip(queries, counts):
        for p in q.param_names:
            need[p] = need.get(p, 0) + c
    values = {p: draw(p, n) for p, n in need.items()}
    taken = dict.fromkeys(need, 0)
    per_kind: list[list[Any]] = []
    for q, c in zip(queries, counts):
        cols = {}
        for p in q.param_names:  # this kind's stretch of each parameter's values
            cols[p] = values[p][taken[p]:taken[p] + c]
            taken[p] += c
        rows = [_tuples([cols[p] for p in st.params], c) for st in q.statements]
        per_kind.append(list(zip(*rows)) if q.transaction is not None else rows[0])
    its = [iter(rows) for rows in per_kind]
    return [next(its[k]) for k in mix]


def _tuples(columns: list[list[Any]], n: int) -> list[tuple[Any, ...]]:
    return list(zip(*columns)) if columns else [()] * n


def query_specs(workload: Workload, dialect: str) -> list[QuerySpec]:
    """The kinds as the targets prepare them and the spans describe them, in the scenario's order."""
    out = []
    for q in workload.queries:
        statements = [st.sql for st in q.statements]
        if q.transaction is not None:
            out.append(QuerySpec(kind=q.name, operation="TRANSACTION", sql="; ".join(statements),
                                 collection=collection_of(statements[0]), statements=tuple(statements),
                                 access=q.access))
        else:
            out.append(QuerySpec(kind=q.name, operation=first_keyword(statements[0]), sql=statements[0],
                                 collection=collection_of(statements[0]), access=q.access))
    return out
