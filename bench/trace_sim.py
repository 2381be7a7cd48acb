"""A run's trace, simulated: every worker's spans made by the real code paths on a fake clock.

``bench/trace_size.py --simulate`` uses this to measure runs no machine here could run (64
workers, an hour). Each simulated process has its own tracer provider and resource, as a
real one has, and an in-memory exporter. What makes the spans is spanbench's own code:

- ``QuerySpans`` (load/query_spans.py) with the demo's queries, fed each connection's first
  query and the 1-in-``query_sample_every`` samples at ``qps_per_worker``, with the worker's
  share of ``query_span_budget`` as its cap;
- ``RepeatingSpans`` (telemetry/repeating.py) for ``heartbeat`` every ``heartbeat_interval``,
  ``results.flush`` every ``flush_interval``, and a ``control.poll`` per phase change, with
  the worker's share of ``repeating_span_budget``; one beat in ``slow_every`` is slow, so the
  unusual ones that always keep their own span are in the figures too;
- the phase spans of a worker and of the orchestrator (README's span tree), with the
  attributes a real run puts on them, made directly.

Spans are grouped into export batches as the batch processor makes them (what ended in the
same 500 ms of a process), and each batch is encoded once as an OTLP protobuf
ExportTraceServiceRequest (opentelemetry's own encoder: what a collector receives and Tempo
counts) and once as an OTLP/JSON line (spanbench's run-folder format).
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from opentelemetry import trace  # noqa: E402
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from spanbench.load.query_spans import QuerySpans, query_span_share  # noqa: E402
from spanbench.settings import Settings  # noqa: E402
from spanbench.telemetry.otlp_json import request_to_json  # noqa: E402
from spanbench.telemetry.repeating import RepeatingSpans, keep_first_per_worker, span_count_attributes  # noqa: E402
from spanbench.workload.demo import demo_workload  # noqa: E402
from spanbench.workload.plan import query_specs  # noqa: E402

S = 1_000_000_000
MS = 1_000_000
T0 = 1_800_000_000 * S  # the simulated run's first instant, Unix ns
BATCH_NS = 500 * MS  # the batch span processor's schedule delay (telemetry/provider.py)
RUN_ID = "20270115-080000-5f3a9c"


@dataclass
class Scenario:
    workers: int
    measurement_s: float
    connections_per_worker: int = 8  # the default 16 connections over 2 workers
    qps_per_worker: float = 6_350.0  # bench/README.md's full-speed 10-minute run, per worker
    warmup_s: float = 2.0
    slow_every: int = 600  # one slow (hence unusual, own-span) heartbeat in this many
    settings: Settings = field(default_factory=lambda: Settings(target_dsn=None))


@dataclass
class Size:
    spans: int
    proto_bytes: int
    json_bytes: int
    by_name: Counter[str]
    coarsened: int  # beats inside summarising spans
    skipped: int  # query samples past the caps


class _Process:
    """One simulated process: its resource, provider and the spans it ended."""

    def __init__(self, service: str, worker_id: str | None) -> None:
        attrs: dict[str, Any] = {"service.name": service, "service.instance.id": f"{service}-{worker_id or 'o'}-sim",
                                 "process.pid": 40_000 + len(worker_id or ""), "host.name": "bench-host-0123",
                                 "spanbench.run_id": RUN_ID}
        if worker_id:
            attrs["spanbench.worker_id"] = worker_id
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource.create(attrs))
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("spanbench")

    def retro(self, name: str, parent: Any, start: int, end: int, attrs: dict[str, Any] | None = None) -> trace.Span:
        span = self.tracer.start_span(name, context=parent, start_time=start, attributes=attrs or {})
        span.end(end_time=end)
        return span

    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()


def _orchestrator(sc: Scenario, load_end: int) -> tuple[_Process, Any]:
    p = _Process("spanbench-orchestrator", None)
    run = p.tracer.start_span("run", start_time=T0, attributes={
        "spanbench.run_id": RUN_ID, "spanbench.run.status": "COMPLETED", "spanbench.workers": sc.workers,
        "spanbench.connections": sc.workers * sc.connections_per_worker, "spanbench.start_to_first_query_ms": 12.5,
        "spanbench.stalls": 0, "spanbench.queries_cut": 0, "process.pid": 40_000})
    ctx = trace.set_span_in_context(run)
    t = T0
    for name, ms in [("orchestrator.startup", 180), ("orchestrator.bootstrap", 40), ("target.start_embedded", 900),
                     ("orchestrator.launch_workers", 30), ("telemetry.init", 5), ("orchestrator.prepare", 400),
                     ("orchestrator.handoff", 2), ("orchestrator.await_ready", 1500),
                     ("orchestrator.start", 20)]:
        p.retro(name, ctx, t, t + ms * MS, {"spanbench.start.lead_ms": 15.0} if name == "orchestrator.start" else None)
        t += ms * MS
    start = t
    warm_end = start + int(sc.warmup_s * S)
    p.retro("phase.warmup", ctx, start, warm_end, {"spanbench.phase": "WARMUP"})
    p.retro("phase.measurement", ctx, warm_end, load_end, {"spanbench.phase": "MEASUREMENT"})
    p.retro("phase.cooldown", ctx, load_end, load_end, {"spanbench.phase": "COOLDOWN"})
    p.retro("orchestrator.stop", ctx, load_end, load_end + 300 * MS)
    p.retro("orchestrator.collect_results", ctx, load_end + 300 * MS, load_end + 500 * MS, {"spanbench.workers": sc.workers})
    run.end(end_time=load_end + 600 * MS)
    return p, ctx


def _worker_setup(p: _Process, ctx: Any, sc: Scenario) -> int:
    """Start-up to START: the fixed phase spans; returns the instant the load starts."""
    t = T0 + 200 * MS
    for name, ms, attrs in [
        ("worker.startup", 150, {"spanbench.stage": "fork"}), ("worker.await_handoff", 1300, {}),
        ("worker.bootstrap", 20, {}), ("control.connect", 15, {}),
        ("control.fetch_run_status", 5, {"spanbench.run.status": "PREPARING", "control.attempts": 1}),
        ("telemetry.init", 3, {}), ("heartbeat", 4, {"worker.status": "INITIALIZING"}),
    ]:
        p.retro(name, ctx, t, t + ms * MS, attrs)
        t += ms * MS
    n = sc.connections_per_worker
    pool = p.tracer.start_span("pool.init", context=ctx, start_time=t, attributes={"pool.size": n, "pool.batch_size": 8})
    pctx = trace.set_span_in_context(pool)
    for b in range(0, n, 8):
        batch = p.tracer.start_span("pool.batch", context=pctx, start_time=t, attributes={"batch.index": b // 8})
        bctx = trace.set_span_in_context(batch)
        for i in range(b, min(n, b + 8)):
            p.retro("pool.connect", bctx, t, t + 12 * MS, {"spanbench.connection": i, "server.address": "127.0.0.1"})
        t += 12 * MS
        batch.end(end_time=t)
    pool.end(end_time=t)
    setup = p.tracer.start_span("executor.setup", context=ctx, start_time=t)
    sctx = trace.set_span_in_context(setup)
    for name, attrs in [("setup.profile_table", {"db.collection.name": "spanbench_demo", "spanbench.rows": 100_000}),
                        ("setup.load_value_pools", {"spanbench.value_pool.aid.shard": 5000}),
                        ("setup.draw_params", {"spanbench.draws": 200_000})]:
        p.retro(name, sctx, t, t + 30 * MS, attrs)
        t += 30 * MS
    setup.end(end_time=t)
    p.retro("heartbeat", ctx, t, t + 4 * MS, {"worker.status": "READY"})
    wait = p.tracer.start_span("wait_for_start", context=ctx, start_time=t)
    wctx = trace.set_span_in_context(wait)
    start = T0 + 3100 * MS  # orchestrator.start's instant, as laid out above
    polls = max(1, int((start - t) / (100 * MS)))
    for i in range(polls):
        a = t + i * (start - t) // polls
        p.retro("wait_for_start.poll", wctx, a, a + (start - t) // polls,
                {"poll.index": i + 1, "poll.outcome": "start" if i == polls - 1 else "waiting",
                 "poll.woken_by": "notify" if i == polls - 1 else "timeout"})
    wait.set_attribute("wait_for_start.polls", polls)
    wait.end(end_time=start)
    return start


def _queries(p: _Process, ctx: Any, sc: Scenario, start: int, load_end: int) -> QuerySpans:
    """Each connection's first query, then every sampled one, through the real QuerySpans."""
    s = sc.settings
    specs = query_specs(demo_workload("postgresql", update_share=s.update_share), "postgresql")
    spans = QuerySpans(p.tracer, ctx, specs, system="postgresql", server_address="127.0.0.1:5432",
                       every=s.query_sample_every, slow_s=s.slow_query_threshold,
                       cap=query_span_share(s.query_span_budget, s.query_span_cap, sc.workers), enabled=True)
    spans.start_unix_ns = start
    perf = spans.wall_ns(0)  # Unix ns -> the perf_counter ns QuerySpans takes

    class _Conn:
        def last_query_id(self) -> None:
            return None

    conn: Any = _Conn()
    for i in range(sc.connections_per_worker):
        t = start + 2 * MS + i * 100_000
        spans.emit(0, i, t - perf, t + 400_000 - perf, reason="first", first=i == 0, conn=conn, error=None)
    step = int(S * s.query_sample_every / sc.qps_per_worker)  # one sample every this many ns
    for t in range(start + 10 * MS, load_end, step):
        spans.emit((t // step) % len(specs), (t // step) % sc.connections_per_worker, t - perf, t + 300_000 - perf,
                   reason="sample", first=False, conn=conn, error=None)
    return spans


def _repeating(p: _Process, ctx: Any, sc: Scenario, name: str, every_s: float, start: int, load_end: int,
               took_ns: int) -> RepeatingSpans:
    s = sc.settings
    kind = RepeatingSpans(p.tracer, ctx, name, keep_first=keep_first_per_worker(s.repeating_span_budget, sc.workers),
                          slow_s=every_s / 2, attributes={"worker.status": "RUNNING"} if name != "results.flush" else {})
    step = int(every_s * S)
    for i, t in enumerate(range(start + step, load_end, step)):
        slow = sc.slow_every and i % sc.slow_every == sc.slow_every - 1
        kind.record(t, t + (int(every_s * S * 0.6) if slow else took_ns),
                    attributes={"spanbench.queries": i * 1000, "results.control_store": "ok"}
                    if name == "results.flush" else None)
    return kind


def _worker(sc: Scenario, parent: Any, group: int, load_end: int) -> tuple[_Process, int, int]:
    wid = f"w{group}"
    p = _Process("spanbench-worker", wid)
    worker = p.tracer.start_span("worker", context=parent, start_time=T0 + 200 * MS, attributes={
        "spanbench.run_id": RUN_ID, "spanbench.worker_id": wid, "spanbench.group_id": group, "process.pid": 41_000})
    ctx = trace.set_span_in_context(worker)
    start = _worker_setup(p, ctx, sc)
    p.retro("test_results.insert", ctx, start, start + 8 * MS)
    p.retro("scale_to", ctx, start - 5 * MS, start + 1 * MS,
            {"scale.target": sc.connections_per_worker, "scale.before_start_instant_ms": 5.0})
    spans = _queries(p, ctx, sc, start, load_end)
    s = sc.settings
    kinds = {"heartbeat": _repeating(p, ctx, sc, "heartbeat", s.heartbeat_interval, start, load_end, 3 * MS),
             "results.flush": _repeating(p, ctx, sc, "results.flush", s.flush_interval, start, load_end, 6 * MS)}
    polls = kinds["control.poll"] = RepeatingSpans(p.tracer, ctx, "control.poll", keep_first=2, slow_s=0.5,
                                                   attributes={"worker.status": "RUNNING"})
    for t in (start + int(sc.warmup_s * S), load_end):  # SET_PHASE to MEASUREMENT, then STOP: both news
        polls.record(t, t + 2 * MS, event=True)
    for kind in kinds.values():
        kind.flush()
    kinds["heartbeat"].counted_elsewhere()  # the status beats made above and below
    kinds["heartbeat"].counted_elsewhere()
    kinds["heartbeat"].counted_elsewhere()
    t = load_end
    for name, ms, attrs in [("worker.load", 0, {"spanbench.queries": 1, "spanbench.errors": 0,
                                                "spanbench.stop_reason": "stop requested"}),
                            ("worker.drain", 20, {}), ("results.persist", 40, {"results.control_store": "ok"}),
                            ("heartbeat", 4, {"worker.status": "COMPLETED"})]:
        a = start if name == "worker.load" else t
        p.retro(name, ctx, a, t + ms * MS, attrs)
        t += ms * MS
    worker.set_attributes(span_count_attributes(kinds))
    worker.set_attribute("spanbench.query_spans_skipped", spans.skipped)
    worker.set_attribute("spanbench.worker.status", "COMPLETED")
    worker.end(end_time=t)
    return p, sum(k.coarsened for k in kinds.values()), spans.skipped


def _batches(spans: Sequence[ReadableSpan]) -> Iterable[list[ReadableSpan]]:
    """The export batches of one process: spans that ended in the same 500 ms."""
    groups: dict[int, list[ReadableSpan]] = defaultdict(list)
    for s in spans:
        groups[(s.end_time or 0) // BATCH_NS].append(s)
    for key in sorted(groups):
        yield groups[key]


def simulate(sc: Scenario) -> Size:
    load_end = T0 + 3100 * MS + int((sc.warmup_s + sc.measurement_s) * S)
    orch, ctx = _orchestrator(sc, load_end)
    processes = [orch]
    coarsened = skipped = 0
    for g in range(sc.workers):
        p, c, k = _worker(sc, ctx, g, load_end)
        processes.append(p)
        coarsened += c
        skipped += k
    proto = js = 0
    names: Counter[str] = Counter()
    for p in processes:
        spans = p.spans()
        names.update(s.name for s in spans)
        for batch in _batches(spans):
            proto += encode_spans(batch).ByteSize()
            js += len(request_to_json(batch)) + 1  # one line each
    return Size(sum(names.values()), proto, js, names, coarsened, skipped)


if __name__ == "__main__":  # a quick look: python bench/trace_sim.py 64 3600
    workers, seconds = (int(sys.argv[1]), float(sys.argv[2])) if len(sys.argv) > 2 else (2, 600.0)
    size = simulate(Scenario(workers, seconds))
    print(f"{size.spans:,} spans, {size.proto_bytes:,} B protobuf, {size.json_bytes:,} B JSON;",
          size.by_name.most_common(8))
