"""Synthetic traces with known timings, and writers for every format the loader reads.

For tests and demos: build spans in milliseconds from a base time, then serialise them
as OTLP/JSON (the Collector file exporter's format), Tempo's ``batches`` (base64 ids)
or Jaeger's JSON, and check that what comes back is what went in.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

from spanbench.analysis.model import Span, Trace

T0_NS = 1_700_000_000_000_000_000
MS = 1_000_000


class TraceBuilder:
    def __init__(self, trace_id: str = "0af7651916cd43dd8448eb211c80319c", t0_ns: int = T0_NS) -> None:
        self.trace_id = trace_id
        self.t0_ns = t0_ns
        self.spans: list[Span] = []
        self._next = 1

    def span(
        self,
        name: str,
        start_ms: float,
        end_ms: float,
        parent: Span | str | None = None,
        *,
        service: str = "spanbench",
        process: str = "orchestrator",
        attrs: dict[str, Any] | None = None,
        span_id: str | None = None,
    ) -> Span:
        if span_id is None:
            span_id = f"{self._next:016x}"
            self._next += 1
        parent_id = parent.span_id if isinstance(parent, Span) else parent
        if isinstance(parent, Span) and process == "orchestrator" and parent.process_key != "orchestrator":
            process, service = parent.process_key, parent.service  # children inherit their parent's process
        span = Span(
            trace_id=self.trace_id,
            span_id=span_id,
            parent_id=parent_id,
            name=name,
            start_ns=self.t0_ns + round(start_ms * MS),
            end_ns=self.t0_ns + round(end_ms * MS),
            service=service,
            resource={"service.name": service, "service.instance.id": process},
            attributes=dict(attrs or {}),
            process_key=process,
        )
        self.spans.append(span)
        return span

    def trace(self) -> Trace:
        return Trace(list(self.spans))


def spanbench_run(*, workers: int = 2, stall_ms: float = 0.0, stall_worker: int = 1, queries: int = 20) -> TraceBuilder:
    """A 2-worker spanbench run shaped like the design's span tree.

    With ``stall_ms``, worker ``stall_worker`` idles that long, untraced, between
    ``pool.init`` and ``executor.setup``, delaying everything after it.
    """
    b = TraceBuilder()
    end = 14_000 + stall_ms
    run = b.span("run", 0, end, process="orchestrator")
    b.span("orchestrator.prepare", 0, 40, run)
    b.span("orchestrator.launch_workers", 40, 60, run)
    b.span("orchestrator.await_ready", 60, 1_000 + stall_ms, run)
    b.span("orchestrator.start", 1_000 + stall_ms, 1_010 + stall_ms, run)
    b.span("phase.warmup", 1_010 + stall_ms, 3_010 + stall_ms, run)
    b.span("phase.measurement", 3_010 + stall_ms, 13_010 + stall_ms, run)
    b.span("phase.cooldown", 13_010 + stall_ms, 13_500 + stall_ms, run)
    b.span("orchestrator.stop", 13_500 + stall_ms, 13_600 + stall_ms, run)
    b.span("orchestrator.collect_results", 13_600 + stall_ms, 13_990 + stall_ms, run)
    for w in range(workers):
        pk = f"worker-{w}"
        s = stall_ms if w == stall_worker else 0.0
        # each worker's own schedule: launched at 45 ms, ready by ~700 ms (+ its stall)
        wk = b.span("worker", 45 + w, 13_700 + stall_ms, run, process=pk, attrs={"spanbench.worker_id": f"w{w}"})
        b.span("worker.startup", 45 + w, 300, wk)
        b.span("control.fetch_run_status", 300, 320, wk)
        b.span("heartbeat", 320, 330, wk, attrs={"worker.status": "INITIALIZING"})
        pool = b.span("pool.init", 330, 500, wk, attrs={"pool.size": 8, "pool.batch_size": 4})
        for i, (bs, be) in enumerate(((330, 410), (410, 500))):
            batch = b.span("pool.batch", bs, be, pool, attrs={"batch.index": i})
            for c in range(4):
                b.span("pool.connect", bs, be - c, batch)
        setup = b.span("executor.setup", 500 + s, 650 + s, wk)
        b.span("setup.profile_table", 500 + s, 600 + s, setup)
        b.span("setup.load_value_pools", 600 + s, 650 + s, setup)
        b.span("heartbeat", 650 + s, 660 + s, wk, attrs={"worker.status": "READY"})
        wait = b.span("wait_for_start", 660 + s, 1_015 + stall_ms, wk)
        t = 660 + s
        while t + 10 < 1_015 + stall_ms:
            b.span("wait_for_start.poll", t, min(t + 30, 1_015 + stall_ms), wait)
            t += 30
        b.span("heartbeat", 1_015 + stall_ms, 1_020 + stall_ms, wk, attrs={"worker.status": "RUNNING"})
        b.span("test_results.insert", 1_020 + stall_ms, 1_150 + stall_ms, wk)
        b.span("scale_to", 1_020 + stall_ms, 1_030 + stall_ms, wk)
        b.span("first_query", 1_030 + stall_ms, 1_031 + stall_ms, wk)
        for q in range(queries):
            qs = 1_031 + stall_ms + q * 600
            b.span("query", qs, qs + 2, wk)
        b.span("worker.drain", 13_500 + stall_ms, 13_550 + stall_ms, wk)
        b.span("results.persist", 13_550 + stall_ms, 13_690 + stall_ms, wk)
    return b


# --- writers ----------------------------------------------------------------------


def _any_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [_any_value(v) for v in value]}}
    return {"stringValue": str(value)}


def _kvs(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _any_value(v)} for k, v in attrs.items()]


def _b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def to_otlp(spans: Iterable[Span], *, base64_ids: bool = False, scope_key: str = "scopeSpans") -> dict[str, Any]:
    """One ExportTraceServiceRequest, a ResourceSpans per process."""
    enc = _b64 if base64_ids else (lambda x: x)
    by_process: dict[str, list[Span]] = {}
    for span in spans:
        by_process.setdefault(span.process_key, []).append(span)
    resource_spans = []
    for members in by_process.values():
        resource_spans.append({
            "resource": {"attributes": _kvs(members[0].resource)},
            scope_key: [{
                "scope": {"name": "spanbench"},
                "spans": [
                    {
                        "traceId": enc(s.trace_id),
                        "spanId": enc(s.span_id),
                        "parentSpanId": enc(s.parent_id) if s.parent_id else "",
                        "name": s.name,
                        "kind": 1,
                        "startTimeUnixNano": str(s.start_ns),
                        "endTimeUnixNano": str(s.end_ns),
                        "attributes": _kvs(s.attributes),
                        "status": {},
                    }
                    for s in members
                ],
            }],
        })
    return {"resourceSpans": resource_spans}


def to_tempo(spans: Iterable[Span]) -> dict[str, Any]:
    """Tempo's ``/api/traces/{id}`` (v1): ``{"batches": [...]}`` with base64 ids."""
    return {"batches": to_otlp(spans, base64_ids=True)["resourceSpans"]}


def to_jaeger(spans: Iterable[Span]) -> dict[str, Any]:
    """Jaeger query service ``/api/traces/{id}``: times in µs, hex ids without leading zeros."""
    spans = list(spans)
    processes: dict[str, str] = {}
    out_spans = []
    for s in spans:
        pid = processes.setdefault(s.process_key, f"p{len(processes) + 1}")
        refs = [{"refType": "CHILD_OF", "traceID": s.trace_id.lstrip("0"), "spanID": s.parent_id.lstrip("0")}] if s.parent_id else []
        out_spans.append({
            "traceID": s.trace_id.lstrip("0"),
            "spanID": s.span_id.lstrip("0"),
            "operationName": s.name,
            "references": refs,
            "startTime": s.start_ns // 1000,
            "duration": (s.end_ns - s.start_ns) // 1000,
            "tags": [{"key": k, "type": "string", "value": v} for k, v in s.attributes.items()],
            "logs": [],
            "processID": pid,
            "warnings": None,
        })
    by_key = {s.process_key: s for s in spans}
    return {
        "data": [{
            "traceID": spans[0].trace_id.lstrip("0") if spans else "",
            "spans": out_spans,
            "processes": {
                pid: {
                    "serviceName": by_key[key].service,
                    "tags": [{"key": "service.instance.id", "type": "string", "value": key}],
                }
                for key, pid in processes.items()
            },
            "warnings": None,
        }],
        "total": 0, "limit": 0, "offset": 0, "errors": None,
    }


def to_zipkin(spans: Iterable[Span], *, trace_id_hex: int = 32) -> list[dict[str, Any]]:
    """Zipkin v2 ``/api/v2/trace/{id}``: a list of spans, times in µs, the service in
    ``localEndpoint`` with one address per process, tags as strings. ``trace_id_hex=16``
    writes 64-bit trace ids (the low half)."""
    addresses: dict[str, str] = {}
    out = []
    for s in spans:
        address = addresses.setdefault(s.process_key, f"10.0.0.{len(addresses) + 1}")
        span: dict[str, Any] = {
            "traceId": s.trace_id[-trace_id_hex:],
            "id": s.span_id,
            "name": s.name,
            "timestamp": s.start_ns // 1000,
            "duration": (s.end_ns - s.start_ns) // 1000,
            "localEndpoint": {"serviceName": s.service, "ipv4": address},
            "tags": {k: str(v) for k, v in s.attributes.items()},
        }
        if s.parent_id:
            span["parentId"] = s.parent_id
        out.append(span)
    return out
