"""Live progress while a run is under way: a status line on a terminal, plain lines elsewhere.

Rates come from the workers' heartbeats and the control store's own time of each beat, never
from when the orchestrator happened to look: sampling every 0.5 s against beats every 1 s
would otherwise read 0 and then twice the rate, alternately. On a terminal the line shows
the rate over each worker's last completed beat interval (a second by default); off a
terminal (CI, a pipe) one plain line is printed every ``interval`` seconds, as pgbench's
``-P``, with the rate over that interval.
"""

from __future__ import annotations

import sys
from collections import deque
from dataclasses import dataclass
from typing import Any, TextIO

from spanbench.control.records import Heartbeat

DEFAULT_LINE_INTERVAL_S = 5.0
_KEEP = 64  # beats kept per worker: enough for a minute at the default beat


@dataclass(frozen=True)
class Beat:
    at_s: float  # the control store's time of the beat, Unix seconds
    queries: int
    errors: int


class BeatRates:
    """Each worker's recent beats; rates between beats, summed across workers."""

    def __init__(self, start_s: float | None = None) -> None:
        # Counts are 0 at the START instant: every worker's first beat of the load is measured
        # from there, not from its READY beat, which came before any waiting.
        self.start_s = start_s
        self._beats: dict[str, deque[Beat]] = {}

    def add(self, beats: list[Heartbeat]) -> None:
        for b in beats:
            if b.last_beat is None:
                continue
            beat = Beat(b.last_beat.timestamp(), b.queries, b.errors)
            if self.start_s is not None and beat.at_s <= self.start_s:
                continue
            seen = self._beats.get(b.worker_id)
            if seen is None:
                seen = self._beats[b.worker_id] = deque(maxlen=_KEEP)
                if self.start_s is not None:
                    seen.append(Beat(self.start_s, 0, 0))
            if not seen or beat.at_s > seen[-1].at_s:
                seen.append(beat)

    def rate(self, over_s: float | None = None) -> float:
        """Queries/s: over each worker's last beat interval, or over about ``over_s`` seconds."""
        total = 0.0
        for seen in self._beats.values():
            if len(seen) < 2:
                continue
            last = seen[-1]
            first = seen[-2]
            if over_s is not None:
                for b in reversed(seen):
                    if last.at_s - b.at_s >= over_s - 1e-3 or b is seen[0]:
                        first = b
                        break
            if last.at_s > first.at_s:
                total += (last.queries - first.queries) / (last.at_s - first.at_s)
        return total

    def latest(self) -> dict[str, float]:
        """Each worker's last beat time (workers with no beat of the load yet are left out)."""
        return {w: seen[-1].at_s for w, seen in self._beats.items() if seen and seen[-1].at_s != self.start_s}

    def errors(self) -> int:
        return sum(seen[-1].errors for seen in self._beats.values() if seen)


class RunProgress:
    """``interval_s``: None picks the default (a live line on a terminal, else lines every 5 s); 0 is off."""

    def __init__(self, interval_s: float | None = None, *, stream: TextIO | None = None,
                 terminal: bool | None = None) -> None:
        self._stream = stream or sys.stderr
        tty = self._stream.isatty() if terminal is None else terminal
        if interval_s is not None and interval_s <= 0:
            self.mode = "off"
        elif tty and interval_s is None:
            self.mode = "live"
        else:
            self.mode = "lines"
        self.interval_s = interval_s or DEFAULT_LINE_INTERVAL_S
        self.enabled = self.mode != "off"
        self.rates = BeatRates()
        self._status: Any = None
        self._next_line_s: float | None = None
        self._printed: dict[str, float] = {}  # each worker's beat time the last line used

    def started(self, start_unix_ns: int) -> None:
        """The load's START instant: where every worker's counts begin at zero."""
        self.rates = BeatRates(start_unix_ns / 1e9)

    def line_due(self, run_elapsed_s: float) -> bool:
        """Whether a plain line may be printed now (the caller then fetches its p99)."""
        return self.mode == "lines" and self._next_line_s is not None and run_elapsed_s + 1e-6 >= self._next_line_s

    def update(self, phase: str, elapsed_s: float, total_s: float, beats: list[Heartbeat], *,
               run_elapsed_s: float | None = None, p99_ms: float | None = None) -> None:
        if not self.enabled:
            return
        self.rates.add(beats)
        connections = sum(b.active_connections for b in beats)
        if self.mode == "live":
            self._live(f"[bold]{phase}[/] {elapsed_s:5.1f}/{total_s:.1f}s  {self.rates.rate():>9,.0f} queries/s  "
                       f"{self.rates.errors():,} errors  {connections} connections")
            return
        clock = run_elapsed_s if run_elapsed_s is not None else elapsed_s
        if self._next_line_s is None:
            self._next_line_s = clock + self.interval_s
            return
        if clock + 1e-6 < self._next_line_s:
            return
        # A line waits (up to one more interval) until every worker has beaten since the last
        # line: a rate from one worker's fresh beat and another's old one reads half the truth.
        latest = self.rates.latest()
        fresh = len(latest) == len(beats) and all(t > self._printed.get(w, 0.0) for w, t in latest.items())
        if not latest or (not fresh and clock < self._next_line_s + self.interval_s):
            return
        self._printed = latest
        self._next_line_s += self.interval_s * max(1, int((clock - self._next_line_s) // self.interval_s) + 1)
        # p99 over the phase so far, merged exactly from the workers' last flushes
        p99 = "" if p99_ms is None else f", p99 {p99_ms:,.3f} ms"
        print(f"progress: {phase.lower()} {elapsed_s:.1f}/{total_s:.1f} s, {self.rates.rate(self.interval_s):,.1f} q/s"
              f"{p99}, {self.rates.errors():,} errors, {connections} connections", file=self._stream, flush=True)

    def _live(self, text: str) -> None:
        if self._status is None:
            from rich.console import Console  # only a terminal pays for Rich here
            from rich.status import Status

            self._status = Status(text, console=Console(file=self._stream))
            self._status.start()
        else:
            self._status.update(text)

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
