"""The one small interface every load model implements (as k6's lib/executor/ executors do).

A model is built by ``scale_to`` from the worker's LoadState, the execution plan (mix and
arguments), the query spans and the [load] table; the worker then runs one
``run_connection`` task per connection (find-max: per connection its step has opened) and
reads ``errors_by_class`` into its TEST_RESULTS row. The phase schedule (load/schedule.py)
switches the state's phase under every model alike.

- ``closed.py``: ``ClosedLoop``, each connection's next query when its last returns; it also
  holds the mechanics the others share (error classes, backoff, reconnect, the drain's cut);
- ``open.py``: ``OpenLoop``, executions on a schedule of arrivals, three histograms;
- ``find_max.py``: ``Steps`` (a worker's side: a ClosedLoop whose connections grow on
  SET_TARGET) and ``FindMaxRun`` (the orchestrator's steps and verdicts).
"""

from __future__ import annotations

from typing import Any, Protocol

from spanbench.load.state import LoadState
from spanbench.targets.base import QueryFn, TargetConnection


class LoadModel(Protocol):
    state: LoadState
    kinds: list[str]
    reconnect: Any  # the worker's pool_reconnect, set after construction

    async def run_connection(self, index: int, conn: TargetConnection, fns: list[QueryFn]) -> None:
        """Drive one connection until ``state.stop``; raise ConnectionAbandoned to give it up."""
        ...

    def errors_by_class(self) -> dict[str, dict[str, dict[str, int]]]:
        """{phase: {kind: {error class: count}}}."""
        ...


MODELS = ("closed", "open", "find_max")
