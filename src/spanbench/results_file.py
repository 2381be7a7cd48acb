"""results.json as a typed, versioned model: one writer, and the readers of report, diff, runs.

The keys users already read stay where they were (``measurement.{seconds,queries,errors,qps}``,
``measurement.latency.<kind>`` percentiles, ``phases.<PHASE>.<kind>.{count,errors}``);
``version`` says which shape a file has. Sections a run may not have (a trace's gaps, a
find-max curve, stalls) are optional; keys this version does not know are kept as they are,
so a newer file read by an older spanbench loses nothing.

Version history:
  1  the first typed version: run, status, reason, settings, measurement, phases, workers,
     timeline, histograms, stalls, partial, sources, warnings, spans, gaps.
     Also optional: ``clock`` and ``measurement_window_unix_ns``, the orchestrator's and each
     worker's (offset against the control store's clock; the window on that clock).
     Later additions, optional (files without them still read, older readers keep them):
     spanbench_version, scenario {hash, kind, queries}, target {system, server, version},
     what ``spanbench diff`` checks two runs' comparability on (spanbench.run_identity).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from spanbench.errors import ConfigError

VERSION = 1


class _Open(BaseModel):
    # Unknown keys kept: a section may grow (a newer writer, another load model) without
    # an older reader throwing it away.
    model_config = ConfigDict(extra="allow")


class Latency(_Open):
    count: int = 0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    p999_ms: float = 0.0
    max_ms: float = 0.0
    mean_ms: float = 0.0


class KindLatency(Latency):
    errors: int = 0
    qps: float = 0.0


class Measurement(_Open):
    seconds: float = 0.0
    queries: int = 0
    errors: int = 0
    qps: float = 0.0
    latency: dict[str, KindLatency] = Field(default_factory=dict)
    all: Latency = Field(default_factory=Latency)
    errors_by_class: dict[str, dict[str, int]] = Field(default_factory=dict)
    cut: int = 0  # queries still running at the drain, in the histograms with their time so far


class PhaseKind(Latency):
    errors: int = 0


class Clock(_Open):
    """A process's clock against the control store's: offset = store − local (control/clock.py)."""

    offset_ms: float = 0.0
    uncertainty_ms: float = 0.0  # half the round trip the offset was read in
    rtt_ms: float = 0.0
    samples: int = 0  # round trips made; 0: never measured (offset taken as 0)
    applied: bool = False  # whether the offset exceeded its uncertainty, so instants were converted by it


class Worker(_Open):
    worker_id: str
    status: str | None = None
    queries: int = 0
    errors: int = 0
    qps: float = 0.0
    measurement_seconds: float = 0.0
    start_to_first_query_ms: float | None = None
    connections: int | None = None
    stop_reason: str | None = None
    error: str | None = None
    clock: Clock | None = None
    measurement_window_unix_ns: list[int | None] | None = None  # [entered, left], the store's clock


class Stall(_Open):
    start_s: float
    seconds: float
    min_qps: float
    median_qps: float | None = None
    errors: int = 0
    kind: str = "throughput"


class Partial(_Open):
    workers: list[str]
    seconds_missing: dict[str, float | None] = Field(default_factory=dict)


class ScenarioId(_Open):
    hash: str  # of the workload settings: equal hashes, the same queries and parameters
    kind: str | None = None  # "demo" or "scenario"
    queries: list[str | None] | None = None


class TargetId(_Open):
    system: str | None = None  # "postgresql" | "snowflake"
    server: str | None = None  # host:port/database, "embedded"; never a credential
    version: str | None = None  # the server's own version string, when it could be read


class Results(_Open):
    version: int = VERSION
    run_id: str
    status: str
    reason: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    measurement: Measurement = Field(default_factory=Measurement)
    phases: dict[str, dict[str, PhaseKind]] = Field(default_factory=dict)
    workers: list[Worker] = Field(default_factory=list)
    workers_expected: int | None = None
    timeline: list[dict[str, float]] = Field(default_factory=list)
    histograms: dict[str, dict[str, str]] = Field(default_factory=dict)
    stalls: list[Stall] = Field(default_factory=list)
    partial: Partial | None = None
    sources: dict[str, str | None] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    spans: dict[str, Any] | None = None
    gaps: dict[str, Any] | None = None
    clock: Clock | None = None  # the orchestrator's
    measurement_window_unix_ns: list[int] | None = None  # the orchestrator's [begin, end], the store's clock
    spanbench_version: str | None = None
    scenario: ScenarioId | None = None
    target: TargetId | None = None


def write_results_file(run_dir: Path, data: dict[str, Any]) -> Results:
    """The one writer of results.json: validated against the model, replaced atomically."""
    model = Results.model_validate({**data, "version": VERSION})
    path = run_dir / "results.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(model.model_dump(mode="json"), indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)
    return model


def read_results_model(run_dir: Path) -> Results | None:
    """A run folder's results.json as the model, or None when it has none; ConfigError when bad."""
    path = run_dir / "results.json"
    if not path.is_file():
        return None
    return read_results_json(path)


def read_results_json(path: Path) -> Results:
    """A results.json file by its own path (e.g. a baseline kept apart from its run folder)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"cannot read {path}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a results object")
    version = data.get("version", VERSION)  # files from before version 1 have the same shape
    if not isinstance(version, int) or version > VERSION:
        raise ConfigError(f"{path} is results.json version {version}; this spanbench reads up to {VERSION}")
    try:
        return Results.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ConfigError(f"{path} is not a results.json spanbench reads: {where}: {first.get('msg')}") from None
