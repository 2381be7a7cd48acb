"""Stages of the open model ramp on the schedule; the rate holds with workers started elsewhere."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

from conftest import spanbench_env
from support.traces import read_spans

from spanbench.load.open import RateCurve


def test_stages_ramp_within_5_percent_of_the_plan_at_each_second(cli, pg_dsn: str, tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.toml"
    scenario.write_text("""point_select_only = true

[load]
model = "open"
rate = 100
arrival = "uniform"
stages = [ { duration = "3s", rate = 500 }, { duration = "3s", rate = 500 } ]
""")
    r = cli("run", str(scenario), "--target-dsn", pg_dsn, "--workers", "2", "--connections", "8",
            "--warmup", "0s", "--duration", "6s", env=spanbench_env(SPANBENCH_TRACING="1"))
    assert r.returncode == 0, r.stderr
    res = json.loads((r.run_dir() / "results.json").read_text())
    curve = RateCurve(100, [(3.0, 500.0), (3.0, 500.0)])
    seconds = [b for b in res["timeline"] if b["t_s"] + 1 <= 6]
    assert len(seconds) == 6, res["timeline"]
    for b in seconds:
        planned = curve.arrivals_between(b["t_s"], b["t_s"] + 1)
        assert abs(b["qps"] - planned) <= 0.05 * planned, (b, planned, res["timeline"])
    # the ramp is visible: the first second plans 167, the last 500
    assert seconds[0]["qps"] < 0.5 * seconds[-1]["qps"]
    # each stage is a span under the phase it ran in
    spans = read_spans(r.run_dir())
    [phase] = [s for s in spans if s.name == "phase.measurement"]
    stages = sorted((s for s in spans if s.name == "load.stage"), key=lambda s: s.start)
    assert [s.attrs["load.stage.index"] for s in stages] == [0, 1]
    assert all(s.parent_id == phase.span_id for s in stages)
    assert stages[0].attrs["load.stage.rate_from"] == 100 and stages[0].attrs["load.stage.rate_to"] == 500
    assert abs(stages[0].ms - 3000) < 100


def test_the_rate_holds_with_workers_started_elsewhere(pg_dsn: str, tmp_path: Path) -> None:
    run_id = "ext-open-" + secrets.token_hex(4)
    scenario = tmp_path / "scenario.toml"
    scenario.write_text('point_select_only = true\n\n[load]\nmodel = "open"\nrate = 400\narrival = "uniform"\n')
    out = tmp_path / "orchestrator"
    orchestrator = subprocess.Popen(
        [sys.executable, "-m", "spanbench", "run", str(scenario), "--target-dsn", pg_dsn, "--workers", "2",
         "--connections", "4", "--warmup", "0.5s", "--duration", "4s", "--output", str(out)],
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
        _, stderr = orchestrator.communicate(timeout=90)
        codes = [w.wait(30) for w in workers]
    finally:
        for p in [orchestrator, *workers]:
            if p.poll() is None:
                p.kill()
    assert orchestrator.returncode == 0, stderr
    assert codes == [0, 0]
    res = json.loads((out / run_id / "results.json").read_text())
    m = res["measurement"]
    achieved = (m["queries"] + m["errors"]) / m["seconds"]
    assert abs(achieved - 400) <= 0.02 * 400, achieved
    assert m["rate_shortfall"]["met"]
    # each worker took its half of the schedule
    assert all(abs(w["qps"] - 200) <= 0.05 * 200 for w in res["workers"]), res["workers"]
