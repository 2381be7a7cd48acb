"""An untraced delay injected inside one worker process is reported by `gaps` where it was put."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli, spanbench_env

INJECT_DIR = Path(__file__).parent / "support" / "inject"
DELAY_S = 0.4


def test_injected_delay_is_found(pg_dsn: str, tmp_path: Path) -> None:
    env = spanbench_env(
        SPANBENCH_TRACING="1", PYTHONPATH=str(INJECT_DIR),
        SPANBENCH_TEST_INJECT_WORKER="w1", SPANBENCH_TEST_INJECT_DELAY_S=str(DELAY_S),
    )
    res = run_cli(["run", "--target-dsn", pg_dsn, "--workers", "2", "--connections", "4", "--warmup", "0.2s",
                   "--duration", "0.5s"], output=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    run_dir = res.run_dir()

    out = run_cli(["gaps", str(run_dir), "--json"], env=spanbench_env())
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    big = [g for g in report["gaps"] if g["duration_ms"] >= 200]
    assert len(big) == 1, big
    gap = big[0]
    assert gap["span"]["name"] == "worker" and "w1" in gap["span"]["label"]
    assert gap["before"]["name"] == "executor.setup"
    assert gap["after"]["name"] == "heartbeat"
    assert abs(gap["duration_ms"] - DELAY_S * 1000) <= 50
    assert gap["on_critical_path"]

    # The critical path of w1 carries the delay as untraced time; w0's does not.
    paths = {p["worker_id"]: p for p in report["critical_paths"]}
    assert paths["w1"]["untraced_ms"] >= DELAY_S * 1000 - 50
    assert paths["w0"]["untraced_ms"] < 50

    # `run` printed the same gap at its end.
    assert "executor.setup" in res.stdout and "worker[w1]" in res.stdout


def test_healthy_run_has_no_gap_before_first_query(pg_dsn: str, tmp_path: Path) -> None:
    res = run_cli(["run", "--target-dsn", pg_dsn, "--workers", "2", "--connections", "4", "--warmup", "0.2s",
                   "--duration", "0.5s"], output=tmp_path, env=spanbench_env(SPANBENCH_TRACING="1"))
    assert res.returncode == 0, res.stderr
    out = run_cli(["gaps", str(res.run_dir()), "--json", "--fail-over", "50ms"], env=spanbench_env())
    report = json.loads(out.stdout)
    assert out.returncode == 0, [g for g in report["gaps"] if g["on_critical_path"]]
    for p in report["critical_paths"]:
        assert p["target"]["name"] == "first_query"
        assert p["untraced_ms"] < 50
