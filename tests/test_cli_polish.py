"""The commands around a run: a failure said once, tables that never cut a figure, --version,
run --help listing every setting, unknown SPANBENCH_* variables, OTLP protocols, Snowflake as an extra.

Every CLI check runs ``python -m spanbench`` as a real subprocess.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from rich.console import Console

from conftest import run_cli, spanbench_env
from spanbench.errors import RunFailed
from spanbench.orchestrator import RunOutcome
from spanbench.report.run_report import finish_run, print_results, print_table
from spanbench.results import merge_results
from spanbench.settings import NON_SETTING_VARIABLES, Settings, build_settings, setting_variable, unknown_variables

SRC = Path(__file__).resolve().parent.parent / "src" / "spanbench"
CLOSED = "postgresql://u@127.0.0.1:1/db"  # nothing listens on port 1: a run that fails at once
TABLE_CHARS = "┏┃━│┡└"


def stderr_lines(res) -> list[str]:
    return [ln for ln in res.stderr.splitlines() if ln.strip()]


# ---------------------------------------------------------------- a failure, said once

def test_refused_connection_is_said_once_with_no_table(cli) -> None:
    res = cli("run", "--target-dsn", CLOSED, "--duration", "1")
    assert res.returncode == 1
    lines = stderr_lines(res)
    assert len(lines) == 1 and lines[0].startswith("spanbench: error: ") and "connection refused" in lines[0], res.stderr
    assert "FAILED" not in res.stdout and "connection refused" not in res.stdout  # not repeated on stdout
    assert "tracing was off" not in res.stdout and "SPANBENCH_TRACING" not in res.stdout  # no hint for a failed run
    assert not any(c in res.stdout for c in TABLE_CHARS) and "latency" not in res.stdout and "queries/s" not in res.stdout
    assert "results so far" not in lines[0]  # nothing was measured: no "results so far" to point at
    assert json.loads((res.run_dir() / "results.json").read_text())["status"] == "FAILED"


def _outcome(tmp_path: Path, status: str, *, measured: bool) -> RunOutcome:
    results = merge_results([], 2)  # what a run whose workers persisted nothing merges to: all zeros
    if measured:
        m = results["measurement"]
        m.update(seconds=0.8, queries=1234, qps=1542.5)
        m["latency"] = {"point_select": {"count": 1234, "errors": 0, "qps": 1542.5, "p50_ms": 0.5, "p95_ms": 1.25,
                                         "p99_ms": 2.5, "p999_ms": 4.0, "max_ms": 9.75}}
        m["all"] = {**m["all"], "count": 1234, "p50_ms": 0.5, "p95_ms": 1.25, "p99_ms": 2.5, "p999_ms": 4.0, "max_ms": 9.75}
        results["workers"] = [{"worker_id": "w0", "status": "COMPLETED", "connections": 2, "queries": 1234,
                               "qps": 1542.5, "start_to_first_query_ms": 3.25}]
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    return RunOutcome("r1", run_dir, status, None if status == "COMPLETED" else "worker w1 exited with code -9", results)


def _finish(outcome: RunOutcome, settings: Settings) -> tuple[str, Exception | None]:
    out = io.StringIO()
    try:
        finish_run(outcome, settings, Console(file=out, width=100, color_system=None, highlight=False))
    except RunFailed as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


def test_failed_run_that_measured_nothing_prints_no_table_of_zeros(tmp_path: Path) -> None:
    text, err = _finish(_outcome(tmp_path, "FAILED", measured=False), build_settings(None, target_dsn=CLOSED))
    assert err is not None and "worker w1 exited" in str(err)
    assert not any(c in text for c in TABLE_CHARS) and "queries/s" not in text and "0.000" not in text
    assert "worker w1" not in text  # the reason is the error's, said once
    assert "tracing was off" not in text


def test_failed_run_shows_what_it_measured_marked_as_such(tmp_path: Path) -> None:
    text, err = _finish(_outcome(tmp_path, "FAILED", measured=True), build_settings(None, target_dsn=CLOSED))
    assert err is not None and "results so far" in str(err)
    assert "latency, measurement phase (ms), measured before the run was failed" in text
    assert "workers, measured before the run was failed" in text
    assert "1,234" in text and "9.750" in text
    assert "tracing was off" not in text  # a failed run needs its reason, not a tracing hint


def test_tracing_hint_only_against_a_real_target_left_at_the_default(tmp_path: Path) -> None:
    text, err = _finish(_outcome(tmp_path, "COMPLETED", measured=True), build_settings(None, target_dsn=CLOSED))
    assert err is None and "SPANBENCH_TRACING=1 adds the trace" in text
    # the embedded target with tracing switched off: "the default against a DSN" would be false
    text, err = _finish(_outcome(tmp_path, "COMPLETED", measured=True), build_settings(None, tracing=False))
    assert err is None and "tracing was off" not in text
    assert re.search(r"^latency, measurement phase \(ms\) *$", text, re.M)  # a completed run's titles are not marked


# ---------------------------------------------------------------- tables never cut a figure

def _figures(results: dict) -> list[str]:
    m = results["measurement"]
    rows = list(m["latency"].values()) + [{**m["all"], "errors": m["errors"], "qps": m["qps"]}]
    out = []
    for v in rows:
        out += [f"{v['count']:,}", f"{v['errors']:,}", f"{v['qps']:,.0f}"]
        out += [f"{v[k]:.3f}" for k in ("p50_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms")]
    for w in results["workers"]:
        out += [f"{w['queries']:,}", f"{w['qps']:,.0f}"]
        if w["start_to_first_query_ms"] is not None:
            out.append(f"{w['start_to_first_query_ms']:.1f} ms")
    return out


@pytest.mark.parametrize("columns", [60, 80])
def test_real_run_tables_keep_every_figure_whole(pg_dsn: str, tmp_path: Path, columns: int) -> None:
    res = run_cli(["run", "--target-dsn", pg_dsn, "--workers", "2", "--connections", "2", "--warmup", "0",
                   "--duration", "0.5s"], output=tmp_path, env=spanbench_env(COLUMNS=str(columns)))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "…" not in res.stdout, res.stdout
    assert max(len(ln) for ln in lines) <= columns, res.stdout
    results = json.loads((res.run_dir() / "results.json").read_text())
    missing = [f for f in _figures(results) if not any(f in ln for ln in lines)]
    assert not missing, f"figures cut or missing at {columns} columns: {missing}\n{res.stdout}"
    assert "point_select" in res.stdout  # labels are whole here too


@pytest.mark.parametrize("width", [30, 45, 60, 80, 120])
def test_wide_figures_fit_any_width(width: int) -> None:
    headers = ["query kind", "count", "errors", "qps", "p50", "p95", "p99", "p99.9", "max"]
    rows = [["point_select", "123,456,789", "12,345", "1,234,567", "106.412", "1,234.567", "12,345.678",
             "123,456.789", "1,234,567.891"], ["all", "9", "0", "1", "0.001", "0.002", "0.003", "0.004", "0.005"]]
    out = io.StringIO()
    print_table(Console(file=out, width=width, color_system=None), "latency", headers, rows)
    lines = out.getvalue().splitlines()
    assert "…" not in out.getvalue()
    assert max(len(ln) for ln in lines) <= width
    for cell in (c for row in rows for c in row[1:]):
        assert any(cell in ln for ln in lines), (cell, out.getvalue())


# ---------------------------------------------------------------- --version, run --help

def test_version() -> None:
    res = run_cli(["--version"])
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"spanbench {version('spanbench')}\n"


def test_run_help_lists_every_setting() -> None:
    res = run_cli(["run", "--help"], env=spanbench_env(COLUMNS="100"))
    assert res.returncode == 0, res.stderr
    text = " ".join(res.stdout.split())  # help wraps its lines
    flags = set(re.findall(r"--([a-z][a-z-]+)", text))
    terms = {name: f"{name}, {setting_variable(name)}" for name in Settings.model_fields}
    listed = [t for t in terms.values() if t in text]
    for name, field in Settings.model_fields.items():
        if name.replace("_", "-") in flags:
            continue
        # not a flag: listed after the options by scenario key and variable, with its default
        term = terms[name]
        assert term in text, f"setting {name} is neither a flag nor listed in run --help"
        start = text.index(term) + len(term)
        ends = [text.index(t, start) for t in listed if t != term and t in text[start:]]
        entry = text[start:min(ends, default=len(text))]
        assert "default" in entry, (name, entry)
    assert "1m30s" in text  # the duration forms
    assert "rows, SPANBENCH_ROWS default 100000" in text
    assert "poll_interval, SPANBENCH_POLL_INTERVAL default 100ms" in text


# ---------------------------------------------------------------- SPANBENCH_* variables

def test_unknown_variables_name_the_nearest_setting() -> None:
    env = {"SPANBENCH_DURATON": "3", "SPANBENCH_CONECTIONS": "4", "SPANBENCH_ZZZ": "1", "spanbench_rows": "5",
           "SPANBENCH_DEBUG": "1", "SPANBENCH_RUN_DIR": "x", "SPANBENCH_PARENT_PID": "1", "SPANBENCH_LAUNCH_NS": "1",
           "SPANBENCH_TARGET_DSN": CLOSED, "SPANBENCH_CONTROL_DSN": CLOSED, "SPANBENCH_TEST_INJECT_WORKER": "w1",
           "PATH": "/bin"}
    assert unknown_variables(env) == [
        ("SPANBENCH_CONECTIONS", "SPANBENCH_CONNECTIONS"), ("SPANBENCH_DURATON", "SPANBENCH_DURATION"),
        ("SPANBENCH_ZZZ", None),
    ]


def test_every_variable_the_code_reads_is_known() -> None:
    """A SPANBENCH_* name written in the code is a setting or listed as a known non-setting."""
    settings = {setting_variable(n) for n in Settings.model_fields}
    named = {m for f in SRC.rglob("*.py") for m in re.findall(r"SPANBENCH_[A-Z0-9_]+", f.read_text())}
    unknown = sorted(v for v in named if v not in settings | NON_SETTING_VARIABLES
                     and not v.endswith("_") and not v.startswith("SPANBENCH_TEST_"))  # "SPANBENCH_TEST_": a prefix
    assert not unknown, f"add these to settings.NON_SETTING_VARIABLES (or make them settings): {unknown}"


def test_misspelt_variable_is_warned_once(cli) -> None:
    res = cli("run", "--target-dsn", CLOSED, "--duration", "1",
              env=spanbench_env(SPANBENCH_DURATON="5s", SPANBENCH_DEBUG="0", SPANBENCH_TEST_NOTHING="1"))
    assert res.returncode == 1
    lines = stderr_lines(res)
    warnings = [ln for ln in lines if ln.startswith("spanbench: warning: ")]
    assert warnings == ["spanbench: warning: SPANBENCH_DURATON is not a setting (did you mean SPANBENCH_DURATION?)"], res.stderr
    assert len(lines) == 2 and lines[1].startswith("spanbench: error: "), res.stderr


# ---------------------------------------------------------------- OTLP protocols

@pytest.mark.parametrize("var", ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                                 "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"])
def test_unsupported_otlp_protocol_is_bad_input(cli, var: str) -> None:
    res = cli("run", "--target-dsn", CLOSED, "--duration", "1", env=spanbench_env(**{var: "http/json"}))
    assert res.returncode == 2, res.stderr
    lines = stderr_lines(res)
    assert len(lines) == 1 and var in lines[0] and "grpc" in lines[0] and "http/protobuf" in lines[0], res.stderr
    assert not (Path(res.output).exists() and any(Path(res.output).iterdir()))  # refused before the run began


def test_worker_refuses_a_bad_protocol_before_it_starts(cli) -> None:
    res = cli("worker", "--run-id", "x", "--control-dsn", CLOSED, "--join-timeout", "1s", output=False,
              env=spanbench_env(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="grcp"))
    assert res.returncode == 2, res.stderr
    lines = stderr_lines(res)
    assert len(lines) == 1 and "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL='grcp'" in lines[0], res.stderr


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_supported_protocols_pass(cli, protocol: str) -> None:
    res = cli("run", "--target-dsn", CLOSED, "--duration", "1", env=spanbench_env(OTEL_EXPORTER_OTLP_PROTOCOL=protocol))
    assert res.returncode == 1 and "connection refused" in res.stderr, res.stderr  # got as far as connecting


# ---------------------------------------------------------------- Snowflake is an extra

# Runs the CLI in a process where the Snowflake connector cannot be imported, as after
# `pip install spanbench` without the [snowflake] extra.
WITHOUT_SNOWFLAKE = """
import sys

class _NoSnowflake:
    def find_spec(self, name, path=None, target=None):
        if name == "snowflake" or name.startswith("snowflake."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoSnowflake())
sys.argv = ["spanbench", *sys.argv[1:]]
from spanbench.cli import main
main()
"""


def run_without_snowflake(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", WITHOUT_SNOWFLAKE, *args, "--output", str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=120, env=spanbench_env(), stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("flag", ["--target-dsn", "--control-dsn"])
def test_snowflake_dsn_without_the_connector_says_how_to_install_it(tmp_path: Path, flag: str) -> None:
    args = ["run", flag, "snowflake://u:pw@acct/db/sch?warehouse=wh"]
    if flag == "--control-dsn":
        args += ["--target-dsn", CLOSED]
    res = run_without_snowflake(tmp_path, *args)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "pip install 'spanbench[snowflake]'" in lines[0] and "Traceback" not in res.stderr, res.stderr
    assert "u:pw" not in res.stderr and "acct" not in res.stderr  # the DSN is not echoed
    assert not (tmp_path / "runs").exists()  # refused before anything started


def test_postgresql_run_needs_no_snowflake_connector(tmp_path: Path) -> None:
    res = run_without_snowflake(tmp_path, "run", "--target-dsn", CLOSED, "--duration", "1")
    assert res.returncode == 1, res.stderr
    assert "connection refused" in res.stderr and "snowflake" not in res.stderr.lower(), res.stderr


def test_the_error_line_comes_last_on_one_stream(tmp_path: Path) -> None:
    """`spanbench run … 2>&1 | tee log`: the failure is the last thing said, after the run folder."""
    proc = subprocess.run([sys.executable, "-m", "spanbench", "run", "--target-dsn", CLOSED, "--output", str(tmp_path)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120,
                          env=spanbench_env(), stdin=subprocess.DEVNULL)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert proc.returncode == 1
    assert lines[-1].startswith("spanbench: error: ") and "connection refused" in lines[-1], proc.stdout
    assert sum("connection refused" in ln for ln in lines) == 1 and any(ln.startswith("run folder: ") for ln in lines)
