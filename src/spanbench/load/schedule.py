"""The phase schedule of one worker: timers at the orchestrator's absolute times, owned here.

Every phase change (and every find-max step) is a timer on the worker's event loop. The
schedule keeps their handles and cancels them all at the stop, so a late timer can never
reopen a phase after a STOP; each callback also checks the stop itself, for a timer that
fired in the same loop iteration as the stop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from spanbench.load.state import COOLDOWN, MEASUREMENT, WARMUP, LoadState


class PhaseSchedule:
    def __init__(self, state: LoadState, *, on_change: Callable[[], None] | None = None) -> None:
        self.state = state
        self.on_change = on_change or (lambda: None)  # a throughput sample at every switch and the stop
        self._timers: list[asyncio.TimerHandle] = []
        self.start_ns = 0

    # -------------------------------------------------------------- the phases of a START

    def start(self, payload: dict[str, Any]) -> None:
        """Enter WARMUP now; MEASUREMENT, COOLDOWN and the stop at the START payload's times."""
        p = payload
        self.start_ns = start_ns = int(p.get("start_unix_ns") or time.time_ns())
        warmup = float(p.get("warmup_s", 0))
        duration = float(p.get("duration_s", 0))
        cooldown = float(p.get("cooldown_s", 0))
        self.state.enter(WARMUP)
        self.on_change()
        self.at(start_ns + int(warmup * 1e9), self.switch, MEASUREMENT)
        self.at(start_ns + int((warmup + duration) * 1e9), self.switch, COOLDOWN)
        self.at(start_ns + int((warmup + duration + cooldown) * 1e9), self.stop, "schedule")

    def at(self, unix_ns: int, fn: Callable[..., None], *args: Any) -> None:
        """Call ``fn(*args)`` at ``unix_ns`` (wall clock), or now when that is past; never after the stop."""
        if self.state.stop:
            return
        delay = (unix_ns - time.time_ns()) / 1e9
        if delay <= 0:
            fn(*args)
            return
        loop = asyncio.get_running_loop()
        self._timers = [t for t in self._timers if not t.cancelled() and t.when() > loop.time()]
        self._timers.append(loop.call_later(delay, self._fire, fn, args))

    def _fire(self, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        if not self.state.stop:
            fn(*args)

    # -------------------------------------------------------------- what the timers do

    def switch(self, phase: str) -> None:
        if self.state.stop:
            return  # a late timer must not reopen a phase after the stop
        self.state.enter(phase)
        self.on_change()

    def stop(self, reason: str) -> None:
        if not self.state.stop:
            self.on_change()
        self.state.request_stop(reason)
        self.cancel()

    def cancel(self) -> None:
        for t in self._timers:
            t.cancel()
        self._timers.clear()

    @property
    def pending(self) -> int:
        return sum(1 for t in self._timers if not t.cancelled())
