"""Run settings: flags win over the scenario file, the file over ``SPANBENCH_*`` variables.

pydantic-settings reads the environment; the scenario file and the flags arrive as init
arguments (flags merged over the file), which pydantic-settings ranks above the
environment. Unknown keys are an error everywhere, never silently ignored; an unknown
``SPANBENCH_*`` variable is a warning naming the nearest setting.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from spanbench.errors import ConfigError
from spanbench.scenario import Load, Param, Query, Workload  # noqa: F401 - Workload: the property's type
from spanbench.units import format_duration, parse_duration

ENV_PREFIX = "SPANBENCH_"
# SPANBENCH_* variables spanbench reads that are not settings: never warned about.
NON_SETTING_VARIABLES = frozenset({
    "SPANBENCH_DEBUG",  # tracebacks for internal errors
    "SPANBENCH_RUN_DIR", "SPANBENCH_PARENT_PID", "SPANBENCH_LAUNCH_NS",  # set by the orchestrator for its workers
    "SPANBENCH_WORKER_LAUNCH",  # launcher.py: fork or exec the workers
    "SPANBENCH_REPLAY_DIR",  # docker-compose.yml: the collector's replay folder
})
_NON_SETTING_PREFIXES = ("SPANBENCH_TEST_",)  # the test suite's hooks

_DURATION_FIELDS = (
    "warmup", "duration", "cooldown", "slow_query_threshold", "connect_timeout",
    "statement_timeout", "start_timeout", "ready_timeout", "poll_interval",
    "heartbeat_interval", "orchestrator_timeout", "drain_timeout", "progress",
    "flush_interval", "reconnect_timeout",
)


class Settings(BaseSettings):
    """Everything a run needs. Field names are the scenario file's keys and the flags' names."""

    model_config = SettingsConfigDict(env_prefix="SPANBENCH_", extra="forbid", validate_default=True)

    # where
    target_dsn: str | None = Field(None, description="database under test; default: embedded PostgreSQL")
    control_dsn: str | None = Field(None, description="control tables; default: the target")
    embedded_dir: Path | None = Field(None, description="data folder of the embedded server; default: the user cache folder, spanbench/embedded-pg18")
    output: Path = Field(Path("spanbench-runs"), description="run folders go here")
    run_id: str | None = Field(None, description="this run's id; default: date, time and a random suffix")

    # load
    workers: int = Field(2, gt=0, le=1024, description="worker processes")
    launch_workers: bool = Field(True, description="start the workers here; false: wait for them to join")
    connections: int = Field(16, gt=0, le=100_000, description="total across workers")
    pool_batch_size: int = Field(8, gt=0, le=10_000, description="connections opened concurrently per batch")
    warmup: float = Field(2.0, ge=0, description="warmup, not measured")
    duration: float = Field(10.0, gt=0, description="measurement")
    cooldown: float = Field(0.0, ge=0, description="load after the measurement, not measured")
    rows: int = Field(100_000, gt=0, description="demo table size")
    update_share: float = Field(0.05, ge=0, le=1, description="share of queries that are updates")
    point_select_only: bool = Field(False, description="no updates, point selects only")
    load: Load = Field(default_factory=Load, description="default: closed loop; the [load] table of the scenario file: model (closed, open, find_max) and its keys (README \"Load models\")")

    # tracing
    tracing: bool | None = Field(None, description="default: on for the embedded target, off otherwise")
    query_sample_every: int = Field(1000, gt=0, description="1-in-N queries become a span")
    slow_query_threshold: float = Field(0.1, gt=0, description="queries slower than this become a span")
    pg_wire: bool = Field(True, description="PostgreSQL: the load's prepared statements spoken on the wire directly "
                                            "(asyncpg connects and prepares); false: asyncpg for every execution")
    query_span_cap: int = Field(1000, ge=0, description="most query spans per worker")
    query_span_budget: int = Field(2000, ge=0, description="most sampled query spans per run, split evenly across its workers (each also at most query_span_cap); a connection's first query has its span even past it")
    repeating_span_budget: int = Field(600, ge=0, description="routine heartbeat, control.poll and results.flush spans kept one by one per run and kind, split across workers (at least 2 each); past it, one summarising span per doubling window")
    progress: float | None = Field(None, ge=0, description="a plain progress line every this long (as pgbench's -P); 0: none; default: a live line on a terminal, else every 5s")

    # bounds
    connect_timeout: float = Field(10.0, gt=0, description="per connection attempt")
    statement_timeout: float = Field(30.0, gt=0, description="per statement")
    start_timeout: float = Field(120.0, gt=0, description="for a worker to see the START")
    ready_timeout: float = Field(120.0, gt=0, description="for every worker to be READY")
    poll_interval: float = Field(0.1, gt=0, description="control-table polls while waiting")
    heartbeat_interval: float = Field(1.0, gt=0, description="worker heartbeats")
    orchestrator_timeout: float = Field(5.0, gt=0, description="a worker stops its load when its orchestrator is silent this long")
    drain_timeout: float = Field(5.0, gt=0, description="for in-flight queries at the stop")
    max_consecutive_errors: int = Field(100, gt=0, description="a worker fails after this many errors in a row")
    flush_interval: float = Field(5.0, gt=0, description="workers save their histograms and counts this often: a worker that dies loses one interval at most")
    reconnect_timeout: float = Field(30.0, ge=0, description="a broken connection is re-opened with backoff for this long before the target counts as gone")
    on_worker_loss: Literal["fail", "continue"] = Field("fail", description="a worker lost mid-run: fail the run, or go on with the others")

    # snowflake
    use_cached_result: bool = Field(False, description="Snowflake: allow the result cache")
    warehouse_resume: bool = Field(False, description="Snowflake: resume the warehouse and wait for it before the pool init")
    server_timings: bool = Field(False, description="after the run, add Snowflake QUERY_HISTORY timings to the sampled query spans")

    # workload (README "Scenarios"); without queries, the run is the built-in demo
    version: int | None = Field(None, description="scenario format version: 1 (scenario files with queries)")
    queries: list[Query] | None = Field(None, description="[[queries]] of the scenario file; default: the built-in demo")
    params: dict[str, Param] = Field(default_factory=dict, description="[params.NAME] generators of the queries; default: none")
    init: bool = Field(False, description="create and fill the demo table before the run, as `spanbench init`")
    query_log: Literal["csv", "parquet"] | None = Field(None, description="a per-query log per worker in the run folder (as pgbench's -l): csv, or parquet with pyarrow")
    query_log_sample: float = Field(1.0, ge=0, le=1, description="share of queries in the query log")

    @field_validator(*_DURATION_FIELDS, mode="before")
    @classmethod
    def _durations(cls, v: Any, info: ValidationInfo) -> Any:
        if not isinstance(v, str):
            return v
        try:
            return parse_duration(v)
        except ConfigError as exc:
            raise ConfigError(f"invalid settings: {info.field_name}: {exc}") from None

    @model_validator(mode="after")
    def _every_worker_has_a_connection(self) -> "Settings":
        if self.connections < self.workers:
            raise ValueError(f"connections ({self.connections}) must be at least workers ({self.workers}): "
                             "every worker needs one")
        return self

    @model_validator(mode="after")
    def _workload(self) -> "Settings":
        # The scenario's queries, checked against the target's placeholder style.
        from spanbench.scenario import SCENARIO_VERSION, Workload, dialect_of, problems

        if self.queries is None:
            if self.params:
                raise ValueError("params without queries: add [[queries]] that use them")
            return self
        if self.version != SCENARIO_VERSION:
            raise ValueError(f"a scenario with queries needs version = {SCENARIO_VERSION}"
                             + (f" (got {self.version})" if self.version is not None else ""))
        if self.query_log == "parquet":
            import importlib.util

            if importlib.util.find_spec("pyarrow") is None:
                raise ValueError("query_log = \"parquet\" needs pyarrow (pip install pyarrow); csv needs nothing")
        found = problems(Workload(version=1, queries=self.queries, params=self.params), dialect_of(self.target_dsn))
        if found:
            raise ValueError("; ".join(found))
        return self

    @property
    def workload(self) -> "Workload | None":
        """The scenario's own queries, or None for the built-in demo."""
        from spanbench.scenario import Workload

        return None if self.queries is None else Workload(version=1, queries=self.queries, params=self.params)

    @property
    def tracing_enabled(self) -> bool:
        return self.target_dsn is None if self.tracing is None else self.tracing

    def public(self) -> dict[str, Any]:
        """The settings as stored in RUN_STATUS and results.json: no secret in them."""
        from spanbench.dsn import redact_dsn

        data = self.model_dump(mode="json")
        for key in ("target_dsn", "control_dsn"):
            if data.get(key):
                data[key] = redact_dsn(data[key])
        return data


def load_scenario(path: Path) -> dict[str, Any]:
    """Read a scenario TOML file into settings keys; unknown keys are an error."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"scenario file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read scenario file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"scenario file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(raw) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(f"scenario file {path}: unknown key(s) {', '.join(unknown)}")
    return raw


def build_settings(scenario: Path | None = None, **flags: Any) -> Settings:
    """Settings from flags (None means not given), the scenario file and the environment.

    (The OTLP protocol variables are checked by the CLI before any command that exports:
    settings sit below telemetry, and must not import it.)"""
    warn_unknown_variables()
    values: dict[str, Any] = load_scenario(scenario) if scenario else {}
    values.update({k: v for k, v in flags.items() if v is not None})
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown setting"
        value = err.get("input")
        shown = "" if isinstance(value, dict) or "dsn" in where else f" (got {value!r})"
        parts.append(f"{where}: {msg}{shown}")
    return "invalid settings: " + "; ".join(parts)


def setting_variable(name: str) -> str:
    """The environment variable of a setting: ``warmup`` -> ``SPANBENCH_WARMUP``."""
    return ENV_PREFIX + name.upper()


def unknown_variables(environ: dict[str, str] | None = None) -> list[tuple[str, str | None]]:
    """(variable, nearest known variable or None) for each ``SPANBENCH_*`` variable that nothing reads."""
    import difflib

    env = os.environ if environ is None else environ
    settings = {setting_variable(name) for name in Settings.model_fields}
    known = settings | NON_SETTING_VARIABLES
    out = []
    for var in sorted(env):
        upper = var.upper()  # pydantic-settings reads the variables case-insensitively
        if not upper.startswith(ENV_PREFIX) or upper in known or upper.startswith(_NON_SETTING_PREFIXES):
            continue
        # compare what follows the prefix, which every candidate shares
        near = difflib.get_close_matches(upper[len(ENV_PREFIX):], [k[len(ENV_PREFIX):] for k in sorted(known)],
                                         n=1, cutoff=0.6)
        out.append((var, ENV_PREFIX + near[0] if near else None))
    return out


_warned: set[str] = set()


def warn_unknown_variables() -> None:
    """One warning line on stderr per unknown ``SPANBENCH_*`` variable, once per process."""
    for var, near in unknown_variables():
        if var in _warned:
            continue
        _warned.add(var)
        hint = f"did you mean {near}?" if near else "`spanbench run --help` lists the settings"
        print(f"spanbench: warning: {var} is not a setting ({hint})", file=sys.stderr)


def _default_text(name: str) -> str:
    field = Settings.model_fields[name]
    value = field.default
    if name in _DURATION_FIELDS and isinstance(value, (int, float)):
        if value == 0:
            return "0s"
        return f"{value:g}s" if value >= 1 else format_duration(value).replace(".0ms", "ms")
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:_}".replace("_", "")
    return str(value)


SETTINGS_HELP_INTRO = (
    "Every option is also a scenario-file key (--pool-batch-size: pool_batch_size) and a variable "
    "SPANBENCH_<KEY>; flags win over the file, the file over the environment. Durations: 500ms, 2s, 1.5m, "
    "1m30s, 1h2m3.5s (units h, m, s, ms, us, ns), or bare seconds. README's \"run options\" tells more."
)
SETTINGS_HELP_TITLE = "Settings that are not flags (scenario key, variable)"


def settings_help_rows(flags: set[str] | frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """(``key, SPANBENCH_<KEY>``, ``default …; what it does``) for every setting that is not one of ``flags``.

    Built from the Settings model when help is shown, so ``run --help`` cannot fall behind it.
    """
    rows = []
    for name, field in Settings.model_fields.items():
        if name in flags:
            continue
        desc = field.description or ""
        if "default:" not in desc:
            desc = f"default {_default_text(name)}" + (f"; {desc}" if desc else "")
        rows.append((f"{name}, {setting_variable(name)}", desc))
    return rows


def settings_help(flags: set[str] | frozenset[str] = frozenset()) -> str:
    """The same as one text, a setting a line."""
    lines = [SETTINGS_HELP_INTRO, "", SETTINGS_HELP_TITLE + ":"]
    lines += [f"  {term}: {desc}" for term, desc in settings_help_rows(flags)]
    return "\n".join(lines)
