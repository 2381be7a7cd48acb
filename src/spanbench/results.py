"""The run's results from the workers' rows: histograms merged exactly, never "max of p99s"."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from spanbench.control.records import TestResult
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
    errors_by_class = merge_error_classes(rows)
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
            "load_cpu_s": r.details.get("load_cpu_s"),
            "cpu_us_per_query": _cpu_us_per_query([r]),
            "repeating_spans": r.details.get("repeating_spans", {}),
            "last_error": r.details.get("last_error"),
            "error": r.details.get("error"),
            # on the control store's clock, as every *_unix_ns here (control/clock.py)
            "clock": r.details.get("clock"),
            "measurement_window_unix_ns": _window(r, "MEASUREMENT"),
        }
        for r in rows
    ]
    out = {
        "timeline": run_timeline(rows, window_s=window_s),
        "measurement": {
            "seconds": seconds,
            "queries": queries,
            "errors": sum(r.errors for r in rows),
            "qps": qps,
            "latency": by_kind,
            "all": summarize(all_kinds).as_dict(),
            "errors_by_class": errors_by_class.get("MEASUREMENT", {}),
            # queries still running at the drain, in the histograms with their time so far
            "cut": sum(int(r.details.get("phases", {}).get("MEASUREMENT", {}).get("cut", 0) or 0) for r in rows),
            # the workers' CPU while the load ran over every execution they sent (all phases)
            "client_cpu_us_per_query": _cpu_us_per_query(rows),
        },
        "phases": phases,
        "workers": workers,
        "workers_expected": workers_expected,
        "histograms": {phase: {kind: encode(h) for kind, h in kinds.items()} for phase, kinds in merged.items()},
    }
    _merge_open(rows, out)
    return out


def _cpu_us_per_query(rows: list[TestResult]) -> float | None:
    """Client CPU (µs) per execution: the workers' process CPU during their load (every thread:
    the loop, flushes, the query log) over every execution they sent, in any phase."""
    cpu = executions = 0.0
    for r in rows:
        s = r.details.get("load_cpu_s")
        if s is None:
            return None  # a worker that did not say: no figure rather than a wrong one
        cpu += float(s)
        for p in (r.details.get("phases") or {}).values():
            executions += sum((p.get("queries") or {}).values()) + sum((p.get("errors") or {}).values())
    return round(cpu / executions * 1e6, 3) if executions else None


def _merge_open(rows: list[TestResult], out: dict[str, Any]) -> None:
    """The open model's service time and schedule lag, merged exactly as the latencies are
    (additive keys; a closed-loop run has none of them)."""
    opens = [r.details.get("open") for r in rows if r.details.get("open")]
    if not opens:
        return
    service: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    lag: dict[str, list[Any]] = defaultdict(list)
    dropped: dict[str, int] = defaultdict(int)
    for o in opens:
        for phase, kinds in (o.get("service") or {}).items():
            for kind, text in kinds.items():
                service[phase][kind].append(decode(text))
        for phase, text in (o.get("lag") or {}).items():
            lag[phase].append(decode(text))
        for phase, n in (o.get("dropped") or {}).items():
            dropped[phase] += int(n)
    m = out["measurement"]
    ms = {kind: merge(hs) for kind, hs in service.get("MEASUREMENT", {}).items()}
    m["service"] = {kind: summarize(h).as_dict() for kind, h in sorted(ms.items())}
    m["service_all"] = summarize(merge(ms.values())).as_dict()
    m["schedule_lag"] = summarize(merge(lag.get("MEASUREMENT", []))).as_dict()
    m["dropped"] = dropped.get("MEASUREMENT", 0)
    m["dropped_by_phase"] = dict(dropped)
    m["queued_at_stop"] = sum(int(o.get("queued_at_stop") or 0) for o in opens)
    out["open_histograms"] = {
        "service": {p: {k: encode(merge(hs)) for k, hs in kinds.items()} for p, kinds in service.items()},
        "schedule_lag": {p: encode(merge(hs)) for p, hs in lag.items()},
    }


def rate_shortfall(results: dict[str, Any], curve: Any, *, start_s: float, end_s: float,
                   tolerance: float = 0.02) -> dict[str, Any]:
    """Whether the open model met its target over the measurement [start_s, end_s) (seconds
    from the START), by how much it missed, and from which second it fell short."""
    m = results.get("measurement", {})
    seconds = float(m.get("seconds") or (end_s - start_s))
    target = curve.arrivals_between(start_s, end_s) / (end_s - start_s) if end_s > start_s else 0.0
    executions = int(m.get("queries") or 0) + int(m.get("errors") or 0)
    achieved = executions / seconds if seconds > 0 else 0.0
    short = target > 0 and achieved < target * (1 - tolerance)
    since = None
    for b in results.get("timeline", []):
        t = b["t_s"]
        if not (start_s <= t < end_s) or t + 1 > end_s:
            continue
        planned = curve.arrivals_between(t, t + 1)
        if planned > 0 and b["qps"] + b.get("errors_per_s", 0.0) < planned * 0.95:
            since = t
            break
    return {
        "target_qps": target, "achieved_qps": achieved,
        "met": not short,
        "shortfall_qps": max(0.0, target - achieved) if short else 0.0,
        "shortfall_share": (max(0.0, target - achieved) / target if short else 0.0),
        "from_s": since if short else None,
        "dropped": int(m.get("dropped") or 0),
    }


def merge_error_classes(rows: list[TestResult]) -> dict[str, dict[str, dict[str, int]]]:
    """{phase: {kind: {error class: count}}} summed over the workers' TEST_RESULTS details.

    The class is PostgreSQL's SQLSTATE class (``40``: serialization failure, ``23``: integrity
    violation), Snowflake's error code, or the exception type for client-side failures.
    """
    out: dict[str, dict[str, dict[str, int]]] = {}
    for row in rows:
        for phase, kinds in (row.details.get("errors_by_class") or {}).items():
            for kind, classes in kinds.items():
                slot = out.setdefault(phase, {}).setdefault(kind, {})
                for cls, n in classes.items():
                    slot[cls] = slot.get(cls, 0) + int(n)
    return out


def _kind_qps(row: TestResult, kind: str) -> float:
    seconds = row.measurement_seconds
    n = row.details.get("phases", {}).get("MEASUREMENT", {}).get("queries", {}).get(kind, 0)
    return n / seconds if seconds > 0 else 0.0


def _window(row: TestResult, phase: str) -> list[int | None] | None:
    """[entered, left] of ``phase`` in that worker, when its row says (rows from before clocks do not)."""
    data = (row.details.get("phases") or {}).get(phase) or {}
    if data.get("entered_unix_ns") is None:
        return None
    return [data.get("entered_unix_ns"), data.get("left_unix_ns")]


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
    """A run folder's results.json, read through the typed model (results_file.py), as a dict;
    None when it has none; ConfigError when it is unreadable or not a results file."""
    from spanbench.results_file import read_results_model

    model = read_results_model(run_dir)
    return None if model is None else model.model_dump(mode="json")


# ---------------------------------------------------------------- rows from everywhere, stalls


def pick_worker_rows(control_rows: list[TestResult], local_rows: list[TestResult]) -> list[TestResult]:
    """One row per worker: a final row beats a flush, a newer flush an older one.

    The control store's rows and the run folder's copies (results-w*.json) hold the same
    thing when all went well; when the store was unreachable at the end, or a worker died
    between two flushes, the other source may hold the newer figures. Each row chosen says
    where it came from in ``details["source"]``.
    """
    best: dict[str, TestResult] = {}

    def rank(r: TestResult) -> tuple[int, int]:
        return (0 if r.details.get("partial") else 1, int(r.details.get("saved_unix_ns") or 0))

    for source, rows in (("control store", control_rows), ("run folder", local_rows)):
        for r in rows:
            if r.scope != "WORKER":
                continue
            r.details.setdefault("source", source)
            have = best.get(r.worker_id)
            if have is None or rank(r) > rank(have):
                best[r.worker_id] = r
    return [best[w] for w in sorted(best)]


def read_local_rows(run_dir: Path) -> list[TestResult]:
    """The workers' own copies of their latest rows in the run folder (unreadable ones skipped)."""
    from datetime import datetime

    out = []
    for path in sorted(run_dir.glob("results-w*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            for key in ("started_at", "ended_at"):
                if data.get(key):
                    data[key] = datetime.fromisoformat(data[key])
            out.append(TestResult(**data))
        except (OSError, ValueError, TypeError):
            continue
    return out


def find_stalls(timeline: list[dict[str, float]], *, start_s: float, end_s: float, floor_share: float = 0.1) -> list[dict[str, Any]]:
    """Seconds of the window [start_s, end_s) whose throughput fell below a tenth of the
    window's median, and seconds with errors, each run of them as one stall."""
    buckets = [b for b in timeline if start_s <= b["t_s"] < end_s]
    if not buckets:
        return []
    rates = sorted(b["qps"] for b in buckets)
    median = rates[len(rates) // 2] if len(rates) % 2 else (rates[len(rates) // 2 - 1] + rates[len(rates) // 2]) / 2
    floor = median * floor_share
    stalls: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for b in buckets:
        slow = b["qps"] < floor
        erred = b.get("errors_per_s", 0.0) >= 0.5
        if slow or erred:
            if current is None:
                current = {"start_s": b["t_s"], "seconds": 0.0, "min_qps": b["qps"], "errors": 0.0,
                           "kind": set(), "median_qps": median}
                stalls.append(current)
            current["seconds"] += 1.0
            current["min_qps"] = min(current["min_qps"], b["qps"])
            current["errors"] += b.get("errors_per_s", 0.0)
            current["kind"].add("throughput" if slow else "errors")
        else:
            current = None
    for st in stalls:
        st["kind"] = "+".join(sorted(st["kind"]))
        st["errors"] = round(st["errors"])
    return stalls


async def finalize_abandoned(control: Any, run_id: str, run_dir: Path | None, settings: Any, *, reason: str) -> None:
    """An abandoned run's RUN row and results.json, written by the worker that marked it.

    The other workers noticed the loss at about the same time; their final rows are waited
    for a little (bounded), then whatever is there is merged, the missing called partial.
    """
    import asyncio
    from datetime import datetime, timezone

    deadline = asyncio.get_running_loop().time() + settings.drain_timeout + settings.heartbeat_interval
    rows: list[TestResult] = []
    while True:
        rows = [r for r in await control.fetch_test_results(run_id) if r.scope == "WORKER"]
        done = len(rows) >= settings.workers and not any(r.details.get("partial") or r.status == "RUNNING" for r in rows)
        if done or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.2)
    local = read_local_rows(run_dir) if run_dir is not None else []
    rows = pick_worker_rows(rows, local)
    window = settings.warmup + settings.duration + settings.cooldown
    merged = merge_results(rows, settings.workers, window_s=window)
    missing = sorted({f"w{g}" for g in range(settings.workers)} - {r.worker_id for r in rows})
    partial = sorted(set(missing) | {r.worker_id for r in rows if r.details.get("partial")})
    merged["partial"] = {"workers": partial, "seconds_missing": {w: None for w in partial}} if partial else None
    m = merged["measurement"]
    await control.insert_test_result(TestResult(
        run_id=run_id, worker_id="run", scope="RUN", status="ABANDONED", ended_at=datetime.now(timezone.utc),
        queries=m["queries"], errors=m["errors"], qps=m["qps"], measurement_seconds=m["seconds"], latency=m["latency"],
        histograms=merged["histograms"], details={"workers": merged["workers"], "partial": merged["partial"], "reason": reason},
    ))
    if run_dir is not None and not (run_dir / "results.json").exists():
        from spanbench.results_file import write_results_file

        write_results_file(run_dir, {"run_id": run_id, "status": "ABANDONED", "reason": reason,
                                     "settings": settings.public(), **merged, "written_by": reason.split(":")[0]})
