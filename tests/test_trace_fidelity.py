"""The trace blames spanbench only for its own time: starts at the exec, a start instant ahead,
workers that begin together, and live figures that agree with the run's own counts."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import run_cli, spanbench_env
from support.traces import Tree, read_spans
from spanbench.control.records import Heartbeat
from spanbench.report.progress import BeatRates, RunProgress
from spanbench.telemetry.process_start import estimate_start

MS = 1_000_000

# ------------------------------------------------------------------ the exec, by the rules


def test_a_launchers_stamp_bounds_the_start() -> None:
    s = estimate_start(first_code_ns=10_000 * MS, first_code_cpu_ns=30 * MS, ran_children=False,
                       launch_ns=9_900 * MS, fork_ns=9_895 * MS)
    assert (s.exec_ns, s.source) == (9_900 * MS, "launcher")  # never before the launch


def test_a_shell_that_ran_something_first_is_not_blamed() -> None:
    # fork at 0, a 4 s `sleep` child, then the exec: 25 ms of CPU by our first line at 4.03 s
    s = estimate_start(first_code_ns=4_030 * MS, first_code_cpu_ns=25 * MS, ran_children=True,
                       launch_ns=None, fork_ns=0)
    assert s.source == "cpu"
    assert s.exec_ns == 4_005 * MS
    assert s.before_exec_ns == 4_005 * MS


def test_a_process_that_ran_nothing_before_starts_at_its_fork() -> None:
    # a slow sitecustomize (2 s asleep after the exec) is the process's own time
    s = estimate_start(first_code_ns=2_040 * MS, first_code_cpu_ns=30 * MS, ran_children=False,
                       launch_ns=None, fork_ns=0)
    assert (s.exec_ns, s.source, s.before_exec_ns) == (0, "fork", 0)


def test_a_stale_launch_stamp_is_ignored() -> None:
    # inherited from far back (not this process's launcher): the kernel's fork wins
    s = estimate_start(first_code_ns=10_000 * MS, first_code_cpu_ns=30 * MS, ran_children=False,
                       launch_ns=1_000 * MS, fork_ns=9_990 * MS)
    assert s.source == "fork" and s.exec_ns == 9_990 * MS


_PRINT_START = ("from spanbench.telemetry.process_start import own_start; import spanbench, json; s = own_start(); "
                "print(json.dumps({'exec': s.exec_ns, 'fork': s.fork_ns, 'source': s.source, 'first': spanbench.FIRST_CODE_NS}))")


def test_real_shell_wait_before_exec_is_left_out() -> None:
    # bash runs `sleep`, prints the time, then execs python in its own PID (the last command of -c)
    out = subprocess.run(
        ["bash", "-c", f"sleep 1.2; date +%s%N >&2; {sys.executable} -c \"{_PRINT_START}\""],
        capture_output=True, text=True, timeout=30, check=True,
    )
    before_exec = int(out.stderr.strip().splitlines()[-1])
    got = json.loads(out.stdout)
    assert got["source"] == "cpu"
    assert got["exec"] - got["fork"] >= 1_100 * MS  # the sleep is the shell's
    # the exec is placed within ~50 ms after the moment the shell was about to exec us
    assert before_exec - 20 * MS <= got["exec"] <= before_exec + 150 * MS
    assert got["exec"] <= got["first"]


def test_real_slow_sitecustomize_stays_the_processes_own(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text("import time\ntime.sleep(1.0)\n")
    launched = time.time_ns()
    out = subprocess.run([sys.executable, "-c", _PRINT_START], capture_output=True, text=True, timeout=30,
                         check=True, env={**spanbench_env(), "PYTHONPATH": str(tmp_path)})
    got = json.loads(out.stdout)
    assert got["source"] == "fork"
    assert launched - 20 * MS <= got["exec"] <= launched + 50 * MS
    assert got["first"] - got["exec"] >= 950 * MS  # the second asleep is inside the process's start


# ------------------------------------------------------------------ a whole run, launched late


@pytest.fixture(scope="module")
def late_run(pg_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Tree, dict, Path, int, str]:
    out = tmp_path_factory.mktemp("late")
    before = time.time_ns()
    cmd = (f"sleep 2; exec {sys.executable} -m spanbench run --target-dsn '{pg_dsn}' --workers 2 --connections 4 "
           f"--warmup 0s --duration 3s --progress 1s --output '{out}'")
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120,
                          env=spanbench_env(SPANBENCH_TRACING="1", SPANBENCH_FLUSH_INTERVAL="0.5s"),
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    [run_dir] = [d for d in out.iterdir() if d.is_dir()]
    return Tree(read_spans(run_dir)), json.loads((run_dir / "results.json").read_text()), run_dir, before, proc.stderr


def test_the_shells_wait_is_not_in_the_run(late_run) -> None:
    tree, _, run_dir, before, _ = late_run
    [run] = tree.roots()
    assert run.start >= before + 1_900 * MS  # the run begins at the exec, after the 2 s sleep
    startup = tree.one(run, "orchestrator.startup")
    assert startup.ms < 1000
    assert run.attrs["spanbench.process.start_source"] == "cpu"
    assert run.attrs["spanbench.process.before_exec_ms"] >= 1900
    out = run_cli(["gaps", str(run_dir), "--json"], env=spanbench_env())
    report = json.loads(out.stdout)
    latest_first = max(f.start for f in tree.named("first_query"))
    for path in report["critical_paths"]:
        assert path["target"]["name"] == "first_query"
        # the path runs from the run's start, which is after the 2 s: they are nowhere on it
        assert path["duration_ms"] <= (latest_first - (before + 2_000 * MS)) / 1e6 + 1, path


def test_no_span_starts_before_its_cause(late_run) -> None:
    tree, _, _, _, _ = late_run
    [run] = tree.roots()
    launch = tree.one(run, "orchestrator.launch_workers")
    for s in tree.spans:
        parent = tree.by_id.get(s.parent_id or "")
        if parent is not None:
            assert s.start >= parent.start, (s.name, parent.name)
    for w in tree.workers().values():
        assert w.start >= launch.start


def test_workers_open_their_load_at_the_announced_instant(late_run) -> None:
    tree, results, _, _, _ = late_run
    [run] = tree.roots()
    start = tree.one(run, "orchestrator.start")
    warmup = tree.one(run, "phase.warmup")
    lead_ms = start.attrs["spanbench.start.lead_ms"]
    assert lead_ms > 0
    # orchestrator.start holds until the instant it announced; the phases begin there
    assert warmup.start == start.end or abs(warmup.start - start.end) < 2 * MS
    instant = {w["start_unix_ns"] for w in results["workers"]}
    assert len(instant) == 1
    [instant_ns] = instant
    assert abs(warmup.start - instant_ns) < 2 * MS
    firsts = tree.named("first_query")
    assert len(firsts) == 2
    for f in firsts:
        assert f.start >= instant_ns  # nobody jumps the gun
        assert f.attrs["spanbench.start_to_first_query_ms"] == pytest.approx((f.start - instant_ns) / 1e6, abs=0.01)
    worst = max(w["start_to_first_query_ms"] for w in results["workers"])
    assert run.attrs["spanbench.start_to_first_query_ms"] == pytest.approx(worst)


def test_progress_lines_off_a_terminal(late_run) -> None:
    _, results, _, _, stderr = late_run
    lines = [ln for ln in stderr.splitlines() if ln.startswith("progress: ")]
    assert len(lines) >= 2, stderr
    qps = results["measurement"]["qps"]
    assert any(", p99 " in ln for ln in lines), lines  # merged from the workers' flushes
    for ln in lines:
        assert "measurement" in ln and "q/s" in ln and "errors" in ln
        rate = float(ln.split(", ")[1].split(" q/s")[0].replace(",", ""))
        assert 0.5 * qps <= rate <= 1.5 * qps, (ln, qps)  # a real rate, not 0 or twice it


def test_the_timeline_adds_up_to_the_measurement(late_run) -> None:
    _, results, _, _, _ = late_run
    m = results["measurement"]
    # warmup 0 s, 3 s of measurement: buckets 0 to 2 are the measurement, and a sample at
    # the stop keeps the last bucket from spreading past the window
    buckets = results["timeline"]
    assert len(buckets) == 3
    total = sum(b["qps"] for b in buckets)
    assert total == pytest.approx(m["queries"], rel=0.01)
    assert buckets[-1]["qps"] >= 0.75 * m["qps"]


def test_first_query_bound_flag(late_run) -> None:
    _, _, run_dir, _, _ = late_run
    ok = run_cli(["gaps", str(run_dir), "--fail-if-first-query-over", "60s"], env=spanbench_env())
    assert ok.returncode == 0, ok.stderr
    bad = run_cli(["gaps", str(run_dir), "--fail-if-first-query-over", "1ms"], env=spanbench_env())
    assert bad.returncode == 1
    assert "first_query" in bad.stderr + bad.stdout


def test_progress_off_prints_nothing(pg_dsn: str, tmp_path: Path) -> None:
    res = run_cli(["run", "--target-dsn", pg_dsn, "--workers", "1", "--connections", "2", "--warmup", "0s",
                   "--duration", "0.6s", "--progress", "0"], output=tmp_path, env=spanbench_env())
    assert res.returncode == 0, res.stderr
    assert "progress:" not in res.stderr


# ------------------------------------------------------------------ a slow worker start is its own


def test_a_workers_slow_sitecustomize_is_in_its_startup(pg_dsn: str, tmp_path: Path) -> None:
    """A worker started elsewhere (a pod: nothing ran in its PID before it) that loses 1.5 s
    before main() shows them inside its worker.startup."""
    import secrets

    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text("import time\ntime.sleep(1.5)\n")
    run_id = "slow-" + secrets.token_hex(4)
    out = tmp_path / "runs"
    orchestrator = subprocess.Popen(
        [sys.executable, "-m", "spanbench", "run", "--target-dsn", pg_dsn, "--workers", "1", "--connections", "2",
         "--warmup", "0s", "--duration", "0.5s", "--output", str(out)],
        env=spanbench_env(SPANBENCH_TRACING="1", SPANBENCH_RUN_ID=run_id, SPANBENCH_LAUNCH_WORKERS="false"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    worker_home = tmp_path / "worker"
    worker_home.mkdir()
    worker = subprocess.Popen(
        [sys.executable, "-m", "spanbench", "worker", "--run-id", run_id, "--control-dsn", pg_dsn],
        env={**spanbench_env(), "PYTHONPATH": str(slow)}, cwd=worker_home,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _, err = orchestrator.communicate(timeout=90)
        worker.wait(30)
    finally:
        for p in (orchestrator, worker):
            if p.poll() is None:
                p.kill()
    assert orchestrator.returncode == 0, err
    tree = Tree(read_spans(worker_home / "spanbench-runs" / run_id))
    [w] = tree.named("worker")
    startup = tree.one(w, "worker.startup")
    assert startup.ms >= 1450
    assert startup.attrs["spanbench.stage"] == "interpreter, imports"


# ------------------------------------------------------------------ live rates, as pure logic


def _beat(worker: str, at_s: float, queries: int) -> Heartbeat:
    return Heartbeat(run_id="r", worker_id=worker, group_id=0, status="RUNNING", queries=queries,
                     last_beat=datetime.fromtimestamp(at_s, timezone.utc))


def test_rates_follow_beats_not_the_looking() -> None:
    """Looking every 0.5 s at beats that land every 1 s reads the same rate every time (the
    old line read 0, then twice the rate)."""
    import math

    rates = BeatRates(start_s=1000.0)
    seen = []
    for i in range(1, 12):  # looks every 0.5 s; w0 beats at whole seconds, w1 at .3; 1000 q/s each
        now = 1000.0 + i * 0.5
        b0 = 1000.0 + math.floor(i * 0.5)
        b1 = 1000.0 + math.floor(i * 0.5 - 0.3) + 0.3
        rates.add([_beat("w0", b0, round((b0 - 1000.0) * 1000)), _beat("w1", b1, round(max(0.0, b1 - 1000.0) * 1000))])
        assert max(b0, b1) <= now
        if i >= 4:
            seen.append(rates.rate())
    assert all(r == pytest.approx(2000.0, rel=0.01) for r in seen), seen


def test_beats_before_the_start_do_not_count() -> None:
    rates = BeatRates(start_s=1000.0)
    rates.add([_beat("w0", 990.0, 0)])  # READY, long before START
    rates.add([_beat("w0", 1001.0, 500)])
    assert rates.rate() == pytest.approx(500.0)


def test_lines_mode_waits_for_every_worker() -> None:
    class Out:
        def __init__(self) -> None:
            self.text = ""

        def write(self, s: str) -> None:
            self.text += s

        def flush(self) -> None:
            pass

        def isatty(self) -> bool:
            return False

    out = Out()
    p = RunProgress(1.0, stream=out)  # type: ignore[arg-type]
    assert p.mode == "lines"
    p.started(1000 * 10**9)
    p.update("MEASUREMENT", 0.0, 5.0, [_beat("w0", 1000.0, 0), _beat("w1", 1000.0, 0)], run_elapsed_s=0.0)
    # at 1 s only w0 has beaten: no half-truth line yet
    p.update("MEASUREMENT", 1.0, 5.0, [_beat("w0", 1001.0, 800), _beat("w1", 999.0, 0)], run_elapsed_s=1.0)
    assert out.text == ""
    p.update("MEASUREMENT", 1.5, 5.0, [_beat("w0", 1001.0, 800), _beat("w1", 1001.2, 960)], run_elapsed_s=1.5)
    assert out.text.count("progress:") == 1
    assert "1,600.0 q/s" in out.text
    assert RunProgress(0, stream=out).mode == "off"  # type: ignore[arg-type]
    assert RunProgress(None, stream=out, terminal=True).mode == "live"  # type: ignore[arg-type]
    assert RunProgress(None, stream=out, terminal=False).mode == "lines"  # type: ignore[arg-type]


def test_help_is_quick_to_load() -> None:
    """`spanbench --help` loads neither asyncio, pydantic nor the OTel SDK (its time is in bench/)."""
    code = textwrap.dedent("""
        import sys
        from spanbench.cli import main
        try:
            main(["--help"])
        except SystemExit:
            pass
        heavy = [m for m in ("asyncio", "pydantic", "opentelemetry.sdk", "asyncpg", "rich.markdown") if m in sys.modules]
        print("HEAVY", heavy, file=sys.stderr)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert "HEAVY []" in out.stderr, out.stderr
