"""Rows of the control tables as plain objects, the same for every dialect."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# The states and events, with their transitions, live in protocol.py; these names are the
# same values, for the code that reads rows.
from spanbench.control.protocol import EventType, RunState, WorkerState  # noqa: E402

PREPARING = RunState.PREPARING.value
READY = RunState.READY.value
RUNNING = RunState.RUNNING.value
STOPPING = RunState.STOPPING.value
COMPLETED = RunState.COMPLETED.value
COMPLETED_WITH_ERRORS = RunState.COMPLETED_WITH_ERRORS.value
FAILED = RunState.FAILED.value
CANCELLED = RunState.CANCELLED.value
ABANDONED = RunState.ABANDONED.value
LOST = WorkerState.LOST.value
TERMINAL = frozenset({COMPLETED, COMPLETED_WITH_ERRORS, FAILED, CANCELLED, ABANDONED})
WORKER_FINAL = frozenset({WorkerState.COMPLETED.value, WorkerState.FAILED.value, WorkerState.ABANDONED.value, LOST})

START = EventType.START.value
STOP = EventType.STOP.value
SET_PHASE = EventType.SET_PHASE.value
SET_TARGET = EventType.SET_TARGET.value


@dataclass
class RunStatus:
    run_id: str
    status: str
    phase: str | None
    scenario: dict[str, Any]  # settings with every secret removed
    traceparent: str | None
    workers_expected: int
    start_time: datetime | None = None
    updated_at: datetime | None = None  # the orchestrator's liveness beat
    beat_age_s: float | None = None  # now() - updated_at, by the store's clock
    cancel_reason: str | None = None
    next_seq: int = 0


@dataclass
class ControlEvent:
    run_id: str
    seq: int
    type: str
    scope: str  # RUN | WORKER_GROUP | WORKER
    payload: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None


@dataclass
class Heartbeat:
    run_id: str
    worker_id: str
    group_id: int
    status: str  # INITIALIZING | READY | RUNNING | DRAINING | COMPLETED | FAILED
    phase: str | None = None
    active_connections: int = 0
    target_connections: int = 0
    queries: int = 0
    errors: int = 0
    last_error: str | None = None
    pid: int | None = None
    host: str | None = None
    last_beat: datetime | None = None
    beat_age_s: float | None = None  # now - last_beat by the store's clock, when the store says


@dataclass
class TestResult:
    run_id: str
    worker_id: str  # "run" for the merged row
    scope: str  # WORKER | RUN
    status: str
    started_at: datetime | None = None
    ended_at: datetime | None = None
    queries: int = 0
    errors: int = 0
    qps: float = 0.0
    measurement_seconds: float = 0.0
    latency: dict[str, Any] = field(default_factory=dict)  # per kind: p50/p95/p99/max (ms)
    histograms: dict[str, Any] = field(default_factory=dict)  # phase -> kind -> HDR (base64)
    details: dict[str, Any] = field(default_factory=dict)  # first-query times, errors by kind, ...
