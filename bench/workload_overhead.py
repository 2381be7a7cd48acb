#!/usr/bin/env python3
"""What a scenario costs over the built-in demo: a one-parameter custom point select vs the demo loop.

One embedded PostgreSQL 18 server in a temporary folder, filled once by ``spanbench init``.
Then, interleaved (A B A B …, so that drift on the machine hits both alike):

- A, ``demo``: ``spanbench run`` with the built-in demo, point selects only
  (``SPANBENCH_POINT_SELECT_ONLY=1``);
- B, ``custom``: ``spanbench run SCENARIO`` with the same ``SELECT abalance FROM
  spanbench_accounts WHERE aid = $1``, written as a scenario file with one ``int`` parameter.

With ``--baseline-git REV`` a third variant, ``rev``, runs the demo of that revision's
source (``git archive REV src``, read only; the working tree is not touched): the demo loop
as it was before scenarios. Tracing is off in every run. The ratio B/A (and B/rev) of each
repeat's QPS is printed as min / median / max; the record goes to
``bench/results/workload_overhead-<timestamp>.json``. The goal: median B/A ≥ 0.97.

Usage::

    python bench/workload_overhead.py                       # 8 connections, 2 workers, 4 pairs of 5 s
    python bench/workload_overhead.py --repeat 6 --duration 10 --baseline-git HEAD
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pgbench_compare import BenchError, Server, run_cmd  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ROWS = 100_000
CUSTOM = f"""version = 1
[[queries]]
name = "lookup"
sql = "SELECT abalance FROM spanbench_accounts WHERE aid = $1"
params = ["aid"]
[params.aid]
kind = "int"
min = 1
max = {ROWS}
"""


def env_for(variant: str, src: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANBENCH_", "OTEL_", "TRACEPARENT"))}
    env["SPANBENCH_TRACING"] = "0"
    if variant != "custom":
        env["SPANBENCH_POINT_SELECT_ONLY"] = "1"
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return env


def run_variant(args: argparse.Namespace, server: Server, variant: str, scenario: Path, work: Path,
                tag: str, rev_src: Path | None) -> dict[str, Any]:
    out_dir = work / "runs" / tag
    cmd = [sys.executable, "-m", "spanbench", "run"]
    if variant == "custom":
        cmd.append(str(scenario))
    cmd += ["--target-dsn", server.dsn, "--workers", str(args.workers), "--connections", str(args.connections),
            "--pool-batch-size", str(args.connections), "--warmup", f"{args.warmup}s",
            "--duration", f"{args.duration}s", "--output", str(out_dir)]
    run_cmd(cmd, timeout=args.warmup + args.duration + 180, log=work / f"{tag}.log",
            env=env_for(variant, rev_src if variant == "rev" else None), cwd=work)
    found = sorted(out_dir.glob("*/results.json"))
    if not found:
        raise BenchError(f"no results.json under {out_dir} (output: {work / f'{tag}.log'})")
    m = json.loads(found[-1].read_text())["measurement"]
    if m["errors"]:
        raise BenchError(f"{tag}: {m['errors']} errors")
    return {"variant": variant, "qps": m["qps"], "queries": m["queries"], "seconds": m["seconds"]}


def extract(rev: str, into: Path) -> Path:
    """``git archive REV src`` unpacked into ``into``: that revision's package, importable by PYTHONPATH."""
    archive = into / "src.tar"
    with archive.open("wb") as f:
        subprocess.run(["git", "-C", str(REPO), "archive", rev, "src"], stdout=f, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def ratios(rows: list[dict[str, Any]], a: str, b: str) -> dict[str, float]:
    by = {}
    for r in rows:
        by.setdefault(r["repeat"], {})[r["variant"]] = r["qps"]
    values = [v[b] / v[a] for v in by.values() if a in v and b in v and v[a]]
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "n": len(values)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=4, help="pairs A B (default 4)")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--baseline-git", metavar="REV", help="also run the demo of this revision's source")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="spanbench-overhead-") as tmp:
        work = Path(tmp)
        rev_src = extract(args.baseline_git, work) if args.baseline_git else None
        scenario = work / "custom.toml"
        scenario.write_text(CUSTOM)
        server = Server(work)
        server.start()
        try:
            run_cmd([sys.executable, "-m", "spanbench", "init", "--target-dsn", server.dsn, "--rows", str(ROWS)],
                    timeout=300, log=work / "init.log", env=env_for("demo", None))
            variants = ["demo", "custom"] + (["rev"] if rev_src else [])
            rows = []
            for i in range(args.repeat):
                order = variants if i % 2 == 0 else variants[::-1]
                for v in order:
                    r = run_variant(args, server, v, scenario, work, f"{v}-{i}", rev_src)
                    r["repeat"] = i
                    rows.append(r)
                    print(f"  repeat {i}  {v:<6}  {r['qps']:>10,.0f} q/s", flush=True)
        finally:
            server.stop()
    summary = {"custom/demo": ratios(rows, "demo", "custom")}
    if rev_src:
        summary["custom/rev"] = ratios(rows, "rev", "custom")
        summary["demo/rev"] = ratios(rows, "rev", "demo")
    for name, r in summary.items():
        print(f"{name:<12} min {r['min']:.3f}  median {r['median']:.3f}  max {r['max']:.3f}  (n={r['n']})")
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    (out / f"workload_overhead-{stamp}.json").write_text(json.dumps(
        {"args": vars(args), "runs": rows, "summary": summary}, indent=2))
    return 0 if summary["custom/demo"]["median"] >= 0.97 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"workload_overhead: {exc}", file=sys.stderr)
        sys.exit(1)
