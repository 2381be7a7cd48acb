"""Clock skew: a child that starts before its parent or ends after it.

Within one process that is a bug in the instrumentation; across processes (a worker's
span under the orchestrator's ``run``) it is usually two clocks disagreeing. Either way
it is reported, and the gap analysis clips the child so it never distorts a gap.
"""

from __future__ import annotations

from dataclasses import dataclass

from spanbench.analysis.model import Trace

# Jaeger's JSON rounds times to whole microseconds; start and duration each lose up to
# one, so children can poke out by ~2 µs without any clock being wrong.
DEFAULT_TOLERANCE_NS = 2_000


@dataclass(frozen=True, slots=True)
class Skew:
    span_id: str
    parent_id: str
    early_ns: int  # how long before its parent's start the child starts (0 if not)
    late_ns: int  # how long after its parent's end the child ends (0 if not)
    cross_process: bool

    @property
    def amount_ns(self) -> int:
        return max(self.early_ns, self.late_ns)


def find_skew(trace: Trace, tolerance_ns: int = DEFAULT_TOLERANCE_NS) -> list[Skew]:
    """Every child poking out of its parent by more than ``tolerance_ns``, largest first."""
    found: list[Skew] = []
    for span in trace.spans:
        parent = trace.parent(span)
        if parent is None:
            continue
        early = max(0, parent.start_ns - span.start_ns)
        late = max(0, span.end_ns - parent.end_ns)
        if early > tolerance_ns or late > tolerance_ns:
            found.append(Skew(span.span_id, parent.span_id, early, late, span.process_key != parent.process_key))
    found.sort(key=lambda s: (-s.amount_ns, s.span_id))
    return found
