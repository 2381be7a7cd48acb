"""Server-side timings from QUERY_HISTORY, written to trace-server.jsonl (client trace untouched)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from support.fakesnow_server import FakesnowServer
from support.traces import Tree, read_spans

from spanbench.settings import Settings
from spanbench.targets.snowflake_history import (
    SERVER_TRACE,
    ClientSpan,
    enrich_run_folder,
    read_query_spans,
    server_spans,
    to_otlp_line,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
QID = "01b2c3d4-0000-1111-0000-00000000abcd"


def _client_line(span_id: str = "00f067aa0ba902b7", start: int = 1_000_000_000, end: int = 1_050_000_000) -> str:
    span = {"traceId": TRACE, "spanId": span_id, "parentSpanId": "1111111111111111", "name": "query", "kind": 3,
            "startTimeUnixNano": str(start), "endTimeUnixNano": str(end),
            "attributes": [{"key": "db.system.name", "value": {"stringValue": "snowflake"}},
                           {"key": "db.snowflake.query_id", "value": {"stringValue": QID}}]}
    return json.dumps({"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"scope": {"name": "t"}, "spans": [span]}]}]})


def test_server_spans_nest_inside_the_client_span(tmp_path: Path) -> None:
    (tmp_path / "trace-w0.jsonl").write_text(_client_line() + "\n")
    client = read_query_spans(tmp_path)
    assert client == [ClientSpan(TRACE, "00f067aa0ba902b7", "query", 1_000_000_000, 1_050_000_000, QID)]
    row = {"QUERY_ID": QID, "QUERY_TAG": "spanbench:run=r:worker=w0:phase=MEASUREMENT:trace=" + TRACE,
           "TOTAL_ELAPSED_TIME": 30, "COMPILATION_TIME": 12, "QUEUED_PROVISIONING_TIME": 0, "QUEUED_REPAIR_TIME": 0,
           "QUEUED_OVERLOAD_TIME": 5, "TRANSACTION_BLOCKED_TIME": 0, "EXECUTION_TIME": 13, "EXECUTION_STATUS": "SUCCESS",
           "WAREHOUSE_NAME": "WH", "START_TIME": "2030-01-01 00:00:00", "END_TIME": "2030-01-01 00:00:00.030"}
    other = dict(row, QUERY_ID="ffffffff-0000-1111-0000-00000000abcd")
    spans = server_spans(client, [row, other])
    (tmp_path / SERVER_TRACE).write_text(to_otlp_line(spans) + "\n")
    tree = Tree(read_spans(tmp_path))
    (server,) = tree.named("snowflake.server")
    assert server.parent_id == "00f067aa0ba902b7" and server.trace_id == TRACE
    assert (server.start, server.end) == (1_020_000_000, 1_050_000_000)  # right-aligned, 30 ms
    assert server.attrs["snowflake.compilation_ms"] == 12.0 and server.attrs["snowflake.queued_ms"] == 5.0
    assert server.attrs["spanbench.client_overhead_ms"] == 20.0
    stages = tree.kids(server)
    assert [s.name for s in stages] == ["snowflake.compilation", "snowflake.queued", "snowflake.execution"]
    assert [round(s.ms) for s in stages] == [12, 5, 13]
    assert stages[0].start == server.start and stages[-1].end == server.end


def test_off_by_default_and_for_fakesnow(fakesnow: FakesnowServer, tmp_path: Path) -> None:
    client_file = tmp_path / "trace-w0.jsonl"
    client_file.write_text(_client_line() + "\n")
    before = client_file.read_bytes()
    dsn = fakesnow.dsn()
    assert asyncio.run(enrich_run_folder(tmp_path, dsn, Settings(), enabled=False)) is None
    assert asyncio.run(enrich_run_folder(tmp_path, dsn, Settings(), enabled=True, run_id="r")) is None
    assert not (tmp_path / SERVER_TRACE).exists()
    assert client_file.read_bytes() == before
