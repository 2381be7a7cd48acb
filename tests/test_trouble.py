"""Truth under trouble: real faults mid-run, and what the run says afterwards.

Each test causes its fault for real (the server restarted or stopped with its own pg_ctl, a
lock held from another connection, a process SIGKILLed) and then checks the control tables,
results.json and the trace: what was measured before the fault is there, the status and the
reason are right, and nothing is left running.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from conftest import run_cli, spanbench_env
from support.faults import FaultServer, HeldLock, queries_so_far, rows, start_run, wait_for
from support.traces import Tree, read_spans


@pytest.fixture(scope="module")
def fault_pg() -> Iterator[FaultServer]:
    """A server of this module's own, filled with the demo table: these tests restart and stop it."""
    import asyncio

    from spanbench.settings import Settings
    from spanbench.workload.init import init_demo

    server = FaultServer()
    asyncio.run(init_demo(Settings(target_dsn=server.dsn, rows=20_000)))
    rows(server.dsn, "ALTER SYSTEM SET synchronous_commit = off")
    rows(server.dsn, "SELECT pg_reload_conf()")
    yield server
    server.close()


def _env(**extra: str) -> dict[str, str]:
    return spanbench_env(SPANBENCH_TRACING="1", SPANBENCH_PROGRESS="0", **extra)


def _results(out: Path, run_id: str) -> dict:
    return json.loads((out / run_id / "results.json").read_text())


def _one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith("progress:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@contextlib.contextmanager
def _no_leftovers(*procs: psutil.Popen | object) -> Iterator[None]:
    try:
        yield
    finally:
        for p in procs:
            with contextlib.suppress(Exception):
                p.kill()  # type: ignore[attr-defined]


def _running_run(args: list[str], control_dsn: str, env: dict[str, str]) -> tuple[object, str, None]:
    """A run started as a subprocess, once its workers have queries on record."""
    run_id = "trouble-" + secrets.token_hex(4)
    env = {**env, "SPANBENCH_RUN_ID": run_id}
    proc = start_run(args, env)
    try:
        wait_for("queries on record", lambda: queries_so_far(control_dsn, run_id) > 200, timeout=60)
    except BaseException:
        proc.kill()
        raise
    return proc, run_id, None


def _children_of(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).children(recursive=True)
    return []


# ------------------------------------------------------------------ the server restarts


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_restart_of_target_and_control_store(fault_pg: FaultServer, tmp_path: Path, mode: str) -> None:
    out = tmp_path / "runs"
    args = ["--target-dsn", fault_pg.dsn, "--workers", "2", "--connections", "4", "--warmup", "0.3s",
            "--duration", "6s", "--output", str(out)]
    proc, run_id, _ = _running_run(args, fault_pg.dsn, _env(SPANBENCH_RECONNECT_TIMEOUT="20s",
                                                            SPANBENCH_FLUSH_INTERVAL="0.5s"))
    with _no_leftovers(proc):
        before = queries_so_far(fault_pg.dsn, run_id)
        fault_pg.restart(mode)
        stdout, stderr = proc.communicate(timeout=90)  # type: ignore[attr-defined]
    # the run rode it out, and says it was not clean
    assert proc.returncode == 4, stderr  # type: ignore[attr-defined]
    assert "completed with errors" in _one_error_line(stderr)
    results = _results(out, run_id)
    assert results["status"] == "COMPLETED_WITH_ERRORS"
    assert results["measurement"]["queries"] >= before * 0.5  # measured before the restart: kept
    status = rows(fault_pg.dsn, "SELECT status, cancel_reason FROM spanbench.run_status WHERE run_id = $1", run_id)
    assert status[0]["status"] == "COMPLETED_WITH_ERRORS" and status[0]["cancel_reason"]
    got = rows(fault_pg.dsn, "SELECT worker_id, scope, status, queries FROM spanbench.test_results WHERE run_id = $1",
               run_id)
    assert {r["worker_id"] for r in got} == {"w0", "w1", "run"}
    assert all(r["status"] != "RUNNING" for r in got)
    # the load came back: queries were done after the reconnects, and each reconnect is a span
    tree = Tree(read_spans(out / run_id))
    reconnects = tree.named("pool.reconnect")
    assert reconnects and all(r.attrs["reconnect.outcome"] == "reconnected" for r in reconnects)
    last = max(r.end for r in reconnects)
    timeline = results["timeline"]
    t0 = min(w["start_unix_ns"] for w in results["workers"])
    after = [b for b in timeline if t0 + b["t_s"] * 1e9 > last + 1e9]
    assert after and max(b["qps"] for b in after) > 0


def test_restart_of_the_target_only(fault_pg: FaultServer, pg_dsn: str, tmp_path: Path) -> None:
    """Control store elsewhere: the workers reconnect to the target, and the run is not clean."""
    out = tmp_path / "runs"
    args = ["--target-dsn", fault_pg.dsn, "--control-dsn", pg_dsn, "--workers", "2", "--connections", "4",
            "--warmup", "0.3s", "--duration", "6s", "--output", str(out)]
    proc, run_id, _ = _running_run(args, pg_dsn, _env(SPANBENCH_RECONNECT_TIMEOUT="20s"))
    with _no_leftovers(proc):
        fault_pg.restart("fast")
        stdout, stderr = proc.communicate(timeout=90)  # type: ignore[attr-defined]
    assert proc.returncode == 4, stderr  # type: ignore[attr-defined]
    results = _results(out, run_id)
    assert results["status"] == "COMPLETED_WITH_ERRORS"
    assert results["measurement"]["errors"] > 0
    assert any(cls for kinds in (results["measurement"].get("errors_by_class") or {}).values() for cls in kinds)
    status = rows(pg_dsn, "SELECT status FROM spanbench.run_status WHERE run_id = $1", run_id)
    assert status[0]["status"] == "COMPLETED_WITH_ERRORS"


def test_open_model_rides_out_a_restart_of_the_target(fault_pg: FaultServer, pg_dsn: str, tmp_path: Path) -> None:
    """The open model's connections reconnect too; the arrivals that waited out the restart
    carry the outage in their latency (from the intended start), not in their service time."""
    out = tmp_path / "runs"
    scenario = tmp_path / "open.toml"
    scenario.write_text('[load]\nmodel = "open"\nrate = 400\narrival = "uniform"\nmax_queue = 100000\n')
    args = [str(scenario), "--target-dsn", fault_pg.dsn, "--control-dsn", pg_dsn, "--workers", "2",
            "--connections", "4", "--warmup", "0.3s", "--duration", "6s", "--output", str(out)]
    proc, run_id, _ = _running_run(args, pg_dsn, _env(SPANBENCH_RECONNECT_TIMEOUT="20s"))
    with _no_leftovers(proc):
        fault_pg.restart("fast")
        stdout, stderr = proc.communicate(timeout=90)  # type: ignore[attr-defined]
    assert proc.returncode == 4, stderr  # type: ignore[attr-defined]
    results = _results(out, run_id)
    assert results["status"] == "COMPLETED_WITH_ERRORS"
    m = results["measurement"]
    assert m["errors"] > 0
    tree = Tree(read_spans(out / run_id))
    reconnects = tree.named("pool.reconnect")
    assert reconnects and all(r.attrs["reconnect.outcome"] == "reconnected" for r in reconnects)
    # the load came back after the last reconnect
    last = max(r.end for r in reconnects)
    t0 = min(w["start_unix_ns"] for w in results["workers"])
    assert max(b["qps"] for b in results["timeline"] if t0 + b["t_s"] * 1e9 > last + 1e9) > 0
    # an arrival due while its connection was re-opening waited for it: its latency holds the
    # reconnect's time, its service time (send -> end) does not
    outage_ms = max(r.end - r.start for r in reconnects) / 1e6
    assert m["all"]["max_ms"] >= 0.5 * outage_ms, (m["all"], outage_ms)
    assert m["service_all"]["p50_ms"] < 0.5 * outage_ms, (m["service_all"], outage_ms)


def test_target_that_goes_away_says_so_once(fault_pg: FaultServer, pg_dsn: str, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    args = ["--target-dsn", fault_pg.dsn, "--control-dsn", pg_dsn, "--workers", "2", "--connections", "4",
            "--warmup", "0.3s", "--duration", "30s", "--output", str(out)]
    proc, run_id, _ = _running_run(args, pg_dsn, _env(SPANBENCH_RECONNECT_TIMEOUT="2s"))
    try:
        with _no_leftovers(proc):
            before = queries_so_far(pg_dsn, run_id)
            fault_pg.stop("fast")
            stdout, stderr = proc.communicate(timeout=60)  # type: ignore[attr-defined]
    finally:
        fault_pg.start()
    assert proc.returncode == 1, stderr  # type: ignore[attr-defined]
    line = _one_error_line(stderr)
    assert "went away at +" in line and "did not come back within 2s" in line, line
    assert "InterfaceError" not in line and "state" not in line
    results = _results(out, run_id)
    assert results["status"] == "FAILED" and "went away" in results["reason"]
    assert results["measurement"]["queries"] + sum(
        p.get("count", 0) for p in results["phases"]["WARMUP"].values()) >= before * 0.5
    status = rows(pg_dsn, "SELECT status, cancel_reason FROM spanbench.run_status WHERE run_id = $1", run_id)
    assert status[0]["status"] == "FAILED" and "went away" in status[0]["cancel_reason"]
    assert rows(pg_dsn, "SELECT count(*) AS n FROM spanbench.test_results WHERE run_id = $1 AND scope = 'RUN'",
                run_id)[0]["n"] == 1


# ------------------------------------------------------------------ a lock: stalls are never hidden


def test_a_held_lock_is_a_stall_not_a_clean_run(pg_dsn: str, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    args = ["--target-dsn", pg_dsn, "--workers", "2", "--connections", "4", "--warmup", "0.3s", "--duration", "6s",
            "--output", str(out)]
    proc, run_id, _ = _running_run(args, pg_dsn, _env())
    with _no_leftovers(proc):
        lock = HeldLock(pg_dsn, "spanbench_accounts", 2.5).start()
        lock.join()
        stdout, stderr = proc.communicate(timeout=90)  # type: ignore[attr-defined]
    assert proc.returncode == 4, stderr  # type: ignore[attr-defined]
    results = _results(out, run_id)
    assert results["status"] == "COMPLETED_WITH_ERRORS"
    stalls = results["stalls"]
    assert stalls and max(s["seconds"] for s in stalls) >= 1, stalls
    # the blocked queries waited ~2.5 s: that is the maximum latency, not a few ms
    assert results["measurement"]["all"]["max_ms"] >= 2000
    assert "stall" in results["reason"]


@pytest.mark.parametrize("model", ["closed", "open"])
def test_a_query_still_blocked_at_the_drain_is_recorded(pg_dsn: str, tmp_path: Path, model: str) -> None:
    """The lock outlives the run: the queries it blocks are cut at the drain and recorded as a
    lower bound, so the report's maximum shows the stall (both load models)."""
    out = tmp_path / "runs"
    scenario = []
    if model == "open":
        (tmp_path / "open.toml").write_text('[load]\nmodel = "open"\nrate = 2000\n')
        scenario = [str(tmp_path / "open.toml")]
    args = [*scenario, "--target-dsn", pg_dsn, "--workers", "1", "--connections", "2", "--warmup", "0s",
            "--duration", "3s", "--output", str(out)]
    proc, run_id, _ = _running_run(args, pg_dsn, _env(SPANBENCH_DRAIN_TIMEOUT="0.5s"))
    with _no_leftovers(proc):
        lock = HeldLock(pg_dsn, "spanbench_accounts", 6.0).start()
        stdout, stderr = proc.communicate(timeout=90)  # type: ignore[attr-defined]
        lock.join()
    assert proc.returncode == 4, stderr  # type: ignore[attr-defined]
    results = _results(out, run_id)
    m = results["measurement"]
    assert m["cut"] >= 1
    assert m["all"]["max_ms"] >= 1000  # at least the blocked time before the cut
    assert "still running at the drain" in results["reason"]


# ------------------------------------------------------------------ processes killed


def test_orchestrator_killed_the_workers_abandon_the_run(pg_dsn: str, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    args = ["--target-dsn", pg_dsn, "--workers", "2", "--connections", "4", "--warmup", "0.3s", "--duration", "60s",
            "--output", str(out)]
    proc, run_id, _ = _running_run(args, pg_dsn, _env())
    workers = _children_of(proc.pid)  # type: ignore[attr-defined]
    with _no_leftovers(proc, *workers):
        proc.send_signal(signal.SIGKILL)  # type: ignore[attr-defined]
        proc.wait(10)  # type: ignore[attr-defined]
        gone, alive = psutil.wait_procs(workers, timeout=20)
    assert not alive
    status = rows(pg_dsn, "SELECT status, cancel_reason FROM spanbench.run_status WHERE run_id = $1", run_id)
    assert status[0]["status"] == "ABANDONED" and "lost orchestrator" in status[0]["cancel_reason"]
    got = rows(pg_dsn, "SELECT worker_id, scope, status, queries FROM spanbench.test_results WHERE run_id = $1", run_id)
    assert {r["worker_id"] for r in got} == {"w0", "w1", "run"}
    run_row = [r for r in got if r["scope"] == "RUN"][0]
    assert run_row["status"] == "ABANDONED" and run_row["queries"] > 0
    results = _results(out, run_id)  # written by the worker that marked the run
    assert results["status"] == "ABANDONED"
    assert results["measurement"]["queries"] == run_row["queries"]


def test_a_killed_worker_loses_one_flush_interval_at_most(pg_dsn: str, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    args = ["--target-dsn", pg_dsn, "--workers", "2", "--connections", "4", "--warmup", "0s", "--duration", "8s",
            "--output", str(out)]
    proc, run_id, _ = _running_run(args, pg_dsn, _env(SPANBENCH_FLUSH_INTERVAL="0.5s", SPANBENCH_ON_WORKER_LOSS="continue"))
    beats = wait_for("w1 running", lambda: {r["worker_id"]: r for r in rows(
        pg_dsn, "SELECT worker_id, pid, queries FROM spanbench.worker_heartbeats WHERE run_id = $1", run_id)})
    with _no_leftovers(proc):
        wait_for("a flush of w1", lambda: rows(pg_dsn, "SELECT 1 FROM spanbench.test_results WHERE run_id = $1"
                                                       " AND worker_id = 'w1' AND queries > 0", run_id), timeout=30)
        os.kill(beats["w1"]["pid"], signal.SIGKILL)
        killed_queries = queries_so_far(pg_dsn, run_id)
        stdout, stderr = proc.communicate(timeout=90)  # type: ignore[attr-defined]
    assert proc.returncode == 4, stderr  # type: ignore[attr-defined]
    results = _results(out, run_id)
    assert results["status"] == "COMPLETED_WITH_ERRORS"
    w1 = [w for w in results["workers"] if w["worker_id"] == "w1"][0]
    assert w1["queries"] > 0  # its last flush is kept
    assert "w1" in results["partial"]["workers"]
    assert "worker w1 lost" in results["reason"]
    hb = rows(pg_dsn, "SELECT status FROM spanbench.worker_heartbeats WHERE run_id = $1 AND worker_id = 'w1'", run_id)
    assert hb[0]["status"] == "LOST"
    assert killed_queries > 0


def test_a_flush_is_on_record_while_the_run_goes_on(pg_dsn: str, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    args = ["--target-dsn", pg_dsn, "--workers", "1", "--connections", "2", "--warmup", "0s", "--duration", "4s",
            "--output", str(out)]
    proc, run_id, _ = _running_run(args, pg_dsn, _env(SPANBENCH_FLUSH_INTERVAL="0.5s"))
    with _no_leftovers(proc):
        row = wait_for("a flushed row", lambda: rows(pg_dsn, "SELECT status, queries, details, histograms FROM"
                                                             " spanbench.test_results WHERE run_id = $1 AND queries > 0",
                                                     run_id), timeout=30)[0]
        local = wait_for("the run folder's copy", lambda: (out / run_id / "results-w0.json").exists())
        stdout, stderr = proc.communicate(timeout=60)  # type: ignore[attr-defined]
    assert row["status"] == "RUNNING" and json.loads(row["details"])["partial"] is True
    assert json.loads(row["histograms"]).get("MEASUREMENT")
    assert local
    assert proc.returncode == 0, stderr  # type: ignore[attr-defined]
    final = json.loads((out / run_id / "results-w0.json").read_text())
    assert final["status"] == "COMPLETED" and not final["details"]["partial"]


# ------------------------------------------------------------------ the run folder


def test_the_same_run_id_twice_is_refused_untouched(pg_dsn: str, tmp_path: Path) -> None:
    run_id = "twice-" + secrets.token_hex(4)
    env = spanbench_env(SPANBENCH_RUN_ID=run_id)
    first = run_cli(["run", "--target-dsn", pg_dsn, "--workers", "1", "--connections", "2", "--warmup", "0s",
                     "--duration", "0.3s"], output=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    folder = tmp_path / run_id
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    again = run_cli(["run", "--target-dsn", pg_dsn, "--workers", "1", "--connections", "2", "--warmup", "0s",
                     "--duration", "0.3s"], output=tmp_path, env=env)
    assert again.returncode == 2
    assert "already" in _one_error_line(again.stderr)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    # elsewhere, with the same id: the control store refuses it, and the first run's rows stay
    elsewhere = run_cli(["run", "--target-dsn", pg_dsn, "--workers", "1", "--connections", "2", "--warmup", "0s",
                         "--duration", "0.3s"], output=tmp_path / "other", env=env)
    assert elsewhere.returncode != 0 and "already exists in the control store" in elsewhere.stderr
    status = rows(pg_dsn, "SELECT status FROM spanbench.run_status WHERE run_id = $1", run_id)
    assert status[0]["status"] == "COMPLETED"


def test_a_truncated_trace_file_costs_only_itself(pg_dsn: str, tmp_path: Path) -> None:
    res = run_cli(["run", "--target-dsn", pg_dsn, "--workers", "2", "--connections", "2", "--warmup", "0s",
                   "--duration", "0.3s"], output=tmp_path, env=spanbench_env(SPANBENCH_TRACING="1"))
    assert res.returncode == 0, res.stderr
    run_dir = res.run_dir()
    trace = run_dir / "trace-w1.jsonl"
    data = trace.read_bytes()
    trace.write_bytes(data[: len(data) // 2])  # a worker killed mid-write leaves a cut line
    (run_dir / "report.html").unlink()
    rep = run_cli(["report", str(run_dir)], env=spanbench_env())
    assert rep.returncode == 0, rep.stderr
    assert (run_dir / "report.html").exists()
    gaps = run_cli(["gaps", str(run_dir)], env=spanbench_env())
    assert gaps.returncode == 0, gaps.stderr
    assert "skipped" in gaps.stderr


def test_a_stale_handle_does_not_keep_the_embedded_server_running(tmp_path: Path) -> None:
    """A process killed hard leaves its pid in the server's handle list; the next run's handle
    must still be the last one, and stop the server when it ends."""
    import subprocess
    import sys

    from spanbench.targets.embedded import EmbeddedPostgres

    data = Path(__import__("tempfile").mkdtemp(prefix="spanbench-stale-pg-")) / "data"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from spanbench.targets.embedded import EmbeddedPostgres as E;"
                               f" E(__import__('pathlib').Path({str(data)!r})).start(); print('up', flush=True);"
                               " time.sleep(120)"],
        stdout=subprocess.PIPE, text=True, env=spanbench_env(),
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "up"
        holder.kill()
        holder.wait(10)
        handles = json.loads((data / ".handle_pids.json").read_text())
        assert holder.pid in handles  # the killed process never took itself off
        server = EmbeddedPostgres(data)
        server.start()
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        server.stop()
        wait_for("the server to stop", lambda: not psutil.pid_exists(postmaster), timeout=30)
    finally:
        with contextlib.suppress(Exception):
            holder.kill()
        with contextlib.suppress(Exception):
            EmbeddedPostgres(data).stop()
