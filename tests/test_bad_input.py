"""Bad input: one line on stderr, a non-zero exit, never a traceback, never a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import spanbench_env


def assert_one_line_error(res, *, code: int | None = None, must_contain: str = "") -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode != 0, res.stdout
    if code is not None:
        assert res.returncode == code, res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("spanbench: error: ")
    assert must_contain.lower() in lines[0].lower(), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def password_dsn(password_role: tuple[str, str, str]) -> str:
    socket_dir, user, _ = password_role
    return f"postgresql://{user}:WRONG-s3cret@/postgres?host={socket_dir}"


def test_unreachable_dsn(cli) -> None:
    res = cli("run", "--target-dsn", "postgresql://bench:hunter2@127.0.0.1:1/db", "--duration", "1")
    assert_one_line_error(res, code=1, must_contain="connection refused")
    assert "hunter2" not in res.stderr + res.stdout


def test_wrong_password(cli, password_dsn: str) -> None:
    res = cli("run", "--target-dsn", password_dsn, "--duration", "1")
    assert_one_line_error(res, code=1, must_contain="password authentication failed")
    assert "WRONG-s3cret" not in res.stderr + res.stdout


def test_wrong_password_as_control_store(cli, pg_dsn: str, password_dsn: str) -> None:
    res = cli("run", "--target-dsn", pg_dsn, "--control-dsn", password_dsn, "--duration", "1")
    assert_one_line_error(res, code=1, must_contain="control store")
    assert "WRONG-s3cret" not in res.stderr + res.stdout


@pytest.mark.parametrize("dsn", ["mysql://u:p@localhost/db", "localhost:5432", "http://example.invalid/"])
def test_unsupported_scheme(cli, dsn: str) -> None:
    res = cli("run", "--target-dsn", dsn)
    assert_one_line_error(res, code=2, must_contain="unsupported DSN scheme")


@pytest.mark.parametrize(
    ("flag", "value", "field"),
    [("--connections", "0", "connections"), ("--connections", "-3", "connections"), ("--workers", "0", "workers"),
     ("--duration", "0", "duration"), ("--duration", "-1s", "duration"), ("--warmup", "-2", "warmup"),
     ("--pool-batch-size", "0", "pool_batch_size"), ("--duration", "soon", "duration")],
)
def test_bad_numbers(cli, flag: str, value: str, field: str) -> None:
    res = cli("run", flag, value)
    assert_one_line_error(res, code=2, must_contain=field.split("_")[0])


def test_fewer_connections_than_workers(cli) -> None:
    res = cli("run", "--workers", "3", "--connections", "2")
    assert_one_line_error(res, code=2, must_contain="at least workers")


def test_not_an_integer(cli) -> None:
    res = cli("run", "--connections", "many")
    assert_one_line_error(res, code=2, must_contain="--connections")


def test_broken_scenario_file(cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("connections = [unclosed\n")
    assert_one_line_error(cli("run", str(bad)), code=2, must_contain="not valid TOML")


def test_unknown_key_in_scenario(cli, tmp_path: Path) -> None:
    bad = tmp_path / "typo.toml"
    bad.write_text("connections = 4\nconections = 8\n")
    assert_one_line_error(cli("run", str(bad)), code=2, must_contain="conections")


def test_missing_scenario_file(cli, tmp_path: Path) -> None:
    assert_one_line_error(cli("run", str(tmp_path / "nope.toml")), code=2, must_contain="not found")


def test_unknown_env_value(cli) -> None:
    res = cli("run", env=spanbench_env(SPANBENCH_CONNECTIONS="lots"))
    assert_one_line_error(res, code=2, must_contain="connections")


def test_gaps_missing_trace_file(cli, tmp_path: Path) -> None:
    res = cli("gaps", str(tmp_path / "missing.jsonl"), output=False)
    assert_one_line_error(res, code=2, must_contain="missing.jsonl")


def test_gaps_not_a_trace(cli, tmp_path: Path) -> None:
    f = tmp_path / "junk.jsonl"
    f.write_text("this is not json\n")
    res = cli("gaps", str(f), output=False)
    assert_one_line_error(res, code=2)


def test_worker_without_control_dsn(cli) -> None:
    res = cli("worker", "--run-id", "x", output=False)
    assert_one_line_error(res, code=2, must_contain="control-dsn")


@pytest.mark.parametrize(("flag", "value"), [("--duration", "1m30"), ("--warmup", "30s1m"), ("--duration", "10 sec")])
def test_bad_duration_names_the_value_and_the_forms(cli, flag: str, value: str) -> None:
    line = assert_one_line_error(cli("run", flag, value), code=2, must_contain=flag.lstrip("-"))
    assert repr(value) in line and "1m30s" in line


def test_bad_otlp_protocol(cli) -> None:
    res = cli("run", env=spanbench_env(OTEL_EXPORTER_OTLP_PROTOCOL="http/json"))
    assert_one_line_error(res, code=2, must_contain="OTEL_EXPORTER_OTLP_PROTOCOL='http/json'")
