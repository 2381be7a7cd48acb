"""The regression gate: ``diff --fail-on``, comparability, noise tests, ``run --baseline``.

Unit tests for the grammar, the verdicts and the two-sample tests (cross-checked against
scipy when it is installed, and by hand on small cases), then real runs on the embedded
PostgreSQL: a base run and one whose query sleeps 20 ms, which the gate must catch.
"""

from __future__ import annotations

import io
import json
import math
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from conftest import Result, spanbench_env
from spanbench.gate.comparable import compare_runs
from spanbench.gate.bounds import (
    GateSide,
    SpanFigures,
    beyond_bound,
    evaluate,
    mann_whitney,
    parse_bound,
    quantile_test,
    run_gate,
)
from spanbench.errors import ConfigError
from spanbench.report.diff_report import diff_command
from spanbench.report.gate_report import GateOptions
from spanbench.run_identity import scenario_of, target_of
from spanbench.stats import LatencyRecorder, encode, summarize

MS = 1_000_000


# --------------------------------------------------------------------------- the grammar


@pytest.mark.parametrize(("text", "key", "sign", "amount", "relative"), [
    ("qps:-5%", "qps", -1, 0.05, True),
    ("p99:+20%", "p99", 1, 0.20, True),
    ("p99:+5ms", "p99", 1, 5.0, False),
    ("p999:+250us", "p999", 1, 0.25, False),
    ("p50@point_select:+1.5ms", "p50@point_select", 1, 1.5, False),
    ("max:+1s", "max", 1, 1000.0, False),
    ("mean:+10%", "mean", 1, 0.10, True),
    ("errors:+0", "errors", 1, 0.0, False),
    ("error_rate:+0.01", "error_rate", 1, 0.01, False),
    ("first_query:+50%", "first_query", 1, 0.5, True),
    ("first_query:+20ms", "first_query", 1, 20.0, False),
    ("wall:+500ms", "wall", 1, 0.5, False),  # wall is in seconds
    ("qps:-500", "qps", -1, 500.0, False),
    ("span:pool.init:+30%", "span:pool.init:p50", 1, 0.30, True),
    ("span:pool.init:max:+30ms", "span:pool.init:max", 1, 30.0, False),
    ("span:pool.connect:count:+0", "span:pool.connect:count", 1, 0.0, False),
])
def test_bounds_parse(text: str, key: str, sign: int, amount: float, relative: bool) -> None:
    b = parse_bound(text)
    assert (b.metric.key, b.sign, b.relative) == (key, sign, relative)
    assert b.amount == pytest.approx(amount)


@pytest.mark.parametrize(("text", "says"), [
    ("p99", "expected METRIC:CHANGE"),
    ("p99:20%", "needs a sign"),
    ("p99:+2", "needs a unit"),
    ("qps:-5ms", "not a duration"),
    ("p98:+1%", "unknown metric 'p98'"),
    ("p99:+fast", "not a change"),
    ("p99:+5parsec", "unknown unit"),
    ("span::+1%", "needs a span name"),
    ("p99@bad kind:+1%", "not a query kind"),
    (":+1%", "expected METRIC:CHANGE"),
])
def test_a_malformed_bound_is_one_line(text: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_bound(text)
    message = str(err.value)
    assert says in message and "\n" not in message and message.startswith(f"--fail-on {text!r}")


@pytest.mark.parametrize(("bound", "base", "new", "beyond"), [
    ("qps:-5%", 100.0, 94.9, True),
    ("qps:-5%", 100.0, 95.0, False),  # exactly the bound: not beyond it
    ("qps:-5%", 100.0, 300.0, False),  # growth never trips a drop bound
    ("p99:+20%", 1.0, 1.21, True),
    ("p99:+20%", 1.0, 0.5, False),
    ("p99:+5ms", 2.0, 7.5, True),
    ("p99:+5ms", 2.0, 6.9, False),
    ("errors:+10%", 0.0, 1.0, True),  # relative to a base of 0: any move in the bound's direction
    ("errors:+10%", 0.0, 0.0, False),
    ("errors:+0", 3.0, 3.0, False),
    ("errors:+0", 3.0, 4.0, True),
])
def test_sign_and_size(bound: str, base: float, new: float, beyond: bool) -> None:
    assert beyond_bound(parse_bound(bound), base, new) is beyond


# --------------------------------------------------------------------------- the noise tests


def _expand(bins: dict[int, int]) -> list[int]:
    return [k for k, c in sorted(bins.items()) for _ in range(c)]


def test_mann_whitney_by_hand() -> None:
    # A = three 1s, B = three 2s: U_B = 9, mean 4.5; two tie groups of 3 (t³ - t = 24 each);
    # var = 9/12 × (7 - 48/30) = 4.05; z = (4.5 - 0.5) / √4.05
    t = mann_whitney({1: 3}, {2: 3})
    assert t.detail["u"] == 9 and t.detail["p_b_greater"] == 1.0
    assert t.value == pytest.approx(4 / math.sqrt(4.05))
    assert t.p_value == pytest.approx(math.erfc(4 / math.sqrt(4.05) / math.sqrt(2)))
    assert t.direction == 1
    same = mann_whitney({1: 5, 2: 5}, {1: 5, 2: 5})
    assert same.value == 0.0 and same.p_value == 1.0 and same.direction == 0
    assert mann_whitney({1: 4}, {1: 9}).p_value == 1.0  # one bin: nothing to tell apart


def test_quantile_test_by_hand() -> None:
    # pooled median bin is 1: above it, A 0 of 10, B 10 of 10; pooled share ½:
    # z = (1 - 0) / √(¼ × (1/10 + 1/10)) = √20
    t = quantile_test({1: 10}, {2: 10}, 0.5)
    assert t.value == pytest.approx(math.sqrt(20))
    assert t.p_value == pytest.approx(math.erfc(math.sqrt(10)))
    assert (t.detail["share_above_a"], t.detail["share_above_b"]) == (0.0, 1.0)
    assert quantile_test({1: 10}, {1: 10}, 0.99).p_value == 1.0


def _random_bins(rng: random.Random, n: int, spread: int, shift: int) -> dict[int, int]:
    bins: dict[int, int] = {}
    for _ in range(n):
        k = int(rng.expovariate(1 / spread)) + shift
        bins[k] = bins.get(k, 0) + 1
    return bins


def _reference_u_test(a: list[int], b: list[int]) -> tuple[float, float]:
    """U of B by comparing every pair, and the textbook tie-corrected normal approximation."""
    u = sum(1.0 if y > x else 0.5 if y == x else 0.0 for y in b for x in a)
    n_a, n_b, n = len(a), len(b), len(a) + len(b)
    groups = [(a + b).count(v) for v in set(a + b)]
    var = n_a * n_b / 12 * ((n + 1) - sum(t ** 3 - t for t in groups) / (n * (n - 1)))
    d = u - n_a * n_b / 2
    z = (abs(d) - 0.5) / math.sqrt(var)
    return u, math.erfc(z / math.sqrt(2))


def _reference_chi2(table: list[list[int]]) -> float:
    """Pearson's chi-square of a 2×2 table, Σ (O - E)² / E, no continuity correction."""
    rows, cols = [sum(r) for r in table], [sum(c) for c in zip(*table)]
    n = sum(rows)
    return sum((table[i][j] - rows[i] * cols[j] / n) ** 2 / (rows[i] * cols[j] / n) for i in range(2) for j in range(2))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_tests_agree_with_a_pairwise_reference(seed: int) -> None:
    rng = random.Random(seed)
    a = _random_bins(rng, 120, 6, 0)
    b = _random_bins(rng, 90, 6, 4 * (seed - 1))  # seed 1: the same distribution; 2, 3: shifted
    mw = mann_whitney(a, b)
    u, p = _reference_u_test(_expand(a), _expand(b))
    assert mw.detail["u"] == u and mw.p_value == pytest.approx(p, rel=1e-12)
    for q in (0.5, 0.9, 0.99):
        qt = quantile_test(a, b, q)
        n_a, n_b = sum(a.values()), sum(b.values())
        split = sorted(_expand(a) + _expand(b))[math.ceil(q * (n_a + n_b)) - 1]  # the pooled q-quantile
        above_a = sum(1 for x in _expand(a) if x > split)
        above_b = sum(1 for x in _expand(b) if x > split)
        assert qt.detail["share_above_a"] == above_a / n_a and qt.detail["share_above_b"] == above_b / n_b
        if 0 < above_a + above_b < n_a + n_b:
            chi2 = _reference_chi2([[above_a, n_a - above_a], [above_b, n_b - above_b]])
            assert qt.value ** 2 == pytest.approx(chi2, rel=1e-12)
    if seed > 1:
        assert mw.p_value < 0.05 and mw.direction == 1  # B is shifted up by whole bins


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_tests_agree_with_scipy(seed: int) -> None:
    from scipy import stats  # a test dependency: this cross-check never skips
    rng = random.Random(seed)
    a = _random_bins(rng, 400, 12, 0)
    b = _random_bins(rng, 300, 12, seed - 1)  # seed 1: the same distribution; 2, 3: shifted
    mw = mann_whitney(a, b)
    ref = stats.mannwhitneyu(_expand(b), _expand(a), method="asymptotic", use_continuity=True)
    assert mw.detail["u"] == pytest.approx(ref.statistic)
    assert mw.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    for q in (0.5, 0.95, 0.99):
        qt = quantile_test(a, b, q)
        n_a, n_b = sum(a.values()), sum(b.values())
        above_a, above_b = round(qt.detail["share_above_a"] * n_a), round(qt.detail["share_above_b"] * n_b)
        if 0 < above_a + above_b < n_a + n_b:
            table = [[above_a, n_a - above_a], [above_b, n_b - above_b]]
            chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
            assert qt.value ** 2 == pytest.approx(chi2) and qt.p_value == pytest.approx(p, rel=1e-9)


# --------------------------------------------------------------------------- verdicts


def _results(latencies_ns: list[int], *, qps: float = 1000.0, errors: int = 0, kind: str = "q") -> dict[str, Any]:
    """A results.json shape with real HDR histograms of these latencies."""
    rec = LatencyRecorder()
    for ns in latencies_ns:
        rec.record(ns)
    h = rec.to_hdr()
    summary = summarize(h).as_dict()
    return {
        "run_id": "r", "status": "COMPLETED",
        "measurement": {"seconds": 1.0, "queries": len(latencies_ns), "errors": errors, "qps": qps,
                        "latency": {kind: {**summary, "errors": errors, "qps": qps}}, "all": summary},
        "histograms": {"MEASUREMENT": {kind: encode(h)}},
        "workers": [{"worker_id": "w0", "start_to_first_query_ms": 1.0}],
        "wall_time_s": 3.0,
    }


def _lat(rng: random.Random, n: int, mean_ms: float) -> list[int]:
    return [int(rng.expovariate(1 / (mean_ms * MS))) + 50_000 for _ in range(n)]


def test_a_real_shift_fails_and_noise_passes() -> None:
    rng = random.Random(7)
    base = GateSide(_results(_lat(rng, 5000, 1.0)))
    slower = GateSide(_results(_lat(rng, 5000, 1.5)))
    v = evaluate(parse_bound("p99:+20%"), base, slower)
    assert v.verdict == "fail" and v.significant and v.noise is not None and v.noise.test == "mood-quantile"
    assert v.noise.p_value < 1e-6 and "beyond the noise" in v.why
    mean = evaluate(parse_bound("mean:+20%"), base, slower)
    assert mean.failed and mean.noise is not None and mean.noise.test == "mann-whitney-u"

    # 40 queries each, drawn from the same distribution: p99 is one or two queries, and moves a lot
    small_a, small_b = _lat(rng, 40, 1.0), _lat(rng, 40, 1.0)
    small_b[-1] = max(small_a) * 2  # the slowest query of B is twice A's: p99 doubles, by one query
    a, b = GateSide(_results(small_a)), GateSide(_results(small_b))
    noisy = evaluate(parse_bound("p99:+20%"), a, b)
    assert noisy.beyond and noisy.verdict == "noise" and not noisy.failed and noisy.significant is False
    strict = evaluate(parse_bound("p99:+20%"), a, b, noise_aware=False)
    assert strict.verdict == "fail" and "within the noise" in strict.why
    maxed = evaluate(parse_bound("max:+20%"), a, b)
    assert maxed.failed and maxed.noise is None and "no test" in maxed.why


def test_other_metrics_and_missing_ones() -> None:
    base = GateSide(_results([MS] * 100, qps=1000.0), {"pool.init": SpanFigures(2, 10.0, 12.0, 22.0)})
    new = GateSide(_results([MS] * 100, qps=900.0, errors=5), {"pool.init": SpanFigures(2, 14.0, 15.0, 29.0)})
    report = run_gate([parse_bound(t) for t in ("qps:-5%", "qps:-20%", "errors:+0", "error_rate:+0.01",
                                                "span:pool.init:+30%", "span:pool.init:max:+30%",
                                                "span:nope:+1%", "p99@other:+1%", "first_query:+1ms")],
                      base, new)
    got = {v.bound.text: v.verdict for v in report.verdicts}
    assert got == {"qps:-5%": "fail", "qps:-20%": "pass", "errors:+0": "fail", "error_rate:+0.01": "fail",
                   "span:pool.init:+30%": "fail", "span:pool.init:max:+30%": "pass",
                   "span:nope:+1%": "missing", "p99@other:+1%": "missing", "first_query:+1ms": "pass"}
    rate = next(v for v in report.verdicts if v.bound.text == "error_rate:+0.01")
    assert rate.new == pytest.approx(5 / 105)
    assert [v.bound.text for v in report.failed] == ["qps:-5%", "errors:+0", "error_rate:+0.01",
                                                     "span:pool.init:+30%", "span:nope:+1%", "p99@other:+1%"]
    no_trace = evaluate(parse_bound("span:pool.init:+30%"), GateSide(base.results), new)
    assert no_trace.verdict == "missing" and "base: no trace" in no_trace.why
    doc = json.loads(json.dumps(report.to_json()))
    assert doc["passed"] is False and doc["failed"][0] == "qps:-5%"
    with pytest.raises(ConfigError, match="alpha"):
        run_gate([], base, new, alpha=1.5)


# --------------------------------------------------------------------------- comparability


def _settings(**over: Any) -> dict[str, Any]:
    s = {"workers": 2, "connections": 16, "pool_batch_size": 8, "warmup": 2.0, "duration": 10.0, "cooldown": 0.0,
         "load": {"model": "closed", "rate": None, "think_time": 0.0}, "target_dsn": None, "queries": None,
         "params": {}, "rows": 100000, "update_share": 0.05, "point_select_only": False, "version": None}
    s.update(over)
    return s


def test_what_makes_runs_not_comparable() -> None:
    base = {"settings": _settings(), "spanbench_version": "0.1.0",
            "target": {"system": "postgresql", "server": "db:5432/bench", "version": "18.1"}}
    assert compare_runs(base, base).comparable
    other = {"settings": _settings(connections=8, load={"model": "closed", "rate": None, "think_time": 0.01},
                                   update_share=0.5),
             "spanbench_version": "0.2.0", "target": {"system": "postgresql", "server": "db:5432/bench", "version": "17.5"}}
    c = compare_runs(base, other)
    texts = [d.text for d in c.differences]
    assert not c.comparable
    assert "connections: 16 → 8" in texts and "load.think_time: 0.0 → 0.01" in texts
    assert "target.version: 18.1 → 17.5" in texts and "spanbench version: 0.1.0 → 0.2.0" in texts
    assert any(t.startswith("scenario: ") for t in texts)  # update_share is the demo's workload
    opened = {"settings": _settings(load={"model": "open", "rate": 500}), "spanbench_version": "0.1.0",
              "target": base["target"]}
    assert [d.text for d in compare_runs(base, opened).differences] == ["load.model: closed → open"]
    # an older results.json (no version, no target): unknown, not a difference
    old = {"settings": _settings(target_dsn="postgresql://u:***@db:5432/bench")}
    assert compare_runs(base, old).comparable and "spanbench version" in compare_runs(base, old).unknown
    unchecked = compare_runs(base, None)
    assert unchecked.comparable and not unchecked.checked and "settings" in unchecked.unknown


def test_scenario_hash_and_target_identity() -> None:
    demo = scenario_of(_settings())
    assert demo == scenario_of(_settings(connections=1))  # the load's shape is not the workload
    assert demo["kind"] == "demo" and demo["queries"] is None
    q = [{"name": "lookup", "sql": "SELECT 1", "params": []}]
    mine = scenario_of(_settings(queries=q, version=1))
    assert mine["queries"] == ["lookup"] and mine["hash"] != demo["hash"]
    # a scenario's own queries: the demo's knobs do not split its hash
    assert mine["hash"] == scenario_of(_settings(queries=q, version=1, rows=5))["hash"]
    assert target_of({"target_dsn": "postgresql://u:***@db.internal:6432/bench"}, "18.1") == {
        "system": "postgresql", "server": "db.internal:6432/bench", "version": "18.1"}
    assert target_of({}, None)["server"] == "embedded"
    assert target_of({"target_dsn": "snowflake://u@acct/DB/PUBLIC?warehouse=W"}, None)["system"] == "snowflake"


# --------------------------------------------------------------------------- diff on files


def _write(folder: Path, results: dict[str, Any]) -> Path:
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def test_diff_command_exit_code_and_json(tmp_path: Path) -> None:
    rng = random.Random(3)
    a = _write(tmp_path / "a", {**_results(_lat(rng, 3000, 1.0)), "run_id": "run-a", "settings": _settings()})
    b = _write(tmp_path / "b", {**_results(_lat(rng, 3000, 2.0)), "run_id": "run-b",
                                "settings": _settings(connections=4)})
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    gate = GateOptions.parse(["p99:+20%", "qps:-50%"])
    assert diff_command(str(a), str(b), console=console, gate=gate) == 1
    text = out.getvalue()
    assert "FAIL p99:+20%" in text and "Mood's quantile test (q=0.99)" in text
    assert "warning: the runs are not comparable: connections: 16 → 4" in text
    assert "gate: FAILED: 1 of 2 bounds failed: p99:+20%" in text
    # a results.json by its own path, renamed, and --json
    copy = tmp_path / "baseline.json"
    copy.write_text((a / "results.json").read_text())
    out = io.StringIO()
    code = diff_command(str(copy), str(b / "results.json"), as_json=True, console=Console(file=out),
                        gate=GateOptions.parse(["p99:+20%"]))
    doc = json.loads(out.getvalue())
    assert code == 1 and doc["gate"]["failed"] == ["p99:+20%"] and doc["gate"]["exit_code"] == 1
    bound = doc["gate"]["bounds"][0]
    assert bound["noise"]["test"] == "mood-quantile" and bound["noise"]["p_value"] < 0.05 and bound["significant"]
    assert doc["comparable"]["comparable"] is False
    assert doc["comparable"]["differences"] == [{"what": "connections", "a": 16, "b": 4}]
    # comparable required: the only failure
    assert diff_command(str(a), str(b), console=Console(file=io.StringIO()),
                        gate=GateOptions.parse(["p99:+1000%"], require_comparable=True)) == 1
    assert diff_command(str(a), str(b), console=Console(file=io.StringIO()),
                        gate=GateOptions.parse(["p99:+1000%"])) == 0


# --------------------------------------------------------------------------- real runs

FAST = """version = 1
[[queries]]
name = "lookup"
sql = "SELECT abalance FROM spanbench_accounts WHERE aid = $1"
params = ["aid"]
[params.aid]
kind = "int"
column = "spanbench_accounts.aid"
"""
# The regression the gate must catch: every query of the new run sleeps 20 ms on the server.
SLOW = FAST.replace("FROM spanbench_accounts WHERE", "FROM spanbench_accounts, pg_sleep(0.02) WHERE")
RUN_ARGS = ["--workers", "1", "--connections", "2", "--warmup", "0s", "--duration", "1s", "--progress", "0"]


def _cli_in(cwd: Path, *args: str) -> Result:
    proc = subprocess.run([sys.executable, "-m", "spanbench", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=180, env=spanbench_env(SPANBENCH_TRACING="1", COLUMNS="200"),
                          stdin=subprocess.DEVNULL)
    return Result(proc.returncode, proc.stdout, proc.stderr, cwd)


@pytest.fixture(scope="module")
def home(pg_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A working folder: the base run in spanbench-runs/ (where run ids are looked up), the slow one in slow-runs/."""
    home = tmp_path_factory.mktemp("gate-home")
    (home / "fast.toml").write_text(FAST)
    (home / "slow.toml").write_text(SLOW)
    runs: dict[str, Any] = {"home": home, "dsn": pg_dsn}
    for name, output in (("fast", "spanbench-runs"), ("slow", "slow-runs")):
        res = _cli_in(home, "run", f"{name}.toml", "--target-dsn", pg_dsn, *RUN_ARGS, "--output", str(home / output))
        assert res.returncode == 0, res.stderr + res.stdout
        (folder,) = (home / output).iterdir()
        runs[name] = folder
    return runs


def test_real_runs_record_what_they_ran(home: dict[str, Any]) -> None:
    fast = json.loads((home["fast"] / "results.json").read_text())
    slow = json.loads((home["slow"] / "results.json").read_text())
    assert fast["spanbench_version"] == slow["spanbench_version"] and fast["spanbench_version"]
    assert fast["scenario"]["queries"] == ["lookup"] and fast["scenario"]["hash"] != slow["scenario"]["hash"]
    assert fast["target"]["system"] == "postgresql" and fast["target"]["version"].startswith("18")
    assert fast["target"] == slow["target"]


def test_diff_of_real_runs_fails_on_p99(home: dict[str, Any]) -> None:
    fast, slow = home["fast"], home["slow"]
    # the base by its run id (looked up in spanbench-runs/), the new run by its folder
    res = _cli_in(home["home"], "diff", fast.name, str(slow), "--fail-on", "p99:+20%", "--fail-on", "qps:-50%")
    print(res.stdout)
    assert res.returncode == 1, res.stderr + res.stdout
    assert "FAIL p99:+20%: latency p99, all kinds" in res.stdout and "beyond the noise" in res.stdout
    assert "gate: FAILED: 2 of 2 bounds failed: p99:+20%, qps:-50%" in res.stdout
    assert "warning: the runs are not comparable: scenario: " in res.stdout

    # a bound the regression does not pass; the base named by its results.json
    far = _cli_in(home["home"], "diff", str(fast / "results.json"), str(slow), "--fail-on", "p99:+100000%")
    assert far.returncode == 0, far.stderr + far.stdout
    assert "gate: passed (1 bound)" in far.stdout

    js = _cli_in(home["home"], "diff", str(fast), str(slow), "--json", "--fail-on", "p99:+20%",
                 "--fail-on", "span:pool.init:+100000%", "--require-comparable")
    assert js.returncode == 1
    doc = json.loads(js.stdout)
    p99 = doc["gate"]["bounds"][0]
    assert p99["verdict"] == "fail" and p99["significant"] is True and p99["new"] > 20.0 > p99["base"]
    assert p99["noise"]["test"] == "mood-quantile" and p99["noise"]["p_value"] < 1e-6
    assert doc["gate"]["bounds"][1]["verdict"] == "pass"  # both sides have their pool.init spans
    assert [d["what"] for d in doc["comparable"]["differences"]] == ["scenario"]


def test_diff_of_a_run_with_itself_passes_and_bad_bounds_exit_2(home: dict[str, Any]) -> None:
    fast = home["fast"]
    res = _cli_in(home["home"], "diff", str(fast), str(fast), "--fail-on", "p99:+0%", "--fail-on", "qps:-0%",
                  "--require-comparable")
    assert res.returncode == 0, res.stderr + res.stdout
    assert "comparable: same settings, scenario, target and spanbench version" in res.stdout
    bad = _cli_in(home["home"], "diff", str(fast), str(fast), "--fail-on", "p99:20%")
    lines = [ln for ln in bad.stderr.splitlines() if ln.strip()]
    assert bad.returncode == 2 and len(lines) == 1 and "needs a sign" in lines[0], bad.stderr


def test_run_with_a_baseline(home: dict[str, Any]) -> None:
    runs = home["home"] / "gated-runs"
    base_id = home["fast"].name
    # a baseline that does not exist: exit 2 before the run starts (no run folder made)
    missing = _cli_in(home["home"], "run", "slow.toml", "--target-dsn", home["dsn"], *RUN_ARGS,
                      "--output", str(runs), "--baseline", "no-such-run", "--fail-on", "p99:+20%")
    assert missing.returncode == 2 and "no run 'no-such-run'" in missing.stderr, missing.stderr
    assert not runs.exists()
    # the baseline by run id: looked up in --output, then in spanbench-runs/
    res = _cli_in(home["home"], "run", "slow.toml", "--target-dsn", home["dsn"], *RUN_ARGS,
                  "--output", str(runs), "--baseline", base_id, "--fail-on", "p99:+20%",
                  "--fail-on", "p99:+100000%")
    print(res.stdout)
    assert res.returncode == 1, res.stderr + res.stdout
    assert f"against the baseline spanbench-runs/{base_id}" in res.stdout
    assert "FAIL p99:+20%" in res.stdout and "gate: FAILED: 1 of 2 bounds failed: p99:+20%" in res.stdout
    (gated,) = runs.iterdir()  # the run itself is kept, whatever the gate says
    assert (gated / "results.json").is_file()


def test_a_run_with_errors_keeps_its_own_exit_code(home: dict[str, Any]) -> None:
    # one query in 50 divides by zero: the run completes with errors (exit 4), and the gate,
    # printed, does not turn that into its own 1
    (home["home"] / "erring.toml").write_text(FAST.replace("SELECT abalance FROM", "SELECT abalance / (aid % 50) FROM"))
    runs = home["home"] / "erring-runs"
    res = _cli_in(home["home"], "run", "erring.toml", "--target-dsn", home["dsn"], *RUN_ARGS, "--output", str(runs),
                  "--baseline", str(home["fast"]), "--fail-on", "errors:+0")
    assert res.returncode == 4, res.stderr + res.stdout
    assert "FAIL errors:+0" in res.stdout and "gate: FAILED: 1 of 1 bounds failed: errors:+0" in res.stdout
    assert "completed with errors" in res.stderr
