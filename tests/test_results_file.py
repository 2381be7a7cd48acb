"""results.json is a typed, versioned model: one writer, the readers go through it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli, spanbench_env
from spanbench.errors import ConfigError
from spanbench.results import read_results_file
from spanbench.results_file import VERSION, Results, read_results_model, write_results_file


def test_a_real_runs_file_is_the_model(pg_dsn: str, tmp_path: Path) -> None:
    res = run_cli(["run", "--target-dsn", pg_dsn, "--workers", "1", "--connections", "2", "--warmup", "0s",
                   "--duration", "0.4s"], output=tmp_path, env=spanbench_env())
    assert res.returncode == 0, res.stderr
    raw = json.loads((res.run_dir() / "results.json").read_text())
    assert raw["version"] == VERSION
    model = read_results_model(res.run_dir())
    assert isinstance(model, Results) and model.status == "COMPLETED"
    # the keys users already read, where they always were
    m = raw["measurement"]
    assert {"seconds", "queries", "errors", "qps", "latency"} <= set(m)
    assert model.measurement.queries == m["queries"] > 0
    for kind, lat in m["latency"].items():
        assert {"p50_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms", "count"} <= set(lat)
        assert model.measurement.latency[kind].p99_ms == lat["p99_ms"]
    for phase, kinds in raw["phases"].items():
        for kind, v in kinds.items():
            assert {"count", "errors"} <= set(v)
            assert model.phases[phase][kind].count == v["count"]


def test_unknown_sections_survive_a_round_trip(tmp_path: Path) -> None:
    data = {"run_id": "r", "status": "COMPLETED", "find_max": {"steps": [1, 2]},
            "measurement": {"queries": 3, "service": {"k": {"p50_ms": 1.0}}}}
    write_results_file(tmp_path, data)
    back = read_results_file(tmp_path)
    assert back is not None and back["find_max"] == {"steps": [1, 2]}
    assert back["measurement"]["service"] == {"k": {"p50_ms": 1.0}} and back["version"] == VERSION


@pytest.mark.parametrize(("content", "says"), [
    ("{not json", "cannot read"),
    ("[1, 2]", "not a results object"),
    (json.dumps({"run_id": "r", "status": "COMPLETED", "version": VERSION + 1}), f"version {VERSION + 1}"),
    (json.dumps({"run_id": "r", "status": "COMPLETED", "measurement": {"queries": "many"}}), "measurement.queries"),
    (json.dumps({"status": "COMPLETED"}), "run_id"),
])
def test_a_bad_file_is_one_clear_error(tmp_path: Path, content: str, says: str) -> None:
    (tmp_path / "results.json").write_text(content)
    with pytest.raises(ConfigError, match=says.replace("[", r"\[")):
        read_results_model(tmp_path)


def test_the_writer_refuses_what_the_model_does_not_hold(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        write_results_file(tmp_path, {"run_id": "r", "status": "COMPLETED", "measurement": {"queries": "many"}})
    assert not (tmp_path / "results.json").exists()  # nothing half-written
