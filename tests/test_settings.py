"""Settings: flags over the scenario file over SPANBENCH_* variables; bad input is a ConfigError."""

from __future__ import annotations

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
