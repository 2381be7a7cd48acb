"""The embedded default, and tracing switched off."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import run_cli, server_data_dir, spanbench_env


def test_embedded_default_run(tmp_path: Path) -> None:
    """No DSN: an embedded server is started, the demo table made, the run traced, the server stopped."""
    data = server_data_dir()
    try:
        res = run_cli(["run", "--workers", "2", "--connections", "4", "--warmup", "0.2s", "--duration", "1s"],
                      output=tmp_path, env=spanbench_env(SPANBENCH_EMBEDDED_DIR=str(data), SPANBENCH_ROWS="5000"))
        assert res.returncode == 0, res.stderr
        run_dir = res.run_dir()
        results = json.loads((run_dir / "results.json").read_text())
        assert results["status"] == "COMPLETED"
        assert results["measurement"]["queries"] > 0
        assert results["settings"]["target_dsn"] is None
        assert sorted(p.name for p in run_dir.glob("trace-*.jsonl")) == ["trace-orchestrator.jsonl", "trace-w0.jsonl", "trace-w1.jsonl"]
        names = {json.loads(line)["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"]
                 for f in run_dir.glob("trace-*.jsonl") for line in f.read_text().splitlines()}
        assert names  # spans were written
        assert "queries/s" in res.stdout and "gaps" in res.stdout and "critical path" in res.stdout
        # the server was stopped at the end of the run
        assert not (data / "postmaster.pid").exists()
    finally:
        shutil.rmtree(data.parent, ignore_errors=True)


def test_tracing_off_writes_no_trace(pg_dsn: str, tmp_path: Path) -> None:
    res = run_cli(["run", "--target-dsn", pg_dsn, "--workers", "1", "--connections", "2", "--warmup", "0",
                   "--duration", "0.5s"], output=tmp_path, env=spanbench_env())
    assert res.returncode == 0, res.stderr
    run_dir = res.run_dir()
    assert not list(run_dir.glob("*.jsonl"))
    results = json.loads((run_dir / "results.json").read_text())
    assert results["measurement"]["queries"] > 0 and results["gaps"] is None
    assert "SPANBENCH_TRACING=1" in res.stdout  # the user is told how to get the trace


def test_otel_sdk_disabled_wins(pg_dsn: str, tmp_path: Path) -> None:
    env = spanbench_env(SPANBENCH_TRACING="1", OTEL_SDK_DISABLED="true")
    res = run_cli(["run", "--target-dsn", pg_dsn, "--workers", "1", "--connections", "2", "--warmup", "0",
                   "--duration", "0.5s"], output=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    assert not list(res.run_dir().glob("*.jsonl"))
