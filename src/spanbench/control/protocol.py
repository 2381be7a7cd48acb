"""The control protocol in one place: run and worker states, event types, and their transitions.

Workers never talk to each other, only to the control store. The orchestrator owns the run's
row (RUN_STATUS) and the events (RUN_CONTROL_EVENTS); each worker owns its heartbeat row.
Whoever notices that the other side is gone writes the final state, so no run is ever left
RUNNING.

Run states (RUN_STATUS.status)::

    PREPARING ──all workers READY──▶ READY ──START──▶ RUNNING ──end of schedule──▶ STOPPING
        │                              │                 │                            │
        │                              │                 │        ┌───────────────────┤
        │                              │                 │        ▼                   ▼
        │                              │                 │   COMPLETED   COMPLETED_WITH_ERRORS
        │                              │                 │   (clean)     (errors, stalls, a worker
        │                              │                 │                lost with on_worker_loss
        │                              │                 │                = "continue")
        └──────────────┴─────────────────┴────────────────┴──▶ FAILED     (a reason, always)
                                                          ──▶ CANCELLED  (Ctrl-C, SIGTERM)
                                                          ──▶ ABANDONED  (the orchestrator was lost:
                                                                          written by the first worker
                                                                          that noticed)

Worker states (WORKER_HEARTBEATS.status)::

    INITIALIZING ──pool open, set up──▶ READY ──START──▶ RUNNING ──stop, drained, persisted──▶ COMPLETED
         │                                │                 │
         └────────────────────────────────┴─────────────────┴──▶ FAILED     (its reason in last_error)
                                                            ──▶ ABANDONED  (its orchestrator was lost,
                                                                            or it never got a START)
                                                            ──▶ LOST       (written by the orchestrator:
                                                                            no beat for 3 intervals or
                                                                            its process is gone)

Events (RUN_CONTROL_EVENTS.type), sequence ids assigned atomically by the store:
START (payload: the start instant and the phase schedule), STOP, SET_PHASE, SET_TARGET.

Who says what: ``sides.py`` holds the worker's half (join, beat, poll, wait, abandon) and
the orchestrator's (create, beat, look, announce, set), the only calls either process makes
to the protocol's tables; ``schema.py`` the tables, rendered per dialect.
"""

from __future__ import annotations

from enum import StrEnum


class RunState(StrEnum):
    PREPARING = "PREPARING"
    READY = "READY"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    COMPLETED = "COMPLETED"
    COMPLETED_WITH_ERRORS = "COMPLETED_WITH_ERRORS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    ABANDONED = "ABANDONED"


class WorkerState(StrEnum):
    INITIALIZING = "INITIALIZING"
    READY = "READY"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    ABANDONED = "ABANDONED"
    LOST = "LOST"


class EventType(StrEnum):
    START = "START"
    STOP = "STOP"
    SET_PHASE = "SET_PHASE"
    SET_TARGET = "SET_TARGET"


_ENDS = {RunState.FAILED, RunState.CANCELLED, RunState.ABANDONED}
RUN_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.PREPARING: frozenset({RunState.READY, *_ENDS}),
    RunState.READY: frozenset({RunState.RUNNING, *_ENDS}),
    RunState.RUNNING: frozenset({RunState.STOPPING, *_ENDS}),
    RunState.STOPPING: frozenset({RunState.COMPLETED, RunState.COMPLETED_WITH_ERRORS, *_ENDS}),
    RunState.COMPLETED: frozenset(),
    RunState.COMPLETED_WITH_ERRORS: frozenset(),
    RunState.FAILED: frozenset(),
    RunState.CANCELLED: frozenset(),
    RunState.ABANDONED: frozenset(),
}
RUN_FINAL = frozenset(s for s, nxt in RUN_TRANSITIONS.items() if not nxt)

_WORKER_ENDS = {WorkerState.FAILED, WorkerState.ABANDONED, WorkerState.LOST}
WORKER_TRANSITIONS: dict[WorkerState, frozenset[WorkerState]] = {
    WorkerState.INITIALIZING: frozenset({WorkerState.INITIALIZING, WorkerState.READY, *_WORKER_ENDS}),
    WorkerState.READY: frozenset({WorkerState.READY, WorkerState.RUNNING, *_WORKER_ENDS}),
    WorkerState.RUNNING: frozenset({WorkerState.RUNNING, WorkerState.COMPLETED, *_WORKER_ENDS}),
    WorkerState.COMPLETED: frozenset(),
    WorkerState.FAILED: frozenset(),
    WorkerState.ABANDONED: frozenset(),
    WorkerState.LOST: frozenset(),
}
WORKER_FINAL = frozenset(s for s, nxt in WORKER_TRANSITIONS.items() if not nxt)


def run_may_become(current: str, new: str) -> bool:
    """Whether RUN_STATUS may move from ``current`` to ``new`` (unknown states never may)."""
    try:
        return RunState(new) in RUN_TRANSITIONS[RunState(current)]
    except ValueError:
        return False


def worker_may_become(current: str, new: str) -> bool:
    try:
        return WorkerState(new) in WORKER_TRANSITIONS[WorkerState(current)]
    except ValueError:
        return False


# A run's exit code by its final state (README "Exit codes").
EXIT_CODES: dict[RunState, int] = {
    RunState.COMPLETED: 0,
    RunState.FAILED: 1,
    RunState.COMPLETED_WITH_ERRORS: 4,
    RunState.ABANDONED: 1,
    RunState.CANCELLED: 130,
}
