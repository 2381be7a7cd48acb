"""``spanbench export``: a real run's trace as Jaeger JSON and as one OTLP/JSON request.

The exports are read back by readers written here, not by spanbench's converter run
backwards: the Jaeger file is checked against the run's own OTLP files span by span,
and the OTLP file is posted to the real OTLP receiver process the other tests use.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli, spanbench_env
from support.otlp_receiver import OtlpReceiver, read_otlp_json_lines, span_key

RUN_ARGS = ["--workers", "2", "--connections", "4", "--warmup", "0s", "--duration", "0.5s"]
# AnyValue kind in OTLP/JSON → the Jaeger tag type it must become.
JAEGER_TYPE = {"stringValue": "string", "boolValue": "bool", "intValue": "int64", "doubleValue": "float64",
               "bytesValue": "binary"}


# --------------------------------------------------------------------------- runs


def _run(pg_dsn: str, out: Path, **env: str) -> tuple[Path, Any]:
    res = run_cli(["run", "--target-dsn", pg_dsn, *RUN_ARGS], output=out,
                  env=spanbench_env(SPANBENCH_TRACING="1", **env), timeout=180)
    return res.run_dir(), res


@pytest.fixture(scope="module")
def good_run(pg_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir, res = _run(pg_dsn, tmp_path_factory.mktemp("export-runs"))
    assert res.returncode == 0, res.stderr + res.stdout
    return run_dir


@pytest.fixture(scope="module")
def failed_run(pg_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # No worker process can import, connect and report READY within 50 ms: the run fails
    # in orchestrator.await_ready, after the workers started, with a trace on disk.
    run_dir, res = _run(pg_dsn, tmp_path_factory.mktemp("export-failed"), SPANBENCH_READY_TIMEOUT="0.05s")
    assert res.returncode == 1, res.stderr + res.stdout
    assert json.loads((run_dir / "results.json").read_text())["status"] == "FAILED"
    return run_dir


def export(source: Path | str, out: Path, fmt: str = "jaeger") -> dict[str, Any]:
    res = run_cli(["export", str(source), "--format", fmt, "-o", str(out)])
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    return json.loads(out.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def good_jaeger(good_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return export(good_run, tmp_path_factory.mktemp("export-out") / "run.json")


# --------------------------------------------------------------------------- readers of our own


def otlp_spans(run_dir: Path) -> list[dict[str, Any]]:
    """Every span of the run's trace-*.jsonl, raw, with its resource and scope beside it."""
    out = []
    for f in sorted(run_dir.glob("trace-*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            for rs in json.loads(line)["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    for span in ss["spans"]:
                        out.append({**span, "_resource": rs["resource"], "_scope": ss.get("scope", {})})
    return out


def jaeger_spans(doc: dict[str, Any]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """spanID → (span, its trace entry), checking the envelope on the way."""
    assert list(doc) == ["data"]
    out = {}
    for trace in doc["data"]:
        assert set(trace) >= {"traceID", "spans", "processes"}
        for span in trace["spans"]:
            assert span["spanID"] not in out, "a span appears twice"
            out[span["spanID"]] = (span, trace)
    return out


def tags(items: list[dict[str, Any]]) -> dict[str, tuple[str, Any]]:
    out = {}
    for t in items:
        assert set(t) == {"key", "type", "value"}, t
        assert t["key"] not in out, f"tag {t['key']} twice"
        out[t["key"]] = (t["type"], t["value"])
    return out


def expected_tag(any_value: dict[str, Any]) -> tuple[str, Any]:
    (kind, raw), = any_value.items()
    if kind == "intValue":
        return "int64", int(raw)
    if kind in ("arrayValue", "kvlistValue"):
        return "string", None  # checked where such values are made: test_sdk_trace_kinds_links_events
    return JAEGER_TYPE[kind], raw


def status_code(span: dict[str, Any]) -> int:
    return int((span.get("status") or {}).get("code", 0))


# --------------------------------------------------------------------------- the Jaeger export


def test_span_count_ids_and_parent_links(good_run: Path, good_jaeger: dict[str, Any]) -> None:
    source = otlp_spans(good_run)
    exported = jaeger_spans(good_jaeger)
    assert len(good_jaeger["data"]) == 1
    assert good_jaeger["data"][0]["traceID"] == source[0]["traceId"]
    assert len(exported) == len(source) > 50
    assert set(exported) == {s["spanId"] for s in source}
    for s in source:
        span, trace = exported[s["spanId"]]
        assert span["traceID"] == s["traceId"] and span["operationName"] == s["name"]
        child_of = [r for r in span["references"] if r["refType"] == "CHILD_OF"]
        if s.get("parentSpanId"):
            parent_ref = {"refType": "CHILD_OF", "traceID": s["traceId"], "spanID": s["parentSpanId"]}
            assert span["references"][0] == parent_ref, s["name"]  # the parent comes first
            assert len(child_of) == 1 and child_of[0]["spanID"] in exported, s["name"]
        else:
            assert child_of == [], s["name"]
        assert span["processID"] in trace["processes"]
    roots = [sp for sp, _ in exported.values() if not sp["references"]]
    assert [r["operationName"] for r in roots] == ["run"]


def test_one_process_per_resource_with_typed_tags(good_run: Path, good_jaeger: dict[str, Any]) -> None:
    exported = jaeger_spans(good_jaeger)
    processes = good_jaeger["data"][0]["processes"]
    assert sorted(processes) == ["p1", "p2", "p3"]  # the orchestrator and two workers
    assert sorted(p["serviceName"] for p in processes.values()) == [
        "spanbench-orchestrator", "spanbench-worker", "spanbench-worker"]
    for s in otlp_spans(good_run):
        span, _ = exported[s["spanId"]]
        process = processes[span["processID"]]
        resource = {a["key"]: a["value"] for a in s["_resource"]["attributes"]}
        assert process["serviceName"] == resource.pop("service.name")["stringValue"]
        assert tags(process["tags"]) == {k: expected_tag(v) for k, v in resource.items()}
    pids = [tags(p["tags"])["process.pid"] for p in processes.values()]
    assert all(kind == "int64" and isinstance(value, int) for kind, value in pids)


def test_times_are_whole_microseconds_rounded_down(good_run: Path, good_jaeger: dict[str, Any]) -> None:
    """startTime = start_ns // 1000, duration = end_ns // 1000 - start_ns // 1000 (µs)."""
    exported = jaeger_spans(good_jaeger)
    source = {s["spanId"]: s for s in otlp_spans(good_run)}
    for sid, s in source.items():
        span, _ = exported[sid]
        start, end = int(s["startTimeUnixNano"]), int(s["endTimeUnixNano"])
        assert type(span["startTime"]) is int and type(span["duration"]) is int
        assert span["startTime"] == start // 1000
        assert span["duration"] == end // 1000 - start // 1000
        assert abs(span["duration"] * 1000 - (end - start)) < 1000
        parent = source.get(s.get("parentSpanId", ""))
        if parent is not None and int(parent["startTimeUnixNano"]) <= start and end <= int(parent["endTimeUnixNano"]):
            # containment in ns stays containment in µs
            pspan, _ = exported[parent["spanId"]]
            assert pspan["startTime"] <= span["startTime"]
            assert span["startTime"] + span["duration"] <= pspan["startTime"] + pspan["duration"]


def test_every_attribute_is_a_tag_of_its_type(good_run: Path, good_jaeger: dict[str, Any]) -> None:
    exported = jaeger_spans(good_jaeger)
    seen_types: set[str] = set()
    kinds: dict[int, int] = {}
    for s in otlp_spans(good_run):
        span, _ = exported[s["spanId"]]
        got = tags(span["tags"])
        for attr in s.get("attributes", ()):
            want = expected_tag(attr["value"])
            assert got[attr["key"]] == want, (s["name"], attr)
            assert type(got[attr["key"]][1]) is type(want[1])  # True is not 1, 1.0 is not 1
            seen_types.add(want[0])
        assert got["otel.scope.name"] == ("string", s["_scope"]["name"])
        kind = int(s.get("kind", 0))
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind == 3:
            assert got["span.kind"] == ("string", "client"), s["name"]
        elif kind == 1:  # INTERNAL: the spec says no span.kind tag
            assert "span.kind" not in got, s["name"]
        if status_code(s) == 0:  # UNSET: nothing about status, and no error
            assert "otel.status_code" not in got and "error" not in got, s["name"]
    assert {"string", "bool", "int64", "float64"} <= seen_types
    assert kinds.get(1) and kinds.get(3), kinds  # the run has both internal and client spans


def test_failed_run_marks_its_error_spans(failed_run: Path, tmp_path: Path) -> None:
    exported = jaeger_spans(export(failed_run, tmp_path / "failed.json"))
    reason = json.loads((failed_run / "results.json").read_text())["reason"]
    errors = []
    for s in otlp_spans(failed_run):
        span, _ = exported[s["spanId"]]
        got = tags(span["tags"])
        if status_code(s) == 2:
            errors.append(s["name"])
            assert got["error"] == ("bool", True), s["name"]
            assert got["otel.status_code"] == ("string", "ERROR")
            assert got["otel.status_description"] == ("string", s["status"]["message"])
        else:
            assert "error" not in got, s["name"]
        assert len(span["logs"]) == len(s.get("events", ()))
        for event, log in zip(s.get("events", ()), span["logs"]):
            fields = tags(log["fields"])
            assert log["timestamp"] == int(event["timeUnixNano"]) // 1000
            assert log["fields"][0] == {"key": "event", "type": "string", "value": event["name"]}
            for attr in event.get("attributes", ()):
                assert fields[attr["key"]] == expected_tag(attr["value"])
    run_span = next(sp for sp, _ in exported.values() if sp["operationName"] == "run")
    assert tags(run_span["tags"])["otel.status_description"] == ("string", reason)
    assert "run" in errors and "orchestrator.await_ready" in errors, errors
    # The orchestrator recorded the exception that failed the run: a log with its type.
    await_ready = next(sp for sp, _ in exported.values() if sp["operationName"] == "orchestrator.await_ready")
    exception_logs = [tags(log["fields"]) for log in await_ready["logs"]
                      if tags(log["fields"]).get("event") == ("string", "exception")]
    assert exception_logs and exception_logs[0]["exception.type"][1].endswith("RunFailed")


def test_sdk_trace_kinds_links_events(tmp_path: Path) -> None:
    """What a benchmark run does not make (links, OK, every kind, arrays), from the real SDK
    writing through spanbench's own trace-file exporter."""
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode

    from spanbench.telemetry.otlp_json import OtlpJsonLinesExporter

    folder = tmp_path / "sdk-run"
    folder.mkdir()
    provider = TracerProvider(resource=Resource.create({"service.name": "sdk-test", "deploy.zone": "z1"}))
    provider.add_span_processor(SimpleSpanProcessor(OtlpJsonLinesExporter(folder / "trace-sdk.jsonl")))
    tracer = provider.get_tracer("sdk.scope", "1.2.3")
    with tracer.start_as_current_span("root", kind=SpanKind.SERVER) as root:
        root.set_status(Status(StatusCode.OK))
        root.set_attribute("list", ["a", "b"])
        root.set_attribute("db.connection_string", "postgresql://bench:hunter2-s3cret@db/bench?sslpassword=pw-s3cret")
        root.add_event("named", {"n": 3})
        root.add_event("overridden", {"event": "from-attribute"})
        with tracer.start_as_current_span("client", kind=SpanKind.CLIENT) as client:
            first = client.get_span_context()
        with tracer.start_as_current_span("producer", kind=SpanKind.PRODUCER):
            pass
        with tracer.start_as_current_span("consumer", kind=SpanKind.CONSUMER, links=[Link(first)]):
            pass
        with tracer.start_as_current_span("internal"):
            pass
    provider.shutdown()

    doc = export(folder, tmp_path / "sdk.json")
    spans = {sp["operationName"]: sp for sp, _ in jaeger_spans(doc).values()}
    assert set(spans) == {"root", "client", "producer", "consumer", "internal"}
    kind_tags = {name: tags(sp["tags"]).get("span.kind") for name, sp in spans.items()}
    assert kind_tags == {"root": ("string", "server"), "client": ("string", "client"),
                         "producer": ("string", "producer"), "consumer": ("string", "consumer"), "internal": None}
    root = tags(spans["root"]["tags"])
    assert root["otel.status_code"] == ("string", "OK") and "error" not in root
    assert root["otel.scope.name"] == ("string", "sdk.scope") and root["otel.scope.version"] == ("string", "1.2.3")
    assert json.loads(root["list"][1]) == ["a", "b"] and root["list"][0] == "string"
    assert root["db.connection_string"] == ("string", "postgresql://bench:***@db/bench?sslpassword=***")
    assert [log["fields"][0] for log in spans["root"]["logs"]] == [
        {"key": "event", "type": "string", "value": "named"},
        {"key": "event", "type": "string", "value": "from-attribute"},  # an attribute `event` wins over the name
    ]
    assert tags(spans["root"]["logs"][0]["fields"])["n"] == ("int64", 3)
    consumer_refs = spans["consumer"]["references"]
    assert [r["refType"] for r in consumer_refs] == ["CHILD_OF", "FOLLOWS_FROM"]
    assert consumer_refs[0]["spanID"] == spans["root"]["spanID"]
    assert consumer_refs[1]["spanID"] == spans["client"]["spanID"]
    (process,) = doc["data"][0]["processes"].values()
    assert process["serviceName"] == "sdk-test" and ("string", "z1") == tags(process["tags"])["deploy.zone"]
    # No secret in either format, wherever it was in the trace.
    otlp_text = run_cli(["export", str(folder), "--format", "otlp"]).stdout
    assert "resourceSpans" in otlp_text
    for text in ((tmp_path / "sdk.json").read_text(), otlp_text):
        assert "hunter2-s3cret" not in text and "pw-s3cret" not in text


# --------------------------------------------------------------------------- the OTLP export


def _ids_to_base64(request: dict[str, Any]) -> dict[str, Any]:
    """OTLP/JSON spells ids in hex; protobuf's JSON mapping (json_format) wants base64.
    That is the one documented difference between the two, so the test bridges it."""
    def b64(hex_id: str) -> str:
        return base64.b64encode(bytes.fromhex(hex_id)).decode()

    for rs in request["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if span.get(key):
                        span[key] = b64(span[key])
                for link in span.get("links", ()):
                    for key in ("traceId", "spanId"):
                        link[key] = b64(link[key])
    return request


def test_otlp_export_is_one_request_the_receiver_accepts(good_run: Path, tmp_path: Path) -> None:
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    out = tmp_path / "run.otlp.json"
    doc = export(good_run, out, fmt="otlp")
    assert list(doc) == ["resourceSpans"]
    services = sorted({a["value"]["stringValue"] for rs in doc["resourceSpans"]
                       for a in rs["resource"]["attributes"] if a["key"] == "service.name"})
    assert services == ["spanbench-orchestrator", "spanbench-worker"]
    assert len(doc["resourceSpans"]) == 3  # one per process, however many batches each wrote
    # The format check: protobuf's own parser takes the file as it is (no unknown field,
    # every value of its field's type), and with the ids respelled, every id has its width.
    json_format.Parse(out.read_text(encoding="utf-8"), ExportTraceServiceRequest())
    request = json_format.Parse(json.dumps(_ids_to_base64(doc)), ExportTraceServiceRequest())
    spans = [sp for rs in request.resource_spans for ss in rs.scope_spans for sp in ss.spans]
    assert all(len(sp.trace_id) == 16 and len(sp.span_id) == 8 for sp in spans)

    expected = [s for f in sorted(good_run.glob("trace-*.jsonl")) for s in read_otlp_json_lines(f)]
    with OtlpReceiver(tmp_path / "received.jsonl") as rx:
        post = urllib.request.Request(rx.http_endpoint + "/v1/traces", data=request.SerializeToString(),
                                      headers={"Content-Type": "application/x-protobuf"}, method="POST")
        with urllib.request.urlopen(post, timeout=30) as answer:
            assert answer.status == 200
        # The receiver writes what it got before it answers: it is all there now.
        received = rx.spans()
        requests = rx.requests()
    assert len(requests) == 1 and requests[0]["items"] == len(expected)
    assert sorted(span_key(s) for s in received) == sorted(span_key(s) for s in expected)
    by_id = {s["span_id"]: s for s in expected}
    for s in received:
        want = by_id[s["span_id"]]
        for key in ("start_time_unix_nano", "end_time_unix_nano", "service_name", "attributes"):
            assert s[key] == want[key], (s["name"], key)


# --------------------------------------------------------------------------- the trace's causal order


def test_no_span_starts_before_its_cause(good_run: Path, good_jaeger: dict[str, Any]) -> None:
    """No span starts before its parent; nothing of a worker starts before the launch that made it.

    Jaeger lays out children by start time: a worker span that starts before
    ``orchestrator.launch_workers`` is drawn before it, splitting the orchestrator's steps.
    """
    spans = {s["spanId"]: s for s in otlp_spans(good_run)}
    start = {sid: int(s["startTimeUnixNano"]) for sid, s in spans.items()}
    early = [f"{s['name']} starts {(start[s['parentSpanId']] - start[sid]) / 1e6:.3f} ms before its parent "
             f"{spans[s['parentSpanId']]['name']}"
             for sid, s in spans.items() if s.get("parentSpanId") in spans and start[sid] < start[s["parentSpanId"]]]
    (launch,) = [sid for sid, s in spans.items() if s["name"] == "orchestrator.launch_workers"]
    children: dict[str, list[str]] = {}
    for sid, s in spans.items():
        children.setdefault(s.get("parentSpanId", ""), []).append(sid)
    workers = [sid for sid, s in spans.items() if s["name"] == "worker"]
    assert len(workers) == 2
    subtree, stack = [], list(workers)
    while stack:
        sid = stack.pop()
        subtree.append(sid)
        stack.extend(children.get(sid, ()))
    early += [f"{spans[sid]['name']} (worker subtree) starts {(start[launch] - start[sid]) / 1e6:.3f} ms before "
              "orchestrator.launch_workers" for sid in subtree if start[sid] < start[launch]]
    assert not early, "\n".join(early)
    # What Jaeger shows keeps that order: its times are the same instants, rounded down.
    exported = jaeger_spans(good_jaeger)
    assert all(exported[sid][0]["startTime"] >= exported[launch][0]["startTime"] for sid in subtree)


# --------------------------------------------------------------------------- the command


def test_stdout_parent_folder_and_bad_input(good_run: Path, good_jaeger: dict[str, Any], tmp_path: Path) -> None:
    res = run_cli(["export", str(good_run.parent)])  # the runs folder: its latest (only) run
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == good_jaeger
    lines = res.stderr.splitlines()
    assert lines[0] == f"latest run in {good_run.parent}: {good_run.name}"
    assert "exported" in lines[-1] and "as jaeger to stdout" in lines[-1]

    for args, must in (
        (["export", str(tmp_path / "no-such-run")], "no such"),
        (["export", str(good_run), "--format", "zipkin"], "--format"),
        (["export", str(good_run), "-o", str(tmp_path / "no-dir" / "x.json")], "cannot write"),
        (["export", str(tmp_path)], "not a run folder"),
    ):
        res = run_cli(args)
        err = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert res.returncode == 2, (args, res.stderr)
        assert len(err) == 1 and err[0].startswith("spanbench: error: ") and must in err[0], (args, res.stderr)
        assert "Traceback" not in res.stderr and res.stdout == ""


def test_the_projects_own_reader_reads_the_export(good_run: Path, good_jaeger: dict[str, Any], tmp_path: Path) -> None:
    """``spanbench gaps`` on the exported file: the same trace as from the run folder."""
    from spanbench.analysis.load import load_trace

    path = tmp_path / "again.json"
    path.write_text(json.dumps(good_jaeger))
    from_export, from_run = load_trace(path), load_trace(good_run)
    assert len(from_export) == len(from_run)
    assert {s.span_id: s.parent_id for s in from_export.spans} == {s.span_id: s.parent_id for s in from_run.spans}
    assert [r.name for r in from_export.roots] == ["run"]
