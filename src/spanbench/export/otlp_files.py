"""A run's OTLP/JSON trace files, read with nothing dropped.

The analysis model (``spanbench.analysis``) keeps what the gaps report needs; an export
needs the rest too: attribute types, events, links, kind, status, scope, dropped counts.
So this reads the ExportTraceServiceRequest objects as they are, one per line (the
Collector file exporter's format, which ``telemetry/otlp_json.py`` writes), and only
normalises what differs between writers: key spelling and id encoding.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spanbench.analysis import ids
from spanbench.analysis.otlp import resource_spans_of
from spanbench.errors import ConfigError

TRACE_GLOB = "trace-*.jsonl"


def get(obj: Mapping[str, Any], camel: str, snake: str, default: Any = None) -> Any:
    """A field in either spelling: OTLP/JSON's camelCase or protobuf's field names."""
    value = obj.get(camel)
    if value is None:
        value = obj.get(snake)
    return default if value is None else value


@dataclass(frozen=True)
class SpanRecord:
    """One span with the resource and scope it came with, as raw OTLP/JSON objects."""

    trace_id: str  # lowercase hex, full width
    span_id: str
    raw: Mapping[str, Any]
    resource: Mapping[str, Any]
    resource_schema_url: str
    scope: Mapping[str, Any]
    scope_schema_url: str


@dataclass
class TraceRead:
    spans: list[SpanRecord] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def trace_files(source: Path) -> list[Path]:
    """The trace files of a run folder (``trace-*.jsonl``), or the one file given."""
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise ConfigError(f"no such run folder or trace file: {source}")
    files = sorted(p for p in source.glob(TRACE_GLOB) if p.is_file())
    if not files:
        raise ConfigError(f"no {TRACE_GLOB} trace files in {source} (was tracing on? SPANBENCH_TRACING=1)")
    return files


def read_trace(source: Path) -> TraceRead:
    """Every span of ``source``'s trace files, first copy kept when a span id repeats."""
    out = TraceRead(files=trace_files(source))
    seen: set[tuple[str, str]] = set()
    duplicates = 0
    for path in out.files:
        found = False
        for request in _requests(path, out.warnings):
            resource_spans = resource_spans_of(request) if isinstance(request, Mapping) else None
            if resource_spans is None:
                continue
            found = True
            for record in _records(resource_spans):
                key = (record.trace_id, record.span_id)
                if key in seen:
                    duplicates += 1  # a batch written or replayed twice
                    continue
                seen.add(key)
                out.spans.append(record)
        if not found:
            out.warnings.append(f"{path} holds no OTLP resourceSpans; skipped")
    if duplicates:
        out.warnings.append(f"{duplicates} duplicate span id(s) left out")
    if not out.spans:
        raise ConfigError(f"no OTLP spans in {source} (export reads spanbench's OTLP/JSON trace files)")
    return out


def _requests(path: Path, warnings: list[str]) -> Iterator[Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read trace file {path}: {err}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        pass
    else:  # one JSON document: a request, or a list of them
        yield from doc if isinstance(doc, list) else [doc]
        return
    bad = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            bad += 1  # typically a last line cut short by a process that died mid-write
    if bad:
        warnings.append(f"{bad} line(s) of {path} were not JSON and were skipped")


def _records(resource_spans: list[Any]) -> Iterator[SpanRecord]:
    for rs in resource_spans:
        if not isinstance(rs, Mapping):
            continue
        resource = rs.get("resource") or {}
        rs_schema = str(get(rs, "schemaUrl", "schema_url", ""))
        for block in _scope_blocks(rs):
            scope = get(block, "scope", "instrumentation_library") or block.get("instrumentationLibrary") or {}
            scope_schema = str(get(block, "schemaUrl", "schema_url", ""))
            for raw in block.get("spans") or ():
                if not isinstance(raw, Mapping):
                    continue
                trace_id = ids.trace_id(get(raw, "traceId", "trace_id"))
                span_id = ids.span_id(get(raw, "spanId", "span_id"))
                if trace_id is None or span_id is None:
                    continue
                yield SpanRecord(trace_id, span_id, raw, resource, rs_schema, scope, scope_schema)


def _scope_blocks(rs: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for key in ("scopeSpans", "scope_spans", "instrumentationLibrarySpans", "instrumentation_library_spans"):
        for block in rs.get(key) or ():
            if isinstance(block, Mapping):
                yield block


def time_ns(raw: Mapping[str, Any], camel: str, snake: str) -> int:
    """A ``*UnixNano`` field: int64 as a JSON string or number."""
    value = get(raw, camel, snake, 0)
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return 0
