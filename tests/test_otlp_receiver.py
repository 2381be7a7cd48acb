"""The OpenTelemetry SDK's real OTLP exporters against a real receiver process on loopback.

The emitter runs in its own process (as a spanbench worker would), configured only through
the standard ``OTEL_EXPORTER_OTLP_*`` variables; the receiver is another process
(tests/support/otlp_receiver.py). Nothing is mocked and nothing sleeps-and-hopes: every
wait is a condition with a deadline.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.otlp_receiver import OtlpReceiver, read_otlp_json_lines

PROTOCOLS = ["grpc", "http/protobuf"]

# The emitter: a small run-shaped trace, plus the spanbench metric instruments.
# argv[1] = "deliver" (everything must arrive) or "bounded" (export may fail; time shutdown).
EMITTER = r'''
import json, os, sys, time
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

mode = sys.argv[1]
if os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
else:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

class Recorder(SpanProcessor):
    """What the SDK ended: the ground truth the receiver must match."""
    def __init__(self):
        self.spans = []
    def on_end(self, span):
        ctx = span.get_span_context()
        self.spans.append({
            "trace_id": format(ctx.trace_id, "032x"),
            "span_id": format(ctx.span_id, "016x"),
            "parent_span_id": format(span.parent.span_id, "016x") if span.parent else "",
            "name": span.name,
        })

resource = Resource.create({"service.name": "spanbench-test-emitter"})
provider = TracerProvider(resource=resource)
recorder = Recorder()
provider.add_span_processor(recorder)
if mode == "bounded":
    exporter = OTLPSpanExporter(timeout=1.0)
    bsp = BatchSpanProcessor(exporter, export_timeout_millis=1000)
else:
    exporter = OTLPSpanExporter()
    bsp = BatchSpanProcessor(exporter, max_export_batch_size=16, schedule_delay_millis=200)
provider.add_span_processor(bsp)
tracer = provider.get_tracer("spanbench.tests")

n_workers, n_batches, n_connects = (3, 2, 4) if mode == "deliver" else (1, 1, 2)
with tracer.start_as_current_span("run", attributes={"spanbench.run_id": "r-test"}):
    with tracer.start_as_current_span("orchestrator.prepare"):
        pass
    for w in range(n_workers):
        with tracer.start_as_current_span("worker", attributes={"spanbench.worker_id": w}):
            with tracer.start_as_current_span("pool.init"):
                for b in range(n_batches):
                    with tracer.start_as_current_span("pool.batch", attributes={"batch.index": b}):
                        for c in range(n_connects):
                            with tracer.start_as_current_span("pool.connect"):
                                pass

metric_names = []
if mode == "deliver":
    metric_exporter = OTLPMetricExporter()
    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=3_600_000)
    meters = MeterProvider(resource=resource, metric_readers=[reader])
    meter = meters.get_meter("spanbench.tests")
    queries = meter.create_counter("spanbench.queries", unit="1")
    duration = meter.create_histogram("spanbench.query.duration", unit="s")
    labels = {"query_kind": "point_select", "worker_id": "w0", "run_id": "r-test"}
    queries.add(7, labels)
    duration.record(0.002, {"query_kind": "point_select", "worker_id": "w0"})
    meters.force_flush(timeout_millis=10_000)
    meters.shutdown()
    metric_names = ["spanbench.queries", "spanbench.query.duration"]

t0 = time.monotonic()
flushed = provider.force_flush(timeout_millis=10_000) if mode == "deliver" else None
provider.shutdown()
shutdown_s = time.monotonic() - t0
print(json.dumps({"spans": recorder.spans, "flushed": flushed, "shutdown_s": shutdown_s,
                  "metrics": metric_names}), flush=True)
'''


def run_emitter(mode: str, protocol: str, endpoint: str, timeout: float) -> tuple[dict, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update({
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
    })
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", EMITTER, mode], env=env, capture_output=True,
                          text=True, timeout=timeout)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), elapsed


def key(span: dict) -> tuple[str, str, str, str]:
    return span["trace_id"], span["span_id"], span["parent_span_id"], span["name"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_receiver_gets_exactly_the_emitted_spans(tmp_path: Path, protocol: str) -> None:
    with OtlpReceiver(tmp_path / "otlp.jsonl") as rx:
        result, _ = run_emitter("deliver", protocol, rx.endpoint(protocol), timeout=60)
        emitted = {key(s) for s in result["spans"]}
        assert result["flushed"] is True
        assert len(emitted) == len(result["spans"]) == 1 + 1 + 3 * (1 + 1 + 2 * (1 + 4))

        # Spans are on file before the receiver answers, so after a successful flush
        # they are all there; wait_for only guards against a slow file system.
        received = rx.wait_for_spans(len(emitted), timeout=10)
        got = [key(s) for s in received]
        assert len(got) == len(set(got)), "a span arrived twice"
        assert set(got) == emitted

        wire = "grpc" if protocol == "grpc" else "http"
        assert {s["protocol"] for s in received} == {wire}
        assert {s["service_name"] for s in received} == {"spanbench-test-emitter"}
        (root,) = [s for s in received if s["name"] == "run"]
        assert root["parent_span_id"] == "" and root["attributes"] == {"spanbench.run_id": "r-test"}
        assert all(s["end_time_unix_nano"] >= s["start_time_unix_nano"] > 0 for s in received)
        # more than one export request: batching really happened over the wire
        assert len([r for r in rx.requests() if r["kind"] == "traces"]) >= 2

        metrics = rx.wait_for(lambda r: r.metrics() if {m["name"] for m in r.metrics()}
                              >= set(result["metrics"]) else None, timeout=10)
        by_name = {m["name"]: m for m in metrics}
        q = by_name["spanbench.queries"]
        assert (q["type"], q["unit"], q["monotonic"], q["value"]) == ("sum", "1", True, 7)
        assert q["attributes"] == {"query_kind": "point_select", "worker_id": "w0", "run_id": "r-test"}
        d = by_name["spanbench.query.duration"]
        assert (d["type"], d["unit"], d["count"]) == ("histogram", "s", 1)
        assert {m["protocol"] for m in metrics} == {wire}

    assert rx.proc is not None and rx.proc.returncode == 0, "receiver did not exit cleanly on SIGTERM"


def test_read_otlp_json_lines_matches_receiver_records(tmp_path: Path) -> None:
    line = {"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "spanbench-worker"}}]},
        "scopeSpans": [{"scope": {"name": "spanbench"}, "spans": [
            {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331",
             "parentSpanId": "", "name": "worker", "startTimeUnixNano": "1", "endTimeUnixNano": "2",
             "attributes": [{"key": "pool.size", "value": {"intValue": "8"}}]}]}]}]}
    path = tmp_path / "trace-worker-0.jsonl"
    path.write_text(json.dumps(line) + "\n\n", encoding="utf-8")
    (span,) = read_otlp_json_lines(path)
    assert key(span) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "", "worker")
    assert span["service_name"] == "spanbench-worker"
    assert span["attributes"] == {"pool.size": 8}
    assert (span["start_time_unix_nano"], span["end_time_unix_nano"]) == (1, 2)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_sdk_shutdown_is_bounded_when_the_receiver_hangs(tmp_path: Path, protocol: str) -> None:
    with OtlpReceiver(tmp_path / "otlp.jsonl", hang=True) as rx:
        result, elapsed = run_emitter("bounded", protocol, rx.endpoint(protocol), timeout=30)
        # the exporter did reach the receiver, which held the request and never answered
        hung = rx.wait_for(lambda r: [q for q in r.requests() if q["kind"] == "traces"], timeout=5)
        assert all(q["hung"] for q in hung)
        assert rx.spans() == []
    assert result["spans"], "the emitter produced no spans"
    assert result["shutdown_s"] < 5.0, f"SDK shutdown took {result['shutdown_s']:.1f}s"
    assert elapsed < 20.0  # the whole process, interpreter start included
    assert rx.proc is not None and rx.proc.returncode == 0, "hung receiver did not exit on SIGTERM"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_sdk_shutdown_is_bounded_when_nothing_listens(protocol: str) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    result, elapsed = run_emitter("bounded", protocol, endpoint, timeout=30)
    assert result["spans"]
    assert result["shutdown_s"] < 5.0, f"SDK shutdown took {result['shutdown_s']:.1f}s"
    assert elapsed < 20.0
