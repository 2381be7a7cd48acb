"""Spans from Jaeger's JSON: the query service's ``/api/traces/{id}`` and the UI's download.

``{"data": [{"traceID", "spans": [...], "processes": {...}}]}``; times in microseconds,
ids hex with leading zeros dropped, the parent as a CHILD_OF reference.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from spanbench.analysis import ids
from spanbench.analysis.model import Span
from spanbench.analysis.otlp import process_key

_US = 1000


def tags(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or ():
        if isinstance(item, Mapping) and "key" in item:
            out[str(item["key"])] = item.get("value")
    return out


def is_jaeger_trace(doc: Mapping[str, Any]) -> bool:
    return isinstance(doc.get("spans"), list) and ("traceID" in doc or "processes" in doc)


def spans_from_jaeger_trace(doc: Mapping[str, Any]) -> Iterator[Span]:
    processes: dict[str, tuple[str, dict[str, Any], str]] = {}
    for pid, proc in (doc.get("processes") or {}).items():
        resource = tags(proc.get("tags"))
        service = str(proc.get("serviceName") or "unknown")
        resource.setdefault("service.name", service)
        # processID ("p1") is unique per process within one trace document.
        processes[pid] = (service, resource, process_key(resource, fallback=f"{service}/{pid}"))
    for raw in doc.get("spans") or ():
        if not isinstance(raw, Mapping):
            continue
        trace_id = ids.trace_id(raw.get("traceID") or doc.get("traceID"), allow_base64=False)
        span_id = ids.span_id(raw.get("spanID"), allow_base64=False)
        if trace_id is None or span_id is None:
            continue
        pid = raw.get("processID")
        service, resource, pkey = processes.get(pid, ("unknown", {}, str(pid or "")))
        if pid not in processes and isinstance(raw.get("process"), Mapping):
            # Older exports embed the process in each span.
            proc = raw["process"]
            service = str(proc.get("serviceName") or "unknown")
            resource = tags(proc.get("tags"))
            pkey = process_key(resource, fallback=service)
        start_ns = int(raw.get("startTime") or 0) * _US
        span = Span(
            trace_id=trace_id,
            span_id=span_id,
            parent_id=_parent(raw, trace_id),
            name=str(raw.get("operationName") or "?"),
            start_ns=start_ns,
            end_ns=start_ns + int(raw.get("duration") or 0) * _US,
            service=service,
            resource=resource,
            attributes=tags(raw.get("tags")),
            process_key=pkey,
        )
        yield span


def _parent(raw: Mapping[str, Any], trace_id: str) -> str | None:
    refs = [r for r in raw.get("references") or () if isinstance(r, Mapping)]
    # CHILD_OF is the tree; FOLLOWS_FROM only when nothing else links the span (as Jaeger's UI).
    refs.sort(key=lambda r: r.get("refType") != "CHILD_OF")
    for ref in refs:
        ref_trace = ids.trace_id(ref.get("traceID"), allow_base64=False)
        if ref_trace is not None and ref_trace != trace_id:
            continue
        parent = ids.span_id(ref.get("spanID"), allow_base64=False)
        if parent is not None:
            return parent
    return ids.span_id(raw.get("parentSpanID"), allow_base64=False)
