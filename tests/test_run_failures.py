"""When something breaks mid-run: the run is marked, the load stops, nothing measured is lost."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil

from conftest import spanbench_env
from support.faults import fetch


def start_run(dsn: str, output: Path, *extra: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "spanbench", "run", "--target-dsn", dsn, "--workers", "2", "--connections", "4",
           "--warmup", "0.2s", "--duration", "60s", "--output", str(output), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=spanbench_env(SPANBENCH_TRACING="1"), stdin=subprocess.DEVNULL)


def run_id_of(output: Path, deadline: float) -> str:
    while time.monotonic() < deadline:
        dirs = [d.name for d in output.iterdir()] if output.exists() else []
        if dirs:
            return dirs[0]
        time.sleep(0.05)
    raise AssertionError("no run folder appeared")


query = fetch  # one helper for a look at the control tables (support/faults.py)


def wait_running(dsn: str, run_id: str, deadline: float) -> dict[str, int]:
    """Worker pids once every worker is RUNNING and has done some queries."""
    while time.monotonic() < deadline:
        try:
            rows = asyncio.run(query(dsn, "SELECT worker_id, pid, status, queries FROM spanbench.worker_heartbeats"
                                          " WHERE run_id = $1", run_id))
        except asyncpg.UndefinedTableError:  # the orchestrator has not created the schema yet
            rows = []
        if len(rows) == 2 and all(r["status"] == "RUNNING" and r["queries"] > 0 for r in rows):
            return {r["worker_id"]: r["pid"] for r in rows}
        time.sleep(0.1)
    raise AssertionError("workers never reached RUNNING")


@contextlib.contextmanager
def running(dsn: str, out: Path) -> Iterator[tuple[subprocess.Popen[str], str, dict[str, int]]]:
    """A 60 s run, once both workers are RUNNING: (orchestrator, run id, worker pids). Nothing outlives it."""
    proc = start_run(dsn, out)
    pids: dict[str, int] = {}
    try:
        run_id = run_id_of(out, time.monotonic() + 30)
        pids = wait_running(dsn, run_id, time.monotonic() + 60)
        yield proc, run_id, pids
    finally:
        for p in [proc.pid, *pids.values()]:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(p).kill()


def test_worker_killed_marks_run_failed_and_keeps_results(pg_dsn: str, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    with running(pg_dsn, out) as (proc, run_id, pids):
        os.kill(pids["w1"], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert "worker w1" in lines[0]

    status = asyncio.run(query(pg_dsn, "SELECT status, cancel_reason FROM spanbench.run_status WHERE run_id = $1", run_id))
    assert status[0]["status"] == "FAILED"
    assert "w1" in status[0]["cancel_reason"]

    # The surviving worker was stopped (not left running for the 60 s) and its results persisted.
    assert not psutil.pid_exists(pids["w0"]) or psutil.Process(pids["w0"]).status() == psutil.STATUS_ZOMBIE
    results = json.loads((out / run_id / "results.json").read_text())
    assert results["status"] == "FAILED" and "w1" in results["reason"]
    w0 = [w for w in results["workers"] if w["worker_id"] == "w0"]
    assert w0 and w0[0]["queries"] > 0
    rows = asyncio.run(query(pg_dsn, "SELECT worker_id, queries FROM spanbench.test_results WHERE run_id = $1", run_id))
    assert {r["worker_id"] for r in rows} >= {"w0"}


def test_workers_stop_when_orchestrator_dies(pg_dsn: str, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    with running(pg_dsn, out) as (proc, run_id, pids):
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_at = time.monotonic()
        gone, alive = psutil.wait_procs([psutil.Process(p) for p in pids.values()], timeout=15)
        stopped_in = time.monotonic() - killed_at
    assert not alive, f"workers still running {stopped_in:.1f}s after the orchestrator died"
    assert stopped_in < 10
    beats = asyncio.run(query(pg_dsn, "SELECT worker_id, status, last_error FROM spanbench.worker_heartbeats"
                                      " WHERE run_id = $1", run_id))
    assert {b["status"] for b in beats} == {"ABANDONED"}
    rows = asyncio.run(query(pg_dsn, "SELECT worker_id, queries, details FROM spanbench.test_results WHERE run_id = $1"
                                     " AND scope = 'WORKER'", run_id))
    assert len(rows) == 2
    for r in rows:
        assert json.loads(r["details"])["stop_reason"].startswith("lost orchestrator")


def test_interrupt_cancels_the_run_and_keeps_results(pg_dsn: str, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    with running(pg_dsn, out) as (proc, run_id, pids):
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "cancelled" in lines[0] and "Traceback" not in stderr, stderr
    status = asyncio.run(query(pg_dsn, "SELECT status FROM spanbench.run_status WHERE run_id = $1", run_id))
    assert status[0]["status"] == "CANCELLED"
    results = json.loads((out / run_id / "results.json").read_text())
    assert results["status"] == "CANCELLED"
    assert sorted(w["worker_id"] for w in results["workers"]) == ["w0", "w1"]
    assert all(w["queries"] > 0 for w in results["workers"])  # measured before the stop: kept
    for pid in pids.values():
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
