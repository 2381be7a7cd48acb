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


def test_closed_stages_change_the_connections_and_think_time_paces_them(cli, pg_dsn: str, tmp_path: Path) -> None:
    # think_time 20 ms: each connection does about 50 queries a second, so throughput
    # follows the connections the stages ask for
    scenario = tmp_path / "scenario.toml"
    scenario.write_text("""point_select_only = true

[load]
think_time = "20ms"
stages = [ { duration = "2s", connections = 2 }, { duration = "0.1s", connections = 6 }, { duration = "2.4s", connections = 6 } ]
""")
    r = cli("run", str(scenario), "--target-dsn", pg_dsn, "--workers", "2", "--connections", "2",
            "--warmup", "0s", "--duration", "4.5s", env=spanbench_env(SPANBENCH_TRACING="1"))
    assert r.returncode == 0, r.stderr
    res = json.loads((r.run_dir() / "results.json").read_text())
    by_s = {int(b["t_s"]): b["qps"] for b in res["timeline"]}
    two, six = by_s[1], by_s[3]
    assert 60 <= two <= 110, res["timeline"]  # 2 connections, about 50/s each
    assert 2.4 <= six / two <= 3.3, res["timeline"]  # three times the connections
    stages = [s for s in read_spans(r.run_dir()) if s.name == "load.stage"]
    assert [s.attrs["load.stage.connections_to"] for s in sorted(stages, key=lambda s: s.start)] == [2, 6, 6]


def test_the_schedule_cancels_its_timers_at_the_stop() -> None:
    """A late timer must not reopen a phase after a STOP: the schedule owns and cancels them."""
    import asyncio
    import time

    from spanbench.load.schedule import PhaseSchedule
    from spanbench.load.state import LoadState

    async def main() -> tuple[str, int, int]:
        st = LoadState(1)
        sched = PhaseSchedule(st)
        sched.start({"start_unix_ns": time.time_ns(), "warmup_s": 0.05, "duration_s": 0.05, "cooldown_s": 0.05})
        armed = sched.pending
        st.request_stop("stop requested")  # as a STOP event does, before any timer fired
        sched.cancel()
        await asyncio.sleep(0.25)
        return st.phase, armed, sched.pending

    phase, armed, left = asyncio.run(main())
    assert armed == 3 and left == 0
    assert phase == "WARMUP"


def test_find_max_steps_name_the_step_in_the_query_tag() -> None:
    import asyncio
    import time
    from types import SimpleNamespace

    from spanbench.load.find_max import Steps
    from spanbench.load.schedule import PhaseSchedule
    from spanbench.load.state import LoadState
    from spanbench.scenario import Load

    async def main() -> list[str]:
        st = LoadState(1)
        sched = PhaseSchedule(st)
        worker = SimpleNamespace(state=st, schedule=sched, loop=SimpleNamespace(kinds=["q"], state=st),
                                 args=SimpleNamespace(group_id=0), _flush_task=None)

        async def flush() -> None:
            return None

        worker.results_flush = flush
        steps = Steps(worker, SimpleNamespace(load=Load(model="find_max", start=1, step=1, max=3), workers=1))
        steps.pairs = []  # no connections: only the schedule and the tags
        sched.on_change = lambda: steps._retag()
        now = time.time_ns()
        sched.start({"start_unix_ns": now, "warmup_s": 0.0, "duration_s": 10, "cooldown_s": 0})
        seen = [st.tag]
        steps.on_event({"step": 1, "connections": 1, "at_unix_ns": now})
        seen.append(st.tag)
        steps.on_event({"step": 2, "connections": 2, "at_unix_ns": time.time_ns() + 20_000_000})
        await asyncio.sleep(0.1)
        seen.append(st.tag)
        sched.stop("test")
        return seen

    assert asyncio.run(main()) == ["MEASUREMENT", "MEASUREMENT_STEP1", "MEASUREMENT_STEP2"]
