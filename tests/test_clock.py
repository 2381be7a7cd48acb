"""Clocks (issue 12): phase boundaries on the control store's clock, not every host's own.

The unit tests hold the sign convention (offset = store − local) and the conversions; the
run test starts a real external worker whose wall clock is really 2 s off (Debian's
libfaketime, preloaded into that one process) and checks that it measures its offset and
that its measurement window is the orchestrator's, not 2 s away from it.
"""

from __future__ import annotations

import asyncio
import glob
import json
import secrets
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import spanbench_env
from spanbench.analysis.clocks import to_store_clock
from spanbench.analysis.load import load_trace
from spanbench.analysis.model import Span
from spanbench.control.clock import ClockOffset, ClockSample, measure
from support.traces import Tree, read_spans

S = 1_000_000_000


def test_the_offset_is_store_minus_local_from_the_round_trip_midpoint() -> None:
    # sent at 100 s, received at 100.2 s (local); the store read 98.1 s: the local clock is ~2 s ahead
    got = ClockOffset.of(ClockSample(sent_ns=100 * S, store_ns=98 * S + S // 10, received_ns=100 * S + S // 5))
    assert got.offset_ns == -2 * S  # store − midpoint (100.1 s)
    assert got.uncertainty_ns == S // 10 and got.rtt_ns == S // 5
    assert got.to_store(100 * S) == 98 * S and got.to_local(98 * S) == 100 * S
    assert got.significant and got.as_dict()["applied"] is True
    # an offset inside its uncertainty is noise: measured and said, never applied
    noise = ClockOffset(offset_ns=5_000_000, uncertainty_ns=20_000_000)
    assert not noise.significant and noise.to_store(100 * S) == 100 * S and noise.to_local(100 * S) == 100 * S
    assert noise.attributes()["spanbench.clock.offset_ms"] == 5.0


def test_measure_keeps_the_round_trip_that_queued_least() -> None:
    samples = iter([ClockSample(0, 900, 1000), ClockSample(2000, 2150, 2100), ClockSample(5000, 5600, 5400)])

    async def one() -> ClockSample:
        return next(samples)

    got = asyncio.run(measure(one, rounds=3))
    assert (got.offset_ns, got.uncertainty_ns, got.samples) == (100, 50, 3)  # the 100 ns round trip


def test_only_instants_are_converted_and_offset_zero_is_the_identity() -> None:
    payload = {"start_unix_ns": 10 * S, "at_unix_ns": 3 * S, "warmup_s": 2.0, "step": 4, "flag": True}
    c = ClockOffset(offset_ns=S)
    assert c.payload_to_store(payload) == {**payload, "start_unix_ns": 11 * S, "at_unix_ns": 4 * S}
    assert c.payload_to_local(c.payload_to_store(payload)) == payload
    assert ClockOffset().payload_to_store(payload) is payload  # a worker at offset 0 does exactly as before
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert (c.datetime_to_store(when) - when).total_seconds() == 1.0


def _libfaketime() -> str | None:
    """Debian's multi-threaded build (the worker has threads: to_thread, the Snowflake sessions)."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    return found[0] if found else None


def _faked_env(lib: str, fake: str, **extra: str) -> dict[str, str]:
    # The monotonic clock is left to libfaketime too (it shifts it, and it still runs at the real
    # rate): with FAKETIME_DONT_FAKE_MONOTONIC=1, libfaketime 0.9.10 makes Python's time.sleep
    # (clock_nanosleep on CLOCK_MONOTONIC, TIMER_ABSTIME) fail with EINVAL.
    return spanbench_env(LD_PRELOAD=lib, FAKETIME=fake, **extra)


@pytest.mark.parametrize("fake", ["+2s", "-2s"])
def test_a_worker_whose_clock_is_2s_off_measures_the_orchestrators_window(pg_dsn: str, tmp_path: Path,
                                                                          fake: str) -> None:
    lib = _libfaketime()
    if lib is None:
        pytest.skip("libfaketime is not installed (apt-get install faketime; .ci/run does it)")
    fake_ns = int(fake.removesuffix("s")) * S
    # The fake really reaches Python's wall clock, and durations stay real, or the test proves nothing.
    probe = subprocess.run([sys.executable, "-c", "import time; p = time.perf_counter_ns(); time.sleep(0.2); "
                            "print(time.time_ns(), time.perf_counter_ns() - p)"],
                           env=_faked_env(lib, fake), capture_output=True, text=True, check=True)
    wall, slept = map(int, probe.stdout.split())
    assert abs(wall - time.time_ns() - fake_ns) < S // 2, (wall - time.time_ns(), fake)
    assert 0.19 * S < slept < 0.5 * S  # durations in the faked process are real durations

    run_id = "clk-" + secrets.token_hex(4)
    out = tmp_path / "orchestrator"
    # A warmup longer than the fake: a worker that scheduled on its own clock would switch
    # to MEASUREMENT 2 s early (or late), never inside the bound below by accident.
    orchestrator = subprocess.Popen(
        [sys.executable, "-m", "spanbench", "run", "--target-dsn", pg_dsn, "--workers", "1", "--connections", "2",
         "--warmup", "2.5s", "--duration", "1.5s", "--output", str(out)],
        env=spanbench_env(SPANBENCH_TRACING="1", SPANBENCH_RUN_ID=run_id, SPANBENCH_LAUNCH_WORKERS="false",
                          SPANBENCH_READY_TIMEOUT="60s", SPANBENCH_COOLDOWN="0.5s"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    worker = subprocess.Popen(
        [sys.executable, "-m", "spanbench", "worker", "--run-id", run_id, "--control-dsn", pg_dsn,
         "--group-id", "0", "--group-count", "1"],
        env=_faked_env(lib, fake), cwd=elsewhere, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _, stderr = orchestrator.communicate(timeout=120)
        code = worker.wait(30)
    finally:
        for p in (orchestrator, worker):
            if p.poll() is None:
                p.kill()
    assert orchestrator.returncode == 0, stderr
    assert code == 0, worker.stderr.read() if worker.stderr else ""

    results = json.loads((out / run_id / "results.json").read_text())
    [w] = results["workers"]
    # store − local: a worker 2 s ahead is at −2 s (wide bound: a loaded CI machine)
    assert abs(w["clock"]["offset_ms"] + fake_ns / 1e6) < 150, w["clock"]
    assert w["clock"]["samples"] >= 1 and w["clock"]["uncertainty_ms"] < 100
    assert abs(results["clock"]["offset_ms"]) < results["clock"]["uncertainty_ms"] + 5, results["clock"]

    # Its measurement window, on the store's clock, is the orchestrator's.
    ours = results["measurement_window_unix_ns"]
    theirs = w["measurement_window_unix_ns"]
    assert abs(theirs[0] - ours[0]) < 300_000_000, (theirs[0] - ours[0]) / 1e6
    assert abs(theirs[1] - ours[1]) < 300_000_000, (theirs[1] - ours[1]) / 1e6

    # The same from the trace, independently of what the worker converted for its results:
    # its raw span times are on its faked clock (fake_ns off the orchestrator's), and its first
    # query, less the fake, is at the START the orchestrator announced.
    worker_dir = elsewhere / "spanbench-runs" / run_id
    tree = Tree(read_spans(out / run_id) + read_spans(worker_dir))
    [warmup] = tree.named("phase.warmup")
    first = min(tree.named("first_query"), key=lambda sp: sp.start)  # one per connection
    [wspan] = tree.named("worker")
    assert abs(first.start - fake_ns - warmup.start) < 300_000_000, (first.start - fake_ns - warmup.start) / 1e6
    assert abs(wspan.attrs["spanbench.clock.offset_ms"] + fake_ns / 1e6) < 150
    assert "spanbench.clock.uncertainty_ms" in tree.one(wspan, "control.clock").attrs

    # `spanbench gaps` on the run folder with the worker's trace beside the orchestrator's
    # draws the worker where its work happened: its first query at the START, not 2 s away.
    (out / run_id / "trace-w0.jsonl").write_bytes((worker_dir / "trace-w0.jsonl").read_bytes())
    loaded = load_trace(out / run_id)
    [warmup_at] = [sp.start_ns for sp in loaded.spans if sp.name == "phase.warmup"]
    first_at = min(sp.start_ns for sp in loaded.spans if sp.name == "first_query")
    assert abs(first_at - warmup_at) < 300_000_000, (first_at - warmup_at) / 1e6
    assert any("w0: spans shifted by" in w for w in loaded.warnings), loaded.warnings


def _span(span_id: str, start_s: float, end_s: float, process: str, **attrs: object) -> Span:
    return Span(trace_id="t", span_id=span_id, parent_id=None if span_id == "run" else "run", name=span_id,
                start_ns=int(start_s * S), end_ns=int(end_s * S), service=process, process_key=process,
                attributes=dict(attrs))


def test_the_analysis_puts_a_process_on_the_store_clock_only_when_its_offset_is_significant() -> None:
    spans = [
        _span("run", 0, 10, "orchestrator", **{"spanbench.clock.offset_ms": 0.004, "spanbench.clock.uncertainty_ms": 0.02}),
        # 2 s ahead: recorded on its worker span, applied to every span of the process
        _span("worker", 3, 9, "w0", **{"spanbench.clock.offset_ms": -2000.0, "spanbench.clock.uncertainty_ms": 0.05,
                                       "spanbench.worker_id": "w0"}),
        _span("first_query", 4, 4.1, "w0"),
        # an offset inside its uncertainty says nothing: left as it is
        _span("worker1", 1, 8, "w1", **{"spanbench.clock.offset_ms": 3.0, "spanbench.clock.uncertainty_ms": 4.0}),
    ]
    notes = to_store_clock(spans)
    assert [(s.span_id, s.start_ns / S) for s in spans] == [("run", 0), ("worker", 1), ("first_query", 2), ("worker1", 1)]
    assert notes == ["w0: spans shifted by -2000.0 ms onto the control store's clock (the clock offset it measured)"]
