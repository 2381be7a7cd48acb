#!/usr/bin/env python3
"""Where a query's client CPU goes: asyncpg's protocol against the wire itself.

One embedded PostgreSQL 18 server in a temporary folder, filled by ``spanbench init``. On
the same asyncpg connections (uvloop, ``--connections`` of them, one process), the same
prepared point select, interleaved, for ``--seconds`` each:

- ``task``: a task per connection awaiting ``protocol.bind_execute`` (what spanbench's
  closed loop does today, less its bookkeeping);
- ``chain``: no task and no coroutine of ours: each completion's done-callback sends the
  next query (the "no coroutine per query" lever of issue 13);
- ``wire-task``: ``targets/pg_wire.py`` (SPANBENCH_PG_WIRE) as spanbench's loops drive it, a
  task per connection awaiting each execution's future (text parameters encoded per call);
- ``wire``: asyncpg connects, authenticates and prepares; then the connection's transport
  is handed to a bare ``asyncio.Protocol`` that writes a pre-encoded Bind/Execute/Sync per
  query and waits for ReadyForQuery (no codec, no waiter, no record: the floor of a Python
  client on this event loop).

Prints queries/s and client CPU per query (process time over queries) for each. The gap
between ``task`` and ``wire`` is what asyncpg's protocol layer costs per query; between
``task`` and ``chain``, what the task machinery costs.

Usage::

    python bench/wire_floor.py                    # 8 connections, 4 s per variant, 3 rounds
    python bench/wire_floor.py --connections 32 --seconds 8
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pgbench_compare import Server, run_cmd  # noqa: E402

SQL = "SELECT abalance FROM spanbench_accounts WHERE aid = $1"
ROWS = 100_000
READY_IDLE = b"Z\x00\x00\x00\x05I"  # ReadyForQuery, not in a transaction: the answer is complete


async def task_variant(conns: list[Any], stmts: list[Any], seconds: float, keys: list[tuple[int]]) -> int:
    stop = [False]
    counts = [0]

    async def one(conn: Any, stmt: Any) -> None:
        bind, state, n = conn._protocol.bind_execute, stmt._state, 0
        while not stop[0]:
            await bind(state, keys[n % len(keys)], "", 0, True, None)
            n += 1
        counts[0] += n

    asyncio.get_running_loop().call_later(seconds, stop.__setitem__, 0, True)
    await asyncio.gather(*(one(c, s) for c, s in zip(conns, stmts)))
    return counts[0]


async def chain_variant(conns: list[Any], stmts: list[Any], seconds: float, keys: list[tuple[int]]) -> int:
    loop = asyncio.get_running_loop()
    stop = [False]
    counts = [0]
    finished = loop.create_future()
    left = [len(conns)]

    class Chain:
        def __init__(self, conn: Any, stmt: Any) -> None:
            self.bind, self.state, self.n, self.coro = conn._protocol.bind_execute, stmt._state, 0, None

        def send(self) -> None:
            self.coro = self.bind(self.state, keys[self.n % len(keys)], "", 0, True, None)
            self.coro.send(None).add_done_callback(self.resume)  # the protocol's waiter

        def resume(self, _fut: Any) -> None:
            try:
                self.coro.send(None)
            except StopIteration:
                pass
            self.n += 1
            if not stop[0]:
                self.send()
                return
            counts[0] += self.n
            left[0] -= 1
            if not left[0]:
                finished.set_result(None)

    loop.call_later(seconds, stop.__setitem__, 0, True)
    for c, s in zip(conns, stmts):
        Chain(c, s).send()
    await finished
    return counts[0]


class _Wire(asyncio.Protocol):
    def __init__(self, transport: Any, messages: list[bytes], stop: list[bool], done: Callable[[int], None]) -> None:
        self.transport, self.messages, self.stop, self.done, self.n = transport, messages, stop, done, 0

    def go(self) -> None:
        self.transport.write(self.messages[0])

    def data_received(self, data: bytes) -> None:
        if not data.endswith(READY_IDLE):
            return  # a partial answer; an ErrorResponse is not handled by this experiment
        self.n += 1
        if self.stop[0]:
            self.done(self.n)
            return
        self.transport.write(self.messages[self.n % len(self.messages)])


def _bind_execute_sync(statement: bytes, key: int) -> bytes:
    body = b"\x00" + statement + b"\x00" + struct.pack("!hhhii", 1, 1, 1, 4, key) + struct.pack("!hh", 1, 1)
    return (b"B" + struct.pack("!i", len(body) + 4) + body
            + b"E" + struct.pack("!i", 9) + b"\x00" + struct.pack("!i", 0) + b"S" + struct.pack("!i", 4))


async def wire_variant(conns: list[Any], stmts: list[Any], seconds: float, keys: list[tuple[int]]) -> int:
    loop = asyncio.get_running_loop()
    stop = [False]
    total = [0]
    finished = loop.create_future()
    left = [len(conns)]

    def done(n: int) -> None:
        total[0] += n
        left[0] -= 1
        if not left[0]:
            finished.set_result(None)

    protocols = []
    for c, s in zip(conns, stmts):
        messages = [_bind_execute_sync(s._state.name.encode(), k) for (k,) in keys]
        old = c._transport.get_protocol()
        p = _Wire(c._transport, messages, stop, done)
        c._transport.set_protocol(p)
        protocols.append((c, p, old))
    loop.call_later(seconds, stop.__setitem__, 0, True)
    for _, p, _ in protocols:
        p.go()
    await finished
    for c, _, old in protocols:
        c._transport.set_protocol(old)  # asyncpg's again, the session idle as it left it
    return total[0]


async def wire_task_variant(conns: list[Any], stmts: list[Any], seconds: float, keys: list[tuple[int]]) -> int:
    """spanbench's wire path as its loops use it: a task per connection awaiting each execution's future."""
    from spanbench.targets.pg_wire import WireSession, statement_head

    stop = [False]
    counts = [0]
    sessions = [(WireSession(c), statement_head(s)) for c, s in zip(conns, stmts)]

    async def one(session: Any, head: bytes) -> None:
        run, n = session.execute, 0
        while not stop[0]:
            await run(head, keys[n % len(keys)])
            n += 1
        counts[0] += n

    asyncio.get_running_loop().call_later(seconds, stop.__setitem__, 0, True)
    try:
        await asyncio.gather(*(one(w, h) for w, h in sessions))
    finally:
        for w, _ in sessions:
            w.hand_back()
    return counts[0]


VARIANTS = {"task": task_variant, "chain": chain_variant, "wire": wire_variant, "wire-task": wire_task_variant}


async def measure(dsn: str, args: argparse.Namespace) -> dict[str, list[tuple[float, float]]]:
    import asyncpg

    conns = [await asyncpg.connect(dsn) for _ in range(args.connections)]
    stmts = [await c.prepare(SQL) for c in conns]
    keys = [(i * 7919 % ROWS + 1,) for i in range(1000)]
    got: dict[str, list[tuple[float, float]]] = {v: [] for v in VARIANTS}
    try:
        for _ in range(args.rounds):
            for name, fn in VARIANTS.items():
                c0 = time.process_time()
                n = await fn(conns, stmts, args.seconds, keys)
                cpu = time.process_time() - c0
                got[name].append((n / args.seconds, cpu / n * 1e6))
                print(f"  {name:<6} {n / args.seconds:>10,.0f} q/s  {cpu / n * 1e6:6.2f} µs client CPU/query", flush=True)
    finally:
        for c in conns:
            await c.close()
    return got


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    import uvloop

    with tempfile.TemporaryDirectory(prefix="spanbench-wire-floor-") as tmp:
        work = Path(tmp)
        server = Server(work)
        server.start()
        try:
            run_cmd([sys.executable, "-m", "spanbench", "init", "--target-dsn", server.dsn, "--rows", str(ROWS)],
                    timeout=300, log=work / "init.log")
            uvloop.install()
            got = asyncio.run(measure(server.dsn, args))
        finally:
            server.stop()
    print(f"{'variant':<8} {'q/s (median)':>13} {'µs CPU/query (median)':>22}")
    for name, xs in got.items():
        print(f"{name:<8} {statistics.median(q for q, _ in xs):>13,.0f} {statistics.median(c for _, c in xs):>22.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
