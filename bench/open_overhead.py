#!/usr/bin/env python3
"""What the open model costs over the closed loop: its reachable rate vs the closed loop's QPS.

One embedded PostgreSQL 18 server in a temporary folder, filled once by ``spanbench init``.
Then, interleaved (A B A B …, so that drift on the machine hits both alike), with the same
workers and connections, point selects only, tracing off:

- A, ``closed``: ``spanbench run`` with the closed loop (no ``[load]``);
- B, ``open``: ``spanbench run SCENARIO`` with ``[load] model = "open"``, ``max_queue =
  10000``, at a target of ``--hold`` (default 0.9) × the pair's closed-loop QPS. The issue's
  goal, "the open model's reachable rate is ≥ 0.9× the closed loop's QPS", holds when B
  achieves that target within 2 %: the verdict is the median of achieved / target ≥ 0.98.
  ``--hold 1`` aims at the closed loop's QPS itself (a target it can only just meet: any
  idle moment of a Poisson schedule is lost for good, so expect a little below 1). With
  ``--rate R``, a fixed target far above capacity (saturated: the queue is full, every
  surplus arrival is dropped and counted): B/A is then the open model's capacity against
  the closed loop's, what its extra bookkeeping per query costs.

With ``--hold`` each pair runs A then B (B's target comes from A's result); with ``--rate``
the pairs alternate A B, B A. The achieved rate is executions per second of the measurement.
B/A (and with ``--hold``, B/target) of each pair is printed as min / median / max; the
record goes to ``bench/results/open_overhead-<timestamp>.json``.

Usage::

    python bench/open_overhead.py                       # hold 0.9 x closed: 8 connections, 2 workers, 3 pairs of 5 s
    python bench/open_overhead.py --hold 1              # aim at the closed loop's QPS itself
    python bench/open_overhead.py --repeat 5 --duration 10 --connections 16
    python bench/open_overhead.py --rate 1000000        # saturated: a target far above capacity
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pgbench_compare import BenchError, Server, run_cmd  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ROWS = 100_000


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("SPANBENCH_", "OTEL_", "TRACEPARENT"))}
    out["SPANBENCH_TRACING"] = "0"
    out["SPANBENCH_POINT_SELECT_ONLY"] = "1"
    return out


def run_variant(args: argparse.Namespace, server: Server, variant: str, rate: float, work: Path, tag: str) -> dict[str, Any]:
    out_dir = work / "runs" / tag
    cmd = [sys.executable, "-m", "spanbench", "run"]
    if variant == "open":
        scenario = work / f"{tag}.toml"
        scenario.write_text(f'[load]\nmodel = "open"\nrate = {rate:.1f}\nmax_queue = 10000\n')
        cmd.append(str(scenario))
    cmd += ["--target-dsn", server.dsn, "--workers", str(args.workers), "--connections", str(args.connections),
            "--pool-batch-size", str(args.connections), "--warmup", f"{args.warmup}s",
            "--duration", f"{args.duration}s", "--output", str(out_dir)]
    # read results.json whatever the exit code: 4 (completed with errors) still measured
    run_cmd(cmd, timeout=args.warmup + args.duration + 180, log=work / f"{tag}.log", env=env(), cwd=work, check=False)
    found = sorted(out_dir.glob("*/results.json"))
    if not found:
        raise BenchError(f"no results.json under {out_dir} (output: {work / f'{tag}.log'})")
    m = json.loads(found[-1].read_text())["measurement"]
    if m["errors"]:
        raise BenchError(f"{tag}: {m['errors']} errors")
    achieved = (m["queries"] + m["errors"]) / m["seconds"] if m["seconds"] else 0.0
    row = {"variant": variant, "qps": achieved, "queries": m["queries"], "seconds": m["seconds"],
           "cpu_us_per_query": m.get("client_cpu_us_per_query")}
    if variant == "open":
        row.update(target=rate, dropped=m.get("dropped"), service_p50_ms=m.get("service_all", {}).get("p50_ms"),
                   schedule_lag_p50_ms=m.get("schedule_lag", {}).get("p50_ms"))
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3, help="pairs A B (default 3)")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--hold", type=float, default=0.9,
                   help="the open variant's target as a share of the pair's closed-loop QPS (default 0.9)")
    p.add_argument("--rate", type=float, default=None,
                   help="a fixed target for the open variant instead (saturated, e.g. 1000000)")
    args = p.parse_args(argv)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="spanbench-open-overhead-") as tmp:
        work = Path(tmp)
        server = Server(work)
        server.start()
        try:
            run_cmd([sys.executable, "-m", "spanbench", "init", "--target-dsn", server.dsn, "--rows", str(ROWS)],
                    timeout=300, log=work / "init.log", env=env())
            for i in range(args.repeat):
                order = ["closed", "open"] if args.rate is None or i % 2 == 0 else ["open", "closed"]
                closed_qps = 0.0
                for v in order:
                    rate = args.rate if args.rate is not None else args.hold * closed_qps
                    r = run_variant(args, server, v, rate, work, f"{v}-{i}")
                    if v == "closed":
                        closed_qps = r["qps"]
                    r["repeat"] = i
                    rows.append(r)
                    aim = f"  (target {r['target']:,.0f}/s, dropped {r['dropped']:,})" if v == "open" else ""
                    cpu = r["cpu_us_per_query"]
                    cpu_text = "" if cpu is None else f"  {cpu:5.1f} µs client CPU/query"
                    print(f"  repeat {i}  {v:<6}  {r['qps']:>10,.0f} executions/s{cpu_text}{aim}", flush=True)
        finally:
            server.stop()
    by: dict[int, dict[str, float]] = {}
    targets: dict[int, float] = {}
    for r in rows:
        by.setdefault(r["repeat"], {})[r["variant"]] = r["qps"]
        if r["variant"] == "open":
            targets[r["repeat"]] = r["target"]
    ratios = {"open/closed": [v["open"] / v["closed"] for v in by.values() if v.get("closed")]}
    cpu: dict[int, dict[str, float]] = {}
    for r in rows:
        if r.get("cpu_us_per_query"):
            cpu.setdefault(r["repeat"], {})[r["variant"]] = r["cpu_us_per_query"]
    cpu_ratios = [c["open"] / c["closed"] for c in cpu.values() if c.get("open") and c.get("closed")]
    if cpu_ratios:
        ratios["CPU/query open/closed"] = cpu_ratios
    if args.rate is None:
        ratios["open/target"] = [by[i]["open"] / t for i, t in targets.items() if t]
    summary = {name: {"min": min(xs), "median": statistics.median(xs), "max": max(xs), "n": len(xs)}
               for name, xs in ratios.items()}
    for name, s in summary.items():
        print(f"{name:<22} min {s['min']:.3f}  median {s['median']:.3f}  max {s['max']:.3f}  (n={s['n']})")
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    (out / f"open_overhead-{stamp}.json").write_text(json.dumps({"args": vars(args), "runs": rows, "summary": summary}, indent=2))
    if args.rate is None:
        held = summary["open/target"]["median"] >= 0.98
        print(f"verdict: the open model {'holds' if held else 'does not hold'} {args.hold:g} x the closed loop's QPS "
              "(median achieved / target >= 0.98)")
        return 0 if held else 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"open_overhead: {exc}", file=sys.stderr)
        sys.exit(1)
