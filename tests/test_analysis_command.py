"""``spanbench gaps`` as a function: exit codes, JSON keys, the printed report."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from spanbench.report.gaps_report import gaps_command
from support.synthetic import spanbench_run, to_otlp
from spanbench.errors import ConfigError


def _write_run(tmp_path, **kw):
    b = spanbench_run(**kw)
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "trace.jsonl").write_text(json.dumps(to_otlp(b.spans)) + "\n")
    return folder


def _run(source, **kw):
    out = io.StringIO()
    code = gaps_command(str(source) if source else None, console=Console(file=out, width=120), **kw)
    return code, out.getvalue()


def test_text_report_names_the_injected_gap(tmp_path):
    code, text = _run(_write_run(tmp_path, stall_ms=7520))
    assert code == 0
    assert "gap 7.52s in worker[w1] after pool.init before executor.setup" in text
    assert "worker[w1]: run start → first_query: 8.55s (traced 1.03s, untraced 7.52s)" in text
    assert "worker[w0]: run start → first_query: 8.55s (traced 8.55s, untraced 0µs)" in text
    assert "wait_for_start.poll ×" in text  # collapsed siblings


@pytest.mark.parametrize(
    ("stall_ms", "fail_over", "expected"),
    [
        (7520, "1s", 1),
        (7520, "7.6s", 0),
        (0, "50ms", 0),
        (60, "50ms", 1),  # smaller than --min-gap still counts: the threshold is --fail-over's
        (7520, None, 0),
    ],
)
def test_fail_over_exit_codes(tmp_path, stall_ms, fail_over, expected):
    code, text = _run(_write_run(tmp_path, stall_ms=stall_ms), fail_over=fail_over, min_gap="100ms")
    assert code == expected
    if expected:
        assert "FAIL:" in text and "exceeds --fail-over" in text
    elif fail_over:
        assert "ok: no gap on a critical path exceeds" in text


def test_fail_over_ignores_gaps_off_the_critical_path(tmp_path):
    # The big gaps between sampled queries come after first_query: not on its path.
    code, _ = _run(_write_run(tmp_path), fail_over="100ms")
    assert code == 0


def test_json_output(tmp_path):
    code, text = _run(_write_run(tmp_path, stall_ms=7520), as_json=True, fail_over="1s")
    assert code == 1
    doc = json.loads(text)
    assert set(doc) >= {
        "version", "trace_id", "span_count", "start_unix_ns", "end_unix_ns", "duration_ms", "min_gap_ms",
        "roots", "warnings", "gaps", "critical_paths", "skew", "processes", "spans", "fail_over",
    }
    assert doc["min_gap_ms"] == 50.0
    first = doc["gaps"][0]
    assert set(first) == {"span", "start_unix_ns", "end_unix_ns", "start_ms", "duration_ms", "before", "after",
                          "on_critical_path"}
    assert first["duration_ms"] == 7520.0 and first["on_critical_path"] is True
    assert first["span"]["label"] == "worker[w1]"
    assert first["before"]["name"] == "pool.init" and first["after"]["name"] == "executor.setup"
    assert first["end_unix_ns"] - first["start_unix_ns"] == 7_520_000_000
    paths = {p["worker_id"]: p for p in doc["critical_paths"]}
    assert paths["w1"]["untraced_ms"] == 7520.0 and paths["w1"]["traced_ms"] == 1030.0
    assert paths["w1"]["gaps"][0]["on_path_ms"] == 7520.0
    assert paths["w0"]["untraced_ms"] == 0.0
    assert doc["fail_over"]["failed"] is True and doc["fail_over"]["threshold_ms"] == 1000.0
    span = doc["spans"][0]
    assert set(span) == {"span_id", "parent_id", "name", "service", "process", "worker_id", "depth", "start_unix_ns",
                         "end_unix_ns", "start_ms", "duration_ms", "self_ms"}
    assert span["name"] == "run" and span["start_ms"] == 0.0
    assert len(doc["spans"]) == doc["span_count"]


def test_min_gap_option(tmp_path):
    folder = _write_run(tmp_path, stall_ms=7520)
    _, text = _run(folder, as_json=True, min_gap="2s")
    assert [g["duration_ms"] for g in json.loads(text)["gaps"]] == [7520.0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_gap": "fast"}, "not a duration"),
        ({"fail_over": "-1s"}, "negative"),
        ({"jaeger": "http://127.0.0.1:9"}, "--trace-id"),
        ({"tempo": "http://127.0.0.1:9"}, "--trace-id"),
        ({"query": "{}"}, "--tempo"),
        ({"jaeger": "http://x", "tempo": "http://y", "trace_id": "ab"}, "not both"),
    ],
)
def test_bad_options_raise_config_error(tmp_path, kwargs, message):
    source = None if ("jaeger" in kwargs or "tempo" in kwargs) else _write_run(tmp_path)
    with pytest.raises(ConfigError, match=message):
        _run(source, **kwargs)


def test_path_and_remote_together_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not both"):
        _run(_write_run(tmp_path), jaeger="http://127.0.0.1:9", trace_id="ab")


def test_missing_trace_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        _run(tmp_path / "nope.jsonl")
