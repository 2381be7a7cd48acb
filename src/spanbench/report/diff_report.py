"""``spanbench diff RUN_A RUN_B`` on the terminal: reads both runs, compares them
(``spanbench.analysis.diff``), prints the tables (or ``--json``).

The tables go through ``print_table``: a figure is never cut, whatever the width; a
narrow terminal gets the columns split over several tables that repeat the span name.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console
from rich.text import Text

from spanbench.analysis.diff import RunDiff, RunSide, diff_sides, load_side
from spanbench.report.gate_report import GateOptions, check_diff, print_comparability, print_outcome
from spanbench.report.tables import print_table
from spanbench.results import read_results_file
from spanbench.runs import is_run_folder
from spanbench.units import format_duration


def diff_runs(run_a: str, run_b: str) -> RunDiff:
    """Both sides loaded (trace and, for run folders, results.json) and compared."""
    return diff_sides(load_run_side(run_a), load_run_side(run_b))


def load_run_side(source: str) -> RunSide:
    """A run folder, a trace file, or a results.json given by its path (a baseline kept on its own)."""
    path = Path(source) if source and str(source).strip() else None
    if path is not None and path.is_file() and is_results_file(path):
        from spanbench.results_file import read_results_json

        results = read_results_json(path).model_dump(mode="json")
        if path.name == "results.json" and is_run_folder(path.parent) and any(path.parent.glob("trace-*.jsonl")):
            return load_side(str(path.parent), results)  # its run folder: the spans too
        return RunSide(source, None, results, note="a results.json alone: no trace; headline figures only")
    results = read_results_file(path) if path is not None and path.is_dir() else None
    return load_side(source, results)


def is_results_file(path: Path) -> bool:
    """results.json by name, or a .json file whose object has a run id and a status (a renamed copy)."""
    if path.name == "results.json":
        return True
    if path.suffix != ".json" or path.stat().st_size > 64 * 2**20:  # traces can be large; results never are
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False  # load_trace says what is wrong with it
    return isinstance(data, dict) and "run_id" in data and "status" in data and "measurement" in data


def _fmt(value: float | None, unit: str, *, signed: bool = False) -> str:
    if value is None:
        return "—"
    sign = "+" if signed and value > 0 else ""
    if unit == "ms":
        return sign + format_duration(value / 1e3)
    if unit == "s":
        return sign + format_duration(value)
    return f"{sign}{value:,.0f}"


def _ratio_text(r: float | None) -> str:
    return "—" if r is None else f"×{r:.2f}"


def _dur(ns: int | None) -> str:
    return "—" if ns is None else format_duration(ns / 1e9)


def _delta_cell(delta_ns: int, ratio: float | None) -> Text:
    if delta_ns == 0:
        return Text("0", style="dim")
    text = ("+" if delta_ns > 0 else "") + format_duration(delta_ns / 1e9)
    if ratio is not None:
        text += f" {_ratio_text(ratio)}"
    return Text(text, style="red" if delta_ns > 0 else "green")


def print_diff(diff: RunDiff, console: Console) -> None:
    console.print(Text(f"A: {diff.a.label}", style="bold"), soft_wrap=True)
    console.print(Text(f"B: {diff.b.label}", style="bold"), soft_wrap=True)
    for side, name in ((diff.a, "A"), (diff.b, "B")):
        if side.note:
            console.print(Text(f"{name}: {side.note}", style="yellow"), soft_wrap=True)
        if side.trace is not None:
            for warning in side.trace.warnings:
                console.print(Text(f"{name}: warning: {warning}", style="yellow"), soft_wrap=True)

    if diff.headlines:
        rows = []
        for h in diff.headlines:
            delta = h.delta
            style = ""
            if delta:
                worse = (delta < 0) if h.higher_is_better else (delta > 0)
                style = "red" if worse else "green"
            rows.append([h.metric, _fmt(h.a, h.unit), _fmt(h.b, h.unit),
                         Text(_fmt(delta, h.unit, signed=True), style=style), _ratio_text(h.ratio)])
        print_table(console, "headline", ["metric", "A", "B", "Δ", "B/A"], rows, light=True)

    if not diff.spans:
        console.print("(no spans to compare: one side has no trace)")
        return
    span_rows = []
    for d in diff.spans:
        name = Text(d.name)  # a Text, never markup: span names come from foreign programs
        if d.only_in is not None:
            name.append(f" (only in {d.only_in})", style="dim")
        span_rows.append([
            name,
            f"{d.a.count if d.a else '—'} → {d.b.count if d.b else '—'}",
            f"{_dur(d.a.p50_ns if d.a else None)} → {_dur(d.b.p50_ns if d.b else None)}",
            _delta_cell(d.delta_p50_ns, d.ratio_p50),
            f"{_dur(d.a.max_ns if d.a else None)} → {_dur(d.b.max_ns if d.b else None)}",
            _delta_cell(d.delta_max_ns, d.ratio_max),
        ])
    print_table(console, "spans by name, biggest change first (durations across workers and repeats)",
                ["span", "count A→B", "p50 A→B", "Δ p50", "max A→B", "Δ max"], span_rows, light=True)
    grew = [d for d in diff.spans if d.only_in is None and (d.delta_p50_ns > 0 or d.delta_max_ns > 0)]
    if grew:
        top = grew[0]
        what = "p50" if abs(top.delta_p50_ns) >= abs(top.delta_max_ns) else "max"
        delta = top.delta_p50_ns if what == "p50" else top.delta_max_ns
        ratio = top.ratio_p50 if what == "p50" else top.ratio_max
        console.print(Text(
            f"grew most: {top.name} {what} +{format_duration(delta / 1e9)}" + (f" ({_ratio_text(ratio)})" if ratio else ""),
            style="bold"), soft_wrap=True)


def diff_command(run_a: str, run_b: str, *, as_json: bool = False, console: Console | None = None,
                 gate: GateOptions | None = None) -> int:
    """Print the comparison (Rich tables, or ``--json``) and, with ``gate``, the regression gate.

    Returns 0, or 1 when the gate fails (a bound passed, or runs that do not compare under
    ``--require-comparable``); bad input raises ConfigError (exit 2).
    """
    diff = diff_runs(run_a, run_b)
    outcome = check_diff(diff, gate or GateOptions([]))
    code = outcome.exit_code if gate is not None else 0
    if as_json:
        out = console.file if console is not None else sys.stdout
        doc = {**diff.to_json(), **outcome.to_json()}
        out.write(json.dumps(doc, indent=2) + "\n")
        out.flush()
        return code
    console = console if console is not None else Console(highlight=False)
    print_diff(diff, console)
    if gate is not None and gate.active:
        print_outcome(outcome, console)
    elif diff.a.results is not None and diff.b.results is not None:
        print_comparability(outcome.comparability, console)
    return code
