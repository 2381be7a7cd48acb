"""Run folders on the command line: a folder, a run id or the runs folder, and ``spanbench runs``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Result, run_cli, spanbench_env
from spanbench.errors import ConfigError
from spanbench.runs import resolve_run, runs_command

SECRET = "hunter2-s3cret"


@pytest.fixture(scope="module")
def real_run(pg_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real run, in ``<tmp>/spanbench-runs/<id>`` as ``spanbench run`` lays it out."""
    parent = tmp_path_factory.mktemp("runs-home") / "spanbench-runs"
    res = run_cli(["run", "--target-dsn", pg_dsn, "--workers", "2", "--connections", "4", "--warmup", "0s",
                   "--duration", "0.5s"], output=parent, env=spanbench_env(SPANBENCH_TRACING="1"), timeout=180)
    assert res.returncode == 0, res.stderr + res.stdout
    return res.run_dir()


def cli_in(cwd: Path, *args: str) -> Result:
    proc = subprocess.run([sys.executable, "-m", "spanbench", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=spanbench_env(), stdin=subprocess.DEVNULL)
    return Result(proc.returncode, proc.stdout, proc.stderr, cwd)


def one_line_error(res: Result, must: str) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2, res.stderr + res.stdout
    assert len(lines) == 1 and lines[0].startswith("spanbench: error: "), res.stderr
    assert must in lines[0], lines[0]
    assert "Traceback" not in res.stderr + res.stdout
    return lines[0]


def copy_run(run: Path, parent: Path, name: str, mtime: float | None = None) -> Path:
    dest = parent / name
    shutil.copytree(run, dest)
    if mtime is not None:
        os.utime(dest, (mtime, mtime))
    return dest


# --------------------------------------------------------------------------- resolve_run


def test_folder_id_parent_and_trace_file(real_run: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    parent = real_run.parent
    assert resolve_run(str(real_run)) == real_run
    assert capsys.readouterr().err == ""  # a run folder is what it says: nothing to announce
    assert resolve_run(real_run.name, default_parent=parent) == parent / real_run.name
    trace = real_run / "trace-orchestrator.jsonl"
    assert resolve_run(str(trace)) == trace  # gaps, diff and export take trace files

    assert resolve_run(str(parent)) == real_run
    assert capsys.readouterr().err == f"latest run in {parent}: {real_run.name}\n"

    monkeypatch.chdir(parent.parent)  # a run id alone is looked up in ./spanbench-runs
    assert resolve_run(real_run.name) == Path("spanbench-runs") / real_run.name
    assert resolve_run(None) == Path("spanbench-runs") / real_run.name
    assert capsys.readouterr().err == f"latest run in spanbench-runs: {real_run.name}\n"


def test_latest_is_the_newest_folder_not_the_last_name(real_run: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    parent = tmp_path / "runs"
    parent.mkdir()
    stat = real_run.stat().st_mtime
    newer = copy_run(real_run, parent, "aaa-newer", mtime=stat + 100)
    copy_run(real_run, parent, "zzz-older", mtime=stat - 100)
    (parent / "not-a-run").mkdir()  # a stray folder is not a candidate
    assert resolve_run(str(parent)) == newer
    assert capsys.readouterr().err == f"latest run in {parent}: aaa-newer\n"


@pytest.mark.parametrize("arg, must", [
    ("no-such-run-id", "no run 'no-such-run-id'"),
    ("nested/missing", "no such run folder or trace file"),
    ("", "empty RUN"),
])
def test_bad_arguments_are_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arg: str, must: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=must) as err:
        resolve_run(arg)
    assert "\n" not in str(err.value)


def test_folders_that_hold_no_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a run folder"):
        resolve_run("empty")  # found in . as a folder: neither a run nor a folder of runs
    (tmp_path / "spanbench-runs" / "half-made").mkdir(parents=True)
    with pytest.raises(ConfigError, match="half-made is not a run folder"):
        resolve_run("half-made")
    with pytest.raises(ConfigError, match="no run folders in spanbench-runs"):
        resolve_run(None)


# --------------------------------------------------------------------------- the commands that take RUN


def test_gaps_report_diff_take_an_id_or_the_runs_folder(real_run: Path) -> None:
    home, run_id = real_run.parent.parent, real_run.name
    res = cli_in(home, "gaps", run_id, "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["span_count"] == len(list_spans(real_run))

    (real_run / "report.html").unlink()
    res = cli_in(home, "report", "spanbench-runs")
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines()[0] == f"latest run in spanbench-runs: {run_id}"
    assert (real_run / "report.html").is_file()

    res = cli_in(home, "diff", run_id, "spanbench-runs", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)


def list_spans(run: Path) -> list[dict]:
    return [sp for f in run.glob("trace-*.jsonl") for line in f.read_text().splitlines() if line.strip()
            for rs in json.loads(line)["resourceSpans"] for ss in rs["scopeSpans"] for sp in ss["spans"]]


def test_bad_run_arguments_exit_2_with_one_line(real_run: Path, tmp_path: Path) -> None:
    one_line_error(cli_in(tmp_path, "gaps", "no-such-id"), "no run 'no-such-id'")
    one_line_error(cli_in(tmp_path, "report", str(tmp_path / "gone" / "x")), "no such run folder")
    one_line_error(cli_in(tmp_path, "diff", str(real_run), "no-such-id"), "no run 'no-such-id'")
    one_line_error(cli_in(tmp_path, "export", str(tmp_path)), "not a run folder")


# --------------------------------------------------------------------------- spanbench runs


def test_runs_lists_the_run_with_its_figures(real_run: Path) -> None:
    results = json.loads((real_run / "results.json").read_text())
    res = run_cli(["runs", str(real_run.parent), "--json"])
    assert res.returncode == 0, res.stderr
    (row,) = json.loads(res.stdout)
    assert row["id"] == real_run.name and row["status"] == "COMPLETED"
    assert row["qps"] == pytest.approx(results["measurement"]["qps"]) and row["qps"] > 0
    assert row["p99_ms"] == pytest.approx(results["measurement"]["all"]["p99_ms"])
    worst = max(w["start_to_first_query_ms"] for w in results["workers"])
    assert row["start_to_first_query_ms"] == pytest.approx(worst)
    assert row["target"] == results["settings"]["target_dsn"]  # already redacted, and left so
    assert row["start_unix_ns"] == results["gaps"]["start_unix_ns"]

    table = run_cli(["runs", str(real_run.parent)])
    assert table.returncode == 0, table.stderr
    (line,) = [ln for ln in table.stdout.splitlines() if real_run.name in ln]  # one line per run in a pipe
    assert "COMPLETED" in line and f"{row['qps']:,.0f}" in line and f"{row['p99_ms']:.3f}" in line


def test_runs_never_prints_a_password_and_newest_is_last(real_run: Path, tmp_path: Path) -> None:
    parent = tmp_path / "runs"
    parent.mkdir()
    leaky = copy_run(real_run, parent, "leaky")
    results = json.loads((leaky / "results.json").read_text())
    # A results.json from before redaction, or written by hand: the listing must still hide it.
    results["settings"]["target_dsn"] = f"postgresql://bench:{SECRET}@db.internal/bench?sslpassword={SECRET}"
    results.update(status="FAILED", reason=f"connect to postgresql://bench:{SECRET}@db.internal failed",
                   gaps={**results["gaps"], "start_unix_ns": results["gaps"]["start_unix_ns"] + 10**9})
    (leaky / "results.json").write_text(json.dumps(results))
    copy_run(real_run, parent, "original")

    for args in (["runs", str(parent)], ["runs", str(parent), "--json"]):
        res = run_cli(args)
        assert res.returncode == 0, res.stderr
        assert SECRET not in res.stdout + res.stderr
    rows = json.loads(res.stdout)
    assert [r["path"] for r in rows] == [str(parent / "original"), str(parent / "leaky")]  # newest last
    assert rows[1]["status"] == "FAILED"
    assert rows[1]["target"] == "postgresql://bench:***@db.internal/bench?sslpassword=***"
    assert rows[1]["reason"] == "connect to postgresql://bench:***@db.internal failed"


def test_runs_table_on_a_narrow_terminal_cuts_no_figure(real_run: Path) -> None:
    from rich.console import Console

    console = Console(width=50, force_terminal=True, color_system=None, record=True)
    assert runs_command(str(real_run.parent), console=console) == 0
    text = console.export_text()
    row = json.loads(run_cli(["runs", str(real_run.parent), "--json"]).stdout)[0]
    assert real_run.name in text and "…" not in text
    assert f"{row['qps']:,.0f}" in text and f"{row['p99_ms']:.3f}" in text


def test_runs_of_missing_and_empty_folders(tmp_path: Path) -> None:
    one_line_error(run_cli(["runs", str(tmp_path / "nope")]), "no runs folder")
    res = run_cli(["runs", str(tmp_path)])
    assert res.returncode == 0 and "no runs in" in res.stdout
    assert json.loads(run_cli(["runs", str(tmp_path), "--json"]).stdout) == []
