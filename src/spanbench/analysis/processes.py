"""Spans grouped by the service and the OS process that emitted them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from spanbench.analysis.model import Trace

_SHOWN_RESOURCE = ("service.instance.id", "host.name", "process.pid", "k8s.pod.name")


@dataclass(slots=True)
class ProcessGroup:
    service: str
    process_key: str
    span_count: int
    start_ns: int
    end_ns: int
    resource: dict[str, Any] = field(default_factory=dict)
    worker_ids: list[str] = field(default_factory=list)


def group_by_process(trace: Trace) -> list[ProcessGroup]:
    """One group per (service, process), in order of their first span."""
    groups: dict[tuple[str, str], ProcessGroup] = {}
    for span in trace.spans:  # start order, so groups come out in order of appearance
        key = (span.service, span.process_key)
        group = groups.get(key)
        if group is None:
            shown = {k: span.resource[k] for k in _SHOWN_RESOURCE if k in span.resource}
            group = groups[key] = ProcessGroup(span.service, span.process_key, 0, span.start_ns, span.end_ns, shown)
        group.span_count += 1
        group.end_ns = max(group.end_ns, span.end_ns)
        wid = span.worker_id
        if wid is not None and wid not in group.worker_ids:
            group.worker_ids.append(wid)
    return list(groups.values())
