"""Spans a worker makes again and again while the load runs, kept to a size that does not grow.

A ``heartbeat`` a second per worker is 3,600 spans an hour, ``results.flush`` 720 more; with
64 workers that alone passes Tempo's 5 MB per trace within minutes. So each repeating kind
keeps its first ``keep_first`` routine spans one by one, then folds routine ones into one
summarising span (same name) per window, each window twice as many beats as the one before:
an hour of one-second beats past the first few is about a dozen spans, a week about twenty.

Anything unusual always gets a span of its own, at once: a failed beat, a slow beat, a poll
that carried an event or a reason to stop. Slow is slower than ``slow_s`` and than
``SLOW_FACTOR`` times the mean beat so far: a control store whose every beat takes 0.6 s
(a Snowflake one may) is slow throughout, and would otherwise make every beat a span.

Nothing is dropped unreported: ``count`` is every beat, ``coarsened`` the beats inside
summaries, and each summary says how many beats it stands for (``spanbench.coarsened.count``).

The logic is driven by explicit times (``record(start_ns, end_ns, …)``), so it is tested, and
measured by ``bench/trace_size.py``, with a fake clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Status, StatusCode

COARSENED_COUNT = "spanbench.coarsened.count"  # beats one summarising span stands for
COARSENED_MIN_MS = "spanbench.coarsened.min_ms"
COARSENED_MAX_MS = "spanbench.coarsened.max_ms"
COARSENED_MEAN_MS = "spanbench.coarsened.mean_ms"
KEPT_BECAUSE = "spanbench.sample_reason"  # as on query spans: why an unusual beat has its own span
SLOW_FACTOR = 4  # a beat is slow past this many times the mean of the beats so far


def keep_first_per_worker(budget: int, workers: int) -> int:
    """A run's budget of routine spans of one kind, as this worker's share (at least 2, so
    even a huge run shows each worker's rhythm before coarsening starts)."""
    return max(2, budget // max(1, workers))


@dataclass
class _Window:
    start_ns: int
    end_ns: int
    count: int = 0
    total_ns: int = 0
    min_ns: int = 0
    max_ns: int = 0

    def add(self, start_ns: int, end_ns: int) -> None:
        d = end_ns - start_ns
        self.min_ns = d if self.count == 0 else min(self.min_ns, d)
        self.max_ns = max(self.max_ns, d)
        self.count += 1
        self.total_ns += d
        self.end_ns = end_ns


class RepeatingSpans:
    """One repeating span kind of one worker: routine beats one by one, then in summaries."""

    def __init__(
        self,
        tracer: trace.Tracer,
        parent: Context | None,
        name: str,
        *,
        keep_first: int,
        slow_s: float,
        attributes: dict[str, Any] | None = None,
    ) -> None:
        self.tracer = tracer
        self.parent = parent
        self.name = name
        self.keep_first = keep_first
        self.slow_ns = int(slow_s * 1e9)
        self.attributes = dict(attributes or {})
        self.count = 0  # every beat, whatever became of it
        self.coarsened = 0  # beats inside summarising spans (emitted, or pending in the window)
        self.summaries = 0
        self._routine_kept = 0
        self._timed_n = 0  # beats so far that neither failed nor carried news, and their total
        self._timed_ns = 0  # time: the mean a slow beat is judged against
        self._window: _Window | None = None
        self._window_size = max(2, keep_first)  # beats in the next summary; doubles each time

    def record(
        self,
        start_ns: int,
        end_ns: int,
        *,
        attributes: dict[str, Any] | None = None,
        error: BaseException | None = None,
        event: bool = False,
    ) -> None:
        """One beat, from ``start_ns`` to ``end_ns`` (Unix ns). ``event``: it carried news."""
        self.count += 1
        reason = "failed" if error is not None else "event" if event else (
            "slow" if self._slow(end_ns - start_ns) else None)
        if error is None and not event:  # slow ones too: a store slow throughout sets the norm
            self._timed_n += 1
            self._timed_ns += end_ns - start_ns
        if reason is None and self._routine_kept < self.keep_first:
            self._routine_kept += 1
            self._span(start_ns, end_ns, attributes, error=None)
            return
        if reason is not None:
            # News must not wait for a window to close, nor be averaged away in it.
            self._span(start_ns, end_ns, {**(attributes or {}), KEPT_BECAUSE: reason}, error=error)
            return
        self.coarsened += 1
        if self._window is None:
            self._window = _Window(start_ns, end_ns)
        self._window.add(start_ns, end_ns)
        if self._window.count >= self._window_size:
            self.flush()

    def _slow(self, took_ns: int) -> bool:
        if took_ns <= self.slow_ns:
            return False
        return self._timed_n == 0 or took_ns > SLOW_FACTOR * self._timed_ns / self._timed_n

    def flush(self) -> None:
        """End the pending summary now (the load stopped, or its window is full)."""
        w, self._window = self._window, None
        if w is None or w.count == 0:
            return
        self.summaries += 1
        self._window_size *= 2
        self._span(w.start_ns, w.end_ns, {
            COARSENED_COUNT: w.count,
            COARSENED_MIN_MS: round(w.min_ns / 1e6, 3),
            COARSENED_MAX_MS: round(w.max_ns / 1e6, 3),
            COARSENED_MEAN_MS: round(w.total_ns / w.count / 1e6, 3),
        }, error=None)

    def counted_elsewhere(self) -> None:
        """A beat of this kind made as a span of its own elsewhere (a status heartbeat)."""
        self.count += 1

    def _span(self, start_ns: int, end_ns: int, attributes: dict[str, Any] | None,
              *, error: BaseException | None) -> None:
        span = self.tracer.start_span(self.name, context=self.parent, start_time=start_ns,
                                      attributes={**self.attributes, **(attributes or {})})
        if error is not None:
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(Status(StatusCode.ERROR, " ".join(str(error).split())[:200]))
        span.end(end_time=max(start_ns, end_ns))


def span_counts(kinds: dict[str, RepeatingSpans]) -> dict[str, dict[str, int]]:
    """``{name: {count, coarsened, summaries}}``: what results.json and the worker span say."""
    return {name: {"count": r.count, "coarsened": r.coarsened, "summaries": r.summaries} for name, r in kinds.items()}


def span_count_attributes(kinds: dict[str, RepeatingSpans]) -> dict[str, int]:
    """The same as worker span attributes: ``spanbench.spans.heartbeat.count`` = every beat,
    ``….coarsened`` = the beats inside summarising spans."""
    out: dict[str, int] = {}
    for name, r in kinds.items():
        out[f"spanbench.spans.{name}.count"] = r.count
        out[f"spanbench.spans.{name}.coarsened"] = r.coarsened
    return out
