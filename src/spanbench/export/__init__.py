"""``spanbench export RUN``: a run's trace as one file another tool opens.

- ``--format jaeger`` (default): the Jaeger query API's JSON, which the Jaeger UI's
  Upload (Search → JSON File) opens with no backend behind it (``jaeger.py``);
- ``--format otlp``: one merged ExportTraceServiceRequest in OTLP/JSON, for
  ``curl -H 'Content-Type: application/json' --data @run.otlp.json COLLECTOR/v1/traces``
  (``otlp.py``).

Both read the run's ``trace-*.jsonl`` files with nothing dropped (``otlp_files.py``) and
scrub any secret from string attributes first (``redact.py``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from spanbench.errors import ConfigError

FORMATS = ("jaeger", "otlp")


def export_document(source: Path, fmt: str) -> tuple[dict[str, Any], int, list[str]]:
    """(the document, its span count, warnings) for a run folder or trace file."""
    from spanbench.export.jaeger import to_jaeger
    from spanbench.export.otlp import merged_request
    from spanbench.export.otlp_files import read_trace
    from spanbench.export.redact import scrubbed

    read = read_trace(source)
    resources: dict[int, Any] = {}  # spans of one resourceSpans share its resource: scrub it once
    records = []
    for r in read.spans:
        if id(r.resource) not in resources:
            resources[id(r.resource)] = scrubbed(r.resource)
        records.append(replace(r, raw=scrubbed(r.raw), resource=resources[id(r.resource)]))
    doc = to_jaeger(records) if fmt == "jaeger" else merged_request(records)
    return doc, len(records), read.warnings


def export_command(run: str, *, fmt: str = "jaeger", output: str | None = None) -> int:
    from spanbench.runs import resolve_run

    fmt = (fmt or "").strip().lower()
    if fmt not in FORMATS:
        raise ConfigError(f"unknown --format {fmt!r}: use jaeger or otlp")
    if output is not None and not output.strip():
        raise ConfigError("empty -o/--output: give a file name, or leave it out for stdout")
    source = resolve_run(run)
    doc, count, warnings = export_document(source, fmt)
    text = json.dumps(doc, separators=(",", ":"), allow_nan=False) + "\n"
    for warning in warnings:
        print(f"spanbench: warning: {warning}", file=sys.stderr)
    if output is None or output == "-":
        sys.stdout.write(text)
        where = "stdout"
    else:
        path = Path(output)
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"cannot write {path}: {err.strerror or err}") from None
        where = str(path)
    traces = len(doc["data"]) if fmt == "jaeger" else len({s["traceId"] for rs in doc["resourceSpans"]
                                                           for ss in rs["scopeSpans"] for s in ss["spans"]})
    print(f"exported {count} spans ({traces} trace{'s' if traces != 1 else ''}) of {source} as {fmt} to {where}",
          file=sys.stderr)
    return 0
