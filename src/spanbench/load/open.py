"""Open model: executions arrive on a schedule, whatever the server does (pgbench's ``-R``).

Every execution has an intended start. Each worker owns its share of the run's schedule:
worker g of n takes the run's arrivals g, g+n, g+2n, … (uniform), or a Poisson stream of
rate R/n offset by g arrivals, so the workers' arrivals interleave and add up to the rate.

No task generates arrivals: a connection that becomes free takes the next one itself.
Arrivals whose time passed while every connection was busy are the queue; the queue only
grows between two takes, so replaying the arrivals since the last take, at the take,
drops exactly those that found it full (``max_queue``). When an arrival's time is still
ahead, the free connection claims it and sleeps until then.

Three histograms: latency from the intended start to the end (what the user waiting for it
sees; a stall shows in full, no coordinated omission), service time from the send to the
end, and the schedule lag (send − intended start).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from typing import Any

from spanbench.load.closed import ClosedLoop, _Cursor, _direct
from spanbench.load.query_log import FLUSH_ROWS
from spanbench.stats import HIGHEST_NS
from spanbench.targets.base import QueryFn, TargetConnection

INF = float("inf")
# An arrival less than this ahead is sent now rather than slept for. The event loop's timers
# tick in milliseconds (uvloop rounds a delay to the nearest ms), so a shorter sleep wakes
# up to a tick early or late anyway; and a sleep per query (a future and a timer) costs as
# much client CPU as the query's own bookkeeping, which at high rates is the open model's
# capacity. An execution starts at most this early; its latency then counts from its send.
EARLY_NS = 1_000_000
_log = math.log


class RateCurve:
    """The run's target rate over time (seconds from the START): constant, or piecewise linear
    stages (each ramps from the previous target to its own, as k6's ramping executors); the
    last target holds after the stages. ``time_of(u)`` inverts the cumulative arrivals."""

    def __init__(self, rate: float | None, stages: list[tuple[float, float]] | None = None) -> None:
        # segments: (t_start, t_end, rate at start, slope, cumulative arrivals at start)
        self.segments: list[tuple[float, float, float, float, float]] = []
        t, r, cum = 0.0, float(rate or 0.0), 0.0
        for duration, target in stages or []:
            slope = (target - r) / duration
            self.segments.append((t, t + duration, r, slope, cum))
            cum += (r + target) / 2 * duration
            t, r = t + duration, float(target)
        self.segments.append((t, INF, r, 0.0, cum))
        self._i = 0

    def rate_at(self, t: float) -> float:
        for ts, te, r0, b, _ in self.segments:
            if t < te:
                return r0 + b * (t - ts)
        return self.segments[-1][2]

    def arrivals_between(self, a: float, b: float) -> float:
        return self.cumulative(b) - self.cumulative(a)

    def cumulative(self, t: float) -> float:
        for ts, te, r0, b, cum in self.segments:
            if t < te:
                tau = max(0.0, t - ts)
                return cum + r0 * tau + b * tau * tau / 2
        return self.segments[-1][4]  # unreachable: the last segment is open-ended

    def time_of(self, u: float) -> float:
        """The time (s) at which the cumulative arrivals reach ``u``; inf if never. Calls must
        come with a non-decreasing ``u`` (it walks the segments forward)."""
        segs = self.segments
        i = self._i
        while True:
            ts, te, r0, b, cum = segs[i]
            d = u - cum
            if te == INF:
                return ts + d / r0 if r0 > 0 else INF
            nxt = segs[i + 1][4]
            if u < nxt:
                root = r0 * r0 + 2 * b * d
                den = r0 + math.sqrt(root if root > 0 else 0.0)
                self._i = i
                return ts + (2 * d / den if den > 0 else 0.0)
            i += 1


class Arrivals:
    """One worker's intended starts, as perf_counter_ns, in order."""

    def __init__(self, curve: RateCurve, *, group: int, groups: int, poisson: bool, seed: str,
                 origin_perf_ns: int) -> None:
        self.curve = curve
        self.groups = groups
        self.poisson = poisson
        self.rng = random.Random(seed)
        self._random = self.rng.random
        self.origin = origin_perf_ns
        self.u = float(group)  # this worker's first global arrival
        if poisson:
            self.u += groups * self.rng.expovariate(1.0) - groups / 2  # a random phase, still interleaved
        # A constant rate (no stages): arrival u is at origin + u / rate, no curve to walk.
        only = curve.segments[0]
        self.ns_per_arrival = 1e9 / only[2] if len(curve.segments) == 1 and only[2] > 0 else 0.0

    def skip_to(self, perf_ns: int) -> int:
        """Pass over the arrivals due by ``perf_ns`` (the queue is full: they are dropped); how many."""
        if self.ns_per_arrival:
            u_now = (perf_ns - self.origin) / self.ns_per_arrival
        else:
            u_now = self.curve.cumulative((perf_ns - self.origin) / 1e9)
        if u_now <= self.u:
            return 0
        if self.poisson:
            # memoryless: the next arrival after u_now is u_now + an exponential gap; the
            # arrivals skipped are counted at their expectation
            n = int((u_now - self.u) / self.groups)
            self.u = u_now + self.groups * -_log(1.0 - self._random())
            return n
        n = int((u_now - self.u) / self.groups) + 1
        self.u += n * self.groups
        return n

    def next(self) -> float:
        """The next intended start (perf ns, a float: inf when the schedule has no more)."""
        u = self.u
        if self.poisson:
            self.u = u + self.groups * -_log(1.0 - self._random())
        else:
            self.u = u + self.groups
        if u < 0:
            u = 0.0
        if self.ns_per_arrival:
            return self.origin + u * self.ns_per_arrival
        t = self.curve.time_of(u)
        return self.origin + t * 1e9 if t != INF else INF


class OpenLoop(ClosedLoop):
    """Connections take the next arrival when free; ``ClosedLoop`` lends its error bookkeeping."""

    def __init__(self, state: Any, arrivals: Arrivals, *, max_queue: int, **kw: Any) -> None:
        super().__init__(state, **kw)
        self.arrivals = arrivals
        self.max_queue = max_queue
        self.queue: deque[float] = deque()
        self._next = arrivals.next()
        # A constant rate: the gaps are computed here, inline, with no call per arrival.
        self._step_ns = arrivals.ns_per_arrival * arrivals.groups
        self._poisson = arrivals.poisson
        self._random = arrivals.rng.random
        self.taken = 0  # arrivals handed to a connection

    def take(self, now: int) -> float:
        """The intended start of the next execution for a free connection (perf ns)."""
        nxt = self._next
        q = self.queue
        if nxt <= now:
            # Arrivals that came while every connection was busy: queued while there is room
            # (the queue only shrinks at a take, so it was as full at their time as it is now);
            # once it is full, every arrival due by now is dropped, counted rather than replayed
            # one by one (a rate far above capacity costs no loop).
            room = self.max_queue - len(q)
            step = self._step_ns
            if step:
                # a constant rate, inlined: the next arrival is step (or an exponential gap of
                # mean step) after this one
                if self._poisson:
                    while room > 0 and nxt <= now:
                        q.append(nxt)
                        room -= 1
                        nxt += step * -_log(1.0 - self._random())
                    if nxt <= now:
                        n = int((now - nxt) / step) + 1  # the expected count; memoryless after it
                        nxt = now + step * -_log(1.0 - self._random())
                        self.state.data.dropped += n
                else:
                    while room > 0 and nxt <= now:
                        q.append(nxt)
                        room -= 1
                        nxt += step
                    if nxt <= now:
                        n = int((now - nxt) // step) + 1
                        nxt += n * step
                        self.state.data.dropped += n
            else:
                arrivals = self.arrivals
                while room > 0 and nxt <= now:
                    q.append(nxt)
                    room -= 1
                    nxt = arrivals.next()
                if nxt <= now:
                    n = 1 + arrivals.skip_to(now)
                    self.state.data.dropped += n
                    nxt = arrivals.next()
            self._next = nxt
        self.taken += 1
        if q:
            return q.popleft()
        # on time: this connection claims the arrival ahead and sleeps until it
        step = self._step_ns
        if step:
            self._next = nxt + (step * -_log(1.0 - self._random()) if self._poisson else step)
        else:
            self._next = self.arrivals.next()
        return nxt

    async def _first_query(self, index: int, conn: TargetConnection, fns: list[QueryFn]) -> None:
        return  # the first arrival of each connection goes through the loop, traced as "first"

    async def _chained(self, index: int, conn: TargetConnection, session: Any, heads: list[bytes], cur: _Cursor,
                       intended: float) -> tuple[str, Any]:
        """Executions chained from each other's completions (the wire session's callback), from
        the one due at ``intended``. Returns ("look", None) for the stop or a phase change,
        ("sleep", intended) when the next arrival is more than EARLY_NS ahead (taken: the loop
        sleeps, then sends it), ("fail", (kind, t0, t1, error)) for an execution that failed.
        Recording and timing points are _loop's."""
        st = self.state
        spans = self.spans
        mix = self.mix
        args = self.args
        nmix = len(mix)
        perf = time.perf_counter_ns
        send = session.send
        take = self.take  # the schedule, as the non-inlined path of _loop takes it
        qlog = self.query_log
        qrate = qlog.sample if qlog is not None else 0.0
        slow_ns = spans.slow_ns
        every = spans.every
        mask, shift, half_mag, half = st.recorders[0].index_constants()
        cap = HIGHEST_NS
        early = EARLY_NS
        gen = st.gen
        data = st.data
        lat_recs, svc_recs, lag_rec = data.recorders, data.service, data.lag
        lag_counts = lag_rec.counts
        b = (1 | mask).bit_length() - shift
        lag_floor = ((b + 1) << half_mag) + (1 >> b) - half
        left: asyncio.Future[tuple[str, Any]] = asyncio.get_running_loop().create_future()
        mi, n, next_sample, qacc, qbuf, first = cur.mi, cur.n, cur.next_sample, cur.qacc, cur.qbuf, cur.first
        n0 = n
        k = mix[mi]
        t0 = 0
        cur.first_failed = first

        def leave(result: tuple[str, Any]) -> None:
            session.callback = None
            if not left.done():
                left.set_result(result)

        def done(error: BaseException | None) -> None:
            nonlocal mi, n, next_sample, qacc, qbuf, first, k, t0, intended
            t1 = perf()
            if error is not None:
                cur.first_failed = first
                first = False
                leave(("fail", (k, t0, t1, error)))
                return
            sv = t1 - t0
            if sv > cap:
                sv = cap
            b = (sv | mask).bit_length() - shift
            si = ((b + 1) << half_mag) + (sv >> b) - half
            rec = svc_recs[k]
            rec.counts[si] += 1
            rec.total += 1
            rec = lat_recs[k]
            if intended >= t0:
                rec.counts[si] += 1
                rec.total += 1
                lag_counts[lag_floor] += 1
                lag_rec.total += 1
            else:
                it = int(intended)
                ns = t1 - it
                if ns > cap:
                    ns = cap
                b = (ns | mask).bit_length() - shift
                rec.counts[((b + 1) << half_mag) + (ns >> b) - half] += 1
                rec.total += 1
                lag = t0 - it
                if lag > cap:
                    lag = cap
                b = (lag | mask).bit_length() - shift
                lag_counts[((b + 1) << half_mag) + (lag >> b) - half] += 1
                lag_rec.total += 1
            n += 1
            if qlog is not None:
                qacc += qrate
                if qacc >= 1.0:
                    qacc -= 1.0
                    qbuf.append((st.phase, k, t0, t1, ""))
                    if len(qbuf) >= FLUSH_ROWS:
                        qbuf = qlog.flush(qbuf)
            if first:
                first = False
                spans.emit(k, index, t0, t1, reason="first", first=index == 0, conn=conn, error=None)
            elif n == next_sample or sv >= slow_ns:
                if n == next_sample:
                    next_sample += every
                    spans.emit(k, index, t0, t1, reason="sample", first=False, conn=conn, error=None)
                else:
                    spans.emit(k, index, t0, t1, reason="slow", first=False, conn=conn, error=None)
            if st.stop or st.gen != gen:
                leave(("look", None))
                return
            nxt = take(t1)
            if nxt - t1 > early:  # inf included: the schedule is over
                leave(("sleep", nxt))
                return
            intended = nxt
            k = mix[mi]
            a = args[mi]
            mi += 1
            if mi == nmix:
                mi = 0
            t0 = perf()
            try:
                send(heads[k], a)
            except Exception as exc:  # the connection is gone: the loop reconnects
                cur.first_failed = first
                leave(("fail", (k, t0, perf(), exc)))

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
            # the task's cancel cancels ``left`` too: then the execution was still in flight
            if left.cancelled() or not left.done():
                self.cut_open(k, intended, t0)  # still running at the drain deadline
            elif left.result()[0] == "fail":  # it failed just before the drain: still an error
                self._count_error(*left.result()[1])
            raise
        except Exception as exc:
            session.callback = None
            first = False
            return ("fail", (k, t0, perf(), exc))
        finally:
            cur.mi, cur.n, cur.next_sample, cur.qacc, cur.qbuf, cur.first = mi, n, next_sample, qacc, qbuf, first
            cur.progressed = n > n0

    def cut_open(self, kind: int, intended: float, t0: int) -> None:
        st = self.state
        now = time.perf_counter_ns()
        phase = st.phase_at(t0)
        if phase is not None:
            phase.recorders[kind].record(min(HIGHEST_NS, int(now - min(intended, t0))))
            if phase.service is not None:
                phase.service[kind].record(now - t0)
            phase.cut += 1

    async def _loop(self, index: int, conn: TargetConnection, fns: list[QueryFn]) -> None:
        st = self.state
        spans = self.spans
        mix = self.mix
        args = self.args
        nmix = len(mix)
        mi = (index * 9973) % nmix
        perf = time.perf_counter_ns
        sleep = asyncio.sleep
        take = self.take
        # The constant-rate schedule, inlined below (take() in locals): this runs once per query.
        q = self.queue
        step = self._step_ns
        poisson = self._poisson
        rnd = self._random
        log = _log
        maxq = self.max_queue
        qlog = self.query_log
        qbuf: list[tuple[str, int, int, int, str]] = []
        qrate = qlog.sample if qlog is not None else 0.0
        qacc = 0.0
        slow_ns = spans.slow_ns
        every = spans.every
        next_sample = every - (index * 7919) % every
        n = 0
        in_a_row = 0
        first = True
        gen = st.gen
        mask, shift, half_mag, half = st.recorders[0].index_constants()
        cap = HIGHEST_NS
        # The phase's histograms, re-read at every phase change (st.gen): an execution is
        # recorded in the phase it was sent in.
        data = st.data
        lat_recs, svc_recs, lag_rec = data.recorders, data.service, data.lag
        lag_counts = lag_rec.counts
        b = (1 | mask).bit_length() - shift
        lag_floor = ((b + 1) << half_mag) + (1 >> b) - half  # the bucket of 1 ns
        # The PostgreSQL wire path: on-schedule executions chain from each other's completions
        # (_chained), with no coroutine step per query; a sleep, an error or a phase change
        # comes back here. An arrival the chain took but must sleep for is ``pending``.
        direct = _direct(conn)
        cur = _Cursor()
        pending: float | None = None
        now = perf()
        try:
            while not st.stop:
                if pending is not None:
                    intended, pending = pending, None
                elif step:
                    nxt = self._next
                    if nxt <= now:
                        room = maxq - len(q)
                        while room > 0 and nxt <= now:
                            q.append(nxt)
                            room -= 1
                            nxt += step * -log(1.0 - rnd()) if poisson else step
                        if nxt <= now:  # the queue is full: what is due by now is dropped
                            if poisson:
                                dn = int((now - nxt) / step) + 1
                                nxt = now + step * -log(1.0 - rnd())
                            else:
                                dn = int((now - nxt) // step) + 1
                                nxt += dn * step
                            data.dropped += dn
                    if q:
                        self._next = nxt
                        intended = q.popleft()
                    else:
                        intended = nxt
                        self._next = nxt + (step * -log(1.0 - rnd()) if poisson else step)
                else:
                    intended = take(now)
                if intended > now:
                    if intended == INF:
                        await sleep(0.05)  # the schedule is over (a rate of 0): idle until the stop
                        now = perf()
                        continue
                    if intended - now > EARLY_NS:
                        await sleep((intended - now) / 1e9)
                        if st.stop:
                            break
                if st.gen != gen:
                    gen = st.gen
                    data = st.data
                    lat_recs, svc_recs, lag_rec = data.recorders, data.service, data.lag
                    lag_counts = lag_rec.counts
                    await conn.set_phase(st.tag)
                if direct is not None:
                    cur.mi, cur.n, cur.next_sample, cur.qacc, cur.qbuf, cur.first = mi, n, next_sample, qacc, qbuf, first
                    what, got = await self._chained(index, conn, direct[0], direct[1], cur, intended)
                    mi, n, next_sample, qacc, qbuf, first = cur.mi, cur.n, cur.next_sample, cur.qacc, cur.qbuf, cur.first
                    if cur.progressed:
                        in_a_row = 0
                    if what == "sleep":
                        pending = got  # type: ignore[assignment]
                    elif what == "fail":
                        k, t0, t1, exc = got  # type: ignore[misc]
                        pair, in_a_row = await self.query_failed(index, conn, k, t0, t1, exc, in_a_row, qbuf,
                                                                 first=cur.first_failed)
                        if pair is not None:
                            conn, fns = pair
                            direct = _direct(conn)
                            gen = -1
                    now = perf()
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
                    pair, in_a_row = await self.query_failed(index, conn, k, t0, perf(), exc, in_a_row, qbuf, first=first)
                    first = False
                    if pair is not None:
                        conn, fns = pair
                        gen = -1
                    now = perf()
                    continue
                except asyncio.CancelledError:
                    self.cut_open(k, intended, t0)
                    raise
                t1 = perf()
                # LatencyRecorder.record, inlined: service time (send -> end) always; then latency
                # (intended start -> end) and schedule lag (send - intended start). An execution
                # sent on time, or early (EARLY_NS, or a timer that woke early), has latency =
                # service time and lag 0, recorded as 1 ns (the histograms' floor): its service
                # bucket is reused and the lag's is a constant, one bucket computation in all.
                sv = t1 - t0
                if sv > cap:
                    sv = cap
                b = (sv | mask).bit_length() - shift
                si = ((b + 1) << half_mag) + (sv >> b) - half
                rec = svc_recs[k]
                rec.counts[si] += 1
                rec.total += 1
                rec = lat_recs[k]
                if intended >= t0:
                    rec.counts[si] += 1
                    rec.total += 1
                    lag_counts[lag_floor] += 1
                    lag_rec.total += 1
                else:
                    it = int(intended)
                    ns = t1 - it
                    if ns > cap:
                        ns = cap
                    b = (ns | mask).bit_length() - shift
                    rec.counts[((b + 1) << half_mag) + (ns >> b) - half] += 1
                    rec.total += 1
                    lag = t0 - it
                    if lag > cap:
                        lag = cap
                    b = (lag | mask).bit_length() - shift
                    lag_counts[((b + 1) << half_mag) + (lag >> b) - half] += 1
                    lag_rec.total += 1
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
                if first:
                    first = False
                    spans.emit(k, index, t0, t1, reason="first", first=index == 0, conn=conn, error=None)
                elif n == next_sample or sv >= slow_ns:
                    if n == next_sample:
                        next_sample += every
                        spans.emit(k, index, t0, t1, reason="sample", first=False, conn=conn, error=None)
                    else:
                        spans.emit(k, index, t0, t1, reason="slow", first=False, conn=conn, error=None)
                now = t1  # the next take's clock: a microsecond stale at most, one call saved
        finally:
            if qlog is not None:
                qlog.flush(qbuf)


def rate_curve(load: Any) -> RateCurve:
    """The run's rate over time from the ``[load]`` table (rate, stages)."""
    stages = [(st.duration, float(st.rate or 0.0)) for st in (load.stages or [])]
    start = load.rate if load.rate is not None else (0.0 if stages else None)
    return RateCurve(start, stages)


def open_loop(state: Any, settings: Any, *, group: int, seed: str, start_unix_ns: int, **kw: Any) -> OpenLoop:
    """The open model of one worker: its share of the schedule, anchored at the START instant."""
    load = settings.load
    # perf_counter at the START instant: the schedule is in the worker's monotonic clock
    origin = time.perf_counter_ns() + (start_unix_ns - time.time_ns())
    arrivals = Arrivals(rate_curve(load), group=group, groups=settings.workers, poisson=load.arrival == "poisson",
                        seed=seed, origin_perf_ns=origin)
    return OpenLoop(state, arrivals, max_queue=load.max_queue, **kw)
