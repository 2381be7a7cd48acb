"""``spanbench merge``: a worker that ran elsewhere, without a collector, joins the run folder."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli, spanbench_env


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _gaps(run_dir: Path) -> dict:
    res = run_cli(["gaps", "--json", str(run_dir)])
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_merge_gathers_an_external_worker(pg_dsn: str, tmp_path: Path) -> None:
    run_id = "merge-" + secrets.token_hex(4)
    out = tmp_path / "orchestrator"
    orchestrator = subprocess.Popen(
        [sys.executable, "-m", "spanbench", "run", "--target-dsn", pg_dsn, "--workers", "1", "--connections", "2",
         "--warmup", "0.2s", "--duration", "0.5s", "--output", str(out)],
        env=spanbench_env(SPANBENCH_TRACING="1", SPANBENCH_RUN_ID=run_id, SPANBENCH_LAUNCH_WORKERS="false",
                          SPANBENCH_READY_TIMEOUT="60s"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    elsewhere = tmp_path / "machine2"
    elsewhere.mkdir()
    # Another machine: its own working folder, so its run folder is elsewhere/spanbench-runs/<run id>.
    worker = subprocess.Popen(
        [sys.executable, "-m", "spanbench", "worker", "--run-id", run_id, "--control-dsn", pg_dsn],
        env=spanbench_env(), cwd=elsewhere, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _, stderr = orchestrator.communicate(timeout=90)
        assert worker.wait(30) == 0, worker.stderr.read() if worker.stderr else ""
    finally:
        for p in (orchestrator, worker):
            if p.poll() is None:
                p.kill()
    assert orchestrator.returncode == 0, stderr
    run_dir = out / run_id
    theirs = elsewhere / "spanbench-runs" / run_id
    assert (theirs / "trace-w0.jsonl").is_file() and not (run_dir / "trace-w0.jsonl").exists()
    assert not any(s["worker_id"] == "w0" for s in _gaps(run_dir)["spans"])

    # A runs folder of the other machine is enough: its subfolder of this run is used.
    res = run_cli(["merge", str(run_dir), str(elsewhere / "spanbench-runs")])
    assert res.returncode == 0, res.stderr
    assert "trace-w0.jsonl: new" in res.stdout
    assert (run_dir / "trace-w0.jsonl").read_bytes() == (theirs / "trace-w0.jsonl").read_bytes()
    assert (run_dir / "results-w0.json").is_file()

    gaps = _gaps(run_dir)
    names = {s["name"] for s in gaps["spans"] if s["worker_id"] == "w0"}
    assert {"worker", "pool.init", "wait_for_start", "first_query", "heartbeat"} <= names
    [run] = [s for s in gaps["spans"] if s["name"] == "run"]
    [w] = [s for s in gaps["spans"] if s["name"] == "worker"]
    assert w["parent_id"] == run["span_id"]  # one tree, not a second trace
    assert any(c["worker_id"] == "w0" for c in gaps["critical_paths"])

    # Twice changes nothing.
    before = _snapshot(run_dir)
    again = run_cli(["merge", str(run_dir), str(theirs)])
    assert again.returncode == 0, again.stderr
    assert "0 file(s) copied" in again.stdout
    assert _snapshot(run_dir) == before

    assert run_cli(["report", str(run_dir)]).returncode == 0


def test_merge_refuses_another_run(tmp_path: Path) -> None:
    def folder(name: str, run_id: str, trace_id: str, worker: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        line = {"resourceSpans": [{"resource": {"attributes": [
            {"key": "spanbench.run_id", "value": {"stringValue": run_id}}]},
            "scopeSpans": [{"spans": [{"traceId": trace_id, "spanId": "00f067aa0ba902b7", "name": "worker",
                                       "startTimeUnixNano": "1", "endTimeUnixNano": "2"}]}]}]}
        (d / f"trace-{worker}.jsonl").write_text(json.dumps(line) + "\n")
        return d

    mine = folder("mine", "run-a", "4bf92f3577b34da6a3ce929d0e0e4736", "orchestrator")
    other_run = folder("other-run", "run-b", "4bf92f3577b34da6a3ce929d0e0e4736", "w1")
    other_trace = folder("other-trace", "run-a", "0af7651916cd43dd8448eb211c80319c", "w1")
    before = _snapshot(mine)
    for other, what in ((other_run, "is run run-b, not run-a"), (other_trace, "holds trace 0af7651916cd43dd")):
        res = run_cli(["merge", str(mine), str(other)])
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and what in lines[0], res.stderr
    assert _snapshot(mine) == before  # refused before anything was copied


def _trace_line(run_id: str, name: str) -> str:
    return json.dumps({"resourceSpans": [{"resource": {"attributes": [
        {"key": "spanbench.run_id", "value": {"stringValue": run_id}}]},
        "scopeSpans": [{"spans": [{"traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7",
                                   "name": name, "startTimeUnixNano": "1", "endTimeUnixNano": "2"}]}]}]}) + "\n"


def test_merge_takes_the_grown_trace_and_the_newer_results(tmp_path: Path) -> None:
    from spanbench.errors import ConfigError
    from spanbench.merge import merge_command, plan_merge

    mine, early, late = tmp_path / "run-a", tmp_path / "copy1" / "run-a", tmp_path / "copy2"
    for d in (mine, early, late / "run-a"):
        d.mkdir(parents=True)
    (mine / "trace-orchestrator.jsonl").write_text(_trace_line("run-a", "run"))
    first = _trace_line("run-a", "worker")
    (early / "trace-w1.jsonl").write_text(first)
    (late / "run-a" / "trace-w1.jsonl").write_text(first + _trace_line("run-a", "results.persist"))
    for d, saved in ((early, 1), (late / "run-a", 2)):
        (d / "results-w1.json").write_text(json.dumps({"run_id": "run-a", "details": {"saved_unix_ns": saved}}))

    # two copies of one machine's folder, made at different times: the later one wins; a runs folder works
    plan = plan_merge(mine, [early, late])
    assert {(dst.name, src.parent.parent.name) for src, dst, _ in plan.copies} == {
        ("trace-w1.jsonl", "copy2"), ("results-w1.json", "copy2")}
    merge_command(mine, [early, late])
    assert (mine / "trace-w1.jsonl").read_text().count("\n") == 2
    assert plan_merge(mine, [early]).copies == []  # the older copy is not brought back

    (early / "trace-w1.jsonl").write_text(_trace_line("run-a", "something else"))
    with pytest.raises(ConfigError, match="two workers with one group id"):
        plan_merge(mine, [early])
