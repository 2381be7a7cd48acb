"""One tracer provider per process: the run folder's trace file, plus OTLP when configured.

The file and the OTLP exporter sit behind separate batch processors, so a collector that is
down or hangs can never delay the file or the benchmark. Every span that ends is counted,
and so is every span each exporter took, so spans that never got out are reported as a
number instead of vanishing.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from spanbench.telemetry.otlp_json import OtlpJsonLinesExporter

# Query spans and repeating spans are held to per-run budgets (load/query_spans.py,
# telemetry/repeating.py), so this queue never fills in a normal run; when it does, the
# overflow is counted as dropped.
_QUEUE = 32_768
_BATCH = 1024
_DELAY_MS = 500
_OTLP_TIMEOUT_S = 5.0


class _CountingExporter(SpanExporter):
    """Passes spans through, counting what the wrapped exporter accepted or refused."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.exported = 0
        self.failed = 0

    def export(self, spans: Any) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception:  # an exporter must never take the run down
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self.exported += len(spans)
        else:
            self.failed += len(spans)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class _EndCounter(SpanProcessor):
    def __init__(self) -> None:
        self.ended = 0

    def on_end(self, span: ReadableSpan) -> None:
        self.ended += 1


@dataclass
class SpanStats:
    """What happened to this process's spans."""

    ended: int = 0
    exporters: dict[str, dict[str, int]] = field(default_factory=dict)  # name -> exported/failed/lost

    def merge(self, other: "SpanStats") -> "SpanStats":
        out = SpanStats(self.ended + other.ended, {k: dict(v) for k, v in self.exporters.items()})
        for name, counts in other.exporters.items():
            mine = out.exporters.setdefault(name, {"exported": 0, "failed": 0, "lost": 0})
            for k, v in counts.items():
                mine[k] = mine.get(k, 0) + v
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"ended": self.ended, "exporters": self.exporters}


def _otlp_exporter() -> SpanExporter | None:
    env = os.environ
    if not (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        return None
    protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").strip()
    # The exporters read endpoint, headers, certificates and compression from OTEL_* themselves;
    # only the timeout is bounded here when the user did not choose one.
    timeout = None if (env.get("OTEL_EXPORTER_OTLP_TIMEOUT") or env.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")) else _OTLP_TIMEOUT_S
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(timeout=timeout) if timeout else GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter(timeout=timeout) if timeout else HttpExporter()


def tracing_disabled_by_env() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


class Telemetry:
    """The tracer of this process and a bounded way to get its spans out before exit."""

    def __init__(
        self,
        *,
        enabled: bool,
        service_name: str,
        trace_file: Path | None,
        attributes: dict[str, Any] | None = None,
    ) -> None:
        self.enabled = enabled and not tracing_disabled_by_env()
        self.resource: Resource | None = None
        self._provider: TracerProvider | None = None
        self._exporters: dict[str, tuple[BatchSpanProcessor, _CountingExporter]] = {}
        self._ends = _EndCounter()
        if not self.enabled:
            self.tracer: trace.Tracer = trace.NoOpTracer()
            return
        attrs: dict[str, Any] = {
            "service.instance.id": str(uuid.uuid4()),
            "process.pid": os.getpid(),
            "host.name": socket.gethostname(),
        }
        if not os.environ.get("OTEL_SERVICE_NAME"):
            attrs["service.name"] = service_name
        attrs.update(attributes or {})
        self.resource = Resource.create(attrs)
        # No SDK atexit shutdown: ours (shutdown) is bounded; the SDK's would wait again on a
        # collector that hangs, after the run has already given up on it.
        self._provider = TracerProvider(resource=self.resource, shutdown_on_exit=False)
        self._provider.add_span_processor(self._ends)
        if trace_file is not None:
            self._add("file", OtlpJsonLinesExporter(trace_file))
        otlp = _otlp_exporter()
        if otlp is not None:
            self._add("otlp", otlp)
        self.tracer = self._provider.get_tracer("spanbench")

    def _add(self, name: str, exporter: SpanExporter) -> None:
        counting = _CountingExporter(exporter)
        processor = BatchSpanProcessor(
            counting, max_queue_size=_QUEUE, max_export_batch_size=_BATCH, schedule_delay_millis=_DELAY_MS
        )
        assert self._provider is not None
        self._provider.add_span_processor(processor)
        self._exporters[name] = (processor, counting)

    def shutdown(self, timeout_s: float = 5.0) -> SpanStats:
        """Flush and close every exporter, giving all of them together at most ``timeout_s``."""
        stats = SpanStats(ended=self._ends.ended)
        if self._provider is None:
            return stats
        threads = [
            threading.Thread(target=p.shutdown, name=f"spanbench-export-{name}", daemon=True)
            for name, (p, _) in self._exporters.items()
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + timeout_s
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        for name, (_, counting) in self._exporters.items():
            lost = max(0, stats.ended - counting.exported - counting.failed)
            stats.exporters[name] = {"exported": counting.exported, "failed": counting.failed, "lost": lost}
        return stats

