"""An exporter writing spans as OTLP/JSON lines: one ExportTraceServiceRequest per line.

This is the OpenTelemetry Collector file exporter's format (hex ids, camelCase keys,
enums as numbers), so the collector's ``otlpjsonfile`` receiver can replay a run folder
into Jaeger or Tempo, and ``spanbench gaps`` reads it back.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

_ID_KEYS = ("traceId", "spanId", "parentSpanId")


def _hex_ids(span: dict[str, Any]) -> None:
    # Proto3 JSON renders bytes as base64; OTLP/JSON wants lowercase hex for ids.
    for key in _ID_KEYS:
        if span.get(key):
            span[key] = base64.b64decode(span[key]).hex()
    for link in span.get("links", ()):
        for key in ("traceId", "spanId"):
            if link.get(key):
                link[key] = base64.b64decode(link[key]).hex()


def request_to_json(spans: Sequence[ReadableSpan]) -> str:
    message = MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    for rs in message.get("resourceSpans", ()):
        for ss in rs.get("scopeSpans", ()):
            for span in ss.get("spans", ()):
                _hex_ids(span)
    return json.dumps(message, separators=(",", ":"))


class OtlpJsonLinesExporter(SpanExporter):
    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._file = open(path, "a", encoding="utf-8")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        line = request_to_json(spans)
        with self._lock:
            if self._file.closed:
                return SpanExportResult.FAILURE
            self._file.write(line + "\n")
            self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            self._file.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
