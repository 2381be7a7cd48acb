"""A live status line while a run is under way, on a terminal only.

It shows the phase, its clock and what the workers' heartbeats report. Off a terminal it
prints nothing, so logs and pipes get the report and nothing else.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.status import Status

from spanbench.control.records import Heartbeat


class RunProgress:
    def __init__(self) -> None:
        self._console = Console(stderr=True)
        self._status: Status | None = None
        self._last: tuple[float, int] | None = None
        self._qps = 0.0
        self.enabled = sys.stderr.isatty()

    def update(self, phase: str, elapsed_s: float, total_s: float, beats: list[Heartbeat]) -> None:
        if not self.enabled:
            return
        queries = sum(b.queries for b in beats)
        errors = sum(b.errors for b in beats)
        now = time.monotonic()
        if self._last is not None and now > self._last[0]:
            self._qps = (queries - self._last[1]) / (now - self._last[0])
        self._last = (now, queries)
        text = (f"[bold]{phase}[/] {elapsed_s:5.1f}/{total_s:.1f}s  {self._qps:>9,.0f} queries/s  "
                f"{errors:,} errors  {sum(b.active_connections for b in beats)} connections")
        if self._status is None:
            self._status = Status(text, console=self._console)
            self._status.start()
        else:
            self._status.update(text)

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
