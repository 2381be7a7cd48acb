#!/usr/bin/env python3
"""How big is a run's trace? Run ``spanbench run`` at full speed and measure its trace files.

Issue 5 asks that a 10-minute run at full speed, with default sampling, produce a trace
under 5 MB (Tempo's default ``max_bytes_per_trace`` is 5,000,000 bytes). This script runs a
benchmark on the embedded PostgreSQL (no DSN), tracing on, default workers, connections
and sampling, for ``--duration`` seconds of measurement (default 600), then prints:

- the size of the run folder's trace files (OTLP/JSON lines), and the size of the same
  spans encoded as OTLP protobuf, which is what a collector sends and Tempo counts;
- the span count by name, with bytes and bytes per span;
- when the run was shorter than ``--target`` seconds, an extrapolation to it.

The extrapolation splits the spans in two. *Repeating* spans are those a process makes
again and again while the load runs (sampled ``query`` spans, RUNNING ``heartbeat`` and
``control.poll``, ...): a name counts as repeating when one process made at least two of
it inside the load window (from START to the end of the last phase), spread over at least
half of it, except the ``query`` spans of each connection's first query. They are scaled by the length of the load
window; sampled ``query`` spans are then capped at what ``query_span_budget`` and
``query_span_cap`` allow (linear scaling over-states heartbeats and flushes, which are
coarsened past ``repeating_span_budget``: ``--simulate`` models that). Everything else is *fixed*: start-up, set-up, the first queries, shutdown. Each
span carries its share of the bytes of the line it was written in (resource, scope and
JSON framing), so the per-batch overhead scales with the spans that cause the batches.

``--simulate`` runs nothing: it makes 2, 16 and 64 workers' spans for 10 minutes and an
hour with spanbench's own span code on a fake clock (bench/trace_sim.py), encodes them as
OTLP protobuf and prints a table; it exits 1 if any case reaches 5 MB.

Usage::

    python bench/trace_size.py --simulate            # 2/16/64 workers, 10 min and 1 h, no run
    python bench/trace_size.py                       # 10 minutes, as the issue asks
    python bench/trace_size.py --duration 60         # 1 minute, extrapolated to 10
    python bench/trace_size.py --duration 60 --json sizes.json -- --connections 32

Arguments after ``--`` go to ``spanbench run`` unchanged. ``SPANBENCH_*`` variables of the
calling environment are dropped (so the defaults are measured) unless ``--keep-env``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TEMPO_LIMIT_BYTES = 5_000_000  # Tempo's default max_bytes_per_trace


# --------------------------------------------------------------------------- reading


@dataclass
class SpanRec:
    name: str
    process: str  # the trace file it came from: orchestrator, w0, w1, ...
    start_ns: int
    end_ns: int
    reason: str | None  # spanbench.sample_reason of query spans
    json_bytes: float  # its share of the JSON file, framing and resource included
    proto_bytes: float  # its share of the same line encoded as OTLP protobuf


@dataclass
class Trace:
    files: dict[str, int] = field(default_factory=dict)  # file name -> bytes
    proto_total: int = 0
    spans: list[SpanRec] = field(default_factory=list)

    @property
    def json_total(self) -> int:
        return sum(self.files.values())


def _proto_size(request: dict[str, Any]) -> int:
    """The size of one OTLP/JSON line as an ExportTraceServiceRequest protobuf."""
    from google.protobuf.json_format import ParseDict
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    # OTLP/JSON ids are hex; proto3 JSON wants base64 for bytes fields.
    req = json.loads(json.dumps(request))
    for rs in req.get("resourceSpans", ()):
        for ss in rs.get("scopeSpans", ()):
            for span in ss.get("spans", ()):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if span.get(key):
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
                for link in span.get("links", ()):
                    for key in ("traceId", "spanId"):
                        if link.get(key):
                            link[key] = base64.b64encode(bytes.fromhex(link[key])).decode()
    return ParseDict(req, ExportTraceServiceRequest(), ignore_unknown_fields=True).ByteSize()


def read_trace(run_dir: Path) -> Trace:
    out = Trace()
    for path in sorted(run_dir.glob("trace-*.jsonl")):
        process = path.stem.removeprefix("trace-")
        raw = path.read_bytes()
        out.files[path.name] = len(raw)
        for line in raw.splitlines(keepends=True):
            if not line.strip():
                continue
            request = json.loads(line)
            proto = _proto_size(request)
            out.proto_total += proto
            spans = [s for rs in request.get("resourceSpans", ()) for ss in rs.get("scopeSpans", ())
                     for s in ss.get("spans", ())]
            if not spans:
                continue
            own = [len(json.dumps(s, separators=(",", ":"))) for s in spans]
            share = (len(line) - sum(own)) / len(spans)  # resource, scope, framing, newline
            proto_share = proto / len(spans)  # protobuf: an even share per span is near enough
            for s, n in zip(spans, own):
                attrs = {a["key"]: a.get("value", {}) for a in s.get("attributes", ())}
                reason = attrs.get("spanbench.sample_reason", {}).get("stringValue")
                out.spans.append(SpanRec(s.get("name", ""), process, int(s["startTimeUnixNano"]),
                                         int(s["endTimeUnixNano"]), reason, n + share, proto_share))
    return out


# --------------------------------------------------------------------------- model


def _key(s: SpanRec) -> str:
    """What the report groups by: the name, with query spans split by why they were kept."""
    if s.name == "query" and s.reason:
        return f"query ({s.reason})"
    return s.name


def load_window(spans: list[SpanRec]) -> tuple[int, int]:
    """START (orchestrator.start) to the end of the last phase, by the orchestrator's spans."""
    by_name = {s.name: s for s in spans if s.process == "orchestrator"}
    start = by_name["orchestrator.start"].start_ns
    last = next(by_name[n] for n in ("phase.cooldown", "phase.measurement") if n in by_name)
    return start, last.end_ns


def repeating_keys(spans: list[SpanRec], window: tuple[int, int]) -> set[str]:
    """Names one process made at least twice, spread over at least half the load window
    (so a burst at its edge, such as the last polls that saw START, is not a rate)."""
    starts: defaultdict[tuple[str, str], list[int]] = defaultdict(list)
    for s in spans:
        if window[0] <= s.start_ns <= window[1] and not (s.name == "query" and s.reason == "first"):
            starts[(s.process, _key(s))].append(s.start_ns)
    half = (window[1] - window[0]) / 2
    return {key for (_, key), t in starts.items() if len(t) >= 2 and max(t) - min(t) >= half}


@dataclass
class Row:
    key: str
    count: float
    json_bytes: float
    proto_bytes: float
    repeating: bool = False
    rate_per_s: float = 0.0  # repeating spans per second of load window


def summarise(trace: Trace, window: tuple[int, int]) -> list[Row]:
    rep = repeating_keys(trace.spans, window)
    rows: dict[str, Row] = {}
    in_window: Counter[str] = Counter()
    for s in trace.spans:
        k = _key(s)
        row = rows.setdefault(k, Row(k, 0, 0.0, 0.0, k in rep))
        row.count += 1
        row.json_bytes += s.json_bytes
        row.proto_bytes += s.proto_bytes
        if k in rep and window[0] <= s.start_ns <= window[1]:
            in_window[k] += 1
    seconds = (window[1] - window[0]) / 1e9
    for k, n in in_window.items():
        rows[k].rate_per_s = n / seconds
    return sorted(rows.values(), key=lambda r: -r.json_bytes)


def extrapolate(rows: list[Row], measured_window_s: float, target_window_s: float, *,
                query_budget: int | None, cap_reached: bool) -> list[Row]:
    """Rows for a load window of ``target_window_s``: repeating spans scaled, query spans capped."""
    out: list[Row] = []
    for r in rows:
        count = r.count
        if r.repeating:
            # spans outside the window (e.g. a heartbeat before START) stay as they are
            count = r.count + r.rate_per_s * (target_window_s - measured_window_s)
        out.append(Row(r.key, max(count, 0.0), 0.0, 0.0, r.repeating, r.rate_per_s))
    if query_budget is not None:
        sampled = [o for o in out if o.key.startswith("query (") and o.key != "query (first)"]
        total = sum(o.count for o in sampled)
        if cap_reached or total > query_budget:
            for o in sampled:
                o.count = o.count * query_budget / total if total else 0.0
    per = {r.key: r for r in rows}
    for o in out:
        src = per[o.key]
        o.json_bytes = o.count * src.json_bytes / src.count
        o.proto_bytes = o.count * src.proto_bytes / src.count
    return out


def minutes_to_limit(rows: list[Row], measured_window_s: float, *, query_budget: int | None,
                     cap_reached: bool, limit: int, proto: bool = False,
                     horizon_s: float = 7 * 24 * 3600) -> float | None:
    """The load window (minutes) at which the extrapolated trace (JSON, or protobuf) reaches
    ``limit``. None when it never does within ``horizon_s`` (nothing grows without bound)."""
    def size(window_s: float) -> float:
        return sum(r.proto_bytes if proto else r.json_bytes
                   for r in extrapolate(rows, measured_window_s, window_s,
                                        query_budget=query_budget, cap_reached=cap_reached))

    lo, hi = 0.0, horizon_s
    if size(hi) < limit:
        return None
    if size(lo) >= limit:
        return 0.0
    while hi - lo > 1.0:  # the size only grows with the window: bisect
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if size(mid) < limit else (lo, mid)
    return hi / 60


# --------------------------------------------------------------------------- running


def run_spanbench(duration_s: float, output: Path, extra: list[str], keep_env: bool,
                  embedded_dir: Path | None) -> tuple[Path, float, subprocess.CompletedProcess[str]]:
    env = dict(os.environ) if keep_env else {k: v for k, v in os.environ.items() if not k.startswith("SPANBENCH_")}
    env["SPANBENCH_TRACING"] = "1"
    env.pop("OTEL_SDK_DISABLED", None)
    if embedded_dir is not None:
        env["SPANBENCH_EMBEDDED_DIR"] = str(embedded_dir)
    output.mkdir(parents=True, exist_ok=True)
    before = {p for p in output.iterdir() if p.is_dir()}
    cmd = [sys.executable, "-m", "spanbench", "run", "--duration", f"{duration_s:g}s", "--output", str(output), *extra]
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - t0
    new = sorted(p for p in output.iterdir() if p.is_dir() and p not in before)
    if proc.returncode != 0 or len(new) != 1:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"spanbench run failed (exit {proc.returncode}); run folders: {new}")
    return new[0], elapsed, proc


# --------------------------------------------------------------------------- report


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def print_table(title: str, rows: list[Row]) -> None:
    print(f"\n{title}")
    print(f"  {'span':<28} {'count':>9} {'JSON bytes':>12} {'B/span':>7} {'proto bytes':>12} {'B/span':>7}  kind")
    for r in rows:
        kind = f"repeating, {r.rate_per_s:.2f}/s" if r.repeating else "fixed"
        per_json = r.json_bytes / r.count if r.count else 0
        per_proto = r.proto_bytes / r.count if r.count else 0
        print(f"  {r.key:<28} {r.count:>9,.0f} {r.json_bytes:>12,.0f} {per_json:>7,.0f} "
              f"{r.proto_bytes:>12,.0f} {per_proto:>7,.0f}  {kind}")
    n = sum(r.count for r in rows)
    j = sum(r.json_bytes for r in rows)
    p = sum(r.proto_bytes for r in rows)
    print(f"  {'all':<28} {n:>9,.0f} {j:>12,.0f} {j / n if n else 0:>7,.0f} {p:>12,.0f} {p / n if n else 0:>7,.0f}")


def simulate_table(json_out: Path | None) -> int:
    """2, 16 and 64 workers, 10 minutes and an hour: every case must stay under 5 MB of protobuf."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from trace_sim import Scenario, simulate

    print(f"  {'workers':>7} {'measurement':>11} {'spans':>7} {'protobuf':>11} {'of 5 MB':>7} {'OTLP/JSON':>11} "
          f"{'coarsened':>9} {'skipped':>9}")
    figures = []
    worst = 0
    for workers in (2, 16, 64):
        for seconds in (600, 3600):
            size = simulate(Scenario(workers, seconds))
            worst = max(worst, size.proto_bytes)
            print(f"  {workers:>7} {seconds // 60:>8} min {size.spans:>7,} {size.proto_bytes:>11,} "
                  f"{100 * size.proto_bytes / TEMPO_LIMIT_BYTES:>6.0f}% {size.json_bytes:>11,} "
                  f"{size.coarsened:>9,} {size.skipped:>9,}")
            figures.append({"workers": workers, "measurement_s": seconds, "spans": size.spans,
                            "proto_bytes": size.proto_bytes, "json_bytes": size.json_bytes,
                            "coarsened_beats": size.coarsened, "skipped_query_samples": size.skipped,
                            "by_name": dict(size.by_name)})
    print("  coarsened: beats inside summarising spans; skipped: query samples past the caps (both counted, "
          "on the worker span and in results.json)")
    verdict = "every case is under" if worst < TEMPO_LIMIT_BYTES else "a case is OVER"
    print(f"{verdict} Tempo's 5 MB as protobuf (largest {_mb(worst)})")
    if json_out is not None:
        json_out.write_text(json.dumps(figures, indent=2))
    return 0 if worst < TEMPO_LIMIT_BYTES else 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--duration", type=float, default=600.0, help="measurement seconds of the run [600]")
    ap.add_argument("--target", type=float, default=600.0, help="measurement seconds to extrapolate to [600]")
    ap.add_argument("--output", type=Path, help="parent of the run folder [a new temporary folder, kept]")
    ap.add_argument("--embedded-dir", type=Path,
                    help="data folder of the embedded server [spanbench's default]; a private one avoids "
                         "sharing a server with other runs on this machine")
    ap.add_argument("--run-dir", type=Path, help="measure this existing run folder instead of running")
    ap.add_argument("--keep-env", action="store_true", help="keep SPANBENCH_* variables of this environment")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--simulate", action="store_true",
                    help="no run: simulate 2, 16 and 64 workers for 10 min and 1 h with the real span code "
                         "on a fake clock (bench/trace_sim.py) and print their sizes")
    args = ap.parse_args(argv)
    if args.simulate:
        return simulate_table(args.json)

    if args.run_dir is not None:
        run_dir, elapsed = args.run_dir, None
    else:
        output = args.output or Path(tempfile.mkdtemp(prefix="spanbench-trace-size-"))
        run_dir, elapsed, _ = run_spanbench(args.duration, output, extra, args.keep_env, args.embedded_dir)

    results = json.loads((run_dir / "results.json").read_text())
    s = results["settings"]
    trace = read_trace(run_dir)
    window = load_window(trace.spans)
    window_s = (window[1] - window[0]) / 1e9
    m = results["measurement"]
    skipped = sum(int(w.get("query_spans_skipped") or 0) for w in results.get("workers", ()))
    print(f"run folder: {run_dir}")
    print(f"run: {s['workers']} workers, {s['connections']} connections, warmup {s['warmup']:g}s, "
          f"measurement {m['seconds']:.1f}s, cooldown {s['cooldown']:g}s; load window {window_s:.1f}s"
          + (f"; wall time {elapsed:.1f}s" if elapsed is not None else ""))
    print(f"load: {m['queries']:,} queries, {m['qps']:,.0f} queries/s; sampling 1 in {s['query_sample_every']:,}, "
          f"slow > {s['slow_query_threshold']:g}s, cap {s['query_span_cap']:,} query spans per worker"
          + (f" ({skipped:,} samples past the cap)" if skipped else ""))
    print("\ntrace files")
    for name, size in trace.files.items():
        print(f"  {name:<28} {size:>12,} bytes")
    print(f"  {'total (OTLP/JSON)':<28} {trace.json_total:>12,} bytes = {_mb(trace.json_total)}")
    print(f"  {'same spans as OTLP protobuf':<28} {trace.proto_total:>12,} bytes = {_mb(trace.proto_total)}")
    spans_total = len(trace.spans)
    print(f"  spans: {spans_total:,}; bytes per span: {trace.json_total / spans_total:,.0f} (JSON), "
          f"{trace.proto_total / spans_total:,.0f} (protobuf)")
    rows = summarise(trace, window)
    print_table("spans by name, as measured", rows)

    figures: dict[str, Any] = {
        "run_dir": str(run_dir), "settings": {k: s[k] for k in ("workers", "connections", "warmup", "duration",
                                                                "cooldown", "query_sample_every", "query_span_cap")},
        "qps": m["qps"], "queries": m["queries"], "load_window_s": window_s,
        "measured": {"json_bytes": trace.json_total, "proto_bytes": trace.proto_total, "spans": spans_total,
                     "files": trace.files,
                     "by_name": {r.key: {"count": r.count, "json_bytes": round(r.json_bytes),
                                         "proto_bytes": round(r.proto_bytes), "repeating": r.repeating,
                                         "rate_per_s": r.rate_per_s} for r in rows}},
    }

    target_window_s = window_s - m["seconds"] + args.target
    if abs(args.target - m["seconds"]) > 1:
        # Each worker's cap is its share of the run's query_span_budget (older runs: query_span_cap).
        share = min(int(s["query_span_cap"]), int(s.get("query_span_budget") or 10**12) // int(s["workers"]))
        budget = int(s["workers"]) * share - int(s["connections"])
        target = extrapolate(rows, window_s, target_window_s, query_budget=max(budget, 0), cap_reached=skipped > 0)
        j = sum(r.json_bytes for r in target)
        p = sum(r.proto_bytes for r in target)
        n = sum(r.count for r in target)
        print_table(f"extrapolated to a {args.target:g}s measurement (load window {target_window_s:.0f}s)", target)
        verdict = "under" if j < TEMPO_LIMIT_BYTES else "OVER"
        print(f"\nextrapolated trace: {n:,.0f} spans, {j:,.0f} bytes = {_mb(j)} as OTLP/JSON, "
              f"{p:,.0f} bytes = {_mb(p)} as OTLP protobuf; {verdict} Tempo's 5 MB "
              f"({100 * j / TEMPO_LIMIT_BYTES:.0f} % of it as JSON, {100 * p / TEMPO_LIMIT_BYTES:.0f} % as protobuf)")
        reach = {fmt: minutes_to_limit(rows, window_s, query_budget=max(budget, 0), cap_reached=skipped > 0,
                                       limit=TEMPO_LIMIT_BYTES, proto=fmt == "protobuf")
                 for fmt in ("JSON", "protobuf")}
        for fmt, minutes in reach.items():
            if minutes is None:
                print(f"by this model the {fmt} trace stays under 5 MB however long the run")
            else:
                print(f"by this model the {fmt} trace reaches 5 MB at a load window of about {minutes:,.0f} "
                      f"minutes (repeating spans other than sampled queries have no cap)")
        figures["extrapolated"] = {"target_s": args.target, "load_window_s": target_window_s, "json_bytes": round(j),
                                   "proto_bytes": round(p), "spans": round(n),
                                   "minutes_to_5MB_json": reach["JSON"],
                                   "minutes_to_5MB_protobuf": reach["protobuf"],
                                   "by_name": {r.key: {"count": round(r.count), "json_bytes": round(r.json_bytes)}
                                               for r in target}}
    else:
        verdict = "under" if trace.json_total < TEMPO_LIMIT_BYTES else "OVER"
        print(f"\n{verdict} Tempo's 5 MB ({100 * trace.json_total / TEMPO_LIMIT_BYTES:.0f} % of it as JSON)")
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
