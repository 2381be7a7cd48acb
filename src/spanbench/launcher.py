"""Starting worker processes on this machine, and watching them.

Two ways, one interface (``WorkerProcess``):

- **fork** (the default where the OS has it): the orchestrator forks its workers right after
  its own imports, before its event loop or any thread exists, so a worker begins with
  everything imported instead of paying ~0.6 s of interpreter start and imports of its own.
  Each child waits on a pipe for the hand-off (control and target DSNs, the run's
  traceparent, sent once the run exists), then lives exactly as ``spanbench worker`` does.
  A closed pipe (the orchestrator failed in prepare, or died) ends the child quietly.
- **exec** (``SPANBENCH_WORKER_LAUNCH=exec``, or no fork): ``python -m spanbench worker`` as
  a subprocess, the DSNs in its environment, never on its command line.

Worker states (spanbench.control.records) are the same either way; only the start differs:

    forked ──hand-off──▶ joins the run as any worker
      │
      └──pipe closed / no hand-off in time──▶ exits 0, having done nothing
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spanbench.telemetry.process_start import LAUNCH_ENV

HANDOFF_TIMEOUT_S = 900.0  # a forked worker that hears nothing for this long gives up


class ForkedProcess:
    """The part of ``subprocess.Popen``'s interface the orchestrator uses, for a forked child."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -1  # reaped elsewhere; gone either way
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            _wait_exit(self.pid, 0.05 if left is None else min(left, 0.05))
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


@dataclass
class WorkerProcess:
    worker_id: str
    proc: Any  # subprocess.Popen or ForkedProcess
    log_path: Path
    handoff_fd: int | None = None  # forked workers: where the hand-off is written
    fork_ns: tuple[int, int] = field(default=(0, 0))

    def exit_code(self) -> int | None:
        return self.proc.poll()

    def hand_off(self, env: dict[str, str]) -> None:
        """Give a forked worker its run; an exec'd worker got it in its environment."""
        if self.handoff_fd is None:
            return
        fd, self.handoff_fd = self.handoff_fd, None
        try:
            os.write(fd, json.dumps({"env": env}).encode() + b"\n")
        except OSError:
            pass  # it died first; the orchestrator sees its exit code
        finally:
            os.close(fd)

    def release(self) -> None:
        """Close the hand-off pipe unused: the child ends without joining."""
        if self.handoff_fd is not None:
            fd, self.handoff_fd = self.handoff_fd, None
            os.close(fd)

    def last_error_line(self) -> str:
        """The worker's last words from its log: its one-line error, if it printed one."""
        try:
            lines = [ln.strip() for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        for ln in reversed(lines):
            if "error" in ln.lower():
                return ln[:300]
        return lines[-1][:300] if lines else ""


def can_fork() -> bool:
    return hasattr(os, "fork") and os.environ.get("SPANBENCH_WORKER_LAUNCH", "fork") != "exec"


def preload(systems: set[str]) -> None:
    """Import what a worker will need, once, before the fork: the children start with it."""
    import spanbench.worker  # noqa: F401

    if "postgresql" in systems:
        import spanbench.control.postgres  # noqa: F401
        import spanbench.targets.postgres  # noqa: F401
    if "snowflake" in systems:
        import spanbench.control.snowflake  # noqa: F401
        import spanbench.targets.snowflake  # noqa: F401
    try:
        import uvloop  # noqa: F401
    except ImportError:
        pass


def fork_workers(*, run_id: str, group_count: int, run_dir: Path) -> list[WorkerProcess]:
    """Fork every worker now; call before any event loop or thread exists in this process."""
    run_dir.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    workers: list[WorkerProcess] = []
    for g in range(group_count):
        worker_id = f"w{g}"
        log_path = run_dir / f"worker-{worker_id}.log"
        read_fd, write_fd = os.pipe()
        t0 = time.time_ns()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the orchestrator's code
            os.close(write_fd)
            for w in workers:  # the other workers' pipes: only the orchestrator may hold them
                if w.handoff_fd is not None:
                    os.close(w.handoff_fd)
            _child(read_fd, run_id=run_id, group_id=g, group_count=group_count, run_dir=run_dir,
                   log_path=log_path, fork_ns=t0)
        os.close(read_fd)
        workers.append(WorkerProcess(worker_id, ForkedProcess(pid), log_path, write_fd, (t0, time.time_ns())))
    return workers


def _child(read_fd: int, *, run_id: str, group_id: int, group_count: int, run_dir: Path, log_path: Path,
           fork_ns: int) -> None:
    code = 1
    try:
        os.setsid()  # Ctrl-C reaches the orchestrator only; it stops us through the control store
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        code = _child_main(read_fd, run_id=run_id, group_id=group_id, group_count=group_count, run_dir=run_dir,
                           fork_ns=fork_ns)
    except BaseException as exc:  # noqa: BLE001 - nothing may escape into the parent's stack
        with contextlib.suppress(BaseException):
            print(f"spanbench: error: worker w{group_id}: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _child_main(read_fd: int, *, run_id: str, group_id: int, group_count: int, run_dir: Path, fork_ns: int) -> int:
    from spanbench import aio
    from spanbench.errors import ConfigError, SpanbenchError
    from spanbench.telemetry import process_start
    from spanbench.worker import BootTimes, WorkerArgs, run_worker

    main_ns = time.time_ns()
    process_start.set_own_start(process_start.ProcessStart(fork_ns, fork_ns, "fork"))
    handoff = _read_handoff(read_fd, HANDOFF_TIMEOUT_S)
    received_ns = time.time_ns()
    if handoff is None:
        return 0  # the run ended (or never began) before it needed us
    os.environ.update(handoff["env"])
    args = WorkerArgs(
        run_id=run_id, control_dsn=handoff["env"]["SPANBENCH_CONTROL_DSN"], group_id=group_id,
        group_count=group_count, target_dsn=handoff["env"].get("SPANBENCH_TARGET_DSN"), run_dir=run_dir,
        parent_pid=os.getppid(),
    )
    boot = BootTimes(fork_ns, main_ns, stage="fork", handoff=(main_ns, received_ns))
    try:
        return aio.run(run_worker(args, boot))
    except ConfigError as exc:
        print(f"spanbench: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except SpanbenchError as exc:
        print(f"spanbench: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1


def _read_handoff(fd: int, timeout_s: float) -> dict[str, Any] | None:
    """One JSON line from the orchestrator, or None on EOF or time-out."""
    deadline = time.monotonic() + timeout_s
    data = b""
    try:
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            data += chunk
    finally:
        os.close(fd)
    return json.loads(data)


def launch_worker(
    *,
    run_id: str,
    group_id: int,
    group_count: int,
    run_dir: Path,
    env_extra: dict[str, str],
) -> WorkerProcess:
    worker_id = f"w{group_id}"
    log_path = run_dir / f"worker-{worker_id}.log"
    env = dict(os.environ)
    env.update(env_extra)
    env["SPANBENCH_PARENT_PID"] = str(os.getpid())
    # DSNs travel in the environment, never on the command line where `ps` shows them.
    cmd = [
        sys.executable, "-m", "spanbench", "worker",
        "--run-id", run_id, "--group-id", str(group_id), "--group-count", str(group_count),
    ]
    with open(log_path, "wb") as log:
        # The worker's start is bounded by this instant (telemetry/process_start.py): its
        # spans never begin before the launch that caused them, whatever the tick rounding.
        env[LAUNCH_ENV] = str(time.time_ns())
        # A session of its own: Ctrl-C in the terminal reaches the orchestrator only, which
        # then stops the workers through the control store so they can persist their results.
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    return WorkerProcess(worker_id, proc, log_path)


def stop_workers(workers: list[WorkerProcess], timeout_s: float) -> None:
    """Wait for every worker to exit; SIGTERM, then SIGKILL, the ones that will not."""
    for w in workers:
        w.release()
    deadline = time.monotonic() + timeout_s
    for w in workers:
        _wait(w, deadline)
    for w in workers:
        if w.proc.poll() is None:
            w.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 3.0
    for w in workers:
        _wait(w, deadline)
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait(5)


def _wait(w: WorkerProcess, deadline: float) -> None:
    try:
        w.proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass


def _wait_exit(pid: int, timeout_s: float) -> None:
    """Block until ``pid`` may have exited (a pidfd where Linux has one), at most ``timeout_s``."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        time.sleep(timeout_s)
        return
    try:
        select.select([fd], [], [], timeout_s)
    finally:
        os.close(fd)
