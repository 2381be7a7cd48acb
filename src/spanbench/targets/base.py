"""What the load engine, the worker and the orchestrator need from a database under test.

One module per database implements these (``postgres.py``, ``snowflake.py``). The hot path
only ever sees a ``QueryFn``: a bound coroutine function per query kind, so that running a
query is one call with no dispatch layer in between.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# A prepared query of one kind on one connection: ``await fn(args)``, where ``args`` is the
# execution's tuple of bound arguments (for a transaction: a tuple of each statement's tuple),
# built before the load, so the call allocates nothing.
QueryFn = Callable[[tuple[Any, ...]], Awaitable[Any]]


@dataclass(frozen=True)
class QuerySpec:
    """One query kind of a workload, in the dialect of the target that will run it."""

    kind: str  # e.g. "point_select"; the label in histograms and spans
    operation: str  # db.operation.name: SELECT, UPDATE, ... (TRANSACTION for a transaction)
    sql: str  # parameterised text; also db.query.text on spans (never literal values)
    collection: str  # db.collection.name
    # A transaction: these statements between BEGIN and COMMIT, timed as one (sql joins them).
    statements: tuple[str, ...] = ()
    access: str = ""  # READ | WRITE (spanbench.query.access on spans)

    @property
    def is_transaction(self) -> bool:
        return bool(self.statements)


class TargetConnection(Protocol):
    """One benchmark connection."""

    async def prepare(self, queries: Sequence[QuerySpec]) -> list[QueryFn]:
        """Prepare every query kind once; return one callable per kind, same order."""
        ...

    async def fetch_all(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """One statement outside the hot path (setup, profiling, sampling): its rows as tuples."""
        ...

    async def set_phase(self, phase: str) -> None:
        """Tell the server the run's phase (Snowflake QUERY_TAG; PostgreSQL application_name)."""
        ...

    def is_broken(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the connection itself is gone (the loop then re-opens it)."""
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

    async def admin(self) -> TargetConnection:
        """A connection for setup work (the demo table, value pools), opened on first use, closed with the target."""
        ...

    async def resume_warehouse(self) -> None:
        """Resume compute and wait until it is ready (Snowflake); a no-op elsewhere."""
        ...

    async def close(self) -> None: ...


def error_class(exc: BaseException) -> str:
    """The class a load error is counted under: PostgreSQL's SQLSTATE class (two characters,
    e.g. ``40`` for a serialization failure), Snowflake's error code (``2003``), else the
    exception's type (a timeout, a dropped connection)."""
    errno = getattr(exc, "errno", None)
    if isinstance(errno, int) and errno > 0 and type(exc).__module__.startswith("snowflake"):
        return str(errno)
    state = getattr(exc, "sqlstate", None)
    if isinstance(state, str) and len(state) >= 2:
        return state[:2]
    return type(exc).__name__
