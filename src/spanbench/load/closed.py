"""Closed-loop concurrency: each connection sends its next query when the last one returns.

This is pgbench's model (``-c N``): the load is N outstanding queries, and throughput is
whatever the server gives. The loop below is the hot path of the whole tool; every line in
it runs once per query, so it allocates nothing it can avoid and awaits nothing but the
query itself.
"""

from __future__ import annotations

import asyncio
import time

from collections.abc import Awaitable, Callable
from typing import Any

from spanbench.load.query_log import FLUSH_ROWS, QueryLog
from spanbench.load.query_spans import QuerySpans
from spanbench.load.state import LoadState
from spanbench.stats import HIGHEST_NS
from spanbench.targets.base import QueryFn, TargetConnection, error_class


class ClosedLoop:
    def __init__(
        self,
        state: LoadState,
        *,
        mix: list[int],
        args: list[tuple[Any, ...]],
        spans: QuerySpans,
        max_consecutive_errors: int,
        kinds: list[str] | None = None,
        query_log: QueryLog | None = None,
    ) -> None:
        # mix[i] is the kind of execution i, args[i] its bound arguments (workload/plan.py):
        # one index walks both.
        if len(mix) != len(args) or not mix:
            raise ValueError("mix and args must be non-empty and of the same length")
        self.state = state
        self.mix = mix
        self.args = args
        self.spans = spans
        self.max_consecutive_errors = max_consecutive_errors
        self.kinds = kinds or [str(i) for i in range(max(mix) + 1)]
        # (phase, kind index, error class) -> count: errors are rare, so a dict is cheap here
        self.error_counts: dict[tuple[str, int, str], int] = {}
        self.query_log = query_log
        # Re-opens a broken connection (the worker's pool.reconnect): (index, old connection,
        # wall ns of the break) -> (connection, query fns); raises when the target is gone.
        self.think_s = 0.0  # [load] think_time: a connection's pause between two queries
        self.reconnect: Callable[[int, TargetConnection, int], Awaitable[tuple[TargetConnection, list[QueryFn]]]] | None = None

    async def run_connection(self, index: int, conn: TargetConnection, fns: list[QueryFn]) -> None:
        st = self.state
        st.active += 1
        try:
            await self._first_query(index, conn, fns)
            await self._loop(index, conn, fns)
        finally:
            st.active -= 1
            if st.active == 0 and self.query_log is not None:
                # The last connection out closes the log and waits for its writer off the loop:
                # a forked worker ends with os._exit, which would cut a thread short.
                self.query_log.close()
                await asyncio.to_thread(self.query_log.join, 30.0)

    def _error(self, k: int, exc: BaseException) -> str:
        cls = error_class(exc)
        key = (self.state.phase, k, cls)
        self.error_counts[key] = self.error_counts.get(key, 0) + 1
        return cls

    def errors_by_class(self) -> dict[str, dict[str, dict[str, int]]]:
        """{phase: {kind: {error class: count}}}, as TEST_RESULTS details keep it."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        for (phase, k, cls), n in sorted(self.error_counts.items()):
            out.setdefault(phase, {}).setdefault(self.kinds[k], {})[cls] = n
        return out

    async def _first_query(self, index: int, conn: TargetConnection, fns: list[QueryFn]) -> None:
        # The first query of every connection is traced (connection 0's is the worker's
        # ``first_query``): it is where cold caches, lazy session set-up and plan
        # preparation show up.
        st = self.state
        i = (index * 9973) % len(self.mix)
        kind = self.mix[i]
        t0 = time.perf_counter_ns()
        error: BaseException | None = None
        try:
            await fns[kind](self.args[i])
        except Exception as exc:
            error = exc
        except asyncio.CancelledError:
            self.cut(kind, t0)
            raise
        t1 = time.perf_counter_ns()
        cls = ""
        if error is None:
            st.recorders[kind].record(t1 - t0)
        else:
            st.errors[kind] += 1
            st.last_error = _describe(error)
            cls = self._error(kind, error)
        if self.query_log is not None:
            self.query_log.flush([(st.phase, kind, t0, t1, cls)])
        self.spans.emit(kind, index, t0, t1, reason="first", first=index == 0, conn=conn, error=error)

    async def _loop(self, index: int, conn: TargetConnection, fns: list[QueryFn]) -> None:
        st = self.state
        spans = self.spans
        mix = self.mix
        args = self.args
        nmix = len(mix)
        mi = (index * 9973 + 1) % nmix  # right after this connection's first query
        perf = time.perf_counter_ns
        # The query log (opt-in): rows buffered here, written by its thread (load/query_log.py).
        qlog = self.query_log
        qbuf: list[tuple[str, int, int, int, str]] = []
        qrate = qlog.sample if qlog is not None else 0.0
        qacc = 0.0
        slow_ns = spans.slow_ns
        every = spans.every
        # Spread the 1-in-N samples across connections instead of all at query N.
        next_sample = every - (index * 7919) % every
        n = 0
        in_a_row = 0
        gen = st.gen
        mask, shift, half_mag, half = st.recorders[0].index_constants()
        cap = HIGHEST_NS
        think = self.think_s
        # A connection that can chain its executions (the PostgreSQL wire path) runs its
        # successes in _chained, with no coroutine step per query; everything else (errors,
        # reconnects, phase changes, think time) comes back here.
        direct = _direct(conn) if not think else None
        cur = _Cursor()
        try:
            while not st.stop and index < st.limit:
                if st.gen != gen:
                    gen = st.gen
                    await conn.set_phase(st.tag)
                if direct is not None:
                    cur.mi, cur.n, cur.next_sample, cur.qacc, cur.qbuf = mi, n, next_sample, qacc, qbuf
                    failed = await self._chained(index, conn, direct[0], direct[1], cur)
                    mi, n, next_sample, qacc, qbuf = cur.mi, cur.n, cur.next_sample, cur.qacc, cur.qbuf
                    if cur.progressed:
                        in_a_row = 0
                    if failed is not None:
                        k, t0, t1, exc = failed
                        pair, in_a_row = await self.query_failed(index, conn, k, t0, t1, exc, in_a_row, qbuf)
                        if pair is not None:
                            conn, fns = pair
                            direct = _direct(conn)
                            gen = -1
                    continue
                k = mix[mi]
                a = args[mi]
                mi += 1
                if mi == nmix:
                    mi = 0
                t0 = perf()
                try:
                    await fns[k](a)
                except Exception as exc:
                    pair, in_a_row = await self.query_failed(index, conn, k, t0, perf(), exc, in_a_row, qbuf)
                    if pair is not None:
                        conn, fns = pair
                        gen = -1  # the new session learns the phase (QUERY_TAG) before its first query
                    continue
                except asyncio.CancelledError:
                    # Still running at the drain deadline: its time so far is a lower bound of
                    # its latency, and a stall must not vanish with it.
                    self.cut(k, t0)
                    raise
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
                if qlog is not None:
                    qacc += qrate
                    if qacc >= 1.0:
                        qacc -= 1.0
                        qbuf.append((st.phase, k, t0, t1, ""))
                        if len(qbuf) >= FLUSH_ROWS:
                            qbuf = qlog.flush(qbuf)
                if n == next_sample or ns >= slow_ns:
                    if n == next_sample:
                        next_sample += every
                        spans.emit(k, index, t0, t1, reason="sample", first=False, conn=conn, error=None)
                    else:
                        spans.emit(k, index, t0, t1, reason="slow", first=False, conn=conn, error=None)
                if think:
                    await asyncio.sleep(think)
        finally:
            if qlog is not None:
                qlog.flush(qbuf)

    async def _chained(self, index: int, conn: TargetConnection, session: Any, heads: list[bytes],
                       cur: _Cursor) -> tuple[int, int, int, BaseException] | None:
        """The hot path with no coroutine per query: each execution's completion (the wire
        session's callback, called from its data_received) records it and sends the next.

        Returns None when the loop must look up (the stop, a phase change, the ramp's limit)
        or (kind, t0, t1, error) for an execution that failed; ``cur`` carries the walk on.
        The timing points are the loop's: t0 just before the send, t1 first thing at the end.
        """
        st = self.state
        spans = self.spans
        mix = self.mix
        args = self.args
        nmix = len(mix)
        perf = time.perf_counter_ns
        send = session.send
        qlog = self.query_log
        qrate = qlog.sample if qlog is not None else 0.0
        slow_ns = spans.slow_ns
        every = spans.every
        mask, shift, half_mag, half = st.recorders[0].index_constants()
        cap = HIGHEST_NS
        gen = st.gen
        left: asyncio.Future[tuple[int, int, int, BaseException] | None] = asyncio.get_running_loop().create_future()
        mi, n, next_sample, qacc, qbuf = cur.mi, cur.n, cur.next_sample, cur.qacc, cur.qbuf
        n0 = n
        k = mix[mi]
        t0 = 0

        def leave(result: tuple[int, int, int, BaseException] | None) -> None:
            session.callback = None
            if not left.done():
                left.set_result(result)

        def done(error: BaseException | None) -> None:
            nonlocal mi, n, next_sample, qacc, qbuf, k, t0
            t1 = perf()
            if error is not None:
                leave((k, t0, t1, error))
                return
            # LatencyRecorder.record, inlined as in _loop
            rec = st.recorders[k]
            ns = t1 - t0
            if ns > cap:
                ns = cap
            b = (ns | mask).bit_length() - shift
            rec.counts[((b + 1) << half_mag) + (ns >> b) - half] += 1
            rec.total += 1
            n += 1
            if qlog is not None:
                qacc += qrate
                if qacc >= 1.0:
                    qacc -= 1.0
                    qbuf.append((st.phase, k, t0, t1, ""))
                    if len(qbuf) >= FLUSH_ROWS:
                        qbuf = qlog.flush(qbuf)
            if n == next_sample or ns >= slow_ns:
                if n == next_sample:
                    next_sample += every
                    spans.emit(k, index, t0, t1, reason="sample", first=False, conn=conn, error=None)
                else:
                    spans.emit(k, index, t0, t1, reason="slow", first=False, conn=conn, error=None)
            if st.stop or index >= st.limit or st.gen != gen:
                leave(None)
                return
            k = mix[mi]
            a = args[mi]
            mi += 1
            if mi == nmix:
                mi = 0
            t0 = perf()
            try:
                send(heads[k], a)
            except Exception as exc:  # the connection is gone: the loop reconnects
                leave((k, t0, perf(), exc))

        session.callback = done
        a = args[mi]
        mi += 1
        if mi == nmix:
            mi = 0
        t0 = perf()
        try:
            send(heads[k], a)
            return await left
        except asyncio.CancelledError:
            session.callback = None
            # The task's cancel cancels the future it awaits: a cancelled ``left`` means the
            # execution was still in flight (recorded with its time so far, a lower bound).
            if left.cancelled() or not left.done():
                self.cut(k, t0)
            elif (failed := left.result()) is not None:  # it failed just before the drain: still an error
                self._count_error(*failed)
            raise
        except Exception as exc:
            session.callback = None
            return (k, t0, perf(), exc)
        finally:
            cur.mi, cur.n, cur.next_sample, cur.qacc, cur.qbuf = mi, n, next_sample, qacc, qbuf
            cur.progressed = n > n0

    async def query_failed(
        self, index: int, conn: TargetConnection, k: int, t0: int, t1: int, exc: Exception, in_a_row: int,
        qbuf: list[tuple[str, int, int, int, str]], *, first: bool = False,
    ) -> tuple[tuple[TargetConnection, list[QueryFn]] | None, int]:
        """A query that raised, for every load model: counted by class, logged, traced; then the
        connection is re-opened (it broke), abandoned (too many errors in a row) or backed off.

        Returns the new (connection, query fns) after a reconnect, else None, and the errors in
        a row since. The cold path: errors are rare, so nothing here is inlined in the loops.
        """
        st = self.state
        cls = self._count_error(k, t0, t1, exc)
        if self.query_log is not None:
            qbuf.append((st.phase, k, t0, t1, cls))
        self.spans.emit(k, index, t0, t1, reason="first" if first else "error", first=first and index == 0,
                        conn=conn, error=exc)
        if self.reconnect is not None and conn.is_broken(exc):
            # The connection itself is gone (a restart, a failover): re-open it and go on; the
            # outage shows as errors, a stall and pool.reconnect spans.
            return await self.reconnect(index, conn, self.spans.wall_ns(t1)), 0
        in_a_row += 1
        if in_a_row >= self.max_consecutive_errors:
            # This connection is broken, or the server is refusing us: stop sending to it
            # rather than hammer a database that is already failing.
            raise ConnectionAbandoned(index, in_a_row, st.last_error) from None
        # Back off (1 ms doubling to 0.5 s) so a failing server is not flooded.
        await asyncio.sleep(min(0.001 * (1 << min(in_a_row, 9)), 0.5))
        return None, in_a_row

    def _count_error(self, k: int, t0: int, t1: int, exc: BaseException) -> str:
        """One failed execution in the counts: its kind's errors, the last error, its class."""
        st = self.state
        st.errors[k] += 1
        st.last_error = _describe(exc)
        return self._error(k, exc)

    def cut(self, kind: int, t0: int) -> None:
        """Record a query cancelled at the drain: elapsed so far, in the phase it was sent in."""
        st = self.state
        now = time.perf_counter_ns()
        phase = st.phase_at(t0)
        if phase is not None:
            phase.recorders[kind].record(now - t0)
            phase.cut += 1


class _Cursor:
    """Where a connection's walk over the plan is, handed between _loop and _chained."""

    __slots__ = ("mi", "n", "next_sample", "qacc", "qbuf", "progressed", "first", "first_failed")

    def __init__(self) -> None:
        self.mi = self.n = self.next_sample = 0
        self.qacc = 0.0
        self.qbuf: list[tuple[str, int, int, int, str]] = []
        self.progressed = False
        self.first = self.first_failed = False  # the open model: the connection's first execution


def _direct(conn: TargetConnection) -> tuple[Any, list[bytes]] | None:
    """The connection's chaining capability (PostgreSQL's wire path), if it has one."""
    direct = getattr(conn, "direct", None)
    return direct() if direct is not None else None


class ConnectionAbandoned(Exception):
    def __init__(self, index: int, errors: int, last_error: str | None) -> None:
        super().__init__(f"connection {index} abandoned after {errors} consecutive errors: {last_error}")


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ConnectionRamp:
    """Closed-model ``stages``: the run's connections over time, ramped linearly between the
    stages' targets from ``connections`` at the START. Each change is a timer of the phase
    schedule (cancelled at the stop); a connection above the target finishes its query and
    leaves its loop, one below it is (re)started."""

    def __init__(self, loop: ClosedLoop, schedule: Any, pairs: Callable[[], list[tuple[Any, Any]]], *, group: int,
                 groups: int, start_total: int, stages: list[tuple[float, int]], start_unix_ns: int) -> None:
        self.loop = loop
        self.schedule = schedule
        self.pairs = pairs
        self.group, self.groups = group, groups
        self.start_total = start_total
        self.stages = stages
        self.start_unix_ns = start_unix_ns
        self.tasks: list[asyncio.Task[None]] = []
        self.running: dict[int, asyncio.Task[None]] = {}

    def share(self, total: int) -> int:
        return min(len(self.pairs()), total // self.groups + (1 if self.group < total % self.groups else 0))

    def changes(self, resolution_s: float = 0.01) -> list[tuple[float, int]]:
        """(seconds from the START, total connections) at every change of the rounded target."""
        out: list[tuple[float, int]] = []
        t, c, last = 0.0, float(self.start_total), self.start_total
        for duration, target in self.stages:
            n = max(1, int(round(duration / resolution_s)))
            for j in range(1, n + 1):
                now = round(c + (target - c) * j / n)
                if now != last:
                    out.append((t + duration * j / n - duration / n / 2 if j < n else t + duration, now))
                    last = now
            t, c = t + duration, float(target)
        return out

    def begin(self) -> list[asyncio.Task[None]]:
        self._set(self.start_total)
        for at_s, total in self.changes():
            self.schedule.at(self.start_unix_ns + int(at_s * 1e9), self._set, total)
        return self.tasks

    def _set(self, total: int) -> None:
        st = self.loop.state
        share = self.share(total)
        st.limit = share
        for i in range(share):
            task = self.running.get(i)
            if task is None or task.done():
                task = asyncio.get_running_loop().create_task(self._run(i), name=f"conn-{i}")
                self.running[i] = task
                self.tasks.append(task)

    async def _run(self, i: int) -> None:
        # The pair's connection may have been replaced by a reconnect since: read it now.
        conn, fns = self.pairs()[i]
        await self.loop.run_connection(i, conn, fns)
