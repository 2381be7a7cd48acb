"""The regression gate on the terminal: ``diff --fail-on`` and ``run --baseline``.

The verdicts are ``spanbench.gate.bounds``'s and the comparability check is
``spanbench.gate.comparable``'s; this module reads the runs, prints both and turns them
into the exit code: 1 when a bound failed (or the runs do not compare and
``--require-comparable`` was given), else 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.text import Text

from spanbench.gate.comparable import Comparability, compare_runs
from spanbench.analysis.diff import RunDiff
from spanbench.gate.bounds import (DEFAULT_ALPHA, Bound, GateReport, GateSide, SpanFigures, Verdict, check_alpha,
                                     p_text, parse_bounds, run_gate)
from spanbench.report.tables import print_table
from spanbench.units import format_duration


@dataclass(frozen=True, slots=True)
class GateOptions:
    bounds: list[Bound]
    require_comparable: bool = False
    noise_aware: bool = True
    alpha: float = DEFAULT_ALPHA

    @classmethod
    def parse(cls, fail_on: Sequence[str] | None, *, require_comparable: bool = False, noise_aware: bool = True,
              alpha: float = DEFAULT_ALPHA) -> GateOptions:
        """Every bound parsed (a bad one is a ConfigError: exit 2 before any run is read)."""
        return cls(parse_bounds(fail_on or ()), require_comparable, noise_aware, check_alpha(alpha))

    @property
    def active(self) -> bool:
        return bool(self.bounds) or self.require_comparable


@dataclass(frozen=True, slots=True)
class GateOutcome:
    comparability: Comparability
    report: GateReport | None
    require_comparable: bool

    @property
    def exit_code(self) -> int:
        failed = self.report is not None and bool(self.report.failed)
        return 1 if failed or (self.require_comparable and not self.comparability.comparable) else 0

    def to_json(self) -> dict[str, object]:
        return {"comparable": self.comparability.to_json(),
                "gate": None if self.report is None else {**self.report.to_json(),
                                                          "require_comparable": self.require_comparable,
                                                          "passed": self.exit_code == 0, "exit_code": self.exit_code}}


def gate_side(diff: RunDiff, which: str) -> GateSide:
    """One side of a diff as the gate reads it: its results.json and its spans by name."""
    side = diff.a if which == "a" else diff.b
    spans = None
    if side.trace is not None:
        spans = {}
        for d in diff.spans:
            stats = d.a if which == "a" else d.b
            if stats is not None:
                spans[d.name] = SpanFigures(stats.count, stats.p50_ns / 1e6, stats.max_ns / 1e6, stats.total_ns / 1e6)
    return GateSide(side.results, spans)


def check_diff(diff: RunDiff, options: GateOptions) -> GateOutcome:
    comparability = compare_runs(diff.a.results, diff.b.results)
    report = None
    if options.active:  # also --require-comparable alone: a gate with no bounds
        report = run_gate(options.bounds, gate_side(diff, "a"), gate_side(diff, "b"),
                          noise_aware=options.noise_aware, alpha=options.alpha)
    return GateOutcome(comparability, report, options.require_comparable)


# --- printing ------------------------------------------------------------------------------


def print_comparability(comparability: Comparability, console: Console) -> None:
    if not comparability.checked:
        console.print(Text("comparability not checked: a side has no results.json", style="yellow"), soft_wrap=True)
        return
    if comparability.comparable:
        line = "comparable: same settings, scenario, target and spanbench version"
        if comparability.unknown:
            line += f" (not recorded on a side: {', '.join(comparability.unknown)})"
        console.print(Text(line, style="dim"), soft_wrap=True)
        return
    console.print(Text("warning: the runs are not comparable: "
                       + "; ".join(d.text for d in comparability.differences), style="yellow"), soft_wrap=True)


def print_outcome(outcome: GateOutcome, console: Console) -> None:
    print_comparability(outcome.comparability, console)
    report = outcome.report
    if report is not None and report.verdicts:
        rows = [[_verdict_cell(v), Text(v.bound.text), _fmt(v.base, v), _fmt(v.new, v), _change(v), _test(v), _noise(v)]
                for v in report.verdicts]
        title = "regression gate: base → new" + (f", noise-aware (α={report.alpha:g})" if report.noise_aware else "")
        print_table(console, title, ["verdict", "bound", "base", "new", "change", "noise test", "z, p"], rows,
                    labels=(1,), left=(0, 1, 5), light=True)
        for v in report.failed:
            said = v.why if v.verdict == "missing" else (
                f"{v.bound.metric.label} {_fmt(v.base, v)} → {_fmt(v.new, v)}: {_change(v)}, "
                f"bound {v.bound.amount_text}: {v.why}")
            console.print(Text(f"FAIL {v.bound.text}: {said}", style="red"), soft_wrap=True)
    console.print(_summary(outcome), soft_wrap=True)


def _summary(outcome: GateOutcome) -> Text:
    report = outcome.report
    parts = []
    if report is not None and report.failed:
        parts.append(f"{len(report.failed)} of {len(report.verdicts)} bounds failed: "
                     + ", ".join(v.bound.text for v in report.failed))
    if outcome.require_comparable and not outcome.comparability.comparable:
        parts.append("the runs are not comparable (--require-comparable)")
    if parts:
        return Text("gate: FAILED: " + "; ".join(parts), style="bold red")
    n = len(report.verdicts) if report is not None else 0
    return Text(f"gate: passed ({n} bound{'s' if n != 1 else ''})", style="bold green")


def _verdict_cell(v: Verdict) -> Text:
    # "noise": beyond the bound but not beyond the noise, so a pass (see the FAIL lines' why)
    text = {"pass": "pass", "noise": "pass (noise)", "fail": "FAIL", "missing": "FAIL"}[v.verdict]
    return Text(text, style="red" if v.failed else "green")


def _fmt(value: float | None, v: Verdict, *, signed: bool = False) -> str:
    if value is None:
        return "—"
    unit = v.bound.metric.unit
    sign = "+" if signed and value > 0 else ""
    if unit == "ms":
        return sign + format_duration(value / 1e3)
    if unit == "s":
        return sign + format_duration(value)
    if unit == "ratio":
        return f"{sign}{value * 100:.3f}%"
    if unit == "qps":
        return f"{sign}{value:,.1f}"
    return f"{sign}{value:,.0f}"


def _change(v: Verdict) -> str:
    if v.change is None:
        return "—"
    share = v.share
    rel = "" if share is None else " (new)" if math.isinf(share) else f" ({share * 100:+.1f}%)"
    return _fmt(v.change, v, signed=True) + rel


def _test(v: Verdict) -> str:
    t = v.noise
    if t is None:
        return "—"
    return f"Mood q={t.detail.get('q', 0.0):g}" if t.test == "mood-quantile" else "Mann-Whitney U"


def _noise(v: Verdict) -> str:
    t = v.noise
    if t is None:
        return "—"
    return f"{t.statistic}={t.value:+.2f} {p_text(t.p_value)}" + (" significant" if v.significant else "")


# --- run --baseline ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BaselineGate:
    """``run --baseline RUN --fail-on …``: checked before the run, applied after it."""

    baseline: Path
    options: GateOptions

    @classmethod
    def prepare(cls, baseline: str, fail_on: Sequence[str] | None, *, runs_folder: Path,
                require_comparable: bool = False) -> BaselineGate:
        """The baseline resolved and its results.json read now: a bad one is exit 2 before the run starts."""
        from spanbench.errors import ConfigError
        from spanbench.report.diff_report import is_results_file
        from spanbench.results import read_results_file
        from spanbench.results_file import read_results_json
        from spanbench.runs import resolve_run

        options = GateOptions.parse(fail_on, require_comparable=require_comparable)
        path = resolve_run(baseline, runs_folder)
        if path.is_dir():
            if read_results_file(path) is None:
                raise ConfigError(f"--baseline {baseline}: {path} has no results.json to compare the run with")
        elif is_results_file(path):
            read_results_json(path)
        # else a trace file: only span: bounds will find their figures in it (the others fail as missing)
        return cls(path, options)

    def after_run(self, run_dir: Path, console: Console | None = None) -> int:
        """The new run against the baseline, printed; 1 when the gate fails, else 0."""
        from spanbench.report.diff_report import diff_runs

        console = console or Console(highlight=False)
        diff = diff_runs(str(self.baseline), str(run_dir))
        console.print(Text(f"against the baseline {diff.a.label}", style="bold"), soft_wrap=True)
        outcome = check_diff(diff, self.options)
        print_outcome(outcome, console)
        return outcome.exit_code
