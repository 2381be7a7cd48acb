"""How a span is named to a person: ``worker[w1]``, ``pool.init of worker[w1]``."""

from __future__ import annotations

from spanbench.analysis.model import Span, Trace


def short(span: Span) -> str:
    """The span's name, with its worker id when the span carries one itself."""
    wid = span.worker_id
    return f"{span.name}[{wid}]" if wid is not None else span.name


def in_context(trace: Trace, span: Span) -> str:
    """``short`` plus the worker it runs in, when that is not already in the name."""
    if span.worker_id is not None:
        return short(span)
    owner = trace.owner(span)
    return f"{span.name} of worker[{owner}]" if owner is not None else span.name
