"""When did this process's own life begin: at its exec, not at the fork of the shell that ran it.

The kernel records when a process was *forked* (``starttime`` in /proc/self/stat), and a
shell running ``pip install … && spanbench run`` or ``sleep 4; spanbench run`` execs
spanbench in its own PID, so that record is the shell's start: time that is not
spanbench's. No kernel field records the exec, so it is bounded from the evidence there is:

- a launcher that knows (the orchestrator starting a worker) passes the instant just before
  its fork+exec in ``SPANBENCH_LAUNCH_NS``; the exec is no earlier than that;
- a PID that ran and reaped other programs before it became spanbench (their page faults
  and CPU time stay in its RUSAGE_CHILDREN across the exec) was a shell that did something
  first: that time is the launcher's. The exec is then bounded by CPU time: when
  spanbench's first line runs, the time since the exec is at least the CPU time used since
  it, and a waiting shell uses next to none, so ``first code − CPU time`` is the latest the
  exec can have been (within the shell's own few milliseconds of CPU). An interpreter that
  waited on a cold disk after that exec is then under-claimed, never blamed;
- otherwise nothing ran in this PID before us (a launcher that exec'd at once: a process
  manager, a container runtime, an interactive shell's fork): the fork is the exec, and
  whatever happens after it, a slow ``sitecustomize`` included, is this process's own.

The fork's record and CLOCK_BOOTTIME share the boot origin, so its age needs no rounded
boot time.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

LAUNCH_ENV = "SPANBENCH_LAUNCH_NS"


@dataclass(frozen=True)
class ProcessStart:
    """The start of this process's own life, in Unix ns, and how it was found."""

    exec_ns: int  # where ``*.startup`` begins
    fork_ns: int  # the kernel's record: the fork of whatever became this process
    source: str  # "fork", "launcher" or "cpu": which bound decided

    @property
    def before_exec_ns(self) -> int:
        """Time this PID lived before it was spanbench: the launcher's, never ours."""
        return max(0, self.exec_ns - self.fork_ns)


def process_start_time_ns(pid: int | None = None) -> int:
    """Wall-clock fork time of ``pid`` (default: this process), in Unix ns, to one clock tick (~10 ms)."""
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


_OWN: ProcessStart | None = None


def own_start() -> ProcessStart:
    """This process's exec (worked out once: the launcher's stamp is consumed)."""
    global _OWN
    if _OWN is None:
        _OWN = estimate_start()
    return _OWN


def set_own_start(start: ProcessStart) -> None:
    """A forked worker's start is its fork, which its launcher knows exactly."""
    global _OWN
    _OWN = start


def estimate_start(*, first_code_ns: int | None = None, first_code_cpu_ns: int | None = None,
                   ran_children: bool | None = None, launch_ns: int | None = None,
                   fork_ns: int | None = None) -> ProcessStart:
    """This process's exec, bounded as the module docstring explains."""
    import spanbench

    first = spanbench.FIRST_CODE_NS if first_code_ns is None else first_code_ns
    cpu = spanbench.FIRST_CODE_CPU_NS if first_code_cpu_ns is None else first_code_cpu_ns
    ran = spanbench.RAN_CHILDREN_BEFORE if ran_children is None else ran_children
    if launch_ns is None:
        launch_ns = launch_stamp()
    fork = min(process_start_time_ns() if fork_ns is None else fork_ns, first)
    if launch_ns is not None and fork - 50_000_000 <= launch_ns <= first:
        # The launcher's stamp is taken right before its fork+exec: the tightest bound there
        # is, and one that keeps a worker from starting before the span that launched it.
        return ProcessStart(max(fork, launch_ns), fork, "launcher")
    if ran:
        return ProcessStart(max(fork, first - cpu), fork, "cpu")
    return ProcessStart(fork, fork, "fork")


def launch_stamp() -> int | None:
    """The launcher's stamp, taken once: it must not leak to processes we start ourselves."""
    raw = os.environ.pop(LAUNCH_ENV, None)
    try:
        return int(raw) if raw else None
    except ValueError:
        return None
