"""Workers started elsewhere join the run from RUN_STATUS alone, trace included."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

from conftest import spanbench_env
from support.traces import Tree, read_spans


def test_external_workers_join_the_trace(pg_dsn: str, tmp_path: Path) -> None:
    run_id = "ext-" + secrets.token_hex(4)
    out = tmp_path / "orchestrator"
    orchestrator = subprocess.Popen(
        [sys.executable, "-m", "spanbench", "run", "--target-dsn", pg_dsn, "--workers", "2", "--connections", "4",
         "--warmup", "0.2s", "--duration", "0.5s", "--output", str(out)],
        env=spanbench_env(SPANBENCH_TRACING="1", SPANBENCH_RUN_ID=run_id, SPANBENCH_LAUNCH_WORKERS="false",
                          SPANBENCH_READY_TIMEOUT="60s"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # No TRACEPARENT, no target DSN, no run folder: only the run id and the control store.
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "spanbench", "worker", "--run-id", run_id, "--control-dsn", pg_dsn,
             "--group-id", str(g), "--group-count", "2"],
            env=spanbench_env(), cwd=elsewhere, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for g in range(2)
    ]
    try:
        stdout, stderr = orchestrator.communicate(timeout=90)
        codes = [w.wait(30) for w in workers]
    finally:
        for p in [orchestrator, *workers]:
            if p.poll() is None:
                p.kill()
    assert orchestrator.returncode == 0, stderr
    assert codes == [0, 0], [w.stderr.read() for w in workers]

    results = json.loads((out / run_id / "results.json").read_text())
    assert results["status"] == "COMPLETED"
    assert sorted(w["worker_id"] for w in results["workers"]) == ["w0", "w1"]
    # every worker ran queries (its first one is on record) and the run measured some
    assert all(w["first_query_unix_ns"] for w in results["workers"])
    assert results["measurement"]["queries"] > 0

    # Each worker wrote its trace where it ran; together with the orchestrator's it is one tree.
    worker_dir = elsewhere / "spanbench-runs" / run_id
    assert sorted(p.name for p in worker_dir.glob("trace-*.jsonl")) == ["trace-w0.jsonl", "trace-w1.jsonl"]
    tree = Tree(read_spans(out / run_id) + read_spans(worker_dir))
    assert len({s.trace_id for s in tree.spans}) == 1
    [run] = tree.roots()
    assert run.name == "run"
    assert {w.parent_id for w in tree.named("worker")} == {run.span_id}
