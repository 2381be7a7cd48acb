"""A real OTLP receiver on loopback: gRPC and HTTP/protobuf, traces and metrics.

Run as a process::

    python tests/support/otlp_receiver.py --grpc-port 0 --http-port 0 --out spans.jsonl [--hang]

It prints one line ``READY grpc=<port> http=<port>`` (flushed) once both servers listen,
and exits cleanly (status 0) on SIGTERM or SIGINT.

Every received item is appended to ``--out`` as one JSON line, flushed before the
request is answered, so a client that got a success response can read its data back:

- ``{"signal": "span", "trace_id", "span_id", "parent_span_id", "name", "kind",
  "start_time_unix_nano", "end_time_unix_nano", "service_name", "scope_name",
  "attributes", "resource", "status_code", "protocol"}`` — one per span;
- ``{"signal": "metric", "name", "unit", "type", "monotonic", "attributes",
  "value" | "count"/"sum"/"bucket_counts"/"explicit_bounds", "service_name", "protocol"}``
  — one per data point;
- ``{"signal": "request", "kind": "traces"|"metrics", "protocol", "items", "hung"}``
  — one per export request, written before it is answered (or hung).

Ids are lowercase hex; an absent parent is ``""``. ``protocol`` is ``"grpc"`` or ``"http"``.

``--hang``: accept every export request, record the ``request`` line, and never
answer it (nor record its spans): the handler blocks until the process is told to stop.
It proves that an exporter pointed at a stuck collector never blocks a run.

Importable too: :class:`OtlpReceiver` starts this file as a subprocess.
"""

from __future__ import annotations

import argparse
import gzip
import json
import select
import signal
import subprocess
import sys
import threading
import time
import zlib
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

__all__ = ["OtlpReceiver", "main", "read_otlp_json_lines", "span_key"]


# --------------------------------------------------------------------------- records


def _any_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind)


def _attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: _any_value(kv.value) for kv in kvs}


def span_records(request: Any, protocol: str) -> list[dict[str, Any]]:
    """One JSON-ready dict per span of an ExportTraceServiceRequest."""
    out = []
    for rs in request.resource_spans:
        resource = _attributes(rs.resource.attributes)
        service = resource.get("service.name", "")
        for ss in rs.scope_spans:
            for span in ss.spans:
                out.append({
                    "signal": "span",
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex(),
                    "name": span.name,
                    "kind": span.kind,
                    "start_time_unix_nano": span.start_time_unix_nano,
                    "end_time_unix_nano": span.end_time_unix_nano,
                    "service_name": service,
                    "scope_name": ss.scope.name,
                    "attributes": _attributes(span.attributes),
                    "resource": resource,
                    "status_code": span.status.code,
                    "protocol": protocol,
                })
    return out


def _number(dp: Any) -> Any:
    kind = dp.WhichOneof("value")
    return getattr(dp, kind) if kind else None


def metric_records(request: Any, protocol: str) -> list[dict[str, Any]]:
    """One JSON-ready dict per data point of an ExportMetricsServiceRequest."""
    out = []
    for rm in request.resource_metrics:
        service = _attributes(rm.resource.attributes).get("service.name", "")
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                mtype = metric.WhichOneof("data")
                data = getattr(metric, mtype) if mtype else None
                base = {"signal": "metric", "name": metric.name, "unit": metric.unit, "type": mtype,
                        "service_name": service, "protocol": protocol,
                        "monotonic": bool(getattr(data, "is_monotonic", False))}
                for dp in getattr(data, "data_points", ()):
                    rec = dict(base, attributes=_attributes(dp.attributes),
                               time_unix_nano=dp.time_unix_nano)
                    if mtype in ("sum", "gauge"):
                        rec["value"] = _number(dp)
                    elif mtype == "histogram":
                        rec.update(count=dp.count, sum=dp.sum, bucket_counts=list(dp.bucket_counts),
                                   explicit_bounds=list(dp.explicit_bounds),
                                   exemplars=[{"trace_id": e.trace_id.hex(), "span_id": e.span_id.hex()}
                                              for e in dp.exemplars])
                    else:
                        rec["count"] = getattr(dp, "count", None)
                    out.append(rec)
    return out


class _Sink:
    """Appends JSON lines to the output file; one write + flush per request."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        with self._lock:
            self._file.write(text)
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


class _Receiver:
    """The shared logic of both protocols: decode, record, answer (or hang)."""

    def __init__(self, sink: _Sink, hang: bool) -> None:
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as mpb
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb

        self.sink = sink
        self.hang = hang
        self.stopping = threading.Event()
        self.kinds: dict[str, tuple[Any, Any, Callable[[Any, str], list[dict[str, Any]]]]] = {
            "traces": (tpb.ExportTraceServiceRequest, tpb.ExportTraceServiceResponse, span_records),
            "metrics": (mpb.ExportMetricsServiceRequest, mpb.ExportMetricsServiceResponse, metric_records),
        }

    def handle(self, kind: str, request: Any, protocol: str) -> Any:
        _, response_cls, to_records = self.kinds[kind]
        records = to_records(request, protocol)
        self.sink.write([{"signal": "request", "kind": kind, "protocol": protocol,
                          "items": len(records), "hung": self.hang}])
        if self.hang:
            self.stopping.wait()  # never answer; released only when the process stops
            raise _Stopping
        self.sink.write(records)
        return response_cls()


class _Stopping(Exception):
    pass


# --------------------------------------------------------------------------- gRPC


def _start_grpc(receiver: _Receiver, host: str, port: int) -> tuple[Any, int]:
    import grpc
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as mgrpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as tgrpc

    class TraceService(tgrpc.TraceServiceServicer):
        def Export(self, request, context):  # noqa: N802 - gRPC method name
            try:
                return receiver.handle("traces", request, "grpc")
            except _Stopping:
                context.abort(grpc.StatusCode.UNAVAILABLE, "receiver stopping")

    class MetricsService(mgrpc.MetricsServiceServicer):
        def Export(self, request, context):  # noqa: N802
            try:
                return receiver.handle("metrics", request, "grpc")
            except _Stopping:
                context.abort(grpc.StatusCode.UNAVAILABLE, "receiver stopping")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="otlp-grpc"),
                         options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    tgrpc.add_TraceServiceServicer_to_server(TraceService(), server)
    mgrpc.add_MetricsServiceServicer_to_server(MetricsService(), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind gRPC on {host}:{port}")
    server.start()
    return server, bound


# --------------------------------------------------------------------------- HTTP


def _start_http(receiver: _Receiver, host: str, port: int) -> tuple[ThreadingHTTPServer, int]:
    paths = {"/v1/traces": "traces", "/v1/metrics": "metrics"}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

        def _reply(self, code: int, body: bytes = b"", ctype: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            kind = paths.get(self.path.split("?", 1)[0])
            if kind is None:
                self._reply(404, b"not found")
                return
            ctype = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip()
            if ctype != "application/x-protobuf":
                self._reply(415, b"only application/x-protobuf")
                return
            encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
            try:
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                request = receiver.kinds[kind][0]()
                request.ParseFromString(body)
            except Exception as exc:  # noqa: BLE001 - a bad body is the client's error
                self._reply(400, f"cannot decode: {exc}".encode())
                return
            try:
                response = receiver.handle(kind, request, "http")
            except _Stopping:
                self.close_connection = True
                return
            self._reply(200, response.SerializeToString(), "application/x-protobuf")

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="otlp-http", daemon=True).start()
    return server, server.server_address[1]


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--grpc-port", type=int, default=0, help="0: pick a free port")
    parser.add_argument("--http-port", type=int, default=0, help="0: pick a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines are appended here")
    parser.add_argument("--hang", action="store_true", help="accept requests, never answer")
    args = parser.parse_args(argv)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    sink = _Sink(args.out)
    receiver = _Receiver(sink, args.hang)
    grpc_server, grpc_port = _start_grpc(receiver, args.host, args.grpc_port)
    http_server, http_port = _start_http(receiver, args.host, args.http_port)
    print(f"READY grpc={grpc_port} http={http_port}", flush=True)

    while not stop.wait(0.5):  # wake regularly so signals are handled promptly
        pass

    receiver.stopping.set()  # release hung handlers
    http_server.shutdown()
    http_server.server_close()
    grpc_server.stop(grace=1).wait(5)
    sink.close()
    return 0


# --------------------------------------------------------------------------- helper


def span_key(span: dict[str, Any]) -> tuple[str, str, str, str]:
    """(trace_id, span_id, parent_span_id, name): what "the same span" means in tests."""
    return span["trace_id"], span["span_id"], span["parent_span_id"], span["name"]


def read_otlp_json_lines(path: Path | str) -> list[dict[str, Any]]:
    """The spans of an OTLP/JSON lines trace file (a run folder's trace*.jsonl), as records
    with the receiver's keys (trace_id, span_id, parent_span_id, name, service_name, ...),
    so a test can compare ``{span_key(s) for s in rx.spans()}`` with the run's own file."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        for rs in json.loads(line).get("resourceSpans", ()):
            resource = {a["key"]: _json_any(a.get("value", {})) for a in rs.get("resource", {}).get("attributes", ())}
            for ss in rs.get("scopeSpans", ()):
                for span in ss.get("spans", ()):
                    out.append({
                        "signal": "span",
                        "trace_id": span.get("traceId", "").lower(),
                        "span_id": span.get("spanId", "").lower(),
                        "parent_span_id": span.get("parentSpanId", "").lower(),
                        "name": span.get("name", ""),
                        "start_time_unix_nano": int(span.get("startTimeUnixNano", 0)),
                        "end_time_unix_nano": int(span.get("endTimeUnixNano", 0)),
                        "service_name": resource.get("service.name", ""),
                        "scope_name": ss.get("scope", {}).get("name", ""),
                        "attributes": {a["key"]: _json_any(a.get("value", {})) for a in span.get("attributes", ())},
                        "resource": resource,
                    })
    return out


def _json_any(v: dict[str, Any]) -> Any:
    if "arrayValue" in v:
        return [_json_any(x) for x in v["arrayValue"].get("values", ())]
    if "kvlistValue" in v:
        return {kv["key"]: _json_any(kv.get("value", {})) for kv in v["kvlistValue"].get("values", ())}
    if "intValue" in v:
        return int(v["intValue"])
    for key in ("stringValue", "boolValue", "doubleValue", "bytesValue"):
        if key in v:
            return v[key]
    return None



class OtlpReceiver:
    """Run the receiver as a subprocess for the duration of a ``with`` block.

    >>> with OtlpReceiver(tmp_path / "otlp.jsonl") as rx:          # doctest: +SKIP
    ...     env["OTEL_EXPORTER_OTLP_ENDPOINT"] = rx.grpc_endpoint
    ...     run_something(env)
    ...     spans = rx.wait_for_spans(12, timeout=10)
    """

    def __init__(self, out: Path | str, *, hang: bool = False, grpc_port: int = 0,
                 http_port: int = 0, ready_timeout: float = 20.0) -> None:
        self.out = Path(out)
        self.hang = hang
        self._ports = (grpc_port, http_port)
        self._ready_timeout = ready_timeout
        self.proc: subprocess.Popen[str] | None = None
        self.grpc_port = 0
        self.http_port = 0

    # lifecycle
    def start(self) -> OtlpReceiver:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.touch()
        cmd = [sys.executable, str(Path(__file__).resolve()), "--grpc-port", str(self._ports[0]),
               "--http-port", str(self._ports[1]), "--out", str(self.out)]
        if self.hang:
            cmd.append("--hang")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self._read_ready_line()
        fields = dict(part.split("=", 1) for part in line.split()[1:])
        self.grpc_port, self.http_port = int(fields["grpc"]), int(fields["http"])
        return self

    def _read_ready_line(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + self._ready_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                raise TimeoutError(f"OTLP receiver not READY within {self._ready_timeout}s")
            ready, _, _ = select.select([self.proc.stdout], [], [], remaining)
            if not ready:
                continue
            line = self.proc.stdout.readline()
            if line.startswith("READY "):
                return line.strip()
            if line == "":  # EOF: the process died
                err = self.proc.stderr.read() if self.proc.stderr else ""
                self.proc.wait()
                raise RuntimeError(f"OTLP receiver exited ({self.proc.returncode}): {err.strip()}")

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait; SIGKILL if it does not go. Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()
        return self.proc.returncode

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # addresses
    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        """The base URL: the SDK appends /v1/traces and /v1/metrics to it."""
        return f"http://127.0.0.1:{self.http_port}"

    def endpoint(self, protocol: str) -> str:
        """The endpoint for an ``OTEL_EXPORTER_OTLP_PROTOCOL`` value."""
        return self.grpc_endpoint if protocol == "grpc" else self.http_endpoint

    # what arrived
    def records(self) -> list[dict[str, Any]]:
        """Every complete line written so far (a half-written last line is skipped)."""
        try:
            text = self.out.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        lines = text.split("\n")
        return [json.loads(line) for line in lines[:-1] if line]

    def spans(self) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["signal"] == "span"]

    def metrics(self) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["signal"] == "metric"]

    def requests(self) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["signal"] == "request"]

    def wait_for(self, predicate: Callable[[OtlpReceiver], Any], timeout: float = 10.0,
                 interval: float = 0.05) -> Any:
        """Poll ``predicate(self)`` until truthy; return its value or raise TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self)
            if value:
                return value
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"OTLP receiver exited ({self.proc.returncode})")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            time.sleep(interval)

    def wait_for_spans(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until at least ``count`` spans arrived; return them all."""
        found = self.wait_for(lambda rx: [s] if len(s := rx.spans()) >= count else None, timeout)
        return found[0]


if __name__ == "__main__":
    sys.exit(main())
