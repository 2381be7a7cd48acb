"""The worker span starts at the OS's record of the process start, not at main()."""

from __future__ import annotations

import subprocess
import sys
import time

from spanbench.telemetry.process_start import process_start_time_ns


def test_start_time_of_a_child_process() -> None:
    before = time.time_ns()
    # The child sleeps before doing anything, so a start time taken at its main() would be late.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    after = time.time_ns()
    try:
        time.sleep(0.3)
        started = process_start_time_ns(child.pid)
    finally:
        child.kill()
        child.wait()
    tick = 20_000_000  # /proc's start time has clock-tick (10 ms) resolution
    assert before - tick <= started <= after + tick


def test_own_start_time_is_in_the_past() -> None:
    assert process_start_time_ns() < time.time_ns()
