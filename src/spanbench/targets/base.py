"""What the load engine, the worker and the orchestrator need from a database under test.

One module per database implements these (``postgres.py``, ``snowflake.py``). The hot path
only ever sees a ``QueryFn``: a bound coroutine function per query kind, so that running a
query is one call with no dispatch layer in between.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# A prepared query of one kind on one connection: ``await fn(key)``.
QueryFn = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class QuerySpec:
    """One query kind of a workload, in the dialect of the target that will run it."""

    kind: str  # e.g. "point_select"; the label in histograms and spans
    operation: str  # db.operation.name: SELECT, UPDATE, ...
    sql: str  # parameterised text; also db.query.text on spans (never literal values)
    collection: str  # db.collection.name


@dataclass(frozen=True)
class TableProfile:
    table: str
    min_key: int
    max_key: int
    rows: int


class TargetConnection(Protocol):
    """One benchmark connection."""

    async def prepare(self, queries: Sequence[QuerySpec]) -> list[QueryFn]:
        """Prepare every query kind once; return one callable per kind, same order."""
        ...

    async def set_phase(self, phase: str) -> None:
        """Tell the server the run's phase (Snowflake QUERY_TAG; PostgreSQL application_name)."""
        ...

    def last_query_id(self) -> str | None:
        """The server's id of the last query (Snowflake sfqid), when the target has one."""
        ...

    async def close(self) -> None: ...


class Target(Protocol):
    """A database under test, as one worker sees it."""

    system: str  # db.system.name: "postgresql" | "snowflake"
    server_address: str  # server.address for spans; never carries credentials
    dialect: str  # key into the workload's SQL: "postgresql" | "snowflake"

    async def connect(self, *, phase: str, tag: dict[str, str]) -> TargetConnection:
        """Open one connection (a ``pool.connect`` span wraps this call)."""
        ...

    async def profile_table(self, conn: TargetConnection, table: str, key: str) -> TableProfile:
        """Key range and row count of a table (``setup.profile_table``)."""
        ...

    async def demo_table_exists(self) -> bool:
        """Whether the demo table is there and filled (``run`` creates it when not)."""
        ...

    async def init_demo_table(self, rows: int) -> None:
        """Drop, create and fill the demo table with ``rows`` rows (``spanbench init``)."""
        ...

    async def resume_warehouse(self) -> None:
        """Resume compute and wait until it is ready (Snowflake); a no-op elsewhere."""
        ...

    async def close(self) -> None: ...
