"""Fetching traces from Jaeger and Tempo: a real HTTP server on loopback, no mocks."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from spanbench.analysis.fetch import fetch_trace_jaeger, fetch_trace_tempo
from support.synthetic import TraceBuilder, spanbench_run, to_jaeger, to_otlp, to_tempo
from spanbench.errors import ConfigError

TRACE = spanbench_run(stall_ms=500)
TID = TRACE.trace_id
OLD = TraceBuilder(trace_id="99999999999999999999999999999999")
OLD.span("old-root", 0, 10)


class _Server:
    """Routes: path (with query string) → (status, JSON body). Records what was asked."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, object]] = {}
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.requests.append(self.path)
                parsed = urllib.parse.urlsplit(self.path)
                status, body = outer.routes.get(self.path, outer.routes.get(parsed.path, (404, {"error": "nope"})))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def test_jaeger_v1(server):
    server.routes[f"/api/traces/{TID}"] = (200, to_jaeger(TRACE.spans))
    trace = fetch_trace_jaeger(server.url, TID)
    assert len(trace) == len(TRACE.spans)
    assert trace.trace_id == TID and trace.roots[0].name == "run"


def test_jaeger_falls_back_to_v3_otlp(server):
    server.routes[f"/api/v3/traces/{TID}"] = (200, {"result": to_otlp(TRACE.spans)})
    trace = fetch_trace_jaeger(server.url + "/", TID)
    assert len(trace) == len(TRACE.spans)
    assert server.requests == [f"/api/traces/{TID}", f"/api/v3/traces/{TID}"]


def test_jaeger_trace_missing(server):
    with pytest.raises(ConfigError, match="not found"):
        fetch_trace_jaeger(server.url, TID)


def test_tempo_by_id(server):
    server.routes[f"/api/traces/{TID}"] = (200, to_tempo(TRACE.spans))
    trace = fetch_trace_tempo(server.url, trace_id=TID)
    assert len(trace) == len(TRACE.spans)
    assert sum(1 for s in trace.spans if s.name == "first_query") == 2


def test_tempo_query_picks_most_recent(server):
    server.routes["/api/search"] = (200, {"traces": [
        {"traceID": OLD.trace_id, "rootTraceName": "old-root", "startTimeUnixNano": "1600000000000000000"},
        {"traceID": TID, "rootTraceName": "run", "startTimeUnixNano": str(TRACE.t0_ns)},
    ]})
    server.routes[f"/api/traces/{TID}"] = (200, to_tempo(TRACE.spans))
    server.routes[f"/api/traces/{OLD.trace_id}"] = (200, to_tempo(OLD.spans))
    trace = fetch_trace_tempo(server.url, query='{ name = "run" }')
    assert trace.roots[0].name == "run"
    search = urllib.parse.urlsplit(server.requests[0])
    assert search.path == "/api/search"
    assert urllib.parse.parse_qs(search.query)["q"] == ['{ name = "run" }']


# Recipes in the forms README gives (quoted spanbench.* names, &&, >>, structural ops) and
# one with every character a URL could mangle: + (a space to some servers), &, =, #, %, \".
QUOTED_RECIPES = [
    '{ name = "run" && span."spanbench.run_id" = "20261201-230351-4113d8" }',
    '{ resource."spanbench.run_id" = "r1" } >> { name = "pool.batch" && duration > 1s }',
    '{ name = "worker" } > { name = "wait_for_start" && duration > 2s }',
    '{ ."spanbench.run_id" = "a+b c&d=e#f%20" || span."spanbench.x\\"y" =~ "q.*" } | select(span."spanbench.query_kind")',
]


@pytest.mark.parametrize("query", QUOTED_RECIPES)
def test_tempo_query_arrives_byte_for_byte(server, query):
    server.routes["/api/search"] = (200, {"traces": [{"traceID": TID, "startTimeUnixNano": "1"}]})
    server.routes[f"/api/traces/{TID}"] = (200, to_tempo(TRACE.spans))
    fetch_trace_tempo(server.url, query=query)
    path, _, raw = server.requests[0].partition("?")
    assert path == "/api/search"
    q, limit, _start, _end = raw.split("&")
    assert limit == "limit=100" and q.startswith("q=")
    encoded = q[2:]
    # every character that a URL or a query string reads specially is percent-encoded ...
    assert not set(encoded) & set(' "&=+#{}|<>\\'), encoded
    # ... so both ways of decoding give the query back: Go's (Tempo: "+" is a space) and RFC 3986's
    assert urllib.parse.unquote(encoded) == query
    assert urllib.parse.parse_qs(raw)["q"] == [query]


def test_tempo_query_exact_request(server):
    server.routes["/api/search"] = (200, {"traces": [{"traceID": TID, "startTimeUnixNano": "1"}]})
    server.routes[f"/api/traces/{TID}"] = (200, to_tempo(TRACE.spans))
    before = int(time.time())
    fetch_trace_tempo(server.url, query='{ name = "run" && ."spanbench.run_id" = "r1" } >> { }')
    after = int(time.time())
    search, _, window = server.requests[0].partition("&limit=100&")
    assert search == (
        "/api/search?q=%7B%20name%20%3D%20%22run%22%20%26%26%20.%22spanbench.run_id%22%20%3D%20%22r1%22%20%7D"
        "%20%3E%3E%20%7B%20%7D"
    )
    # a time range, so Tempo searches its blocks and not only its ingesters' recent traces,
    # and no longer than the query frontend's default search.max_duration (168 h)
    params = dict(p.split("=") for p in window.split("&"))
    assert list(params) == ["start", "end"]
    start, end = int(params["start"]), int(params["end"])
    assert end - start == 168 * 3600
    assert before <= end - 60 <= after


@pytest.mark.parametrize("query", [
    '{ name = "first_query" } | quantile_over_time(span."spanbench.start_to_first_query_ms", 0.5, 0.99)',
    '{ name = "run" } > { } | quantile_over_time(duration, 0.99) by (name)',
    '{ status = error } |rate()',
])
def test_tempo_metrics_query_is_refused_before_asking(server, query):
    with pytest.raises(ConfigError, match="TraceQL metrics query") as err:
        fetch_trace_tempo(server.url, query=query)
    assert "\n" not in str(err.value)
    assert server.requests == []


def test_tempo_pipe_inside_a_string_is_a_search(server):
    server.routes["/api/search"] = (200, {"traces": [{"traceID": TID, "startTimeUnixNano": "1"}]})
    server.routes[f"/api/traces/{TID}"] = (200, to_tempo(TRACE.spans))
    query = '{ span."db.query.text" = "select 1 | rate(" } | select(span."spanbench.query_kind")'
    fetch_trace_tempo(server.url, query=query)
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(server.requests[0]).query)["q"] == [query]


def test_tempo_query_without_match(server):
    server.routes["/api/search"] = (200, {"traces": []})
    with pytest.raises(ConfigError, match="no trace"):
        fetch_trace_tempo(server.url, query="{}")


def test_http_error_is_a_config_error(server):
    server.routes[f"/api/traces/{TID}"] = (500, {"error": "boom"})
    with pytest.raises(ConfigError, match="HTTP 500") as err:
        fetch_trace_tempo(server.url, trace_id=TID)
    assert "\n" not in str(err.value)


def test_unreachable_server_is_a_config_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the request: nothing listens
    with pytest.raises(ConfigError, match="cannot reach"):
        fetch_trace_jaeger(f"http://127.0.0.1:{port}", TID, timeout=2)


def test_slow_server_times_out():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never answers
    try:
        with pytest.raises(ConfigError, match="within|cannot reach"):
            fetch_trace_tempo(f"http://127.0.0.1:{listener.getsockname()[1]}", trace_id=TID, timeout=0.5)
    finally:
        listener.close()


def test_gaps_command_over_jaeger_and_tempo(server):
    import io

    from rich.console import Console

    from spanbench.report.gaps_report import gaps_command

    server.routes[f"/api/traces/{TID}"] = (200, to_jaeger(TRACE.spans))
    out = io.StringIO()
    code = gaps_command(None, jaeger=server.url, trace_id=TID, fail_over="100ms", console=Console(file=out, width=100))
    assert code == 1
    assert "gap 500.0ms in worker[w1] after pool.init before executor.setup" in out.getvalue()

    server.routes["/api/search"] = (200, {"traces": [{"traceID": TID, "startTimeUnixNano": "1"}]})
    server.routes[f"/api/traces/{TID}"] = (200, to_tempo(TRACE.spans))
    out = io.StringIO()
    code = gaps_command(None, tempo=server.url, query="{}", as_json=True, console=Console(file=out))
    assert code == 0
    assert json.loads(out.getvalue())["span_count"] == len(TRACE.spans)
