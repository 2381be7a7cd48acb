"""Run settings: flags win over the scenario file, the file over ``SPANBENCH_*`` variables.

pydantic-settings reads the environment; the scenario file and the flags arrive as init
arguments (flags merged over the file), which pydantic-settings ranks above the
environment. Unknown keys are an error everywhere, never silently ignored.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from spanbench.errors import ConfigError
from spanbench.units import parse_duration

_DURATION_FIELDS = (
    "warmup", "duration", "cooldown", "slow_query_threshold", "connect_timeout",
    "statement_timeout", "start_timeout", "ready_timeout", "poll_interval",
    "heartbeat_interval", "orchestrator_timeout", "drain_timeout",
)


class Settings(BaseSettings):
    """Everything a run needs. Field names are the scenario file's keys and the flags' names."""

    model_config = SettingsConfigDict(env_prefix="SPANBENCH_", extra="forbid", validate_default=True)

    # where
    target_dsn: str | None = Field(None, description="database under test; none: embedded PostgreSQL")
    control_dsn: str | None = Field(None, description="control tables; none: the target")
    embedded_dir: Path | None = Field(None, description="data folder of the embedded server")
    output: Path = Field(Path("spanbench-runs"), description="run folders go here")
    run_id: str | None = None

    # load
    workers: int = Field(2, gt=0, le=1024)
    launch_workers: bool = Field(True, description="start the workers here; false: wait for them to join")
    connections: int = Field(16, gt=0, le=100_000, description="total across workers")
    pool_batch_size: int = Field(8, gt=0, le=10_000)
    warmup: float = Field(2.0, ge=0)
    duration: float = Field(10.0, gt=0)
    cooldown: float = Field(0.0, ge=0)
    rows: int = Field(100_000, gt=0, description="demo table size")
    update_share: float = Field(0.05, ge=0, le=1, description="share of queries that are updates")
    point_select_only: bool = False

    # tracing
    tracing: bool | None = Field(None, description="default: on for the embedded target, off otherwise")
    query_sample_every: int = Field(1000, gt=0, description="1-in-N queries become a span")
    slow_query_threshold: float = Field(0.1, gt=0)
    query_span_cap: int = Field(1000, ge=0, description="most query spans per worker")

    # bounds
    connect_timeout: float = Field(10.0, gt=0)
    statement_timeout: float = Field(30.0, gt=0)
    start_timeout: float = Field(120.0, gt=0)
    ready_timeout: float = Field(120.0, gt=0)
    poll_interval: float = Field(0.1, gt=0)
    heartbeat_interval: float = Field(1.0, gt=0)
    orchestrator_timeout: float = Field(5.0, gt=0)
    drain_timeout: float = Field(5.0, gt=0)
    max_consecutive_errors: int = Field(100, gt=0)

    # snowflake
    use_cached_result: bool = False
    warehouse_resume: bool = False
    server_timings: bool = Field(False, description="after the run, add Snowflake QUERY_HISTORY timings to the sampled query spans")

    @field_validator(*_DURATION_FIELDS, mode="before")
    @classmethod
    def _durations(cls, v: Any) -> Any:
        return parse_duration(v) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _every_worker_has_a_connection(self) -> "Settings":
        if self.connections < self.workers:
            raise ValueError(f"connections ({self.connections}) must be at least workers ({self.workers}): "
                             "every worker needs one")
        return self

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
    """Settings from flags (None means not given), the scenario file and the environment."""
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
