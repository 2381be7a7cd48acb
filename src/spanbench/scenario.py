"""The workload part of a scenario file: ``version``, ``[[queries]]`` and ``[params.NAME]``.

A public contract, as the span names are (README, "Scenarios"). The models only describe
and validate; ``workload/plan.py`` turns them into the arrays the hot loop indexes, and
``workload/params.py`` draws the values. Nothing here touches a database.

This module imports only pydantic and ``spanbench.sql``: settings.py builds on it, and
``spanbench --help`` must not pay for more.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from spanbench.sql import access_of, placeholders

SCENARIO_VERSION = 1
WORKLOAD_KEYS = ("version", "queries", "params")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_COLUMN = re.compile(r"^[A-Za-z_][\w$]*(\.[A-Za-z_][\w$]*){1,2}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Statement(_Model):
    """One statement of a transaction."""

    sql: str = Field(min_length=1)
    params: list[str] = Field(default_factory=list)


class Query(_Model):
    """One query kind: a statement, or a transaction timed as one."""

    name: str
    weight: int = Field(1, gt=0, le=1_000_000, description="share of executions (smooth weighted round-robin)")
    sql: str | None = Field(None, min_length=1)
    params: list[str] = Field(default_factory=list)
    transaction: list[Statement] | None = Field(None, min_length=1)
    operation: Literal["READ", "WRITE"] | None = None

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("a query name is letters, digits, _ . - (starting with a letter or _)")
        return v

    @model_validator(mode="after")
    def _one_body(self) -> "Query":
        if (self.sql is None) == (self.transaction is None):
            raise ValueError(f"query {self.name!r} needs exactly one of sql or transaction")
        if self.transaction is not None and self.params:
            raise ValueError(f"query {self.name!r}: params go on each statement of a transaction")
        return self

    @property
    def statements(self) -> list[Statement]:
        if self.transaction is not None:
            return list(self.transaction)
        assert self.sql is not None
        return [Statement(sql=self.sql, params=list(self.params))]

    @property
    def access(self) -> str:
        """READ or WRITE: as given, else READ only when every statement reads."""
        if self.operation is not None:
            return self.operation
        return "READ" if all(access_of(s.sql) == "READ" for s in self.statements) else "WRITE"

    @property
    def param_names(self) -> list[str]:
        """The distinct parameters of one execution, in order of first use."""
        return list(dict.fromkeys(p for s in self.statements for p in s.params))


class IntParam(_Model):
    """Integers in [min, max]; or the range of a column, read from the target at setup."""

    kind: Literal["int"]
    min: int | None = None
    max: int | None = None
    column: str | None = Field(None, description="TABLE.COLUMN: min and max read from the target")
    distribution: Literal["uniform", "zipf", "sequential"] = "uniform"
    s: float = Field(1.0, gt=0, le=10, description="zipf exponent")

    @model_validator(mode="after")
    def _range(self) -> "IntParam":
        if self.column is not None:
            _check_column(self.column)
        elif self.min is None or self.max is None:
            raise ValueError("an int parameter needs min and max (or column = \"TABLE.COLUMN\")")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class PoolParam(_Model):
    """Values sampled from a column of the target (``spanbench pools build``), sharded across workers."""

    kind: Literal["pool"]
    column: str
    size: int = Field(10_000, gt=0, le=10_000_000, description="values sampled into the pool")

    @field_validator("column")
    @classmethod
    def _column(cls, v: str) -> str:
        return _check_column(v)


class ChoiceParam(_Model):
    kind: Literal["choice"]
    values: list[Union[bool, int, float, str]] = Field(min_length=1)


class StringParam(_Model):
    kind: Literal["string"]
    length: int = Field(16, gt=0, le=1_000_000)


class UuidParam(_Model):
    kind: Literal["uuid"]


class TimestampParam(_Model):
    """The instant the worker draws its values (just before START), minus up to ``spread`` seconds."""

    kind: Literal["timestamp"]
    spread: float = Field(0.0, ge=0, description="values spread uniformly over [now - spread, now]")

    @field_validator("spread", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        if isinstance(v, str):
            from spanbench.units import parse_duration

            return parse_duration(v)
        return v


Param = Annotated[
    Union[IntParam, PoolParam, ChoiceParam, StringParam, UuidParam, TimestampParam], Field(discriminator="kind")
]


class Workload(_Model):
    """What a run executes. Without ``queries`` in the scenario file, it is the built-in demo."""

    version: Literal[1] = SCENARIO_VERSION
    queries: list[Query] = Field(min_length=1)
    params: dict[str, Param] = Field(default_factory=dict)

    @property
    def kinds(self) -> list[str]:
        return [q.name for q in self.queries]

    def pool_params(self) -> dict[str, PoolParam]:
        return {n: p for n, p in self.params.items() if isinstance(p, PoolParam)}


def _check_column(v: str) -> str:
    if not _COLUMN.match(v):
        raise ValueError(f"column must be TABLE.COLUMN (or SCHEMA.TABLE.COLUMN), got {v!r}")
    return v


def problems(workload: Workload, dialect: str) -> list[str]:
    """Every problem a valid-looking workload still has on ``dialect``, one line each.

    Names: unique query names, parameters that exist; placeholders: their count against
    ``params`` in the target's own style ($n on PostgreSQL, ? on Snowflake).
    """
    out: list[str] = []
    seen: set[str] = set()
    for q in workload.queries:
        if q.name in seen:
            out.append(f"query {q.name!r}: the name is used twice")
        seen.add(q.name)
        for i, st in enumerate(q.statements):
            where = f"query {q.name!r}" + (f" statement {i + 1}" if q.transaction is not None else "")
            for p in st.params:
                if p not in workload.params:
                    out.append(f"{where}: unknown param {p!r} (no [params.{p}])")
            n, why = placeholders(st.sql, dialect)
            if why:
                out.append(f"{where}: {why}")
            elif n != len(st.params):
                out.append(f"{where}: {n} placeholder(s) in the SQL but {len(st.params)} param(s) given")
    return out


def dialect_of(dsn: str | None) -> str:
    """The placeholder style a target takes: its DSN's scheme (the embedded default is PostgreSQL)."""
    return "snowflake" if dsn and dsn.split(":", 1)[0].lower().startswith("snowflake") else "postgresql"


# ---------------------------------------------------------------- [load]: the load model (README "Load models")


def _seconds(v: Any) -> Any:
    if isinstance(v, str):
        from spanbench.units import parse_duration

        return parse_duration(v)
    return v


class Stage(_Model):
    """One stage of a ramp: reach ``rate`` (open) or ``connections`` (closed) by its end, linearly."""

    duration: float = Field(gt=0)
    rate: float | None = Field(None, ge=0)
    connections: int | None = Field(None, ge=0, le=100_000)

    _duration = field_validator("duration", mode="before")(classmethod(lambda cls, v: _seconds(v)))


class Load(_Model):
    """The ``[load]`` table: how executions are offered to the target."""

    model: Literal["closed", "open", "find_max"] = "closed"
    # closed
    think_time: float = Field(0.0, ge=0, description="closed: pause between a connection's queries")
    stages: list[Stage] | None = Field(None, min_length=1, description="closed: connections over time; open: rate over time")
    # open
    rate: float | None = Field(None, gt=0, description="open: executions per second for the whole run")
    arrival: Literal["poisson", "uniform"] = "poisson"
    max_queue: int = Field(10_000, ge=0, le=10_000_000, description="open: arrivals waiting per worker; beyond: dropped")
    # find_max
    start: int = Field(4, gt=0, le=100_000)
    step: int = Field(4, gt=0, le=100_000)
    step_duration: float = Field(10.0, gt=0)
    max: int = Field(256, gt=0, le=100_000)
    stop_p95_growth: float = Field(0.20, gt=0)
    stop_qps_gain: float = Field(0.05, ge=0)
    stop_error_rate: float = Field(0.01, ge=0, le=1)

    _durations = field_validator("think_time", "step_duration", mode="before")(classmethod(lambda cls, v: _seconds(v)))

    @model_validator(mode="after")
    def _consistent(self) -> "Load":
        if self.model == "open":
            if self.rate is None and not self.stages:
                raise ValueError("load.model = \"open\" needs rate (or stages of rates)")
            for s in self.stages or []:
                if s.rate is None:
                    raise ValueError("open-model stages need a rate each")
        elif self.model == "closed":
            if self.rate is not None:
                raise ValueError("load.rate is for model = \"open\"")
            for s in self.stages or []:
                if s.connections is None:
                    raise ValueError("closed-model stages need connections each")
        else:
            if self.stages:
                raise ValueError("find_max takes no stages (start, step, max and step_duration make its steps)")
            if self.start > self.max:
                raise ValueError(f"load.start ({self.start}) is greater than load.max ({self.max})")
        return self

    def steps(self) -> list[int]:
        """find_max: total connections of each step."""
        out, c = [], self.start
        while c <= self.max:
            out.append(c)
            c += self.step
        return out
