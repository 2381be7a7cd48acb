"""``spanbench diff``: two runs lined up per span name, on synthetic traces with known timings."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from spanbench.analysis.diff import NameStats, diff_traces
from spanbench.report.diff_report import diff_command, diff_runs
from support.synthetic import TraceBuilder, spanbench_run, to_jaeger, to_otlp, to_tempo
from spanbench.errors import ConfigError

MS = 1_000_000


def _write_run(folder: Path, builder: TraceBuilder, results: dict | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "trace-all.jsonl").write_text(json.dumps(to_otlp(builder.spans)) + "\n")
    if results is not None:
        (folder / "results.json").write_text(json.dumps(results))
    return folder


def _results(run_id: str, qps: float, p99: float, s2f: float) -> dict:
    return {
        "run_id": run_id, "status": "COMPLETED", "reason": None,
        "measurement": {"seconds": 10.0, "queries": int(qps * 10), "errors": 0, "qps": qps, "latency": {},
                        "all": {"count": int(qps * 10), "p50_ms": 1.0, "p99_ms": p99, "max_ms": 9.0}},
        "workers": [{"worker_id": "w0", "start_to_first_query_ms": s2f}],
        "wall_time_s": 15.0,
    }


def _render(a: str, b: str, **kw) -> str:
    out = io.StringIO()
    code = diff_command(a, b, console=Console(file=out, width=200, color_system=None), **kw)
    assert code == 0
    return out.getvalue()


def test_stall_shows_as_growth_of_the_spans_that_waited(tmp_path: Path) -> None:
    a = _write_run(tmp_path / "a", spanbench_run())
    b = _write_run(tmp_path / "b", spanbench_run(stall_ms=3000))
    diff = diff_runs(str(a), str(b))
    rows = {d.name: d for d in diff.spans}
    # w0 waits 3 s longer for w1 at START: the max grows by the stall, the p50 (w1's own wait) does not
    wait = rows["wait_for_start"]
    assert (wait.a.count, wait.b.count) == (2, 2)
    assert wait.delta_max_ns == 3000 * MS and wait.delta_p50_ns == 0
    assert wait.ratio_max == pytest.approx(3355 / 355)
    assert rows["orchestrator.await_ready"].delta_p50_ns == 3000 * MS
    assert rows["orchestrator.await_ready"].ratio_p50 == pytest.approx(3940 / 940)
    # unchanged phases: zero change, ratio 1
    assert rows["pool.init"].change_ns == 0 and rows["pool.init"].ratio_p50 == 1.0
    # sorted by the size of the change, biggest first
    changes = [d.change_ns for d in diff.spans]
    assert changes == sorted(changes, reverse=True)
    assert diff.spans[0].change_ns == 3000 * MS


def test_repeated_spans_pool_across_workers_and_repeats() -> None:
    trace = spanbench_run().trace()
    d = {r.name: r for r in diff_traces(trace, trace)}["pool.connect"]
    # 2 workers × 2 batches × 4 connects lasting 80..77 ms and 90..87 ms
    assert d.a == d.b == NameStats(16, 80 * MS, 90 * MS, 2 * (80 + 79 + 78 + 77 + 90 + 89 + 88 + 87) * MS)
    assert d.change_ns == 0


def test_names_in_one_run_only_are_listed() -> None:
    base = spanbench_run()
    more = spanbench_run()
    more.span("cache.warm", 100, 400, more.spans[0])
    rows = {d.name: d for d in diff_traces(base.trace(), more.trace())}
    assert rows["cache.warm"].only_in == "B" and rows["cache.warm"].a is None
    assert rows["cache.warm"].delta_p50_ns == 300 * MS and rows["cache.warm"].ratio_p50 is None
    back = {d.name: d for d in diff_traces(more.trace(), base.trace())}
    assert back["cache.warm"].only_in == "A" and back["cache.warm"].delta_max_ns == -300 * MS


def test_any_trace_format_on_either_side(tmp_path: Path) -> None:
    spans = spanbench_run(stall_ms=500).spans
    jaeger = tmp_path / "jaeger.json"
    tempo = tmp_path / "tempo.json"
    jaeger.write_text(json.dumps(to_jaeger(spans)))
    tempo.write_text(json.dumps(to_tempo(spans)))
    diff = diff_runs(str(jaeger), str(tempo))
    assert diff.spans and all(d.change_ns == 0 and d.only_in is None for d in diff.spans)
    assert diff.headlines and {h.metric for h in diff.headlines} >= {"trace duration", "trace start → last first_query"}


def test_headline_figures_from_results_json(tmp_path: Path) -> None:
    a = _write_run(tmp_path / "a", spanbench_run(), _results("run-a", 20_000.0, 2.0, 40.0))
    b = _write_run(tmp_path / "b", spanbench_run(stall_ms=7500), _results("run-b", 15_000.0, 3.0, 7540.0))
    heads = {h.metric: h for h in diff_runs(str(a), str(b)).headlines}
    qps = heads["queries/s (measurement)"]
    assert (qps.a, qps.b, qps.delta, qps.ratio) == (20_000.0, 15_000.0, -5_000.0, 0.75)
    assert heads["latency p99, all kinds"].ratio == 1.5
    assert heads["START → last first query"].delta == 7500.0
    assert heads["trace start → last first_query"].delta == pytest.approx(7500.0)

    text = _render(str(a), str(b))
    assert "A: " in text and "run-a" in text and "run-b" in text
    assert "queries/s (measurement)" in text and "-5,000" in text and "×0.75" in text
    assert "wait_for_start" in text and "+7.50s" in text
    assert "grew most:" in text


def test_json_output(tmp_path: Path) -> None:
    a = _write_run(tmp_path / "a", spanbench_run(), _results("run-a", 100.0, 2.0, 40.0))
    b = _write_run(tmp_path / "b", spanbench_run(stall_ms=1000), _results("run-b", 90.0, 2.5, 1040.0))
    doc = json.loads(_render(str(a), str(b), as_json=True))
    assert doc["version"] == 1
    assert doc["a"]["run_id"] == "run-a" and doc["b"]["run_id"] == "run-b"
    assert doc["a"]["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    spans = {s["name"]: s for s in doc["spans"]}
    wait = spans["wait_for_start"]
    assert wait["a"] == {"count": 2, "p50_ms": 355.0, "max_ms": 355.0, "total_ms": 710.0}
    assert wait["delta_max_ms"] == 1000.0 and wait["delta_p50_ms"] == 0.0 and wait["only_in"] is None
    assert [s["name"] for s in doc["spans"]][0] in {"run", "worker", "wait_for_start", "orchestrator.await_ready",
                                                  "phase.warmup", "phase.measurement"}
    qps = next(h for h in doc["headline"] if h["metric"] == "queries/s (measurement)")
    assert qps == {"metric": "queries/s (measurement)", "unit": "qps", "a": 100.0, "b": 90.0, "delta": -10.0,
                   "ratio": 0.9}


def test_span_names_are_not_rich_markup(tmp_path: Path) -> None:
    b = spanbench_run()
    b.span("[bold red]boom[/] [link=http://x]", 10, 20, b.spans[0])
    a_file, b_file = tmp_path / "a.json", tmp_path / "b.json"
    a_file.write_text(json.dumps(to_otlp(spanbench_run().spans)))
    b_file.write_text(json.dumps(to_otlp(b.spans)))
    assert "[bold red]boom[/] [link=http://x]" in _render(str(a_file), str(b_file))


def test_run_folder_without_trace_diffs_its_headline(tmp_path: Path) -> None:
    a = tmp_path / "a"
    a.mkdir()
    (a / "results.json").write_text(json.dumps(_results("run-a", 100.0, 2.0, 40.0)))
    b = _write_run(tmp_path / "b", spanbench_run(), _results("run-b", 110.0, 2.0, 40.0))
    diff = diff_runs(str(a), str(b))
    assert diff.spans == [] and diff.a.trace is None and "no trace" in (diff.a.note or "")
    assert any(h.metric == "queries/s (measurement)" and h.delta == 10.0 for h in diff.headlines)
    assert "no spans to compare" in _render(str(a), str(b))


@pytest.mark.parametrize("case", ["missing", "empty-arg", "empty-dir", "not-json", "bad-results"])
def test_bad_input_is_one_line_config_error(tmp_path: Path, case: str) -> None:
    good = _write_run(tmp_path / "good", spanbench_run())
    if case == "missing":
        other = str(tmp_path / "nope")
    elif case == "empty-arg":
        other = ""
    elif case == "empty-dir":
        (tmp_path / "empty").mkdir()
        other = str(tmp_path / "empty")
    elif case == "not-json":
        (tmp_path / "x.json").write_text("this is not { json")
        other = str(tmp_path / "x.json")
    else:
        bad = _write_run(tmp_path / "bad", spanbench_run())
        (bad / "results.json").write_text("{ truncated")
        other = str(bad)
    with pytest.raises(ConfigError) as err:
        diff_command(str(good), other, console=Console(file=io.StringIO()))
    assert "\n" not in str(err.value) and str(err.value)


@pytest.mark.parametrize("width", [60, 80, 160])
def test_every_column_fits_the_terminal(tmp_path: Path, width: int) -> None:
    a = _write_run(tmp_path / "a", spanbench_run())
    b = _write_run(tmp_path / "b", spanbench_run(stall_ms=7500))
    out = io.StringIO()
    diff_command(str(a), str(b), console=Console(file=out, width=width, color_system=None))
    text = out.getvalue()
    assert "max A→B" in text and "p50 A→B" in text and "count A→B" in text
    line = next(ln for ln in text.splitlines() if ln.lstrip().startswith("wait_for_start "))
    assert "355.0ms → 355.0ms" in line
    assert "+7.50s" in text and "×22.13" in text
    assert "+7.50s ×22.13" in text  # a cell is never cut, whatever the width (print_table)
    assert all(len(ln) <= width for ln in text.splitlines() if not ln.startswith(("A: ", "B: ")))
