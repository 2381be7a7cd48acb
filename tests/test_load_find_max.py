"""Find-max (README "Load models"): a capacity limit the test imposes is found, within one step."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from support.faults import rows
from support.traces import read_spans

# Two "slots": an execution takes whichever advisory lock is free and holds it 4 ms; with
# both taken it waits. Capacity: two executions at a time, about 2 / 4 ms = 500 per second.
CAPPED = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE OR REPLACE FUNCTION {schema}.capped() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
  LOOP
    IF pg_try_advisory_xact_lock(hashtext('{schema}'), 0) OR pg_try_advisory_xact_lock(hashtext('{schema}'), 1) THEN
      PERFORM pg_sleep(0.004);
      RETURN 1;
    END IF;
    PERFORM pg_sleep(0.0005);
  END LOOP;
END $$;
"""


@pytest.fixture
def capped(pg_dsn: str) -> str:
    schema = "fm_" + secrets.token_hex(4)
    for statement in CAPPED.format(schema=schema).split(";\nCREATE OR REPLACE", 1):
        rows(pg_dsn, statement if statement.lstrip().startswith("CREATE SCHEMA") else "CREATE OR REPLACE" + statement)
    yield schema
    rows(pg_dsn, f"DROP SCHEMA {schema} CASCADE")


def _scenario(tmp_path: Path, schema: str, load: str) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(f"""version = 1

[[queries]]
name = "capped"
sql = "SELECT {schema}.capped()"

[load]
model = "find_max"
start = 1
step = 1
max = 6
step_duration = "1.5s"
{load}
""")
    return path


def _run(cli, pg_dsn: str, scenario: Path, workers: str = "1"):
    from conftest import spanbench_env

    r = cli("run", str(scenario), "--target-dsn", pg_dsn, "--workers", workers, "--connections", workers,
            "--warmup", "0.5s", env=spanbench_env(SPANBENCH_TRACING="1"))
    assert r.returncode == 0, r.stderr
    return json.loads((r.run_dir() / "results.json").read_text()), r.run_dir()


def test_find_max_stops_at_the_imposed_limit_by_qps_gain(cli, pg_dsn: str, capped: str, tmp_path: Path) -> None:
    scenario = _scenario(tmp_path, capped, "stop_p95_growth = 100.0\nstop_qps_gain = 0.15\n")
    res, run_dir = _run(cli, pg_dsn, scenario)
    fm = res["find_max"]
    steps = fm["steps"]
    assert fm["stopped_by"] == "qps_gain", fm
    # the limit is 2 at a time: the search settles on it, give or take one step
    assert fm["max_stable_connections"] in (2, 3), fm
    assert [s["connections"] for s in steps] == list(range(1, len(steps) + 1))
    assert steps[1]["qps"] > 1.6 * steps[0]["qps"], steps  # 2 slots: twice the throughput of one
    assert all(s["qps"] < 600 for s in steps), steps  # never past the imposed capacity (~500/s)
    for s in steps:
        assert s["p95_ms"] >= 4 and s["error_rate"] == 0 and set(s) >= {"connections", "qps", "p95_ms", "p99_ms", "error_rate"}
    # one load.step span per step, under the measurement phase, with its figures and verdict
    spans = read_spans(run_dir)
    [phase] = [s for s in spans if s.name == "phase.measurement"]
    step_spans = sorted((s for s in spans if s.name == "load.step"), key=lambda s: s.start)
    assert len(step_spans) == len(steps)
    assert all(s.parent_id == phase.span_id for s in step_spans)
    assert [s.attrs["load.step.verdict"] for s in step_spans] == [s["verdict"] for s in steps]
    assert step_spans[-1].attrs["load.step.verdict"] == "qps_gain"
    assert step_spans[0].attrs["load.step.connections"] == 1 and step_spans[0].attrs["load.step.qps"] > 0


def test_find_max_stops_by_p95_growth(cli, pg_dsn: str, capped: str, tmp_path: Path) -> None:
    # past two at a time, executions wait for a slot: p95 grows beyond 4 ms + a wait
    scenario = _scenario(tmp_path, capped, "stop_p95_growth = 0.5\nstop_qps_gain = 0.0\n")
    res, _ = _run(cli, pg_dsn, scenario, workers="2")
    fm = res["find_max"]
    assert fm["stopped_by"] == "p95_growth", fm
    assert fm["max_stable_connections"] in (2, 3), fm


def test_find_max_steps_with_workers_started_elsewhere(pg_dsn: str, capped: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import spanbench_env

    run_id = "ext-fm-" + secrets.token_hex(4)
    scenario = _scenario(tmp_path, capped, "stop_p95_growth = 100.0\nstop_qps_gain = 0.15\n")
    out = tmp_path / "orchestrator"
    orchestrator = subprocess.Popen(
        [sys.executable, "-m", "spanbench", "run", str(scenario), "--target-dsn", pg_dsn, "--workers", "2",
         "--connections", "2", "--warmup", "0.5s", "--output", str(out)],
        env=spanbench_env(SPANBENCH_RUN_ID=run_id, SPANBENCH_LAUNCH_WORKERS="false", SPANBENCH_READY_TIMEOUT="60s"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "spanbench", "worker", "--run-id", run_id, "--control-dsn", pg_dsn,
             "--group-id", str(g), "--group-count", "2"],
            env=spanbench_env(SPANBENCH_TARGET_DSN=pg_dsn), cwd=elsewhere, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        for g in range(2)
    ]
    try:
        _, stderr = orchestrator.communicate(timeout=120)
        codes = [w.wait(30) for w in workers]
    finally:
        for p in [orchestrator, *workers]:
            if p.poll() is None:
                p.kill()
    assert orchestrator.returncode == 0, stderr
    assert codes == [0, 0]
    fm = json.loads((out / run_id / "results.json").read_text())["find_max"]
    assert fm["stopped_by"] == "qps_gain" and fm["max_stable_connections"] in (2, 3), fm
    # step 1 is one connection: worker w1 had none until step 2 gave it one
    assert fm["steps"][1]["qps"] > 1.6 * fm["steps"][0]["qps"], fm
