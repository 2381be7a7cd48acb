"""Settings: flags over the scenario file over SPANBENCH_* variables; bad input is a ConfigError."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spanbench.dsn import dsn_system, redact_dsn
from spanbench.errors import ConfigError
from spanbench.settings import build_settings
from spanbench.units import parse_duration


def test_precedence_flags_file_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text('connections = 12\nworkers = 3\nwarmup = "750ms"\n')
    monkeypatch.setenv("SPANBENCH_CONNECTIONS", "40")
    monkeypatch.setenv("SPANBENCH_WORKERS", "5")
    monkeypatch.setenv("SPANBENCH_DURATION", "3s")
    s = build_settings(scenario, connections=20)
    assert s.connections == 20  # flag beats file and env
    assert s.workers == 3  # file beats env
    assert s.duration == 3.0  # env beats default
    assert s.warmup == 0.75


def test_defaults() -> None:
    s = build_settings(None)
    assert (s.workers, s.connections, s.pool_batch_size, s.warmup, s.duration) == (2, 16, 8, 2.0, 10.0)
    assert s.tracing_enabled  # embedded target: on
    assert not build_settings(None, target_dsn="postgresql://h/db").tracing_enabled  # real DSN: off


def test_tracing_env_overrides_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANBENCH_TRACING", "1")
    assert build_settings(None, target_dsn="postgresql://h/db").tracing_enabled
    monkeypatch.setenv("SPANBENCH_TRACING", "0")
    assert not build_settings(None).tracing_enabled


@pytest.mark.parametrize("content", ["workers = 0", "connections = -1", "duration = 0", "nonsense = 1", "warmup = 'x'"])
def test_bad_scenarios(tmp_path: Path, content: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(content + "\n")
    with pytest.raises(ConfigError) as err:
        build_settings(f)
    assert "\n" not in str(err.value)


def test_public_settings_hold_no_secret() -> None:
    s = build_settings(None, target_dsn="postgresql://u:topsecret@h/db?sslpassword=alsosecret",
                       control_dsn="snowflake://u:pw123@acct/db/sch")
    text = str(s.public())
    for secret in ("topsecret", "alsosecret", "pw123"):
        assert secret not in text


@pytest.mark.parametrize(("text", "seconds"), [("50ms", 0.05), ("2", 2.0), ("1.5m", 90.0), ("250us", 0.00025), (3, 3.0)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_dsn_systems_and_redaction() -> None:
    assert dsn_system("postgres://x") == "postgresql"
    assert dsn_system("snowflake://u@a/d/s") == "snowflake"
    with pytest.raises(ConfigError):
        dsn_system("mysql://x")
    assert redact_dsn("postgresql://u:p@h:5/d") == "postgresql://u:***@h:5/d"


@pytest.mark.parametrize(("text", "seconds"), [
    ("1m30s", 90.0), ("1h2m3.5s", 3723.5), ("500ms", 0.5), ("2s", 2.0), ("1.5m", 90.0), ("1h30m", 5400.0),
    ("2m 15s", 135.0), ("1s500ms", 1.5), ("10min", 600.0),
])
def test_compound_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["1m30", "30s1m", "1s2s", "soon", "1x", "", "m", "1..5s", "--1s"])
def test_bad_durations_name_the_value_and_the_forms(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_duration(text)
    msg = str(err.value)
    assert "\n" not in msg and repr(text) in msg and "1m30s" in msg and "ms" in msg


def test_a_bad_duration_setting_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"warmup: not a duration: '1m30'"):
        build_settings(None, warmup="1m30")
    monkeypatch.setenv("SPANBENCH_DRAIN_TIMEOUT", "5 seconds")
    with pytest.raises(ConfigError, match="drain_timeout"):
        build_settings(None)
    monkeypatch.setenv("SPANBENCH_DRAIN_TIMEOUT", "1m30s")
    assert build_settings(None, duration="1m").drain_timeout == 90.0


@pytest.mark.parametrize(("var", "value"), [
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"), ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grcp"),
    ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "HTTP/PROTOBUF"),
])
def test_unsupported_otlp_protocol_is_refused_before_a_command_runs(var: str, value: str) -> None:
    # The CLI checks it before run, init, worker and pools (settings sit below telemetry).
    from conftest import run_cli, spanbench_env

    for args in (["run", "--duration", "1s"], ["init"], ["worker", "--run-id", "x", "--control-dsn", "postgresql://u@127.0.0.1:1/d"]):
        res = run_cli(args, env=spanbench_env(**{var: value}))
        assert res.returncode == 2, (args, res.stderr)
        assert var in res.stderr and "grpc or http/protobuf" in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("value", ["grpc", "http/protobuf", " grpc ", ""])
def test_supported_otlp_protocols(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    from spanbench.telemetry.endpoints import check_otlp_protocols

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", value)
    check_otlp_protocols()
    build_settings(None)


def test_unknown_variable_warning_once(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from spanbench import settings as settings_module

    monkeypatch.setattr(settings_module, "_warned", set())
    for var in [v for v in os.environ if v.upper().startswith("SPANBENCH_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("SPANBENCH_WOKRERS", "3")
    monkeypatch.setenv("SPANBENCH_DEBUG", "1")
    build_settings(None)
    build_settings(None)
    err = capsys.readouterr().err
    assert err == "spanbench: warning: SPANBENCH_WOKRERS is not a setting (did you mean SPANBENCH_WORKERS?)\n"


def test_snowflake_dsn_needs_its_connector(monkeypatch: pytest.MonkeyPatch) -> None:
    from spanbench import dsn

    assert dsn.check_dsn("snowflake://u@a/d/s") == "snowflake"  # the test extra installs the connector
    monkeypatch.setattr(dsn, "_module_found", lambda name: False)
    with pytest.raises(ConfigError, match=r"pip install 'spanbench\[snowflake\]'"):
        dsn.check_dsn("snowflake://u:pw@a/d/s")
    assert dsn.check_dsn("postgresql://h/db") == "postgresql"  # PostgreSQL needs nothing more
