"""Starting worker processes on this machine, and watching them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class WorkerProcess:
    worker_id: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def exit_code(self) -> int | None:
        return self.proc.poll()

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
        # A session of its own: Ctrl-C in the terminal reaches the orchestrator only, which
        # then stops the workers through the control store so they can persist their results.
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    return WorkerProcess(worker_id, proc, log_path)


def stop_workers(workers: list[WorkerProcess], timeout_s: float) -> None:
    """Wait for every worker to exit; SIGTERM, then SIGKILL, the ones that will not."""
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
