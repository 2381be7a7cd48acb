"""The control store interface. ``postgres.py`` and ``snowflake.py`` implement it.

Every method is one round trip or as few as the dialect allows, because each of them is
a span in the run's trace and its duration is what users read.
"""

from __future__ import annotations

from typing import Any, Protocol

from spanbench.control.clock import ClockSample
from spanbench.control.records import ControlEvent, Heartbeat, RunStatus, TestResult


class ControlStore(Protocol):
    dialect: str  # "postgresql" | "snowflake"

    async def ensure_schema(self) -> None:
        """Create the control tables if missing (idempotent, safe to race)."""
        ...

    async def create_run(self, run: RunStatus) -> None: ...

    async def fetch_run_status(self, run_id: str) -> RunStatus | None: ...

    async def update_run(self, run_id: str, **fields: Any) -> None:
        """Set columns of RUN_STATUS (status, phase, start_time, cancel_reason, ...) and updated_at."""
        ...

    async def touch_run(self, run_id: str) -> None:
        """The orchestrator's liveness beat: RUN_STATUS.updated_at = now."""
        ...

    async def append_event(self, run_id: str, type: str, scope: str, payload: dict[str, Any]) -> int:
        """Insert a control event; its sequence id is assigned atomically. Returns it."""
        ...

    async def fetch_events(self, run_id: str, after_seq: int) -> list[ControlEvent]: ...

    async def heartbeat(self, hb: Heartbeat) -> None:
        """Upsert the worker's WORKER_HEARTBEATS row."""
        ...

    async def fetch_heartbeats(self, run_id: str) -> list[Heartbeat]: ...

    async def mark_worker(self, run_id: str, worker_id: str, status: str, reason: str) -> None:
        """Set a worker's status for it (the orchestrator marking one LOST)."""
        ...

    async def abandon_run(self, run_id: str, reason: str) -> bool:
        """RUN_STATUS → ABANDONED unless already final; True when this call did it (first one wins)."""
        ...

    async def insert_test_result(self, row: TestResult) -> None: ...

    async def update_test_result(self, row: TestResult) -> None: ...

    async def fetch_test_results(self, run_id: str) -> list[TestResult]: ...

    async def fetch_value_pool(self, pool_name: str) -> list[Any]:
        """Sampled values from TEMPLATE_VALUE_POOLS (empty when none were loaded)."""
        ...

    async def store_value_pool(self, pool_name: str, values: list[Any]) -> None:
        """Replace the pool's values in TEMPLATE_VALUE_POOLS (``spanbench pools build``)."""
        ...

    async def wait_for_signal(self, run_id: str, timeout: float) -> bool:
        """Wait up to ``timeout`` s for a change to this run (NOTIFY where the store has it).

        Returns True when woken by a signal, False on timeout. Stores without push
        simply sleep.
        """
        ...

    async def clock_sample(self) -> ClockSample:
        """One round trip reading the store's own clock (not a transaction's start time), timed
        on this side; clock.measure keeps the shortest of a few (clock.py has the convention)."""
        ...

    async def close(self) -> None: ...
