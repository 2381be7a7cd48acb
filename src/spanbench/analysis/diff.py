"""``spanbench diff RUN_A RUN_B``: what grew between two runs, per span name.

Both runs' spans are lined up by name. For each name: how many spans (across workers
and repeats, e.g. every ``pool.connect``), the p50 and the max of their durations, in A
and in B, the change and the ratio B/A. Rows come sorted by how much they changed (the
larger of |Δp50| and |Δmax|), so what grew most is on top. A name present in only one
run is listed as such. For run folders, the headline figures of results.json (qps,
p50/p99, errors, START → first query, wall time) are compared too.

Any source ``load_trace`` reads works: run folders, OTLP/JSON files, Tempo and Jaeger
JSON. A run folder without a trace (tracing off) still diffs its headline figures.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spanbench.analysis.load import load_trace
from spanbench.analysis.model import Trace
from spanbench.errors import ConfigError
from spanbench.results import read_results_file
from spanbench.units import format_duration

JSON_VERSION = 1


@dataclass(frozen=True, slots=True)
class NameStats:
    """Durations (ns) of every span of one name in one run."""

    count: int
    p50_ns: int
    max_ns: int
    total_ns: int

    @classmethod
    def of(cls, durations: list[int]) -> NameStats:
        ordered = sorted(durations)
        # nearest rank: an observed duration, never an interpolation between two spans
        p50 = ordered[max(math.ceil(0.5 * len(ordered)) - 1, 0)]
        return cls(len(ordered), p50, ordered[-1], sum(ordered))

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "p50_ms": _ms(self.p50_ns), "max_ms": _ms(self.max_ns), "total_ms": _ms(self.total_ns)}


@dataclass(frozen=True, slots=True)
class SpanDiff:
    name: str
    a: NameStats | None
    b: NameStats | None

    @property
    def delta_p50_ns(self) -> int:
        return (self.b.p50_ns if self.b else 0) - (self.a.p50_ns if self.a else 0)

    @property
    def delta_max_ns(self) -> int:
        return (self.b.max_ns if self.b else 0) - (self.a.max_ns if self.a else 0)

    @property
    def ratio_p50(self) -> float | None:
        return _ratio(self.a.p50_ns if self.a else None, self.b.p50_ns if self.b else None)

    @property
    def ratio_max(self) -> float | None:
        return _ratio(self.a.max_ns if self.a else None, self.b.max_ns if self.b else None)

    @property
    def change_ns(self) -> int:
        """How much the row moved, either way: the sort key."""
        return max(abs(self.delta_p50_ns), abs(self.delta_max_ns))

    @property
    def only_in(self) -> str | None:
        if self.a is None:
            return "B"
        if self.b is None:
            return "A"
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "a": self.a.to_json() if self.a else None,
            "b": self.b.to_json() if self.b else None,
            "only_in": self.only_in,
            "delta_p50_ms": _ms(self.delta_p50_ns),
            "delta_max_ms": _ms(self.delta_max_ns),
            "ratio_p50": _round(self.ratio_p50),
            "ratio_max": _round(self.ratio_max),
        }


@dataclass(frozen=True, slots=True)
class Headline:
    metric: str
    unit: str  # "ms", "s", "qps", "count"
    a: float | None
    b: float | None
    higher_is_better: bool = False

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a

    @property
    def ratio(self) -> float | None:
        return _ratio(self.a, self.b)

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "unit": self.unit, "a": _round(self.a), "b": _round(self.b),
                "delta": _round(self.delta), "ratio": _round(self.ratio)}


@dataclass(slots=True)
class RunSide:
    source: str
    trace: Trace | None
    results: dict[str, Any] | None
    note: str | None = None

    @property
    def label(self) -> str:
        run_id = (self.results or {}).get("run_id")
        status = (self.results or {}).get("status")
        extra = ", ".join(str(x) for x in (run_id, status) if x)
        return f"{self.source}" + (f" ({extra})" if extra else "")


@dataclass(slots=True)
class RunDiff:
    a: RunSide
    b: RunSide
    headlines: list[Headline]
    spans: list[SpanDiff]

    def to_json(self) -> dict[str, Any]:
        def side(s: RunSide) -> dict[str, Any]:
            return {
                "source": s.source,
                "run_id": (s.results or {}).get("run_id"),
                "status": (s.results or {}).get("status"),
                "trace_id": s.trace.trace_id if s.trace is not None else None,
                "span_count": len(s.trace) if s.trace is not None else 0,
                "note": s.note,
            }

        return {
            "version": JSON_VERSION,
            "a": side(self.a),
            "b": side(self.b),
            "headline": [h.to_json() for h in self.headlines],
            "spans": [d.to_json() for d in self.spans],
        }


def _ms(ns: int) -> float:
    return round(ns / 1e6, 3)


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or a == 0:
        return None
    return b / a


# --- the pure part --------------------------------------------------------------------


def name_stats(trace: Trace) -> dict[str, NameStats]:
    durations: dict[str, list[int]] = {}
    for span in trace.spans:
        durations.setdefault(span.name, []).append(span.duration_ns)
    return {name: NameStats.of(ds) for name, ds in durations.items()}


def diff_traces(a: Trace, b: Trace) -> list[SpanDiff]:
    """Per span name, A vs B, the biggest change first (ties: by name)."""
    sa, sb = name_stats(a), name_stats(b)
    rows = [SpanDiff(name, sa.get(name), sb.get(name)) for name in set(sa) | set(sb)]
    rows.sort(key=lambda d: (-d.change_ns, d.name))
    return rows


def _first_query_ns(trace: Trace) -> int | None:
    """Run start → the last worker's first query (every worker is ready only then)."""
    starts = [s.start_ns for s in trace.spans if s.name == "first_query"]
    return max(starts) - trace.start_ns if starts else None


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _headline_values(side: RunSide) -> dict[str, float | None]:
    r = side.results or {}
    m = r.get("measurement") if isinstance(r.get("measurement"), dict) else {}
    all_ = m.get("all") if isinstance(m.get("all"), dict) else {}
    workers = r.get("workers") if isinstance(r.get("workers"), list) else []
    s2f = [_num(w.get("start_to_first_query_ms")) for w in workers if isinstance(w, dict)]
    s2f = [v for v in s2f if v is not None]
    trace = side.trace
    fq = _first_query_ns(trace) if trace is not None else None
    return {
        "qps": _num(m.get("qps")),
        "p50": _num(all_.get("p50_ms")),
        "p99": _num(all_.get("p99_ms")),
        "max": _num(all_.get("max_ms")),
        "queries": _num(m.get("queries")),
        "errors": _num(m.get("errors")),
        "start_to_first_query": max(s2f) if s2f else None,
        "run_start_to_first_query": fq / 1e6 if fq is not None else None,
        "trace_duration": (trace.end_ns - trace.start_ns) / 1e9 if trace is not None and trace.spans else None,
        "wall_time": _num(r.get("wall_time_s")),
    }


_HEADLINES = (
    ("qps", "queries/s (measurement)", "qps", True),
    ("p50", "latency p50, all kinds", "ms", False),
    ("p99", "latency p99, all kinds", "ms", False),
    ("max", "latency max, all kinds", "ms", False),
    ("queries", "queries (measurement)", "count", True),
    ("errors", "errors (measurement)", "count", False),
    ("start_to_first_query", "START → last first query", "ms", False),
    ("run_start_to_first_query", "trace start → last first_query", "ms", False),
    ("trace_duration", "trace duration", "s", False),
    ("wall_time", "wall time", "s", False),
)


def headlines(a: RunSide, b: RunSide) -> list[Headline]:
    va, vb = _headline_values(a), _headline_values(b)
    return [
        Headline(label, unit, va[key], vb[key], better)
        for key, label, unit, better in _HEADLINES
        if va[key] is not None or vb[key] is not None
    ]


# --- loading --------------------------------------------------------------------------


def _read_results(path: Path) -> dict[str, Any] | None:
    return read_results_file(path) if path.is_dir() else None


def load_side(source: str) -> RunSide:
    if not source or not str(source).strip():
        raise ConfigError("diff needs two runs: RUN_A RUN_B (run folders or trace files)")
    path = Path(source)
    results = _read_results(path)
    try:
        trace: Trace | None = load_trace(path)
    except ConfigError as err:
        if results is None:
            raise
        return RunSide(source, None, results, note=f"no trace ({err}); headline figures only")
    return RunSide(source, trace, results)


def diff_runs(run_a: str, run_b: str) -> RunDiff:
    a, b = load_side(run_a), load_side(run_b)
    spans = diff_traces(a.trace, b.trace) if a.trace is not None and b.trace is not None else []
    return RunDiff(a, b, headlines(a, b), spans)


# --- the command ----------------------------------------------------------------------


def _fmt(value: float | None, unit: str, *, signed: bool = False) -> str:
    if value is None:
        return "—"
    sign = "+" if signed and value > 0 else ""
    if unit == "ms":
        return sign + format_duration(value / 1e3)
    if unit == "s":
        return sign + format_duration(value)
    if unit == "qps":
        return f"{sign}{value:,.0f}"
    return f"{sign}{value:,.0f}"


def _ratio_text(r: float | None) -> str:
    return "—" if r is None else f"×{r:.2f}"


def _dur(ns: int | None) -> str:
    return "—" if ns is None else format_duration(ns / 1e9)


def _delta_cell(delta_ns: int, ratio: float | None) -> Any:
    from rich.text import Text

    if delta_ns == 0:
        return Text("0", style="dim")
    text = ("+" if delta_ns > 0 else "") + format_duration(delta_ns / 1e9)
    if ratio is not None:
        text += f" {_ratio_text(ratio)}"
    return Text(text, style="red" if delta_ns > 0 else "green")


def print_diff(diff: RunDiff, console: Any) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    console.print(Text(f"A: {diff.a.label}", style="bold"), soft_wrap=True)
    console.print(Text(f"B: {diff.b.label}", style="bold"), soft_wrap=True)
    for side, name in ((diff.a, "A"), (diff.b, "B")):
        if side.note:
            console.print(Text(f"{name}: {side.note}", style="yellow"), soft_wrap=True)
        if side.trace is not None:
            for warning in side.trace.warnings:
                console.print(Text(f"{name}: warning: {warning}", style="yellow"), soft_wrap=True)

    if diff.headlines:
        table = Table(title="headline", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for col in ("metric", "A", "B", "Δ", "B/A"):
            table.add_column(col, justify="left" if col == "metric" else "right")
        for h in diff.headlines:
            delta = h.delta
            style = ""
            if delta:
                worse = (delta < 0) if h.higher_is_better else (delta > 0)
                style = "red" if worse else "green"
            table.add_row(h.metric, _fmt(h.a, h.unit), _fmt(h.b, h.unit),
                          Text(_fmt(delta, h.unit, signed=True), style=style), _ratio_text(h.ratio))
        console.print(table)

    if not diff.spans:
        console.print("(no spans to compare: one side has no trace)")
        return
    table = Table(title="spans by name, biggest change first (durations across workers and repeats)",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    wide = (console.width or 80) >= 110
    table.add_column("span", overflow="fold")
    cols = ("count A→B", "p50 A→B", "Δ p50", "max A→B", "Δ max") if wide else ("count A→B", "p50 A→B, Δ", "max A→B, Δ")
    for col in cols:
        table.add_column(col, justify="right")
    for d in diff.spans:
        name = Text(d.name)  # a Text, never markup: span names come from foreign programs
        if d.only_in is not None:
            name.append(f" (only in {d.only_in})", style="dim")
        count = f"{d.a.count if d.a else '—'} → {d.b.count if d.b else '—'}"
        p50 = f"{_dur(d.a.p50_ns if d.a else None)} → {_dur(d.b.p50_ns if d.b else None)}"
        mx = f"{_dur(d.a.max_ns if d.a else None)} → {_dur(d.b.max_ns if d.b else None)}"
        dp50, dmax = _delta_cell(d.delta_p50_ns, d.ratio_p50), _delta_cell(d.delta_max_ns, d.ratio_max)
        if wide:
            table.add_row(name, count, p50, dp50, mx, dmax)
        else:  # two lines a row, so that an 80-column terminal keeps every column
            table.add_row(name, count, Text(p50 + "\n").append_text(dp50), Text(mx + "\n").append_text(dmax))
    console.print(table)
    grew = [d for d in diff.spans if d.only_in is None and (d.delta_p50_ns > 0 or d.delta_max_ns > 0)]
    if grew:
        top = grew[0]
        what = "p50" if abs(top.delta_p50_ns) >= abs(top.delta_max_ns) else "max"
        delta = top.delta_p50_ns if what == "p50" else top.delta_max_ns
        ratio = top.ratio_p50 if what == "p50" else top.ratio_max
        console.print(Text(
            f"grew most: {top.name} {what} +{format_duration(delta / 1e9)}" + (f" ({_ratio_text(ratio)})" if ratio else ""),
            style="bold"), soft_wrap=True)


def diff_command(run_a: str, run_b: str, *, as_json: bool = False, console: Any = None) -> int:
    """Print the comparison (Rich tables, or ``--json``). Returns 0; bad input raises ConfigError."""
    diff = diff_runs(run_a, run_b)
    if as_json:
        out = console.file if console is not None else sys.stdout
        out.write(json.dumps(diff.to_json(), indent=2) + "\n")
        out.flush()
        return 0
    if console is None:
        from rich.console import Console

        console = Console(highlight=False)
    print_diff(diff, console)
    return 0
