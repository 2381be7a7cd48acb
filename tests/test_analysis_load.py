"""Loading traces from every shape they come in: OTLP/JSON lines, run folders, Tempo, Jaeger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spanbench.analysis.analyze import analyze
from spanbench.analysis.load import load_trace
from support.synthetic import MS, T0_NS, TraceBuilder, spanbench_run, to_jaeger, to_otlp, to_tempo
from spanbench.errors import ConfigError

DATA = Path(__file__).parent / "data" / "traces"
FIXTURE_TRACE_ID = "00000000000000002a5f1c3b4d6e7f80"


def _shape(trace):
    """Comparable form: (name, parent name, start ms, end ms) sorted."""
    out = []
    for s in trace.spans:
        parent = trace.parent(s)
        out.append((s.name, parent.name if parent else None, (s.start_ns - T0_NS) / MS, (s.end_ns - T0_NS) / MS))
    return sorted(out)


def _check_fixture_trace(trace):
    assert trace.trace_id == FIXTURE_TRACE_ID
    assert len(trace) == 6
    assert [r.name for r in trace.roots] == ["run"]
    worker = next(s for s in trace.spans if s.name == "worker")
    assert worker.worker_id == "w0"
    assert worker.service == "spanbench-worker"
    assert worker.process_key == "node-a:4242"
    assert [c.name for c in trace.children(worker)] == ["pool.init", "executor.setup", "first_query"]
    analysis = analyze(trace, min_gap_s=0.05)
    gaps = [(trace[g.span_id].name, (g.start_ns - T0_NS) // MS, (g.end_ns - T0_NS) // MS) for g in analysis.gaps]
    assert gaps == [("worker", 200, 900), ("worker", 1001, 1200), ("run", 1200, 1300)]
    [path] = analysis.paths
    assert path.duration_ns == 1000 * MS
    assert path.untraced_ns == 720 * MS  # 40..50 in run, 50..60 and 200..900 in worker
    return analysis


def test_tempo_batches_file_with_base64_ids():
    trace = load_trace(DATA / "tempo_batches.json")
    _check_fixture_trace(trace)
    pool = next(s for s in trace.spans if s.name == "pool.init")
    assert pool.attributes == {"pool.size": 8, "ratio": 0.5, "ok": True, "tags": ["x", 2]}


def test_jaeger_file():
    trace = load_trace(str(DATA / "jaeger_v1.json"))
    _check_fixture_trace(trace)
    assert next(s for s in trace.spans if s.name == "pool.init").attributes["pool.size"] == 8


def test_otlp_json_lines_collector_format(tmp_path):
    b = spanbench_run(stall_ms=300)
    half = len(b.spans) // 2
    path = tmp_path / "trace.jsonl"
    # two export batches, one per line, as the Collector's file exporter writes them
    path.write_text(json.dumps(to_otlp(b.spans[half:])) + "\n" + json.dumps(to_otlp(b.spans[:half])) + "\n")
    trace = load_trace(path)
    assert _shape(trace) == _shape(b.trace())
    assert trace.trace_id == b.trace_id


def test_pretty_printed_single_request_and_int_times(tmp_path):
    b = TraceBuilder()
    root = b.span("root", 0, 100)
    b.span("child", 10, 20, root)
    doc = to_otlp(b.spans)
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for s in ss["spans"]:
                s["startTimeUnixNano"] = int(s["startTimeUnixNano"])  # ints as well as strings
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(doc, indent=2))
    assert _shape(load_trace(path)) == _shape(b.trace())


def test_run_folder_reads_every_jsonl_and_nothing_else(tmp_path):
    b = spanbench_run()
    by_process: dict[str, list] = {}
    for s in b.spans:
        by_process.setdefault(s.process_key, []).append(s)
    assert len(by_process) == 3
    for name, spans in by_process.items():
        (tmp_path / f"{name}.jsonl").write_text(json.dumps(to_otlp(spans)) + "\n")
    (tmp_path / "results.json").write_text(json.dumps({"qps": 1}))
    (tmp_path / "notes.txt").write_text("not a trace")
    trace = load_trace(tmp_path)
    assert len(trace) == len(b.spans)
    assert [r.name for r in trace.roots] == ["run"]
    assert {g.process_key for g in analyze(trace).processes} == set(by_process)


def test_cut_off_last_line_is_skipped_with_a_warning(tmp_path):
    b = spanbench_run()
    path = tmp_path / "trace.jsonl"
    path.write_text(json.dumps(to_otlp(b.spans)) + "\n" + '{"resourceSpans": [{"res')
    trace = load_trace(path)
    assert len(trace) == len(b.spans)
    assert any("not JSON" in w for w in trace.warnings)


def test_tempo_v2_trace_and_jaeger_v3_result_envelopes_and_old_scope_key(tmp_path):
    b = spanbench_run()
    expected = _shape(b.trace())
    docs = {
        "tempo_v2.json": {"trace": to_otlp(b.spans)},
        "tempo_v1.json": to_tempo(b.spans),
        "jaeger_v3.json": {"result": to_otlp(b.spans)},
        "old.json": to_otlp(b.spans, scope_key="instrumentationLibrarySpans"),
        "jaeger.json": to_jaeger(b.spans),
    }
    for name, doc in docs.items():
        (tmp_path / name).write_text(json.dumps(doc))
        assert _shape(load_trace(tmp_path / name)) == expected, name


def test_several_traces_pick_most_spans_or_the_one_asked_for(tmp_path):
    small = TraceBuilder(trace_id="11111111111111111111111111111111")
    r = small.span("small-root", 0, 10)
    small.span("c", 0, 5, r)
    big = TraceBuilder(trace_id="22222222222222222222222222222222")
    r = big.span("big-root", 0, 10)
    for i in range(3):
        big.span(f"c{i}", i, i + 1, r)
    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps(to_otlp(small.spans)) + "\n" + json.dumps(to_otlp(big.spans)) + "\n")
    assert load_trace(path).roots[0].name == "big-root"
    assert load_trace(path, trace_id="11111111111111111111111111111111").roots[0].name == "small-root"
    with pytest.raises(ConfigError, match="not in"):
        load_trace(path, trace_id="33333333333333333333333333333333")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        ("this is { not json", "not JSON"),
        ("", "empty"),
        (json.dumps({"resourceSpans": []}), "no spans"),
        (json.dumps({"hello": "world"}), "no spans"),
    ],
)
def test_bad_input_is_a_one_line_config_error(tmp_path, content, message):
    path = tmp_path / "trace.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message) as err:
        load_trace(path)
    assert "\n" not in str(err.value)


def test_folder_without_jsonl_is_an_error(tmp_path):
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"no \*\.jsonl"):
        load_trace(tmp_path)


def test_real_sdk_spans_in_protobuf_json_mapping(tmp_path):
    """Spans from the OpenTelemetry SDK, encoded by its OTLP encoder and protobuf's own JSON
    mapping (base64 ids, int64 as strings): the loader must agree with the SDK's ids."""
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "sdk-test", "service.instance.id": "i-1"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("run"):
        with tracer.start_as_current_span("worker") as worker:
            worker.set_attribute("spanbench.worker_id", "w0")
            with tracer.start_as_current_span("first_query"):
                pass
    provider.shutdown()
    finished = exporter.get_finished_spans()
    line = json.dumps(MessageToDict(encode_spans(finished)))
    path = tmp_path / "sdk.jsonl"
    path.write_text(line + "\n")
    trace = load_trace(path)
    by_name = {s.name: s for s in trace.spans}
    for sdk_span in finished:
        mine = by_name[sdk_span.name]
        assert mine.span_id == f"{sdk_span.context.span_id:016x}"
        assert mine.trace_id == f"{sdk_span.context.trace_id:032x}"
        assert mine.start_ns == sdk_span.start_time and mine.end_ns == sdk_span.end_time
        assert mine.service == "sdk-test" and mine.process_key == "i-1"
    assert trace.parent(by_name["first_query"]).name == "worker"
    assert by_name["worker"].worker_id == "w0"
    assert [r.name for r in trace.roots] == ["run"]
