"""`spanbench gaps` on traces other programs wrote: async work, broken spans, Zipkin, the
back end's own warnings, unknown formats, and the first-query guard. Pure and fast: no
database, synthetic traces only."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pytest
from rich.console import Console

from conftest import run_cli, spanbench_env
from spanbench.analysis.analyze import analyze
from spanbench.report.gaps_report import gaps_command
from spanbench.analysis.load import load_trace
from spanbench.errors import ConfigError, SpanbenchError
from support.synthetic import MS, T0_NS, TraceBuilder, spanbench_run, to_jaeger, to_otlp, to_zipkin

FORMATS = "(OTLP/JSON lines or request, Jaeger JSON, Tempo JSON, Zipkin v2 JSON)"


def _write(tmp_path: Path, doc, name: str = "trace.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def _gaps(source, **kw):
    """(exit code, stdout text, stderr text) of gaps_command on ``source``."""
    out, err = io.StringIO(), io.StringIO()
    code = gaps_command(str(source), console=Console(file=out, width=120), err=err, **kw)
    return code, out.getvalue(), err.getvalue()


def _check_path_adds_up(trace, path):
    """Segments tile [root start, path end] exactly; the untraced part is the path's gaps."""
    assert path.traced_ns + path.untraced_ns == path.duration_ns
    if path.duration_ns:
        assert path.segments[0].start_ns == path.start_ns == trace[path.root_id].start_ns
        assert path.segments[-1].end_ns == path.end_ns
    for a, b in zip(path.segments, path.segments[1:]):
        assert a.end_ns == b.start_ns
    assert all(s.duration_ns > 0 for s in path.segments)
    assert sum(pg.on_path_ns for pg in path.gaps) == path.untraced_ns


def _names(trace, path):
    return [(trace[s.span_id].name, (s.start_ns - T0_NS) / MS, (s.end_ns - T0_NS) / MS, s.traced) for s in path.segments]


# --- 1. async work that outlives its parent -----------------------------------------


def _queue_trace() -> TraceBuilder:
    """An HTTP handler that enqueues a job and returns; a consumer picks it up 200 ms later."""
    b = TraceBuilder()
    handler = b.span("POST /orders", 0, 100, service="api", process="api-1")
    b.span("db.insert", 10, 60, handler)
    publish = b.span("queue.publish", 60, 80, handler)
    consume = b.span("queue.consume", 280, 700, publish, service="billing", process="billing-1")
    b.span("charge", 300, 650, consume)
    return b


def test_whole_trace_path_follows_a_consumer_that_starts_after_its_parent_ended():
    b = _queue_trace()
    analysis = analyze(b.trace(), min_gap_s=0)
    trace = analysis.trace
    [path] = analysis.paths
    assert path.until == "end"
    assert trace[path.target_id].name == "queue.consume"
    assert path.end_ns == T0_NS + 700 * MS == trace.end_ns  # not the handler's end at 100 ms
    assert path.duration_ns == 700 * MS
    _check_path_adds_up(trace, path)
    assert _names(trace, path) == [
        ("POST /orders", 0, 10, False),
        ("db.insert", 10, 60, True),
        # not a leaf, so its own time is a gap (as before); then, kept apart, its wait:
        ("queue.publish", 60, 80, False),
        ("queue.publish", 80, 280, False),
        ("queue.consume", 280, 300, False),
        ("charge", 300, 650, True),
        ("queue.consume", 650, 700, False),
    ]
    assert path.traced_ns == (50 + 350) * MS and path.untraced_ns == (10 + 20 + 200 + 20 + 50) * MS
    # The wait is named: after publish ended, before the consumer began.
    [wait] = [pg for pg in path.gaps if pg.gap.after_end]
    assert (wait.gap.start_ns - T0_NS, wait.gap.end_ns - T0_NS) == (80 * MS, 280 * MS)
    assert trace[wait.gap.span_id].name == "queue.publish"
    assert trace[wait.gap.after_id].name == "queue.consume"
    assert wait.on_path_ns == 200 * MS
    # ... and --fail-over counts it like any untraced time on the path.
    assert [g for _, g, _ in analysis.path_gaps_over(150 * MS)] == [wait.gap]


def test_async_child_in_jaeger_json_follows_from_reference(tmp_path):
    b = _queue_trace()
    doc = to_jaeger(b.spans)
    for span in doc["data"][0]["spans"]:
        if span["operationName"] == "queue.consume":
            span["references"][0]["refType"] = "FOLLOWS_FROM"
    code, out, _ = _gaps(_write(tmp_path, doc), as_json=True)
    assert code == 0
    report = json.loads(out)
    [path] = report["critical_paths"]
    assert path["end_unix_ns"] == report["end_unix_ns"] == T0_NS + 700 * MS
    assert path["duration_ns"] == path["traced_ns"] + path["untraced_ns"] == 700 * MS
    assert path["traced_ms"] + path["untraced_ms"] == path["duration_ms"] == 700.0
    [wait] = [g for g in path["gaps"] if g["after_span_end"]]
    assert wait["span"]["name"] == "queue.publish" and wait["on_path_ms"] == 200.0


def test_path_to_first_query_inside_work_that_outlived_its_parent():
    # The worker that runs first_query was started by a span that had long ended.
    b = TraceBuilder()
    run = b.span("run", 0, 100)
    launch = b.span("launch", 0, 50, run)
    w = b.span("worker", 200, 900, launch, process="w", attrs={"spanbench.worker_id": "w0"})
    b.span("worker.startup", 200, 400, w)
    b.span("first_query", 400, 401, w)
    [path] = analyze(b.trace()).paths
    assert path.until == "start" and path.duration_ns == 400 * MS  # not cut at run's end (100 ms)
    _check_path_adds_up(b.trace(), path)


def test_child_wholly_before_the_root_never_inflates_the_path():
    # A worker whose clock runs 500 ms behind: its first child "ended" before run began.
    b = TraceBuilder()
    run = b.span("run", 0, 1000)
    w = b.span("worker", -500, 900, run, process="w", attrs={"spanbench.worker_id": "w0"})
    b.span("worker.startup", -500, -100, w)
    b.span("first_query", 300, 301, w)
    analysis = analyze(b.trace())
    [path] = analysis.paths
    assert path.duration_ns == 300 * MS
    assert path.untraced_ns == 300 * MS  # it used to count 400 ms: from -100, before the run began
    _check_path_adds_up(analysis.trace, path)


def test_random_async_and_skewed_trees_always_add_up():
    rng = random.Random(11)
    for trial in range(40):
        b = TraceBuilder()
        spans = [b.span("root", 0, rng.uniform(100, 1000))]
        for i in range(rng.randint(1, 60)):
            parent = rng.choice(spans)
            p0, p1 = (parent.start_ns - T0_NS) / MS, (parent.end_ns - T0_NS) / MS
            kind = rng.random()
            if kind < 0.2:  # async: starts after its parent ended
                s = p1 + rng.uniform(0, 300)
            elif kind < 0.3:  # skew: starts before its parent
                s = p0 - rng.uniform(0, 200)
            else:
                s = rng.uniform(p0, p1)
            e = s + rng.choice([0, rng.uniform(0, 400)])
            name = "first_query" if trial % 3 == 0 and rng.random() < 0.1 else f"s{i}"
            spans.append(b.span(name, s, e, parent, process=rng.choice(["a", "b"])))
        trace = b.trace()
        analysis = analyze(trace, min_gap_s=0)
        assert analysis.paths
        for path in analysis.paths:
            _check_path_adds_up(trace, path)
            if path.until == "end":
                assert path.end_ns == max(s.end_ns for s in trace.spans)
        doc = analysis.to_json()
        for p in doc["critical_paths"]:
            assert p["traced_ns"] + p["untraced_ns"] == p["duration_ns"]
            assert p["traced_ms"] + p["untraced_ms"] == p["duration_ms"]


@pytest.mark.parametrize(("leaf_ms", "total_ms"), [(1.0004, 2.0008), (0.1, 0.3), (1.656322, 3.701049)])
def test_json_figures_add_up_exactly_despite_rounding(leaf_ms, total_ms):
    # Rounded on their own, 1.0004 + 1.0004 ms give 1.0 + 1.0 != 2.001; and 0.1 + 0.2 != 0.3.
    b = TraceBuilder()
    root = b.span("root", 0, total_ms)
    b.span("leaf", 0, leaf_ms, root)
    [path] = analyze(b.trace()).to_json()["critical_paths"]
    assert path["traced_ms"] + path["untraced_ms"] == path["duration_ms"]
    assert path["traced_ns"] + path["untraced_ns"] == path["duration_ns"] == round(total_ms * MS)
    assert abs(path["untraced_ms"] - (total_ms - leaf_ms)) < 0.0015


# --- 2. spans without a start time ------------------------------------------------


def test_jaeger_span_without_start_time_is_left_out_with_a_warning(tmp_path):
    b = spanbench_run()
    doc = to_jaeger(b.spans)
    spans = doc["data"][0]["spans"]
    names = {s["operationName"]: s for s in spans}
    names["orchestrator.prepare"]["startTime"] = 0
    del names["orchestrator.launch_workers"]["startTime"]
    path = _write(tmp_path, doc)
    trace = load_trace(path)
    assert len(trace) == len(b.spans) - 2
    assert not {"orchestrator.prepare", "orchestrator.launch_workers"} & {s.name for s in trace.spans}
    assert min(s.start_ns for s in trace.spans) == T0_NS
    assert "2 spans skipped (start time missing or 0)" in trace.warnings

    code, text, err = _gaps(path, full=True)
    assert code == 0
    assert "m00" not in text and "+-" not in text  # no offset of decades (it was "+-29742847m00.6s")
    assert err.splitlines() == ["spanbench: warning: 2 spans skipped (start time missing or 0)"]
    assert "warning" not in text  # once, on stderr, not again in the report

    _, out, _ = _gaps(path, as_json=True)
    report = json.loads(out)
    assert "2 spans skipped (start time missing or 0)" in report["warnings"]
    assert all(s["start_ms"] >= 0 for s in report["spans"])
    assert report["duration_ms"] == 14_000.0


def test_otlp_span_with_start_zero_or_missing_is_left_out(tmp_path):
    b = spanbench_run()
    doc = to_otlp(b.spans)
    raw = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    raw[1]["startTimeUnixNano"] = "0"
    del raw[2]["startTimeUnixNano"]
    raw[3]["startTimeUnixNano"] = "soon"  # unreadable: the same, never a traceback
    trace = load_trace(_write(tmp_path, doc))
    assert len(trace) == len(b.spans) - 3
    assert trace.start_ns == T0_NS
    assert "3 spans skipped (start time missing or 0)" in trace.warnings


# --- 3. spans without ids ---------------------------------------------------------


def _otlp_without_ids(b: TraceBuilder, how_many: int) -> dict:
    doc = to_otlp(b.spans)
    n = 0
    for rs in doc["resourceSpans"]:
        for span in rs["scopeSpans"][0]["spans"]:
            if n < how_many:
                span["traceId" if n % 2 else "spanId"] = ""
                n += 1
    return doc


def test_otlp_spans_with_empty_ids_say_why_nothing_was_found(tmp_path):
    b = TraceBuilder()
    root = b.span("root", 0, 100)
    for i in range(11):
        b.span(f"c{i}", i, i + 1, root)
    path = _write(tmp_path, _otlp_without_ids(b, 12))
    with pytest.raises(ConfigError) as err:
        load_trace(path)
    assert str(err.value) == f"no spans found in {path}: 12 spans skipped (trace or span id missing)"


def test_skipped_spans_are_reported_when_others_remain(tmp_path):
    b = spanbench_run()
    path = _write(tmp_path, _otlp_without_ids(b, 5))
    trace = load_trace(path)
    assert len(trace) == len(b.spans) - 5
    assert "5 spans skipped (trace or span id missing)" in trace.warnings
    _, _, err = _gaps(path)
    assert "spanbench: warning: 5 spans skipped (trace or span id missing)" in err.splitlines()


# --- 4. Zipkin v2 -----------------------------------------------------------------


def _shape(trace):
    out = []
    for s in trace.spans:
        parent = trace.parent(s)
        out.append((s.name, parent.name if parent else None, (s.start_ns - T0_NS) / MS, (s.end_ns - T0_NS) / MS))
    return sorted(out)


def test_zipkin_trace_list_reads_like_the_original(tmp_path):
    b = spanbench_run(stall_ms=300)
    trace = _load_doc(to_zipkin(b.spans), tmp_path)
    assert _shape(trace) == _shape(b.trace())
    assert trace.trace_id == b.trace_id
    # The service is localEndpoint's, one process per service and address.
    worker = next(s for s in trace.spans if s.name == "worker" and s.worker_id == "w1")
    assert worker.service == "spanbench"
    pool = next(s for s in trace.children(worker) if s.name == "pool.init")
    assert pool.process_key == worker.process_key != trace.roots[0].process_key
    analysis = analyze(trace)
    assert len(analysis.processes) == 3
    assert {p.process_key for p in analysis.processes} == {"spanbench@10.0.0.1", "spanbench@10.0.0.2",
                                                           "spanbench@10.0.0.3"}
    paths = {analysis.trace.owner(analysis.trace[p.target_id]): p for p in analysis.paths}
    assert paths["w1"].untraced_ns == 300 * MS and paths["w0"].untraced_ns == 0


def _load_doc(doc, tmp_path: Path, **kw):
    return load_trace(_write(tmp_path, doc, "zipkin.json"), **kw)


def test_zipkin_list_of_traces_and_64_bit_ids(tmp_path):
    small = TraceBuilder(trace_id="0000000000000000aaaaaaaaaaaaaaaa")
    r = small.span("small-root", 0, 10)
    small.span("c", 0, 5, r)
    big = TraceBuilder(trace_id="0000000000000000bbbbbbbbbbbbbbbb")
    r = big.span("big-root", 0, 10)
    for i in range(3):
        big.span(f"c{i}", i, i + 1, r)
    # /api/v2/traces: a list of traces, each a list of spans; 64-bit trace ids
    doc = [to_zipkin(small.spans, trace_id_hex=16), to_zipkin(big.spans, trace_id_hex=16)]
    path = _write(tmp_path, doc)
    assert load_trace(path).roots[0].name == "big-root"
    assert load_trace(path, trace_id="aaaaaaaaaaaaaaaa").roots[0].name == "small-root"


def test_zipkin_mixed_64_and_128_bit_trace_ids_are_one_trace(tmp_path):
    b = TraceBuilder(trace_id="463ac35c9f6413ad48485a3953bb6124")
    root = b.span("GET /", 0, 100, service="web")
    b.span("db", 10, 50, root, service="db")
    doc = to_zipkin(b.spans)
    doc[1]["traceId"] = "48485a3953bb6124"  # a hop that kept only the low 64 bits
    trace = _load_doc(doc, tmp_path)
    assert len(trace) == 2 and trace.trace_id == "463ac35c9f6413ad48485a3953bb6124"
    assert trace.parent(next(s for s in trace.spans if s.name == "db")).name == "GET /"


def test_zipkin_shared_server_span_nests_under_its_client(tmp_path):
    tid = "463ac35c9f6413ad48485a3953bb6124"
    us = T0_NS // 1000
    doc = [
        {"traceId": tid, "id": "a000000000000001", "name": "get /checkout", "kind": "SERVER",
         "timestamp": us, "duration": 100_000, "localEndpoint": {"serviceName": "frontend", "ipv4": "10.0.0.1"}},
        {"traceId": tid, "id": "a000000000000002", "parentId": "a000000000000001", "name": "get /price",
         "kind": "CLIENT", "timestamp": us + 10_000, "duration": 60_000,
         "localEndpoint": {"serviceName": "frontend", "ipv4": "10.0.0.1"},
         "remoteEndpoint": {"serviceName": "pricing", "ipv4": "10.0.0.2", "port": 8080}},
        # the server side reuses the client's id, as B3 single-host spans do
        {"traceId": tid, "id": "a000000000000002", "parentId": "a000000000000001", "name": "get /price",
         "kind": "SERVER", "shared": True, "timestamp": us + 20_000, "duration": 40_000,
         "localEndpoint": {"serviceName": "pricing", "ipv4": "10.0.0.2"}, "tags": {"http.status_code": "200"}},
    ]
    trace = _load_doc(doc, tmp_path)
    assert len(trace) == 3 and trace.warnings == []
    client = trace["a000000000000002"]
    [server] = trace.children(client)
    assert server.service == "pricing" and server.attributes["span.kind"] == "server"
    assert server.attributes["http.status_code"] == "200"
    assert client.attributes["peer.service"] == "pricing" and client.attributes["network.peer.port"] == 8080
    assert trace.parent(client).name == "get /checkout"
    assert server.process_key != client.process_key


def test_zipkin_fragments_of_one_span_merge_and_missing_times_are_handled(tmp_path):
    tid = "463ac35c9f6413ad48485a3953bb6124"
    us = T0_NS // 1000
    local = {"serviceName": "svc"}
    doc = [
        {"traceId": tid, "id": "b000000000000001", "name": "job", "timestamp": us, "duration": 500_000,
         "localEndpoint": local},
        # one span reported twice: a late annotation alone, then the rest
        {"traceId": tid, "id": "b000000000000002", "parentId": "b000000000000001",
         "annotations": [{"timestamp": us + 300_000, "value": "flushed"}], "localEndpoint": local},
        {"traceId": tid, "id": "b000000000000002", "parentId": "b000000000000001", "name": "step",
         "timestamp": us + 100_000, "localEndpoint": local},  # no duration: lasts to its last annotation
        {"traceId": tid, "id": "b000000000000003", "parentId": "b000000000000001", "name": "no time",
         "localEndpoint": local},
        {"traceId": tid, "id": "", "name": "no id"},
    ]
    trace = _load_doc(doc, tmp_path)
    assert sorted(s.name for s in trace.spans) == ["job", "step"]
    step = trace["b000000000000002"]
    assert (step.start_ns - T0_NS, step.end_ns - T0_NS) == (100 * MS, 300 * MS)
    assert "1 span skipped (start time missing or 0)" in ", ".join(trace.warnings)
    assert "1 span skipped (trace or span id missing)" in ", ".join(trace.warnings)


def test_zipkin_through_the_cli(tmp_path):
    b = spanbench_run(stall_ms=7520)
    path = _write(tmp_path, to_zipkin(b.spans))
    code, text, err = _gaps(path)
    assert code == 0 and err == ""
    assert "gap 7.52s in worker[w1] after pool.init before executor.setup" in text


# --- 5. formats this does not read -------------------------------------------------


@pytest.mark.parametrize("doc", [{"hello": "world"}, [1, 2, 3], "just a string", {"data": {"nothing": 1}}])
def test_unrecognised_format_names_the_formats_read(tmp_path, doc):
    path = _write(tmp_path, doc, "x.json")
    with pytest.raises(ConfigError) as err:
        load_trace(path)
    assert str(err.value) == f"{path}: not a trace this reads {FORMATS}; no spans found"


def test_unrecognised_format_from_the_cli_is_exit_2_one_line(tmp_path):
    path = _write(tmp_path, {"hello": "world"}, "x.json")
    res = run_cli(["gaps", str(path)], env=spanbench_env())
    assert res.returncode == 2
    assert "Traceback" not in res.stderr + res.stdout
    assert res.stderr.splitlines() == [f"spanbench: error: {path}: not a trace this reads {FORMATS}; no spans found"]


@pytest.mark.parametrize(
    "doc",
    [
        {"resourceSpans": [{"resource": "x", "scopeSpans": [{"spans": [5, None, {"spanId": {}}]}]}]},
        {"resourceSpans": [{"scopeSpans": "nope"}]},
        {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "ab", "spanId": "cd", "startTimeUnixNano": [],
                                                       "attributes": {"k": 1}}]}]}]},
        {"resourceSpans": [{"resource": {"attributes": [{"key": "a", "value": {"arrayValue": 3}}]},
                            "scopeSpans": [{"spans": [{"traceId": "ab", "spanId": "cd", "startTimeUnixNano": "1",
                                                       "attributes": [{"key": "b", "value": {"kvlistValue": []}}]}]}]}]},
        {"traceID": "ab", "spans": [{"spanID": "1", "startTime": "x"}, 7], "processes": []},
        {"traceID": "ab", "spans": [{"spanID": "1", "startTime": 5, "references": "no", "tags": {}}],
         "processes": {"p1": "x"}},
        [{"traceId": "ab", "id": "cd", "timestamp": "late", "tags": [], "annotations": [3]}],
        [{"traceId": "ab", "id": "cd", "timestamp": 5, "duration": "long", "localEndpoint": "here"}],
    ],
)
def test_malformed_documents_never_raise_anything_but_config_error(tmp_path, doc):
    try:
        trace = load_trace(_write(tmp_path, doc))
    except ConfigError as err:
        assert "\n" not in str(err)
    else:
        analyze(trace)


# --- 6. Jaeger's own warnings ------------------------------------------------------


def test_jaeger_warnings_are_shown_once_each(tmp_path):
    b = spanbench_run()
    doc = to_jaeger(b.spans)
    data = doc["data"][0]
    data["warnings"] = ["trace has 2 spans with the same id"]
    skew = "clock skew adjustment disabled; not applying calculated delta of -3.2ms"
    for span in data["spans"][:3]:
        span["warnings"] = [skew]
    data["spans"][5]["warnings"] = ["invalid parent span IDs=0000000000000abc; skipping clock skew adjustment"]
    path = _write(tmp_path, doc)
    code, text, err = _gaps(path)
    assert code == 0
    assert err.splitlines() == [
        "spanbench: warning: Jaeger: trace has 2 spans with the same id",
        f"spanbench: warning: Jaeger: {skew} (×3)",
        "spanbench: warning: Jaeger: invalid parent span IDs=0000000000000abc; skipping clock skew adjustment",
    ]
    _, out, _ = _gaps(path, as_json=True)
    warnings = json.loads(out)["warnings"]
    assert "Jaeger: trace has 2 spans with the same id" in warnings and f"Jaeger: {skew} (×3)" in warnings


def test_jaeger_envelope_without_data_says_what_jaeger_said(tmp_path):
    doc = {"data": [], "total": 0, "limit": 0, "offset": 0, "errors": [{"code": 404, "msg": "trace not found"}]}
    with pytest.raises(ConfigError, match=r"no spans found in .*Jaeger JSON without spans: Jaeger: trace not found"):
        load_trace(_write(tmp_path, doc))


# --- 7. --fail-if-first-query-over ----------------------------------------------------


def _run_folder(tmp_path: Path, b: TraceBuilder) -> Path:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "trace.jsonl").write_text(json.dumps(to_otlp(b.spans)) + "\n")
    return folder


@pytest.mark.parametrize(("threshold", "expected"), [("5s", 1), ("8.5s", 1), ("8.6s", 0), ("1m", 0)])
def test_first_query_guard(tmp_path, threshold, expected):
    folder = _run_folder(tmp_path, spanbench_run(stall_ms=7520))  # w1: run start → first_query 8.55 s
    code, text, _ = _gaps(folder, fail_if_first_query_over=threshold)
    assert code == expected
    last = text.splitlines()[-1]
    if expected:
        assert last.startswith("FAIL: worker[w1]: run start → first_query: 8.55s")
        assert last.endswith(f"exceeds --fail-if-first-query-over {'5.00s' if threshold == '5s' else '8.50s'}"
                             f" by {'3.55s' if threshold == '5s' else '50.0ms'}")
    else:
        assert last.startswith("ok: slowest worker[w1]: run start → first_query: 8.55s")


def test_first_query_guard_is_separate_from_fail_over(tmp_path):
    # A slow start with no untraced gap at all: --fail-over passes, the first-query guard does not.
    folder = _run_folder(tmp_path, spanbench_run())  # first_query at 1.03 s, all traced
    assert _gaps(folder, fail_over="50ms")[0] == 0
    assert _gaps(folder, fail_over="50ms", fail_if_first_query_over="1s")[0] == 1
    assert _gaps(folder, fail_over="50ms", fail_if_first_query_over="2s")[0] == 0
    (tmp_path / "stalled").mkdir()
    stalled = _run_folder(tmp_path / "stalled", spanbench_run(stall_ms=7520))
    assert _gaps(stalled, fail_over="1s", fail_if_first_query_over="1m")[0] == 1  # --fail-over still trips


def test_first_query_guard_in_json(tmp_path):
    folder = _run_folder(tmp_path, spanbench_run(stall_ms=7520))
    code, out, err = _gaps(folder, as_json=True, fail_if_first_query_over="5s")
    assert code == 1
    guard = json.loads(out)["fail_if_first_query_over"]
    assert guard["failed"] is True and guard["threshold_ms"] == 5000.0
    assert guard["worst"]["worker_id"] == "w1"
    assert guard["worst"]["duration_ms"] == 8550.0 and guard["worst"]["over_ms"] == 3550.0
    assert "FAIL: worker[w1]" in err  # stdout stays JSON


def test_first_query_guard_without_first_query_is_an_error(tmp_path):
    path = _write(tmp_path, to_otlp(_queue_trace().spans))
    with pytest.raises(SpanbenchError, match="no first_query span") as err:
        _gaps(path, fail_if_first_query_over="1s")
    assert not isinstance(err.value, ConfigError)  # exit 1, not 2: the input is fine, the check is not
    assert _gaps(path)[0] == 0  # without the guard the same trace is fine


def test_first_query_guard_bad_value(tmp_path):
    folder = _run_folder(tmp_path, spanbench_run())
    with pytest.raises(ConfigError, match="negative"):
        _gaps(folder, fail_if_first_query_over="-1s")


def test_first_query_guard_from_the_cli(tmp_path):
    folder = _run_folder(tmp_path, spanbench_run(stall_ms=7520))
    res = run_cli(["gaps", str(folder / "trace.jsonl"), "--fail-if-first-query-over", "5s"], env=spanbench_env())
    assert res.returncode == 1, res.stderr
    assert ("FAIL: worker[w1]: run start → first_query: 8.55s (traced 1.03s, untraced 7.52s)"
            " exceeds --fail-if-first-query-over 5.00s by 3.55s") in res.stdout

    foreign = _write(tmp_path, to_otlp(_queue_trace().spans), "foreign.json")
    res = run_cli(["gaps", str(foreign), "--fail-if-first-query-over", "5s"], env=spanbench_env())
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    [line] = res.stderr.splitlines()
    assert line.startswith("spanbench: error: --fail-if-first-query-over:") and "no first_query span" in line
    assert "critical path" in res.stdout  # the report is still printed before the error
