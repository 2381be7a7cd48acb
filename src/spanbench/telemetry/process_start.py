"""When did this process start, by the kernel's clock rather than by the time main() ran.

psutil's ``create_time`` adds the start tick to the boot time from /proc/stat, which is
rounded to whole seconds, so it can be off by up to a second. Instead the process age is
taken from two clocks with the same origin (``starttime`` in /proc/self/stat and
CLOCK_BOOTTIME, both since boot) and subtracted from the wall clock now.
"""

from __future__ import annotations

import os
import time


def process_start_time_ns(pid: int | None = None) -> int:
    """Wall-clock start of ``pid`` (default: this process), in Unix ns, to one clock tick (~10 ms)."""
    pid = os.getpid() if pid is None else pid
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        # Field 22; the command name (field 2) may hold spaces and parentheses, so split after it.
        start_ticks = int(stat[stat.rindex(b")") + 2 :].split()[19])
        age_s = time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
        return time.time_ns() - int(age_s * 1e9)
    except (OSError, ValueError, AttributeError, IndexError):
        import psutil

        return int(psutil.Process(pid).create_time() * 1e9)
