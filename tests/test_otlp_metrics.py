"""Worker metrics arrive over OTLP at a real receiver, and agree with the run's own results."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import run_cli, spanbench_env
from support.otlp_receiver import OtlpReceiver, read_otlp_json_lines


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_metrics_match_results(pg_dsn: str, tmp_path: Path, protocol: str) -> None:
    with OtlpReceiver(tmp_path / "otlp.jsonl") as rx:
        env = spanbench_env(SPANBENCH_TRACING="1", OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint(protocol),
                            OTEL_EXPORTER_OTLP_PROTOCOL=protocol, OTEL_METRIC_EXPORT_INTERVAL="300")
        res = run_cli(["run", "--target-dsn", pg_dsn, "--workers", "2", "--connections", "4", "--warmup", "0.3s",
                       "--duration", "1s"], output=tmp_path / "runs", env=env)
        assert res.returncode == 0, res.stderr
        points = rx.metrics()
    run_dir = res.run_dir()
    results = json.loads((run_dir / "results.json").read_text())

    def latest(name: str) -> dict[tuple[str, str], dict]:
        out: dict[tuple[str, str], dict] = {}
        for p in sorted((p for p in points if p["name"] == name), key=lambda p: p["time_unix_nano"]):
            out[(p["attributes"]["worker_id"], p["attributes"].get("query_kind", ""))] = p
        return out

    # Every query of every phase, by kind: the cumulative counter's last value per worker adds up.
    expected: dict[str, int] = defaultdict(int)
    for phase in results["phases"].values():
        for kind, summary in phase.items():
            expected[kind] += summary["count"]
    got: dict[str, int] = defaultdict(int)
    for (worker, kind), p in latest("spanbench.queries").items():
        assert p["type"] == "sum" and p["monotonic"] and p["attributes"]["run_id"] == run_dir.name
        got[kind] += p["value"]
    assert dict(got) == dict(expected) and sum(got.values()) > 0

    # The latency histogram is built from the same HDR counts: same totals, buckets add up.
    for (worker, kind), p in latest("spanbench.query.duration").items():
        assert p["type"] == "histogram"
        assert sum(p["bucket_counts"]) == p["count"] == latest("spanbench.queries")[(worker, kind)]["value"]
        assert len(p["bucket_counts"]) == len(p["explicit_bounds"]) + 1
    # Exemplars point at sampled query spans of this run's trace.
    span_ids = {s["span_id"] for f in run_dir.glob("trace-*.jsonl") for s in read_otlp_json_lines(f)
                if s["name"] in ("query", "first_query")}
    exemplar_ids = {e["span_id"] for p in points if p["name"] == "spanbench.query.duration" for e in p["exemplars"]}
    assert exemplar_ids and exemplar_ids <= span_ids

    assert {w for (w, _) in latest("spanbench.active_connections")} == {"w0", "w1"}
    phases = {p["value"] for p in points if p["name"] == "spanbench.phase"}
    assert 2 in phases  # MEASUREMENT was reported
    assert all(p["unit"] == "s" for p in points if p["name"] == "spanbench.query.duration")
