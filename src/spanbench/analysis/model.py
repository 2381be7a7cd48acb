"""The trace as analysis sees it: spans with absolute ns times, linked into a forest.

Pure data, no I/O. Every loader (OTLP/JSON, Tempo, Jaeger, Zipkin) produces ``Span``
objects and ``Trace`` links them once: children sorted by start, roots found, depth and
reach computed, so the analyses after it never search the span list. ``LoadNotes`` is
what a loader has to say besides its spans: what it left out and why.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

WORKER_ID_ATTR = "spanbench.worker_id"

# Reasons a loader leaves a span out; each becomes one line for the user.
SKIP_NO_ID = "trace or span id missing"
SKIP_NO_START = "start time missing or 0"


@dataclass(slots=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    start_ns: int
    end_ns: int
    service: str = "unknown"
    resource: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    # Which OS process emitted the span: spans of one process share a clock, so skew
    # between a parent and a child is only plausible across processes.
    process_key: str = ""

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def worker_id(self) -> str | None:
        value = self.attributes.get(WORKER_ID_ATTR)
        return None if value is None else str(value)


class Trace:
    """One trace: spans by id, children by parent (sorted by start), roots, depths.

    A span whose parent is not in the trace is a root: a file that lost the orchestrator's
    spans still analyses, each worker then heading its own tree.
    """

    def __init__(self, spans: Iterable[Span], *, warnings: Iterable[str] = ()) -> None:
        self.warnings: list[str] = list(warnings)
        self.by_id: dict[str, Span] = {}
        duplicates = 0
        for span in spans:
            if span.span_id in self.by_id:
                duplicates += 1  # the same batch exported or replayed twice
                continue
            if span.end_ns < span.start_ns:
                span.end_ns = span.start_ns
            self.by_id[span.span_id] = span
        if duplicates:
            self.warnings.append(f"{duplicates} duplicate span id(s) ignored")
        self.spans: list[Span] = sorted(self.by_id.values(), key=lambda s: (s.start_ns, -s.end_ns, s.span_id))
        self._children: dict[str, list[Span]] = {}
        roots: list[Span] = []
        # Iterating the start-sorted list keeps every child list sorted without a sort each.
        for span in self.spans:
            if span.parent_id is not None and span.parent_id in self.by_id and span.parent_id != span.span_id:
                self._children.setdefault(span.parent_id, []).append(span)
            else:
                roots.append(span)
        self.depth: dict[str, int] = {}
        self._walk_depths(roots)
        if len(self.depth) < len(self.spans):
            # Parent links that loop never reach a root; cut each loop at its earliest span.
            for span in self.spans:
                if span.span_id not in self.depth:
                    roots.append(span)
                    self._children[span.parent_id].remove(span)  # type: ignore[index]
                    self._walk_depths([span])
            roots.sort(key=lambda s: (s.start_ns, -s.end_ns, s.span_id))
            self.warnings.append("parent links form a cycle; cut it to make a root")
        self.roots: list[Span] = roots
        self._root_ids = {r.span_id for r in roots}
        self._reach = self._reach_ends()

    def _reach_ends(self) -> dict[str, int]:
        # Reversed depth-first order visits every child before its parent.
        reach: dict[str, int] = {}
        for span, _ in reversed(list(self.walk())):
            end = span.end_ns
            for child in self.children(span):
                end = max(end, reach[child.span_id])
            reach[span.span_id] = end
        return reach

    def reach_end(self, span: Span | str) -> int:
        """The latest end in the span's subtree: work a span starts (a queue consumer, a
        FOLLOWS_FROM child) may end, or even begin, after the span itself has ended."""
        span_id = span if isinstance(span, str) else span.span_id
        return self._reach[span_id]

    def _walk_depths(self, roots: list[Span]) -> None:
        stack = [(r, 0) for r in roots]
        while stack:
            span, depth = stack.pop()
            if span.span_id in self.depth:
                continue
            self.depth[span.span_id] = depth
            for child in self._children.get(span.span_id, ()):
                stack.append((child, depth + 1))

    def __len__(self) -> int:
        return len(self.spans)

    def __getitem__(self, span_id: str) -> Span:
        return self.by_id[span_id]

    def get(self, span_id: str | None) -> Span | None:
        return None if span_id is None else self.by_id.get(span_id)

    def children(self, span: Span | str) -> list[Span]:
        """Children in start order. Empty for a leaf."""
        span_id = span if isinstance(span, str) else span.span_id
        return self._children.get(span_id, [])

    def parent(self, span: Span) -> Span | None:
        if span.span_id in self._root_ids:
            return None
        return self.by_id.get(span.parent_id) if span.parent_id else None

    def ancestors(self, span: Span) -> list[Span]:
        """From the span's parent up to its root."""
        chain: list[Span] = []
        current = self.parent(span)
        while current is not None:
            chain.append(current)
            current = self.parent(current)
        return chain

    def root_of(self, span: Span) -> Span:
        chain = self.ancestors(span)
        return chain[-1] if chain else span

    def walk(self) -> Iterable[tuple[Span, int]]:
        """Every span once, depth first, children in start order, with its depth."""
        stack = [(r, 0) for r in reversed(self.roots)]
        while stack:
            span, depth = stack.pop()
            yield span, depth
            for child in reversed(self.children(span)):
                stack.append((child, depth + 1))

    @property
    def trace_id(self) -> str:
        return self.spans[0].trace_id if self.spans else ""

    @property
    def start_ns(self) -> int:
        return min((s.start_ns for s in self.roots), default=0)

    @property
    def end_ns(self) -> int:
        return max((s.end_ns for s in self.spans), default=0)

    def owner(self, span: Span) -> str | None:
        """The spanbench worker a span runs in: its own or nearest ancestor's worker id."""
        current: Span | None = span
        while current is not None:
            wid = current.worker_id
            if wid is not None:
                return wid
            current = self.parent(current)
        return None


@dataclass(slots=True)
class LoadNotes:
    """What loaders have to say besides spans, gathered over every document of one load:
    spans left out (by reason), the source's own warnings, and which formats were seen."""

    skipped: dict[str, int] = field(default_factory=dict)
    source_warnings: dict[str, int] = field(default_factory=dict)  # distinct text → times seen
    formats: set[str] = field(default_factory=set)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def warn(self, text: str) -> None:
        text = " ".join(str(text).split())  # one line, whatever the source put in it
        if text:
            self.source_warnings[text] = self.source_warnings.get(text, 0) + 1

    def skipped_text(self) -> str:
        """``12 spans skipped (trace or span id missing)``, one clause per reason; "" if none."""
        return ", ".join(
            f"{n} span{'' if n == 1 else 's'} skipped ({reason})" for reason, n in sorted(self.skipped.items())
        )

    def warnings(self) -> list[str]:
        out = [text if n == 1 else f"{text} (×{n})" for text, n in self.source_warnings.items()]
        if self.skipped:
            out.append(self.skipped_text())
        return out
