"""Closed-loop concurrency: each connection sends its next query when the last one returns.

This is pgbench's model (``-c N``): the load is N outstanding queries, and throughput is
whatever the server gives. The loop below is the hot path of the whole tool; every line in
it runs once per query, so it allocates nothing it can avoid and awaits nothing but the
query itself.
"""

from __future__ import annotations

import asyncio
import time

from spanbench.load.query_spans import QuerySpans
from spanbench.load.state import LoadState
from spanbench.stats import HIGHEST_NS
from spanbench.targets.base import QueryFn, TargetConnection


class ClosedLoop:
    def __init__(
        self,
        state: LoadState,
        *,
        mix: list[int],
        keys: list[int],
        spans: QuerySpans,
        max_consecutive_errors: int,
    ) -> None:
        self.state = state
        self.mix = mix
        self.keys = keys
        self.spans = spans
        self.max_consecutive_errors = max_consecutive_errors

    async def run_connection(self, index: int, conn: TargetConnection, fns: list[QueryFn]) -> None:
        st = self.state
        st.active += 1
        try:
            await self._first_query(index, conn, fns)
            await self._loop(index, conn, fns)
        finally:
            st.active -= 1

    async def _first_query(self, index: int, conn: TargetConnection, fns: list[QueryFn]) -> None:
        # The first query of every connection is traced (connection 0's is the worker's
        # ``first_query``): it is where cold caches, lazy session set-up and plan
        # preparation show up.
        st = self.state
        kind = self.mix[index % len(self.mix)]
        key = self.keys[(index * 9973) % len(self.keys)]
        t0 = time.perf_counter_ns()
        error: BaseException | None = None
        try:
            await fns[kind](key)
        except Exception as exc:
            error = exc
        t1 = time.perf_counter_ns()
        if error is None:
            st.recorders[kind].record(t1 - t0)
        else:
            st.errors[kind] += 1
            st.last_error = _describe(error)
        self.spans.emit(kind, index, t0, t1, reason="first", first=index == 0, conn=conn, error=error)

    async def _loop(self, index: int, conn: TargetConnection, fns: list[QueryFn]) -> None:
        st = self.state
        spans = self.spans
        mix = self.mix
        nmix = len(mix)
        mi = (index + 1) % nmix
        keys = self.keys
        nkeys = len(keys)
        ki = (index * 9973 + 1) % nkeys
        perf = time.perf_counter_ns
        slow_ns = spans.slow_ns
        every = spans.every
        # Spread the 1-in-N samples across connections instead of all at query N.
        next_sample = every - (index * 7919) % every
        n = 0
        in_a_row = 0
        gen = st.gen
        mask, shift, half_mag, half = st.recorders[0].index_constants()
        cap = HIGHEST_NS
        while not st.stop:
            if st.gen != gen:
                gen = st.gen
                await conn.set_phase(st.phase)
            k = mix[mi]
            mi += 1
            if mi == nmix:
                mi = 0
            key = keys[ki]
            ki += 1
            if ki == nkeys:
                ki = 0
            t0 = perf()
            try:
                await fns[k](key)
            except Exception as exc:
                t1 = perf()
                st.errors[k] += 1
                st.last_error = _describe(exc)
                spans.emit(k, index, t0, t1, reason="error", first=False, conn=conn, error=exc)
                in_a_row += 1
                if in_a_row >= self.max_consecutive_errors:
                    # This connection is broken, or the server is refusing us: stop sending
                    # to it rather than hammer a database that is already failing.
                    raise ConnectionAbandoned(index, in_a_row, st.last_error) from None
                # Back off (1 ms doubling to 0.5 s) so a failing server is not flooded.
                await asyncio.sleep(min(0.001 * (1 << min(in_a_row, 9)), 0.5))
                continue
            t1 = perf()
            # LatencyRecorder.record, inlined: this line runs once per query.
            rec = st.recorders[k]
            ns = t1 - t0
            if ns > cap:
                ns = cap
            b = (ns | mask).bit_length() - shift
            rec.counts[((b + 1) << half_mag) + (ns >> b) - half] += 1
            rec.total += 1
            n += 1
            if in_a_row:
                in_a_row = 0
            if n == next_sample or ns >= slow_ns:
                if n == next_sample:
                    next_sample += every
                    spans.emit(k, index, t0, t1, reason="sample", first=False, conn=conn, error=None)
                else:
                    spans.emit(k, index, t0, t1, reason="slow", first=False, conn=conn, error=None)


class ConnectionAbandoned(Exception):
    def __init__(self, index: int, errors: int, last_error: str | None) -> None:
        super().__init__(f"connection {index} abandoned after {errors} consecutive errors: {last_error}")


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
