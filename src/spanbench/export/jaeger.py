"""OTLP spans → the Jaeger query API's trace JSON, which the Jaeger UI's Upload opens alone.

``{"data": [{"traceID", "spans": [...], "processes": {"p1": ...}, "warnings": null}]}``,
one entry per trace. The mapping is the one the OpenTelemetry specification gives for
Jaeger ("OpenTelemetry to Jaeger Transformation", trace/sdk_exporters/jaeger.md), which
Jaeger's own OTLP translator documents as its reference:

- the parent is the first reference, ``CHILD_OF``; links follow as ``FOLLOWS_FROM``;
- times in microseconds since the epoch; see ``micros`` for the rounding;
- attributes are typed tags: ``string``, ``bool``, ``int64``, ``float64``, ``binary``
  (bytes, base64); arrays and maps become a JSON string, as the spec says;
- kind is the tag ``span.kind`` (client, server, producer, consumer); INTERNAL gets no
  tag ("SHOULD NOT be translated"), so most spanbench spans carry none;
- status OK or ERROR is the tag ``otel.status_code`` (``OK``/``ERROR``) with
  ``otel.status_description`` when it has one; ERROR also sets ``error`` = true;
  UNSET adds nothing;
- the instrumentation scope is ``otel.scope.name`` / ``otel.scope.version``;
- non-zero dropped counts are ``otel.dropped_{attributes,events,links}_count``;
- events are logs: their time, their attributes as fields, and their name as the field
  ``event`` (an attribute called ``event`` wins over the name);
- each distinct resource is one process: ``serviceName`` from ``service.name``, every
  other resource attribute a process tag.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from spanbench.analysis import ids
from spanbench.analysis.otlp import any_value
from spanbench.export.otlp_files import SpanRecord, get, time_ns

_KINDS = {2: "server", 3: "client", 4: "producer", 5: "consumer"}  # 1 INTERNAL, 0 UNSPECIFIED: no tag
_KIND_NAMES = {"SPAN_KIND_SERVER": 2, "SPAN_KIND_CLIENT": 3, "SPAN_KIND_PRODUCER": 4, "SPAN_KIND_CONSUMER": 5}
_STATUS_NAMES = {"STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
_DEFAULT_SERVICE = "unknown_service"  # the SDK's default when a resource names none


def micros(ns: int) -> int:
    """Nanoseconds since the epoch → whole microseconds, rounded down.

    Both ends of a span are rounded this way and its duration is the difference, so
    the order of any two instants survives: a child that starts no earlier and ends no
    later than its parent in nanoseconds does so in microseconds too. A duration is
    then within 1 µs of the exact one, never negative.
    """
    return ns // 1000


def to_jaeger(records: Iterable[SpanRecord]) -> dict[str, Any]:
    by_trace: dict[str, list[SpanRecord]] = {}
    for record in records:
        by_trace.setdefault(record.trace_id, []).append(record)
    traces = [_trace(trace_id, spans) for trace_id, spans in by_trace.items()]
    traces.sort(key=lambda t: min((s["startTime"] for s in t["spans"]), default=0))
    return {"data": traces}


def _trace(trace_id: str, records: list[SpanRecord]) -> dict[str, Any]:
    processes: dict[str, dict[str, Any]] = {}
    process_ids: dict[str, str] = {}  # the resource's attributes, as JSON → "p1", …
    by_object: dict[int, str] = {}  # the same, by resource object: most spans share one
    spans: list[tuple[int, str, dict[str, Any]]] = []
    for record in records:
        pid = by_object.get(id(record.resource))
        if pid is None:
            attrs = list(record.resource.get("attributes") or ())
            key = json.dumps(attrs, sort_keys=True)
            pid = process_ids.get(key)
            if pid is None:
                pid = process_ids[key] = f"p{len(process_ids) + 1}"
                processes[pid] = _process(attrs)
            by_object[id(record.resource)] = pid
        start = time_ns(record.raw, "startTimeUnixNano", "start_time_unix_nano")
        spans.append((start, record.span_id, _span(record, pid, start)))
    spans.sort(key=lambda item: (item[0], item[1]))
    return {"traceID": trace_id, "spans": [s for _, _, s in spans], "processes": processes, "warnings": None}


def _process(attrs: list[Any]) -> dict[str, Any]:
    service = _DEFAULT_SERVICE
    tags = []
    for kv in attrs:
        if not isinstance(kv, Mapping) or "key" not in kv:
            continue
        if kv["key"] == "service.name":
            name = any_value(kv.get("value"))
            service = str(name) if name not in (None, "") else _DEFAULT_SERVICE
            continue
        tags.append(tag(str(kv["key"]), kv.get("value")))
    return {"serviceName": service, "tags": tags}


def _span(record: SpanRecord, pid: str, start_ns: int) -> dict[str, Any]:
    raw = record.raw
    end_ns = max(start_ns, time_ns(raw, "endTimeUnixNano", "end_time_unix_nano"))
    references = []
    parent = ids.span_id(get(raw, "parentSpanId", "parent_span_id"))
    if parent is not None:
        references.append({"refType": "CHILD_OF", "traceID": record.trace_id, "spanID": parent})
    for link in raw.get("links") or ():
        link_trace = ids.trace_id(get(link, "traceId", "trace_id"))
        link_span = ids.span_id(get(link, "spanId", "span_id"))
        if link_trace and link_span:
            references.append({"refType": "FOLLOWS_FROM", "traceID": link_trace, "spanID": link_span})
    return {
        "traceID": record.trace_id,
        "spanID": record.span_id,
        "operationName": str(raw.get("name") or ""),
        "references": references,
        "startTime": micros(start_ns),
        "duration": micros(end_ns) - micros(start_ns),
        "tags": _span_tags(record),
        "logs": [_log(event) for event in raw.get("events") or () if isinstance(event, Mapping)],
        "processID": pid,
        "warnings": None,
    }


def _span_tags(record: SpanRecord) -> list[dict[str, Any]]:
    raw = record.raw
    extra: list[dict[str, Any]] = []
    scope_name, scope_version = record.scope.get("name"), record.scope.get("version")
    if scope_name:
        extra.append(_string("otel.scope.name", str(scope_name)))
    if scope_version:
        extra.append(_string("otel.scope.version", str(scope_version)))
    kind = _enum(raw.get("kind"), _KIND_NAMES)
    if kind in _KINDS:
        extra.append(_string("span.kind", _KINDS[kind]))
    status = raw.get("status") or {}
    code = _enum(status.get("code"), _STATUS_NAMES)
    if code == 2:
        extra.append({"key": "error", "type": "bool", "value": True})
    if code in (1, 2):
        extra.append(_string("otel.status_code", "OK" if code == 1 else "ERROR"))
        if status.get("message"):
            extra.append(_string("otel.status_description", str(status["message"])))
    for camel, snake, key in (
        ("droppedAttributesCount", "dropped_attributes_count", "otel.dropped_attributes_count"),
        ("droppedEventsCount", "dropped_events_count", "otel.dropped_events_count"),
        ("droppedLinksCount", "dropped_links_count", "otel.dropped_links_count"),
    ):
        count = _int(get(raw, camel, snake, 0))
        if count:
            extra.append({"key": key, "type": "int64", "value": count})
    # A tag of our own (error, span.kind, …) replaces an attribute of the same key.
    taken = {t["key"] for t in extra}
    return [t for t in _tags(raw.get("attributes")) if t["key"] not in taken] + extra


def _log(event: Mapping[str, Any]) -> dict[str, Any]:
    fields = _tags(event.get("attributes"))
    if event.get("name") and not any(f["key"] == "event" for f in fields):
        fields.insert(0, _string("event", str(event["name"])))
    dropped = _int(get(event, "droppedAttributesCount", "dropped_attributes_count", 0))
    if dropped:
        fields.append({"key": "otel.event.dropped_attributes_count", "type": "int64", "value": dropped})
    return {"timestamp": micros(time_ns(event, "timeUnixNano", "time_unix_nano")), "fields": fields}


def _tags(items: Any) -> list[dict[str, Any]]:
    return [tag(str(kv["key"]), kv.get("value")) for kv in items or () if isinstance(kv, Mapping) and "key" in kv]


def tag(key: str, value: Any) -> dict[str, Any]:
    """A Jaeger tag from an OTLP AnyValue, its type from the AnyValue's own kind."""
    kind, plain = _typed(value if isinstance(value, Mapping) else {})
    return {"key": key, "type": kind, "value": plain}


def _typed(value: Mapping[str, Any]) -> tuple[str, Any]:
    if "stringValue" in value or "string_value" in value:
        return "string", str(get(value, "stringValue", "string_value", ""))
    if "boolValue" in value or "bool_value" in value:
        raw = get(value, "boolValue", "bool_value", False)
        return "bool", raw if isinstance(raw, bool) else str(raw).lower() == "true"
    if "intValue" in value or "int_value" in value:
        raw = get(value, "intValue", "int_value", 0)
        try:
            return "int64", int(raw)
        except (TypeError, ValueError):
            return "string", str(raw)
    if "doubleValue" in value or "double_value" in value:
        raw = get(value, "doubleValue", "double_value", 0.0)
        try:
            number = float(raw)
        except (TypeError, ValueError):
            return "string", str(raw)
        # JSON has no NaN or infinity: such a value travels as its name.
        return ("float64", number) if math.isfinite(number) else ("string", str(number))
    if "bytesValue" in value or "bytes_value" in value:
        return "binary", str(get(value, "bytesValue", "bytes_value", ""))  # base64, as in OTLP/JSON
    if any(k in value for k in ("arrayValue", "array_value", "kvlistValue", "kvlist_value")):
        return "string", json.dumps(any_value(value), separators=(",", ":"), default=str)
    return "string", ""  # an empty AnyValue


def _string(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "type": "string", "value": value}


def _enum(value: Any, names: Mapping[str, int]) -> int:
    # OTLP/JSON writes enums as integers; protobuf's JSON may write their names.
    if isinstance(value, str) and value in names:
        return names[value]
    return _int(value)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
