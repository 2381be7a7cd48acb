"""Worker metrics over OTLP, built from the worker's own counters and HDR histograms.

Nothing here touches the hot path: every few seconds the pump reads the counts the
connection loops already keep, turns them into OTLP data points (cumulative sums, gauges,
and an explicit-bucket latency histogram derived exactly from the HDR counts), and hands
them to the SDK's standard OTLP metric exporter on a daemon thread. Exemplars point latency
buckets at the sampled ``query`` spans. An export still running when the next is due is
skipped, never queued, so a stuck collector costs one thread and nothing else.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.metrics import Exemplar
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from spanbench.stats import new_histogram

# Latency bucket bounds in seconds (OTLP explicit bounds): 100 µs to 10 s.
BOUNDS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The phase names (load/state.py) as strings: telemetry sits below the load package.
PHASE_NUMBER = {"INIT": 0, "WARMUP": 1, "MEASUREMENT": 2, "COOLDOWN": 3}
_EXPORT_TIMEOUT_S = 5.0


def otlp_metric_exporter() -> MetricExporter:
    env = os.environ
    protocol = (env.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").strip()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter

        return GrpcExporter(timeout=_EXPORT_TIMEOUT_S)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter

    return HttpExporter(timeout=_EXPORT_TIMEOUT_S)


class _BucketMap:
    """HDR counts index -> (OTLP bucket, representative value in s), computed once per process."""

    def __init__(self) -> None:
        h = new_histogram()
        self.bucket: list[int] = []
        self.value_s: list[float] = []
        for i in range(h.counts_len):
            lo = h.get_value_from_index(i)
            mid = (lo + h.get_highest_equivalent_value(lo)) / 2 / 1e9
            self.value_s.append(mid)
            self.bucket.append(bisect.bisect_left(BOUNDS_S, lo / 1e9))


_BUCKET_MAP: _BucketMap | None = None


def bucket_map() -> _BucketMap:
    """The index map, built once per process (~0.1 s): call it before the load starts."""
    global _BUCKET_MAP
    if _BUCKET_MAP is None:
        _BUCKET_MAP = _BucketMap()
    return _BUCKET_MAP


class MetricsPump:
    def __init__(
        self,
        exporter: MetricExporter,
        resource: Resource,
        state: Any,  # load.state.LoadState: read, never imported here
        kinds: Sequence[str],
        *,
        attributes: dict[str, str],
        exemplars: Callable[[], list[tuple[int, float, int, int, int]]],
        interval_s: float,
    ) -> None:
        self.exporter = exporter
        self.resource = resource
        self.state = state
        self.kinds = list(kinds)
        self.attrs = attributes
        self.exemplars = exemplars  # () -> [(kind index, seconds, span id, trace id, unix ns)]
        self.interval_s = interval_s
        self.start_ns = time.time_ns()
        self.exported = 0
        self.failed = 0
        self.skipped = 0
        self._busy = threading.Lock()
        self._map = bucket_map()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self.export_now()

    def export_now(self, wait_s: float = 0.0) -> None:
        """Export a snapshot on a daemon thread; wait for it up to ``wait_s``."""
        if not self._busy.acquire(blocking=False):
            self.skipped += 1
            return

        def send() -> None:
            try:
                # Built on this thread too: walking the HDR counts takes milliseconds that
                # the event loop would otherwise add to the latency of in-flight queries.
                ok = self.exporter.export(self.snapshot(), timeout_millis=_EXPORT_TIMEOUT_S * 1000)
                if getattr(ok, "name", "") == "SUCCESS":
                    self.exported += 1
                else:
                    self.failed += 1
            except Exception:
                self.failed += 1
            finally:
                self._busy.release()

        t = threading.Thread(target=send, name="spanbench-metrics", daemon=True)
        t.start()
        if wait_s > 0:
            t.join(wait_s)

    def snapshot(self) -> MetricsData:
        now = time.time_ns()
        st = self.state
        cumulative = AggregationTemporality.CUMULATIVE
        queries, errors, hists = [], [], []
        examples = self.exemplars()
        for k, kind in enumerate(self.kinds):
            attrs = {**self.attrs, "query_kind": kind}
            q = sum(p.recorders[k].total for p in st.phases.values())
            e = sum(p.errors[k] for p in st.phases.values())
            queries.append(NumberDataPoint(attrs, self.start_ns, now, q))
            errors.append(NumberDataPoint(attrs, self.start_ns, now, e))
            hists.append(self._histogram_point(k, attrs, now, [x for x in examples if x[0] == k]))
        gauge_attrs = dict(self.attrs)
        metrics = [
            Metric("spanbench.queries", "queries completed", "1", Sum(queries, cumulative, True)),
            Metric("spanbench.errors", "queries failed", "1", Sum(errors, cumulative, True)),
            Metric("spanbench.query.duration", "query latency, from the worker's HDR histograms", "s",
                   Histogram(hists, cumulative)),
            Metric("spanbench.active_connections", "connections running queries", "{connection}",
                   Gauge([NumberDataPoint(gauge_attrs, self.start_ns, now, st.active)])),
            Metric("spanbench.phase", "0 INIT, 1 WARMUP, 2 MEASUREMENT, 3 COOLDOWN", "",
                   Gauge([NumberDataPoint(gauge_attrs, self.start_ns, now, PHASE_NUMBER.get(st.phase, 0))])),
        ]
        scope = InstrumentationScope("spanbench")
        return MetricsData([ResourceMetrics(self.resource, [ScopeMetrics(scope, metrics, "")], "")])

    def _histogram_point(self, k: int, attrs: dict[str, str], now: int,
                         examples: list[tuple[int, float, int, int, int]]) -> HistogramDataPoint:
        buckets = [0] * (len(BOUNDS_S) + 1)
        total, count = 0.0, 0
        lo_s, hi_s = float("inf"), 0.0
        bucket_of, value_of = self._map.bucket, self._map.value_s
        for phase in self.state.phases.values():
            for i, c in enumerate(phase.recorders[k].counts):
                if c:
                    v = value_of[i]
                    buckets[bucket_of[i]] += c
                    total += v * c
                    count += c
                    lo_s, hi_s = min(lo_s, v), max(hi_s, v)
        exemplars = [
            Exemplar({}, seconds, at_ns, span_id=span_id, trace_id=trace_id)
            for _, seconds, span_id, trace_id, at_ns in examples[-len(buckets):]
        ]
        return HistogramDataPoint(attrs, self.start_ns, now, count, total, buckets, list(BOUNDS_S),
                                  lo_s if count else 0.0, hi_s, exemplars)

    def close(self) -> None:
        """Start a last export with the final counts; it finishes during the process's span
        flush (the same bounded window), so a dead collector adds nothing here."""
        if not self._busy.acquire(timeout=0.2):
            return  # a stuck export holds the slot: the run is not delayed for it
        self._busy.release()
        self.export_now()
