"""Spans from Jaeger's JSON: the query service's ``/api/traces/{id}`` and the UI's download.

``{"data": [{"traceID", "spans": [...], "processes": {...}, "warnings": [...]}]}``; times
in microseconds, ids hex with leading zeros dropped, the parent as a CHILD_OF reference.
Jaeger's own ``warnings`` (on the trace and on spans: clock skew it could not adjust,
invalid parent ids) are passed on to the user, once per distinct text.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from spanbench.analysis import ids
from spanbench.analysis.model import SKIP_NO_ID, SKIP_NO_START, LoadNotes, Span
from spanbench.analysis.otlp import process_key, time_ns

_US = 1000

_Process = tuple[str, dict[str, Any], str]  # service, resource, process key


def tags(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not isinstance(items, list):
        return out
    for item in items:
        if isinstance(item, Mapping) and "key" in item:
            out[str(item["key"])] = item.get("value")
    return out


def is_jaeger_trace(doc: Mapping[str, Any]) -> bool:
    return isinstance(doc.get("spans"), list) and ("traceID" in doc or "processes" in doc)


def is_jaeger_envelope(doc: Mapping[str, Any]) -> bool:
    """The query service's ``{"data": [...], "total", "limit", "offset", "errors"}``."""
    return isinstance(doc.get("data"), list) and ("errors" in doc or "total" in doc)


def envelope_errors(doc: Mapping[str, Any], notes: LoadNotes) -> None:
    """The envelope's ``errors`` (``[{"code", "msg"}]``) as warnings: they say why data is missing."""
    errors = doc.get("errors")
    for err in errors if isinstance(errors, list) else ():
        if isinstance(err, Mapping):
            msg = err.get("msg") or err.get("message")
            if msg:
                notes.warn(f"Jaeger: {msg}")


def _warnings(raw: Any, notes: LoadNotes) -> None:
    for text in raw if isinstance(raw, list) else ():
        if text:
            notes.warn(f"Jaeger: {text}")


def _processes(doc: Mapping[str, Any]) -> dict[Any, _Process]:
    out: dict[Any, _Process] = {}
    procs = doc.get("processes")
    for pid, proc in (procs.items() if isinstance(procs, Mapping) else ()):
        if not isinstance(proc, Mapping):
            continue
        resource = tags(proc.get("tags"))
        service = str(proc.get("serviceName") or "unknown")
        resource.setdefault("service.name", service)
        # processID ("p1") is unique per process within one trace document.
        out[pid] = (service, resource, process_key(resource, fallback=f"{service}/{pid}"))
    return out


def _process_of(raw: Mapping[str, Any], processes: dict[Any, _Process]) -> _Process:
    pid = raw.get("processID")
    if pid in processes:
        return processes[pid]
    proc = raw.get("process")
    if isinstance(proc, Mapping):
        # Older exports embed the process in each span.
        service = str(proc.get("serviceName") or "unknown")
        resource = tags(proc.get("tags"))
        return service, resource, process_key(resource, fallback=service)
    return "unknown", {}, str(pid or "")


def spans_from_jaeger_trace(doc: Mapping[str, Any], notes: LoadNotes | None = None) -> Iterator[Span]:
    notes = notes if notes is not None else LoadNotes()
    _warnings(doc.get("warnings"), notes)
    processes = _processes(doc)
    for raw in doc.get("spans") or ():
        if not isinstance(raw, Mapping):
            continue
        _warnings(raw.get("warnings"), notes)
        trace_id = ids.trace_id(raw.get("traceID") or doc.get("traceID"), allow_base64=False)
        span_id = ids.span_id(raw.get("spanID"), allow_base64=False)
        if trace_id is None or span_id is None:
            notes.skip(SKIP_NO_ID)
            continue
        start_us = time_ns(raw.get("startTime"))  # µs here; the same "absent, 0 or unreadable" rule
        if start_us is None:
            notes.skip(SKIP_NO_START)
            continue
        duration_us = time_ns(raw.get("duration")) or 0
        service, resource, pkey = _process_of(raw, processes)
        yield Span(
            trace_id=trace_id,
            span_id=span_id,
            parent_id=_parent(raw, trace_id),
            name=str(raw.get("operationName") or "?"),
            start_ns=start_us * _US,
            end_ns=(start_us + duration_us) * _US,
            service=service,
            resource=resource,
            attributes=tags(raw.get("tags")),
            process_key=pkey,
        )


def _parent(raw: Mapping[str, Any], trace_id: str) -> str | None:
    listed = raw.get("references")
    refs = [r for r in listed if isinstance(r, Mapping)] if isinstance(listed, list) else []
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
