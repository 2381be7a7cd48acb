#!/usr/bin/env python3
"""What the load loops themselves cost per query, with no database: ns of client CPU per query.

The connection loops of ``load/closed.py`` and ``load/open.py`` run here against a query
function that completes the way a driver's does (a future resolved by the event loop on its
next turn), so what is timed is the loop's own bookkeeping plus one trip through the event
loop: the part of a query's cost that spanbench adds and a server cannot hide.

Variants, each for ``--queries`` executions over ``--connections`` connections, repeated
``--repeat`` times, interleaved:

- ``closed``: the closed loop;
- ``open-uniform``, ``open-poisson``: the open model at a rate far above what the loop can do
  (saturated: the queue is full, every surplus arrival is dropped and counted; every send is
  late, so every execution takes the three-histogram path);
- ``open-uniform-80``, ``open-poisson-80``: the open model at 80 % of the closed loop's rate
  in the same repeat (reachable: most sends are on time);
- ``open-ontime``: every send on time (a schedule far ahead, sent at once: the open model's
  early window made unbounded for this variant), so every execution takes the on-time path;
  repeatable under callgrind, as ``closed`` and the saturated variants are;
- ``bare``: a loop that only awaits the query, the floor of any asyncio client.

Usage::

    python bench/loop_cost.py                     # 200,000 queries, 8 connections, 5 repeats
    python bench/loop_cost.py --queries 500000 --uvloop

Prints ns per query (min / median / max) and each variant's ratio to ``closed``. A loop that
costs c ns more per query than another lowers the reachable rate by c / (c + server time).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from opentelemetry import trace  # noqa: E402

from spanbench.load.closed import ClosedLoop  # noqa: E402
import spanbench.load.open as open_module  # noqa: E402
from spanbench.load.open import Arrivals, OpenLoop, RateCurve  # noqa: E402
from spanbench.load.query_spans import QuerySpans  # noqa: E402
from spanbench.load.state import MEASUREMENT, LoadState  # noqa: E402
from spanbench.targets.base import QuerySpec  # noqa: E402


VARIANTS = ("closed", "open-uniform", "open-poisson", "open-uniform-80", "open-poisson-80", "open-ontime", "bare")


early_ns = open_module.EARLY_NS


class NullConnection:
    """A connection whose query completes on the event loop's next turn, as a driver's future does."""

    def __init__(self, budget: list[int], state: LoadState) -> None:
        self.budget = budget  # queries left for the whole variant, shared by its connections
        self.state = state
        self.loop = asyncio.get_running_loop()

    async def query(self, args: tuple[Any, ...]) -> None:
        fut = self.loop.create_future()
        self.loop.call_soon(fut.set_result, None)
        await fut
        self.budget[0] -= 1
        if self.budget[0] <= 0:
            self.state.request_stop("done")

    async def set_phase(self, phase: str) -> None:
        return None

    def is_broken(self, exc: BaseException) -> bool:
        return False

    def last_query_id(self) -> str | None:
        return None


def _spans(queries: list[QuerySpec]) -> QuerySpans:
    return QuerySpans(trace.get_tracer("loop_cost"), None, queries, system="postgresql", server_address="null",
                      every=1000, slow_s=10.0, cap=0, enabled=False)


async def _variant(name: str, queries: int, connections: int, closed_qps: float) -> tuple[float, float]:
    specs = [QuerySpec(kind="point_select", operation="SELECT", sql="SELECT 1", collection="t")]
    state = LoadState(1, open_model=name.startswith("open"))
    state.enter(MEASUREMENT)
    budget = [queries]
    conns = [NullConnection(budget, state) for _ in range(connections)]
    mix, args = [0] * 1000, [(i,) for i in range(1000)]
    common = dict(mix=mix, args=args, spans=_spans(specs), max_consecutive_errors=10)
    if name == "bare":
        async def bare(c: NullConnection) -> None:
            q = c.query
            a = args[0]
            while not state.stop:
                await q(a)

        coros = [bare(c) for c in conns]
    else:
        if name == "closed":
            loop: ClosedLoop = ClosedLoop(state, **common)
        else:
            poisson = "poisson" in name
            rate = 0.8 * closed_qps if name.endswith("-80") else 1e3 if name == "open-ontime" else 1e9
            open_module.EARLY_NS = 1 << 62 if name == "open-ontime" else early_ns
            arrivals = Arrivals(RateCurve(rate), group=0, groups=1, poisson=poisson, seed="x",
                                origin_perf_ns=time.perf_counter_ns())
            loop = OpenLoop(state, arrivals, max_queue=10_000, **common)
        coros = [loop.run_connection(i, c, [c.query]) for i, c in enumerate(conns)]
    t0, w0 = time.process_time_ns(), time.perf_counter_ns()
    await asyncio.gather(*coros)
    return (time.process_time_ns() - t0) / queries, queries / ((time.perf_counter_ns() - w0) / 1e9)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--queries", type=int, default=200_000)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--uvloop", action="store_true", help="run on uvloop, as workers do")
    p.add_argument("--variant", action="append", choices=VARIANTS,
                   help="only this variant (repeatable); with valgrind --tool=callgrind, instructions per query")
    args = p.parse_args(argv)
    if args.uvloop:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    variants = args.variant or list(VARIANTS)
    got: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.repeat):
        closed_qps = 200_000.0  # the -80 variants' base when closed is not run
        for v in variants:
            cpu, qps = asyncio.run(_variant(v, args.queries, args.connections, closed_qps))
            if v == "closed":
                closed_qps = qps
            got[v].append(cpu)
    base = statistics.median(got["closed"]) if "closed" in got else 1.0
    print(f"{'variant':<16} {'ns/query min':>12} {'median':>8} {'max':>8} {'/closed':>8}")
    for v in variants:
        xs = got[v]
        print(f"{v:<16} {min(xs):>12,.0f} {statistics.median(xs):>8,.0f} {max(xs):>8,.0f} "
              f"{statistics.median(xs) / base:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
