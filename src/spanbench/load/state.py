"""What the connection loops of one worker share: the phase, its histograms, the stop flag.

The loops read ``recorders`` and ``errors`` once per query; a phase change swaps both lists
in one assignment each, so a loop never needs a lock or a branch to follow the phase.
"""

from __future__ import annotations

import time

from spanbench.stats import LatencyRecorder

INIT = "INIT"
WARMUP = "WARMUP"
MEASUREMENT = "MEASUREMENT"
COOLDOWN = "COOLDOWN"
PHASES = (WARMUP, MEASUREMENT, COOLDOWN)


class PhaseData:
    __slots__ = ("recorders", "errors", "entered_ns", "left_ns", "cut", "service", "lag", "dropped", "target")

    def __init__(self, kinds: int, *, open_model: bool = False) -> None:
        # closed loop: send -> end; open model: intended start -> end (what a user waits)
        self.recorders = [LatencyRecorder() for _ in range(kinds)]
        self.errors = [0] * kinds
        self.cut = 0  # queries still running at the drain, recorded with their time so far
        # open model only: send -> end per kind, and (send - intended start) for all kinds
        self.service = [LatencyRecorder() for _ in range(kinds)] if open_model else None
        self.lag = LatencyRecorder() if open_model else None
        self.dropped = 0  # open model: arrivals beyond max_queue
        self.target: int | None = None  # find_max: the step's connections in this worker
        self.entered_ns: int | None = None  # perf_counter_ns when this phase began here
        self.left_ns: int | None = None

    @property
    def queries(self) -> int:
        return sum(r.total for r in self.recorders)

    def seconds(self) -> float:
        if self.entered_ns is None:
            return 0.0
        end = self.left_ns if self.left_ns is not None else time.perf_counter_ns()
        return (end - self.entered_ns) / 1e9


class LoadState:
    __slots__ = ("stop", "stop_reason", "phase", "gen", "recorders", "errors", "phases", "active", "last_error",
                 "kinds", "open_model", "data", "limit", "tag")

    def __init__(self, kinds: int, *, open_model: bool = False) -> None:
        self.stop = False
        self.stop_reason: str | None = None
        self.kinds = kinds
        self.open_model = open_model
        self.phases = {p: PhaseData(kinds, open_model=open_model) for p in PHASES}
        self.phase = WARMUP
        self.gen = 0  # bumps on every phase change; loops compare it to follow QUERY_TAG
        first = self.phases[WARMUP]
        self.data = first  # the current phase's PhaseData (the open model reads service/lag from it)
        self.recorders = first.recorders
        self.errors = first.errors
        self.active = 0
        self.last_error: str | None = None
        self.limit = 1 << 62  # closed-model stages: connections with an index from here on stop
        self.tag = WARMUP  # what a session's QUERY_TAG names: the phase, or find-max's step in it

    def enter(self, phase: str) -> None:
        now = time.perf_counter_ns()
        old = self.phases[self.phase]
        if old.entered_ns is not None and old.left_ns is None:
            old.left_ns = now
        data = self.phases.get(phase)
        if data is None:  # a find-max step (STEP1, STEP2, ...) or its ramp: made when first entered
            data = self.phases[phase] = PhaseData(self.kinds, open_model=self.open_model)
        data.entered_ns = now
        self.data = data
        self.recorders = data.recorders
        self.errors = data.errors
        self.phase = phase
        self.tag = phase
        self.gen += 1

    def retag(self, tag: str) -> None:
        """A new QUERY_TAG for every session (find-max's step) without a phase change."""
        self.tag = tag
        self.gen += 1

    def phase_at(self, perf_ns: int) -> PhaseData | None:
        """The phase that was current at ``perf_ns`` (a query's send time)."""
        best = None
        for data in self.phases.values():
            if data.entered_ns is not None and data.entered_ns <= perf_ns:
                if best is None or data.entered_ns > best.entered_ns:  # type: ignore[operator]
                    best = data
        return best or self.phases[WARMUP]

    def request_stop(self, reason: str) -> None:
        if not self.stop:
            self.stop_reason = reason
            self.stop = True
            data = self.phases[self.phase]
            if data.entered_ns is not None and data.left_ns is None:
                data.left_ns = time.perf_counter_ns()

    def totals(self) -> tuple[int, int]:
        q = sum(p.queries for p in self.phases.values())
        e = sum(sum(p.errors) for p in self.phases.values())
        return q, e
