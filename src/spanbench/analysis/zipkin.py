"""Spans from Zipkin's v2 JSON: a list of spans (what ``POST /api/v2/spans`` takes and
``/api/v2/trace/{id}`` answers) or a list of such lists (``/api/v2/traces``).

A Zipkin span is a single-host view of an operation: ``localEndpoint.serviceName`` is
its service, service and address its process. Times are epoch µs, and Zipkin's model
says a ``timestamp`` or ``duration`` of 0 is no value. Ids are 16 or 32 lower-hex; one
trace can hold both lengths when a hop propagated only 64 bits, so a 64-bit trace id
equal to the low half of a 128-bit one in the same list is read as that one.

Two habits of Zipkin reporters need care:

- one operation may arrive in fragments with the same id (a late annotation, a span
  finished in two steps): fragments of one (trace, id, shared) become one span;
- an RPC server may reuse its client's span id, marked ``shared``: the server side is
  then a span of its own, the child of the client span that has that id.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spanbench.analysis import ids
from spanbench.analysis.model import SKIP_NO_ID, SKIP_NO_START, LoadNotes, Span
from spanbench.analysis.otlp import process_key, time_ns

_US = 1000
SHARED_SUFFIX = ".shared"  # not hex, so it can never collide with a real span id


def _looks_like_span(obj: Any) -> bool:
    # traceId + id, never OTLP's spanId or Jaeger's traceID/spanID spelling.
    return (
        isinstance(obj, Mapping)
        and ("traceId" in obj or "id" in obj)
        and "spanId" not in obj
        and "spans" not in obj
        and "resourceSpans" not in obj
    )


def is_zipkin_span(obj: Any) -> bool:
    return _looks_like_span(obj) and "traceId" in obj


def is_zipkin_list(doc: Any) -> bool:
    """A non-empty JSON list whose items are all Zipkin spans (some may be broken ones)."""
    return isinstance(doc, list) and bool(doc) and all(_looks_like_span(i) for i in doc) and any(
        is_zipkin_span(i) for i in doc
    )


@dataclass(slots=True)
class _Fragment:
    trace_id: str
    span_id: str
    parent_id: str | None
    shared: bool
    name: str
    start_us: int | None
    end_us: int | None
    kind: str
    local: Mapping[str, Any]
    remote: Mapping[str, Any]
    tags: dict[str, Any] = field(default_factory=dict)
    annotations_us: list[int] = field(default_factory=list)

    def merge(self, other: _Fragment) -> None:
        """Fold another report of the same operation into this one: what either knows."""
        self.name = self.name or other.name
        self.parent_id = self.parent_id or other.parent_id
        self.kind = self.kind or other.kind
        self.local = self.local or other.local
        self.remote = self.remote or other.remote
        self.start_us = _min(self.start_us, other.start_us)
        self.end_us = _max(self.end_us, other.end_us)
        self.tags = {**other.tags, **self.tags}
        self.annotations_us += other.annotations_us


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _endpoint(raw: Any) -> Mapping[str, Any]:
    return raw if isinstance(raw, Mapping) else {}


def _annotation_times(raw: Any) -> list[int]:
    out: list[int] = []
    for item in raw if isinstance(raw, list) else ():
        if isinstance(item, Mapping):
            ts = time_ns(item.get("timestamp"))
            if ts is not None:
                out.append(ts)
    return out


def _fragment(raw: Mapping[str, Any], trace_id: str, span_id: str) -> _Fragment:
    start = time_ns(raw.get("timestamp"))
    duration = time_ns(raw.get("duration"))
    tags = raw.get("tags")
    return _Fragment(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=ids.span_id(raw.get("parentId"), allow_base64=False),
        shared=raw.get("shared") is True,
        name=str(raw.get("name") or ""),
        start_us=start,
        end_us=start + duration if start is not None and duration is not None else None,
        kind=str(raw.get("kind") or "").upper(),
        local=_endpoint(raw.get("localEndpoint")),
        remote=_endpoint(raw.get("remoteEndpoint")),
        tags={str(k): v for k, v in tags.items()} if isinstance(tags, Mapping) else {},
        annotations_us=_annotation_times(raw.get("annotations")),
    )


def _widen_trace_ids(raws: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """64-bit trace id → the 128-bit one it is the low half of, when the list has one."""
    full = {}
    for raw in raws:
        tid = ids.trace_id(raw.get("traceId"), allow_base64=False)
        text = str(raw.get("traceId") or "").strip().lower()
        if tid is not None and len(text) == 2 * ids.TRACE_ID_BYTES:
            full.setdefault(tid[16:], tid)
    return full


def _fragments(raws: Sequence[Mapping[str, Any]], notes: LoadNotes) -> list[_Fragment]:
    """One fragment per (trace, id, shared), merged from every report of it, in input order."""
    widen = _widen_trace_ids(raws)
    merged: dict[tuple[str, str, bool], _Fragment] = {}
    for raw in raws:
        trace_id = ids.trace_id(raw.get("traceId"), allow_base64=False)
        span_id = ids.span_id(raw.get("id"), allow_base64=False)
        if trace_id is None or span_id is None:
            notes.skip(SKIP_NO_ID)
            continue
        if len(str(raw.get("traceId")).strip()) <= 2 * ids.SPAN_ID_BYTES:  # a 64-bit trace id
            trace_id = widen.get(trace_id[16:], trace_id)
        frag = _fragment(raw, trace_id, span_id)
        key = (frag.trace_id, frag.span_id, frag.shared)
        if key in merged:
            merged[key].merge(frag)
        else:
            merged[key] = frag
    return list(merged.values())


def _span(frag: _Fragment, has_client: bool) -> Span:
    assert frag.start_us is not None
    end_us = frag.end_us
    if end_us is None:
        # No duration (an unfinished or fragmentary report): it lasted at least to its
        # last annotation, else it is a point in time.
        end_us = max([frag.start_us, *frag.annotations_us])
    span_id, parent_id = frag.span_id, frag.parent_id
    if frag.shared and has_client:
        span_id, parent_id = frag.span_id + SHARED_SUFFIX, frag.span_id
    service = str(frag.local.get("serviceName") or "unknown")
    address = frag.local.get("ipv4") or frag.local.get("ipv6")
    resource: dict[str, Any] = {"service.name": service}
    if address:
        resource["host.ip"] = str(address)
    return Span(
        trace_id=frag.trace_id,
        span_id=span_id,
        parent_id=parent_id,
        name=frag.name or "?",
        start_ns=frag.start_us * _US,
        end_ns=end_us * _US,
        service=service,
        resource=resource,
        attributes=_attributes(frag),
        process_key=process_key(resource, fallback=f"{service}@{address}" if address else service),
    )


def _attributes(frag: _Fragment) -> dict[str, Any]:
    attrs = dict(frag.tags)
    if frag.kind:
        attrs.setdefault("span.kind", frag.kind.lower())
    remote = frag.remote
    if remote.get("serviceName"):
        attrs.setdefault("peer.service", str(remote["serviceName"]))
    peer = remote.get("ipv4") or remote.get("ipv6")
    if peer:
        attrs.setdefault("network.peer.address", str(peer))
    if remote.get("port"):
        attrs.setdefault("network.peer.port", remote["port"])
    return attrs


def spans_from_zipkin(items: Sequence[Any], notes: LoadNotes | None = None) -> Iterator[Span]:
    """Every span of one Zipkin v2 list (one trace's, or several traces' mixed)."""
    notes = notes if notes is not None else LoadNotes()
    raws = [i for i in items if isinstance(i, Mapping)]
    frags = _fragments(raws, notes)
    # A shared server span nests under its client only when that client is there to hold it.
    clients = {(f.trace_id, f.span_id) for f in frags if not f.shared and f.start_us is not None}
    for frag in frags:
        if frag.start_us is None:
            notes.skip(SKIP_NO_START)
            continue
        yield _span(frag, (frag.trace_id, frag.span_id) in clients)
