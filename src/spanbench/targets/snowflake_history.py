"""Post-run enrichment: Snowflake's own timings for the sampled query spans, in a second trace file.

After a run on Snowflake, the ``query`` and ``first_query`` spans of the run folder carry the
Snowflake query id (``db.snowflake.query_id``). This module reads
``INFORMATION_SCHEMA.QUERY_HISTORY`` for those ids (and the run's QUERY_TAG), and writes
``trace-server.jsonl`` next to the client-side trace: per query span, one child span
``snowflake.server`` with the compilation, queued and execution times as attributes and as
three children laid out in that order.

The client-side trace files are never touched. The server's clock is not the client's, so
the ``snowflake.server`` span is right-aligned inside its client span (the response's
transfer is the only thing after execution) and Snowflake's own start and end times are kept
as attributes.

Off unless asked for, and off for fakesnow (which has no QUERY_HISTORY): ``enrich_run_folder``
returns None then, with the reason logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spanbench.settings import Settings

log = logging.getLogger(__name__)

SERVER_TRACE = "trace-server.jsonl"
QUERY_SPANS = frozenset({"query", "first_query"})
QID_ATTR = "db.snowflake.query_id"
_QID = re.compile(r"^[0-9a-fA-F-]{36}$")
_IN_BATCH = 1000
# QUERY_HISTORY columns read (all times in ms)
COLUMNS = (
    "QUERY_ID", "QUERY_TAG", "START_TIME", "END_TIME", "TOTAL_ELAPSED_TIME", "COMPILATION_TIME",
    "QUEUED_PROVISIONING_TIME", "QUEUED_REPAIR_TIME", "QUEUED_OVERLOAD_TIME", "TRANSACTION_BLOCKED_TIME",
    "EXECUTION_TIME", "EXECUTION_STATUS", "WAREHOUSE_NAME", "WAREHOUSE_SIZE", "BYTES_SCANNED", "ROWS_PRODUCED",
)


@dataclass
class ClientSpan:
    trace_id: str
    span_id: str
    name: str
    start_ns: int
    end_ns: int
    query_id: str


def read_query_spans(run_dir: Path) -> list[ClientSpan]:
    """The query spans with a Snowflake query id, from the run folder's OTLP/JSON lines."""
    out = []
    for path in sorted(run_dir.glob("*.jsonl")):
        if path.name == SERVER_TRACE:
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            for rs in json.loads(line).get("resourceSpans", []):
                for ss in rs.get("scopeSpans", []):
                    for sp in ss.get("spans", []):
                        if sp.get("name") not in QUERY_SPANS:
                            continue
                        attrs = {a["key"]: a.get("value", {}) for a in sp.get("attributes", [])}
                        qid = attrs.get(QID_ATTR, {}).get("stringValue")
                        if qid and _QID.match(qid):
                            out.append(ClientSpan(sp["traceId"], sp["spanId"], sp["name"],
                                                  int(sp["startTimeUnixNano"]), int(sp["endTimeUnixNano"]), qid))
    return out


def _attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        v: dict[str, Any] = {"boolValue": value}
    elif isinstance(value, int):
        v = {"intValue": str(value)}
    elif isinstance(value, float):
        v = {"doubleValue": value}
    else:
        v = {"stringValue": str(value)}
    return {"key": key, "value": v}


def _ms(row: dict[str, Any], key: str) -> float:
    value = row.get(key)
    return float(value) if value is not None else 0.0


def _span(trace_id: str, parent: str, name: str, start: int, end: int, attrs: dict[str, Any],
          kind: int) -> dict[str, Any]:
    return {
        "traceId": trace_id, "spanId": secrets.token_hex(8), "parentSpanId": parent, "name": name,
        "kind": kind,  # OTLP enum: 1 INTERNAL, 2 SERVER
        "startTimeUnixNano": str(start), "endTimeUnixNano": str(max(start, end)),
        "attributes": [_attr(k, v) for k, v in attrs.items() if v is not None],
        "status": {},
    }


def server_spans(client: Sequence[ClientSpan], history: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """OTLP/JSON spans: ``snowflake.server`` under each matched client span, and its three stages."""
    rows = {str(r["QUERY_ID"]): r for r in history}
    out: list[dict[str, Any]] = []
    for cs in client:
        row = rows.get(cs.query_id)
        if row is None:
            continue
        compile_ms = _ms(row, "COMPILATION_TIME")
        queued_ms = sum(_ms(row, k) for k in ("QUEUED_PROVISIONING_TIME", "QUEUED_REPAIR_TIME", "QUEUED_OVERLOAD_TIME"))
        blocked_ms = _ms(row, "TRANSACTION_BLOCKED_TIME")
        exec_ms = _ms(row, "EXECUTION_TIME")
        total_ms = _ms(row, "TOTAL_ELAPSED_TIME") or (compile_ms + queued_ms + blocked_ms + exec_ms)
        total_ns = int(total_ms * 1e6)
        end = cs.end_ns
        start = max(cs.start_ns, end - total_ns)
        attrs = {
            "db.system.name": "snowflake", QID_ATTR: cs.query_id,
            "snowflake.query_tag": row.get("QUERY_TAG"),
            "snowflake.total_elapsed_ms": total_ms, "snowflake.compilation_ms": compile_ms,
            "snowflake.queued_ms": queued_ms, "snowflake.transaction_blocked_ms": blocked_ms,
            "snowflake.execution_ms": exec_ms, "snowflake.execution_status": row.get("EXECUTION_STATUS"),
            "snowflake.warehouse": row.get("WAREHOUSE_NAME"), "snowflake.warehouse_size": row.get("WAREHOUSE_SIZE"),
            "snowflake.bytes_scanned": row.get("BYTES_SCANNED"), "snowflake.rows_produced": row.get("ROWS_PRODUCED"),
            "snowflake.server_start": str(row.get("START_TIME")), "snowflake.server_end": str(row.get("END_TIME")),
            "spanbench.layout": "right-aligned in the client span; server clock in snowflake.server_start/end",
            "spanbench.client_overhead_ms": round((cs.end_ns - cs.start_ns) / 1e6 - total_ms, 3),
        }
        parent = _span(cs.trace_id, cs.span_id, "snowflake.server", start, end, attrs, kind=2)
        out.append(parent)
        t = start
        for name, ms in (("snowflake.compilation", compile_ms), ("snowflake.queued", queued_ms + blocked_ms),
                         ("snowflake.execution", exec_ms)):
            if ms <= 0:
                continue
            stage_end = min(end, t + int(ms * 1e6))
            out.append(_span(cs.trace_id, parent["spanId"], name, t, stage_end, {"snowflake.ms": ms}, kind=1))
            t = stage_end
    return out


def to_otlp_line(spans: list[dict[str, Any]]) -> str:
    """One ExportTraceServiceRequest (camelCase keys, hex ids), as the collector's file exporter writes."""
    request = {"resourceSpans": [{
        "resource": {"attributes": [_attr("service.name", "spanbench-snowflake-history")]},
        "scopeSpans": [{"scope": {"name": "spanbench.targets.snowflake_history"}, "spans": spans}],
    }]}
    return json.dumps(request, separators=(",", ":"))


def fetch_history(raw: Any, query_ids: Sequence[str], run_id: str | None, start_ns: int, end_ns: int) -> list[dict[str, Any]]:
    """Rows of INFORMATION_SCHEMA.QUERY_HISTORY for these ids (blocking; real Snowflake only)."""
    # The table function takes constants; both bounds are integers we made, ids are bound.
    lo_ms, hi_ms = start_ns // 1_000_000 - 60_000, end_ns // 1_000_000 + 600_000
    cur = raw.cursor()
    rows: list[dict[str, Any]] = []
    try:
        for i in range(0, len(query_ids), _IN_BATCH):
            ids = list(query_ids[i : i + _IN_BATCH])
            where = f"QUERY_ID IN ({', '.join('?' * len(ids))})"
            params: list[Any] = list(ids)
            if run_id:
                where = f"({where} OR QUERY_TAG LIKE ?)"
                params.append(f"spanbench:run={run_id}:%")
            cur.execute(
                f"SELECT {', '.join(COLUMNS)} FROM TABLE(INFORMATION_SCHEMA.QUERY_HISTORY("
                f"END_TIME_RANGE_START => TO_TIMESTAMP_LTZ({lo_ms}, 3), END_TIME_RANGE_END => TO_TIMESTAMP_LTZ({hi_ms}, 3),"
                f" RESULT_LIMIT => 10000)) WHERE {where}",
                params,
            )
            rows += [dict(zip(COLUMNS, r, strict=False)) for r in cur.fetchall()]
    finally:
        cur.close()
    return rows


async def enrich_run_folder(run_dir: Path, target_dsn: str, settings: Settings, *, enabled: bool,
                            run_id: str | None = None) -> Path | None:
    """Write ``trace-server.jsonl`` into ``run_dir``; None when off, on fakesnow, or nothing matched."""
    if not enabled:
        return None
    from spanbench.targets.snowflake import connect_raw, is_emulator
    from spanbench.targets.snowflake_dsn import parse_snowflake_dsn

    client = read_query_spans(run_dir)
    if not client:
        log.info("snowflake history: no query span with a Snowflake query id in %s", run_dir)
        return None
    dsn = parse_snowflake_dsn(target_dsn)

    def blocking() -> list[dict[str, Any]] | None:
        raw = connect_raw(dsn, settings, {"QUERY_TAG": "spanbench:history"})
        try:
            if is_emulator(raw):
                return None
            ids = sorted({c.query_id for c in client})
            return fetch_history(raw, ids, run_id, min(c.start_ns for c in client), max(c.end_ns for c in client))
        finally:
            raw.close()

    history = await asyncio.to_thread(blocking)
    if history is None:
        log.info("snowflake history: skipped, the server is an emulator (fakesnow has no QUERY_HISTORY)")
        return None
    spans = server_spans(client, history)
    if not spans:
        return None
    path = run_dir / SERVER_TRACE
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text(to_otlp_line(spans) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m spanbench.targets.snowflake_history RUN_DIR SNOWFLAKE_DSN [RUN_ID]``."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) not in (2, 3):
        print(main.__doc__, file=sys.stderr)
        return 2
    from spanbench.errors import SpanbenchError

    try:
        path = asyncio.run(enrich_run_folder(Path(args[0]), args[1], Settings(), enabled=True,
                                             run_id=args[2] if len(args) == 3 else None))
    except SpanbenchError as exc:
        print(f"spanbench: error: {exc}", file=sys.stderr)
        return 1
    print(path or "no server-side timings written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
