"""Sampled ``query`` spans, made after the fact from times the loop already took.

One span per query would cost a third of the throughput or more, so a query becomes a
span only when it is the first on its connection, slower than a threshold, an error, or
the deterministic 1-in-N sample; and never more than ``cap`` of them per worker. The cap is
this worker's share of a per-run budget (``query_span_share``), so a run's trace stays below
Tempo's 5 MB per-trace limit however many workers it has. A connection's first query always
gets its span, past the cap too; samples past it are counted in ``skipped``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Status, StatusCode

from spanbench.targets.base import QuerySpec, TargetConnection


def query_span_share(run_budget: int, worker_cap: int, workers: int) -> int:
    """One worker's cap: an even share of the run's ``query_span_budget``, never more than
    ``query_span_cap``. ``workers`` is the run's (expected) worker count, which every worker
    knows from RUN_STATUS, so no worker needs to hear of the others to keep the run in budget."""
    return min(worker_cap, run_budget // max(1, workers))


class QuerySpans:
    def __init__(
        self,
        tracer: trace.Tracer,
        parent: Context | None,
        queries: Sequence[QuerySpec],
        *,
        system: str,
        server_address: str,
        every: int,
        slow_s: float,
        cap: int,
        enabled: bool,
    ) -> None:
        self.tracer = tracer
        self.parent = parent
        self.every = every
        self.slow_ns = int(slow_s * 1e9)
        self.left = cap if enabled else 0
        self.skipped = 0  # samples past the cap: counted, so the report can say so
        self.first_query_wall_ns: int | None = None
        self.start_unix_ns: int | None = None  # the run's START instant, when known
        # perf_counter_ns -> Unix ns, fixed once so span times agree with each other.
        self._offset = time.time_ns() - time.perf_counter_ns()
        self._static = [
            {
                "db.system.name": system,
                "db.operation.name": q.operation,
                "db.query.text": q.sql,
                "db.collection.name": q.collection,
                "server.address": server_address,
                "spanbench.query_kind": q.kind,
                # READ or WRITE, from the scenario's `operation` or the SQL's first keyword
                **({"spanbench.query.access": q.access} if q.access else {}),
            }
            for q in queries
        ]
        self._enabled = enabled
        # (kind, seconds, span id, trace id, end ns) of recent sampled spans: metric exemplars
        self.recent: deque[tuple[int, float, int, int, int]] = deque(maxlen=64)

    def wall_ns(self, perf_ns: int) -> int:
        return perf_ns + self._offset

    def emit(
        self,
        kind: int,
        conn_index: int,
        t0: int,
        t1: int,
        *,
        reason: str,
        first: bool,
        conn: TargetConnection,
        error: BaseException | None,
    ) -> None:
        if first:
            self.first_query_wall_ns = t0 + self._offset
        if not self._enabled:
            return
        if self.left <= 0 and not first and reason != "first":  # every connection's first is kept
            self.skipped += 1
            return
        self.left -= 1
        attrs = dict(self._static[kind])
        attrs["spanbench.connection"] = conn_index
        attrs["spanbench.sample_reason"] = reason
        if first and self.start_unix_ns is not None:
            # START → this worker's first query, as TraceQL can filter on it
            attrs["spanbench.start_to_first_query_ms"] = (t0 + self._offset - self.start_unix_ns) / 1e6
        qid = conn.last_query_id()
        if qid:
            attrs["db.snowflake.query_id"] = qid
        span = self.tracer.start_span(
            "first_query" if first else "query",
            context=self.parent,
            kind=trace.SpanKind.CLIENT,
            start_time=t0 + self._offset,
            attributes=attrs,
        )
        if error is not None:
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(Status(StatusCode.ERROR, " ".join(str(error).split())[:200]))
        span.end(end_time=t1 + self._offset)
        if error is None:
            ctx = span.get_span_context()
            self.recent.append((kind, (t1 - t0) / 1e9, ctx.span_id, ctx.trace_id, t1 + self._offset))
