"""All of a run's trace files as ONE ExportTraceServiceRequest in OTLP/JSON.

A run folder holds one file per process, each a series of requests (one per batch).
A collector's ``/v1/traces`` takes one request per POST, so the export merges them: one
``resourceSpans`` entry per distinct resource (a process), one ``scopeSpans`` per scope
in it, the spans in the order they were written. Span objects are passed on as written,
with their ids respelled as OTLP/JSON wants them (lowercase hex), whatever the source.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from spanbench.analysis import ids
from spanbench.export.otlp_files import SpanRecord, get

_SPAN_IDS = (("traceId", "trace_id", ids.trace_id), ("spanId", "span_id", ids.span_id),
             ("parentSpanId", "parent_span_id", ids.span_id))
_LINK_IDS = _SPAN_IDS[:2]


def merged_request(records: Iterable[SpanRecord]) -> dict[str, Any]:
    resources: dict[str, dict[str, Any]] = {}
    scopes: dict[tuple[str, str], dict[str, Any]] = {}
    keys: dict[int, str] = {}  # by resource object: most spans share one, and _key costs a dump
    scope_keys: dict[int, tuple[str, str]] = {}
    for record in records:
        rkey = keys.get(id(record.resource))
        if rkey is None:
            rkey = keys[id(record.resource)] = _key(record.resource, record.resource_schema_url)
        rs = resources.get(rkey)
        if rs is None:
            rs = resources[rkey] = {"resource": dict(record.resource), "scopeSpans": []}
            if record.resource_schema_url:
                rs["schemaUrl"] = record.resource_schema_url
        skey = scope_keys.get(id(record.scope))
        if skey is None:
            skey = scope_keys[id(record.scope)] = (rkey, _key(record.scope, record.scope_schema_url))
        ss = scopes.get(skey)
        if ss is None:
            ss = scopes[skey] = {"scope": dict(record.scope), "spans": []}
            if record.scope_schema_url:
                ss["schemaUrl"] = record.scope_schema_url
            rs["scopeSpans"].append(ss)
        ss["spans"].append(_hex_ids(record.raw))
    return {"resourceSpans": list(resources.values())}


def _key(obj: Mapping[str, Any], schema_url: str) -> str:
    return json.dumps([obj, schema_url], sort_keys=True, default=str)


def _hex_ids(raw: Mapping[str, Any]) -> dict[str, Any]:
    span = dict(raw)
    _respell(span, _SPAN_IDS)
    if span.get("links"):
        span["links"] = [_respell(dict(link), _LINK_IDS) for link in span["links"] if isinstance(link, Mapping)]
    return span


def _respell(obj: dict[str, Any], fields: tuple[tuple[str, str, Any], ...]) -> dict[str, Any]:
    for camel, snake, normalize in fields:
        value = get(obj, camel, snake)
        obj.pop(snake, None)
        hex_id = normalize(value) if value is not None else None
        if hex_id is not None:
            obj[camel] = hex_id
        else:
            obj.pop(camel, None)  # no parent: OTLP/JSON leaves the field out
    return obj
