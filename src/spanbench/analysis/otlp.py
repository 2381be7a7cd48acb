"""Spans from OTLP/JSON: ExportTraceServiceRequest objects and Tempo's variants of them.

Accepts the Collector file exporter's spelling (camelCase, hex ids, int64 as strings),
protobuf's own JSON mapping (base64 ids, possibly snake_case keys), Tempo's
``{"batches": [...]}`` and the older ``instrumentationLibrarySpans``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from spanbench.analysis import ids
from spanbench.analysis.model import SKIP_NO_ID, SKIP_NO_START, LoadNotes, Span


def _get(obj: Mapping[str, Any], camel: str, snake: str, default: Any = None) -> Any:
    value = obj.get(camel)
    if value is None:
        value = obj.get(snake, default)
    return default if value is None else value


def any_value(value: Any) -> Any:
    """Plain Python value from an OTLP AnyValue."""
    if not isinstance(value, Mapping):
        return value
    for key in ("stringValue", "string_value"):
        if key in value:
            return value[key]
    for key in ("intValue", "int_value"):
        if key in value:
            try:
                return int(value[key])
            except (TypeError, ValueError):
                return value[key]
    for key in ("doubleValue", "double_value"):
        if key in value:
            try:
                return float(value[key])
            except (TypeError, ValueError):
                return value[key]
    for key in ("boolValue", "bool_value"):
        if key in value:
            raw = value[key]
            return raw if isinstance(raw, bool) else str(raw).lower() == "true"
    for key in ("arrayValue", "array_value"):
        if key in value:
            inner = value[key]
            items = inner.get("values") if isinstance(inner, Mapping) else None
            return [any_value(v) for v in items] if isinstance(items, list) else []
    for key in ("kvlistValue", "kvlist_value"):
        if key in value:
            inner = value[key]
            return attributes(inner.get("values") if isinstance(inner, Mapping) else None)
    for key in ("bytesValue", "bytes_value"):
        if key in value:
            return value[key]
    return None  # an empty AnyValue


def attributes(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not isinstance(items, list):
        return out  # absent, or not the list of key/values the format has: nothing usable
    for item in items:
        if isinstance(item, Mapping) and "key" in item:
            out[str(item["key"])] = any_value(item.get("value"))
    return out


def process_key(resource: Mapping[str, Any], fallback: str = "") -> str:
    """A stable name for the process behind a resource.

    ``service.instance.id`` when set, else host and pid; failing both, a digest of the
    resource attributes, so batches of one process exported separately still group.
    """
    instance = resource.get("service.instance.id")
    if instance:
        return str(instance)
    pid = resource.get("process.pid")
    if pid is not None:
        host = resource.get("host.name") or resource.get("hostname") or ""
        return f"{host}:{pid}" if host else f"pid {pid}"
    if fallback:
        return fallback
    blob = json.dumps(resource, sort_keys=True, default=str).encode()
    return "res-" + hashlib.sha1(blob).hexdigest()[:8]


def time_ns(raw: Any) -> int | None:
    """A Unix time in ns from an int, a string of one, or a float; None when absent, 0 or
    unreadable: such a span would sit at 1970, decades from the rest of its trace."""
    if isinstance(raw, bool) or raw is None:
        return None
    try:
        value = int(raw)
    except (TypeError, ValueError):
        try:
            value = int(float(raw))
        except (TypeError, ValueError, OverflowError):
            return None
    return value if value > 0 else None


def _scope_blocks(resource_spans: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for key in ("scopeSpans", "scope_spans", "instrumentationLibrarySpans", "instrumentation_library_spans"):
        blocks = resource_spans.get(key)
        for block in blocks if isinstance(blocks, list) else ():
            if isinstance(block, Mapping):
                yield block


def spans_from_resource_spans(items: Iterable[Any], notes: LoadNotes | None = None) -> Iterator[Span]:
    notes = notes if notes is not None else LoadNotes()
    for rs in items:
        if not isinstance(rs, Mapping):
            continue
        res = rs.get("resource")
        resource = attributes(res.get("attributes") if isinstance(res, Mapping) else None)
        service = str(resource.get("service.name") or "unknown")
        pkey = process_key(resource)
        for block in _scope_blocks(rs):
            spans = block.get("spans")
            for raw in spans if isinstance(spans, list) else ():
                if not isinstance(raw, Mapping):
                    continue
                span = _span(raw, service, resource, pkey, notes)
                if span is not None:
                    yield span


def _span(raw: Mapping[str, Any], service: str, resource: dict[str, Any], pkey: str, notes: LoadNotes) -> Span | None:
    trace_id = ids.trace_id(_get(raw, "traceId", "trace_id"))
    span_id = ids.span_id(_get(raw, "spanId", "span_id"))
    if trace_id is None or span_id is None:
        notes.skip(SKIP_NO_ID)
        return None
    start = time_ns(_get(raw, "startTimeUnixNano", "start_time_unix_nano"))
    if start is None:
        notes.skip(SKIP_NO_START)
        return None
    end = time_ns(_get(raw, "endTimeUnixNano", "end_time_unix_nano"))
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=ids.span_id(_get(raw, "parentSpanId", "parent_span_id")),
        name=str(raw.get("name") or "?"),
        start_ns=start,
        end_ns=start if end is None else end,  # no end: a point in time, never a span to 1970
        service=service,
        resource=resource,
        attributes=attributes(raw.get("attributes")),
        process_key=pkey,
    )


def resource_spans_of(doc: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    """The resourceSpans list of an OTLP-shaped object, or None when it is not one."""
    for key in ("resourceSpans", "resource_spans", "batches"):
        value = doc.get(key)
        if isinstance(value, list):
            return value
    return None
