#!/usr/bin/env python3
"""How long until the first query: spanbench's own start-up, measured from its own traces.

Runs ``spanbench run`` on the embedded default (warm: the data folder is filled once first)
``--repeat`` times with a short measurement, and reads each run's results.json and trace:

- **run start → first query**: from the run span's start (the exec) to the worst worker's
  ``first_query`` (the figure `spanbench gaps` prints as the critical path);
- **START → first query**: from the announced start instant to each worker's first query,
  and the spread between the first and the last worker;
- the spans on the way (orchestrator.startup/bootstrap, the embedded start, the workers'
  connect/pool/setup), as medians;
- ``spanbench --help`` wall time over ``--repeat`` runs;
- with ``--importtime``, the slowest imports of ``spanbench run`` (``python -X importtime``).

Usage::

    python bench/startup.py                    # 5 runs, embedded default in a fresh data folder
    python bench/startup.py --repeat 10 --importtime
    python bench/startup.py --json startup.json

Figures are min / median / max. Other load on the machine moves them: run it idle.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("SPANBENCH_", "OTEL_", "TRACEPARENT"))}


def spans_of(run_dir: Path) -> list[dict[str, Any]]:
    out = []
    for f in run_dir.glob("trace-*.jsonl"):
        for line in f.read_text().splitlines():
            if not line.strip():
                continue
            for rs in json.loads(line)["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    for sp in ss["spans"]:
                        out.append({"name": sp["name"], "start": int(sp["startTimeUnixNano"]),
                                    "end": int(sp["endTimeUnixNano"]), "parent": sp.get("parentSpanId")})
    return out


def one_run(embedded: Path, output: Path) -> dict[str, float]:
    e = env()
    e["SPANBENCH_EMBEDDED_DIR"] = str(embedded)
    proc = subprocess.run([sys.executable, "-m", "spanbench", "run", "--warmup", "0s", "--duration", "0.5s",
                           "--progress", "0", "--output", str(output)],
                          env=e, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"run failed: {proc.stderr.strip()[-500:]}")
    run_dir = max((d for d in output.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime)
    results = json.loads((run_dir / "results.json").read_text())
    spans = spans_of(run_dir)
    [run] = [s for s in spans if s["name"] == "run"]
    firsts = [s for s in spans if s["name"] == "first_query"]
    fig: dict[str, float] = {
        "run_start_to_first_query_ms": (max(f["start"] for f in firsts) - run["start"]) / 1e6,
    }
    s2f = [w["start_to_first_query_ms"] for w in results["workers"]]
    fig["start_to_first_query_max_ms"] = max(s2f)
    fig["start_to_first_query_spread_ms"] = max(s2f) - min(s2f)
    for name in ("orchestrator.startup", "orchestrator.bootstrap", "orchestrator.launch_workers", "target.start_embedded",
                 "target.join_embedded", "orchestrator.prepare", "worker.await_handoff", "control.connect",
                 "pool.init", "executor.setup", "wait_for_start", "scale_to"):
        ds = [(s["end"] - s["start"]) / 1e6 for s in spans if s["name"] == name]
        if ds:
            fig[name + "_ms"] = max(ds)
    return fig


def help_time(repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "spanbench", "--help"], env=env(), capture_output=True, check=True)
        out.append((time.perf_counter() - t) * 1e3)
    return out


def importtime(embedded: Path, output: Path, top: int = 15) -> list[tuple[str, float]]:
    e = env()
    e["SPANBENCH_EMBEDDED_DIR"] = str(embedded)
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "spanbench", "run", "--warmup", "0s",
                           "--duration", "0.2s", "--progress", "0", "--output", str(output)],
                          env=e, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
    rows = []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cum, name = (p.strip() for p in line[len("import time:"):].split("|"))
            if cum.isdigit() and not name.startswith(" "):
                rows.append((name.strip(), int(cum) / 1e3))
    top_level = [r for r in rows if "." not in r[0] or r[0].startswith("spanbench")]
    return sorted(top_level, key=lambda r: -r[1])[:top]


def stats(values: list[float]) -> str:
    return f"{min(values):8.1f} {statistics.median(values):8.1f} {max(values):8.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--embedded-dir", type=Path, default=None, help="data folder to use (default: a fresh one)")
    ap.add_argument("--importtime", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="spanbench-startup-"))
    embedded = a.embedded_dir or tmp / "pg" / "data"
    embedded.parent.mkdir(parents=True, exist_ok=True)
    one_run(embedded, tmp / "warm")  # initdb and the demo table: not what is measured
    runs = [one_run(embedded, tmp / "runs") for _ in range(a.repeat)]
    helps = help_time(a.repeat)
    print(f"spanbench start-up, {a.repeat} warm runs on the embedded default ({os.cpu_count()} cores)")
    print(f"{'':42} {'min':>8} {'median':>8} {'max':>8}  (ms)")
    for key in runs[0]:
        vals = [r[key] for r in runs if key in r]
        print(f"{key:42} {stats(vals)}")
    print(f"{'spanbench --help':42} {stats(helps)}")
    out: dict[str, Any] = {"runs": runs, "help_ms": helps}
    if a.importtime:
        imports = importtime(embedded, tmp / "imp")
        out["imports_ms"] = imports
        print("slowest top-level imports of `spanbench run` (cumulative, -X importtime):")
        for name, ms in imports:
            print(f"  {name:40} {ms:8.1f} ms")
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
