"""The two sides of the control protocol (protocol.py): what a worker and the orchestrator say.

Each side is the only way its process talks to the control store, so the protocol's calls —
join, beat, poll, wait on the worker's side; create, beat, look, announce, set on the
orchestrator's — live in one place. What to do with the answers (stop the load, mark a
worker LOST) stays with the caller: these objects carry the conversation, not the policy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from spanbench.control import clock
from spanbench.control.clock import ClockOffset
from spanbench.control.records import ControlEvent, Heartbeat, RunStatus, TestResult
from spanbench.control.store import ControlStore
from spanbench.errors import DuplicateRun, RunFailed

T = TypeVar("T")


class WorkerSide:
    """A worker's half: join the run, beat, poll RUN_STATUS and the events, wait for a signal."""

    def __init__(self, store: ControlStore, run_id: str, worker_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.worker_id = worker_id
        self.clock = ClockOffset()  # the identity until measure_clock: store instants used as they are

    async def join(self, timeout_s: float, every_s: float = 0.2) -> tuple[RunStatus, int]:
        """RUN_STATUS of the run, waiting (bounded) for a worker started before its orchestrator."""
        deadline = time.monotonic() + timeout_s
        attempts = 0
        while True:
            attempts += 1
            try:
                status = await self.store.fetch_run_status(self.run_id)
            except Exception as exc:  # the control schema may not exist yet
                status, why = None, f"{type(exc).__name__}: {exc}"
            else:
                why = "no RUN_STATUS row"
            if status is not None:
                return status, attempts
            if time.monotonic() > deadline:
                raise RunFailed(f"run {self.run_id} not found in the control store within "
                                f"{timeout_s:g}s ({' '.join(why.split())[:200]})")
            await asyncio.sleep(every_s)

    async def measure_clock(self, rounds: int | None = None) -> ClockOffset:
        """Our clock against the store's (clock.py); from now on events' instants are read on ours."""
        self.clock = await clock.measure(self.store.clock_sample, rounds or clock.rounds_for(self.store))
        return self.clock

    async def beat(self, hb: Heartbeat) -> None:
        await self.store.heartbeat(hb)

    async def poll(self, after_seq: int) -> tuple[RunStatus | None, list[ControlEvent]]:
        """One look: the run's row and the events after ``after_seq``, their instants on our clock."""
        status = await self.store.fetch_run_status(self.run_id)
        events = await self.store.fetch_events(self.run_id, after_seq)
        for ev in events:
            ev.payload = self.clock.payload_to_local(ev.payload)
        return status, events

    async def wait(self, timeout_s: float) -> bool:
        """Until a change to the run is signalled (NOTIFY) or ``timeout_s``; True when signalled."""
        return await self.store.wait_for_signal(self.run_id, timeout_s)

    async def abandon(self, reason: str) -> bool:
        """The orchestrator is lost: ABANDONED, unless the run is already final (first one wins)."""
        return await self.store.abandon_run(self.run_id, f"{self.worker_id}: {reason}")


class OrchestratorSide:
    """The orchestrator's half: create the run, beat, look at the workers, announce, set status.

    Writes are retried through a control-store blip (backoff to 1 s) for up to ``blip_s``,
    the time the workers themselves wait for a beat before they call the orchestrator lost.
    """

    def __init__(self, store: ControlStore, run_id: str, *, blip_s: float, where: str) -> None:
        self.store = store
        self.run_id = run_id
        self.blip_s = blip_s
        self.where = where
        self.clock = ClockOffset()  # the identity until measure_clock

    async def measure_clock(self, rounds: int | None = None) -> ClockOffset:
        """Our clock against the store's: the instants we announce and set are put on the store's."""
        self.clock = await clock.measure(self.store.clock_sample, rounds or clock.rounds_for(self.store))
        return self.clock

    async def create(self, run: RunStatus) -> None:
        if await self.store.fetch_run_status(self.run_id) is not None:
            # Refused before a row of it is touched: that run is someone else's.
            raise DuplicateRun(f"run id {self.run_id} already exists in the control store: "
                               "pick another run_id (or leave it unset)")
        await self.store.create_run(run)

    async def beat(self) -> None:
        await self.store.touch_run(self.run_id)

    async def look(self) -> list[Heartbeat]:
        return await self.store.fetch_heartbeats(self.run_id)

    async def mark(self, worker_id: str, status: str, reason: str) -> None:
        """A worker's state said for it (LOST): it can no longer say it itself."""
        await self.store.mark_worker(self.run_id, worker_id, status, reason)

    async def results(self) -> list[TestResult]:
        return await self.store.fetch_test_results(self.run_id)

    async def save_result(self, row: TestResult) -> None:
        await self.store.insert_test_result(row)

    async def announce(self, type: str, payload: dict[str, Any], *, retried: bool = True) -> int:
        """An event; its ``*_unix_ns`` instants (given on our clock) are written on the store's."""
        payload = self.clock.payload_to_store(payload)
        call = lambda: self.store.append_event(self.run_id, type, "RUN", payload)  # noqa: E731
        return await (self.write(type, call) if retried else call())

    async def set(self, what: str = "update_run", *, retried: bool = True, **fields: Any) -> None:
        """RUN_STATUS columns; a datetime (start_time, measurement_start, …) is put on the store's clock."""
        fields = {k: self.clock.datetime_to_store(v) if isinstance(v, datetime) else v for k, v in fields.items()}
        call = lambda: self.store.update_run(self.run_id, **fields)  # noqa: E731
        await (self.write(what, call) if retried else call())

    async def write(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        deadline = time.monotonic() + self.blip_s
        delay = 0.1
        while True:
            try:
                return await call()
            except Exception as exc:
                if time.monotonic() + delay > deadline:
                    raise RunFailed(f"control store {self.where} did not take {what} within {self.blip_s:g}s "
                                    f"({type(exc).__name__})") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
