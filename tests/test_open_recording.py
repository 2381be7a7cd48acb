"""The open model's inlined recording (load/open.py), as pure logic: what goes into its three
histograms for an execution sent on time and for one sent late.

No database: the query is a coroutine that takes a known time, so the test knows what every
histogram must hold. The database paths of the open model are in test_load_open.py.
"""

from __future__ import annotations

import asyncio
import time

from opentelemetry import trace

from spanbench.load.open import Arrivals, OpenLoop, RateCurve
from spanbench.load.query_spans import QuerySpans
from spanbench.load.state import MEASUREMENT, LoadState
from spanbench.targets.base import QuerySpec

SERVICE_S = 0.002


class _Conn:
    async def set_phase(self, phase: str) -> None:
        return None

    def is_broken(self, exc: BaseException) -> bool:
        return False

    def last_query_id(self) -> str | None:
        return None


def _run(rate: float, origin_offset_s: float, queries: int) -> LoadState:
    async def go() -> LoadState:
        state = LoadState(1, open_model=True)
        state.enter(MEASUREMENT)
        done = [0]

        async def query(args: tuple) -> None:
            await asyncio.sleep(SERVICE_S)
            done[0] += 1
            if done[0] >= queries:
                state.request_stop("done")

        spec = QuerySpec(kind="q", operation="SELECT", sql="SELECT 1", collection="t")
        spans = QuerySpans(trace.get_tracer("test"), None, [spec], system="postgresql", server_address="x",
                           every=1000, slow_s=10.0, cap=0, enabled=False)
        arrivals = Arrivals(RateCurve(rate), group=0, groups=1, poisson=False, seed="s",
                            origin_perf_ns=time.perf_counter_ns() + int(origin_offset_s * 1e9))
        loop = OpenLoop(state, arrivals, max_queue=1_000_000, mix=[0], args=[()], spans=spans,
                        max_consecutive_errors=10)
        await asyncio.wait_for(loop.run_connection(0, _Conn(), [query]), 30)
        return state

    return asyncio.run(go())


def _ms(rec, pct: float) -> float:
    return rec.to_hdr().get_value_at_percentile(pct) / 1e6


def test_executions_sent_on_time_have_latency_equal_to_service_time() -> None:
    # one arrival every 20 ms, each taking 2 ms: every send is on time (or up to a ms early)
    st = _run(rate=50, origin_offset_s=0.0, queries=15)
    d = st.phases[MEASUREMENT]
    lat, svc, lag = d.recorders[0], d.service[0], d.lag
    assert lat.total == svc.total == lag.total >= 15
    assert sum(lat.counts) == sum(svc.counts) == sum(lag.counts) == lat.total
    # latency counts from the intended start, which is never after the send: at least the service
    # time, and on schedule no more than a timer tick above it
    assert _ms(lat, 50) >= _ms(svc, 50) >= SERVICE_S * 1e3 * 0.9
    assert _ms(lat, 100) < _ms(svc, 100) + 5
    assert _ms(lag, 50) < 5


def test_executions_sent_late_carry_their_wait_in_latency_and_lag() -> None:
    # the schedule began a second ago at 10,000/s: every arrival is overdue by about a second
    st = _run(rate=10_000, origin_offset_s=-1.0, queries=20)
    d = st.phases[MEASUREMENT]
    lat, svc, lag = d.recorders[0], d.service[0], d.lag
    assert lat.total == svc.total == lag.total >= 20
    assert 900 <= _ms(lag, 50) <= 1500, _ms(lag, 50)
    assert 900 <= _ms(lat, 50) <= 1500
    assert _ms(svc, 50) < 100
    # latency = lag + service for each execution, so the medians add up within HDR precision
    assert abs(_ms(lat, 50) - (_ms(lag, 50) + _ms(svc, 50))) < 0.01 * _ms(lat, 50) + 1
