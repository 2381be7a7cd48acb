"""The run's results from the workers' rows: histograms merged exactly, never "max of p99s"."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from spanbench.control.records import TestResult
from spanbench.errors import ConfigError
from spanbench.stats import decode, encode, merge, summarize


def merge_results(rows: list[TestResult], workers_expected: int, window_s: float | None = None) -> dict[str, Any]:
    """Merge per-worker TEST_RESULTS rows into the run's figures (what results.json holds)."""
    by_phase: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        for phase, kinds in (row.histograms or {}).items():
            for kind, text in kinds.items():
                by_phase[phase][kind].append(decode(text))
    merged = {phase: {kind: merge(hs) for kind, hs in kinds.items()} for phase, kinds in by_phase.items()}

    def errors_of(phase: str) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for row in rows:
            for kind, n in (row.details.get("phases", {}).get(phase, {}).get("errors", {}) or {}).items():
                out[kind] += int(n)
        return dict(out)

    phases: dict[str, Any] = {}
    for phase in ("WARMUP", "MEASUREMENT", "COOLDOWN"):
        errs = errors_of(phase)
        kinds = sorted(set(merged.get(phase, {})) | set(errs))
        phases[phase] = {
            kind: {**summarize(merged.get(phase, {}).get(kind) or merge([])).as_dict(), "errors": errs.get(kind, 0)}
            for kind in kinds
        }

    seconds = max((r.measurement_seconds for r in rows), default=0.0)
    qps = sum(r.qps for r in rows)
    queries = sum(r.queries for r in rows)
    meas = phases["MEASUREMENT"]
    by_kind = {
        kind: {**v, "qps": sum(_kind_qps(r, kind) for r in rows)} for kind, v in meas.items()
    }
    all_kinds = merge(merged.get("MEASUREMENT", {}).values())
    workers = [
        {
            "worker_id": r.worker_id,
            "status": r.status,
            "queries": r.queries,
            "errors": r.errors,
            "qps": r.qps,
            "measurement_seconds": r.measurement_seconds,
            "latency": r.latency,
            "first_query_unix_ns": r.details.get("first_query_unix_ns"),
            "start_unix_ns": r.details.get("start_unix_ns"),
            "start_to_first_query_ms": _start_to_first_ms(r),
            "connections": r.details.get("connections"),
            "stop_reason": r.details.get("stop_reason"),
            "query_spans_skipped": r.details.get("query_spans_skipped", 0),
            "last_error": r.details.get("last_error"),
            "error": r.details.get("error"),
        }
        for r in rows
    ]
    return {
        "timeline": run_timeline(rows, window_s=window_s),
        "measurement": {
            "seconds": seconds,
            "queries": queries,
            "errors": sum(r.errors for r in rows),
            "qps": qps,
            "latency": by_kind,
            "all": summarize(all_kinds).as_dict(),
        },
        "phases": phases,
        "workers": workers,
        "workers_expected": workers_expected,
        "histograms": {phase: {kind: encode(h) for kind, h in kinds.items()} for phase, kinds in merged.items()},
    }


def _kind_qps(row: TestResult, kind: str) -> float:
    seconds = row.measurement_seconds
    n = row.details.get("phases", {}).get("MEASUREMENT", {}).get("queries", {}).get(kind, 0)
    return n / seconds if seconds > 0 else 0.0


def _start_to_first_ms(row: TestResult) -> float | None:
    start, first = row.details.get("start_unix_ns"), row.details.get("first_query_unix_ns")
    if start is None or first is None:
        return None
    return (int(first) - int(start)) / 1e6


def run_timeline(rows: list[TestResult], step_s: float = 1.0, window_s: float | None = None) -> list[dict[str, float]]:
    """Throughput over time, summed across workers, in ``step_s`` buckets from the START.

    Buckets that begin after ``window_s`` (the scheduled end of the load) are left out:
    they hold only the drain, whose few queries would read as a collapse of throughput.

    Each worker samples its cumulative counts every half second; a worker's rate between
    two samples is spread evenly over that interval, so buckets need no alignment.
    """
    starts = [int(r.details["start_unix_ns"]) for r in rows if r.details.get("start_unix_ns")]
    if not starts:
        return []
    t0 = min(starts)
    step = int(step_s * 1e9)
    queries: dict[int, float] = defaultdict(float)
    errors: dict[int, float] = defaultdict(float)
    for r in rows:
        samples = [(int(t), int(q), int(e)) for t, q, e in r.details.get("timeline") or []]
        for (ta, qa, ea), (tb, qb, eb) in zip(samples, samples[1:]):
            if tb <= ta:
                continue
            # split [ta, tb) over the buckets it covers, in proportion to the overlap
            t = ta
            while t < tb:
                k = (t - t0) // step
                edge = min(tb, t0 + (k + 1) * step)
                share = (edge - t) / (tb - ta)
                queries[k] += (qb - qa) * share
                errors[k] += (eb - ea) * share
                t = edge
    last = max(queries, default=-1)
    if window_s is not None:
        last = min(last, math.ceil(window_s / step_s) - 1)
    return [
        {"t_s": k * step_s, "qps": queries.get(k, 0.0) / step_s, "errors_per_s": errors.get(k, 0.0) / step_s}
        for k in range(0, last + 1)
    ]


def read_results_file(run_dir: Path) -> dict[str, Any] | None:
    """A run folder's results.json, or None when it has none; ConfigError when it is unreadable."""
    path = run_dir / "results.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"cannot read {path}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a results object")
    return data
